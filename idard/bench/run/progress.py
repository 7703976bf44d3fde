"""Run progress for people: a live rich bar on a terminal, plain lines in logs.

Counts are in tasks (record keys), the unit users reason in; the rate and ETA are over
the tasks this run computed, not those found done in the store.
"""

from __future__ import annotations

import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


class RunProgress:
    """Tracks tasks done per worker; renders live on a TTY, every ``every`` s otherwise."""

    def __init__(self, console: Console, every: float = 10.0) -> None:
        self.console = console
        self.every = every
        self.live = console.is_terminal
        self.per_worker: Counter[str] = Counter()
        self.total = self.done = self.computed = 0
        self.started = time.perf_counter()
        self._last_line = 0.0
        self._bar: Progress | None = None
        self._task = None

    def start(self, total: int, done: int, workers: int) -> None:
        self.total, self.done = total, done
        self.started = time.perf_counter()
        self.console.print(f"{total - done} tasks to compute ({done} of {total} already in the store) "
                           f"on {workers} worker{'s' if workers != 1 else ''}", highlight=False)
        if self.live:
            self._bar = Progress(TextColumn("[bold]records"), BarColumn(), MofNCompleteColumn(),
                                 TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[workers]}"), console=self.console, transient=False)
            self._bar.start()
            self._task = self._bar.add_task("records", total=total, completed=done, rate="", workers="")

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.computed / elapsed if elapsed > 0 else 0.0

    def _workers_text(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return "  ".join(f"{name}: {count / elapsed:.1f}/s" for name, count in sorted(self.per_worker.items()))

    def advance(self, tasks: int, worker: str) -> None:
        self.done += tasks
        self.computed += tasks
        self.per_worker[worker] += tasks
        rate = self.rate()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=f"{rate:.1f} rec/s", workers=self._workers_text())
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every or self.done == self.total:
            self._last_line = now
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            # markup=False: "[w1: 2.0/s]" is text, not a Rich style tag to be swallowed
            self.console.print(f"{self.done}/{self.total} records  {rate:.1f}/s  ETA {eta:.0f} s  "
                               f"[{self._workers_text()}]", highlight=False, markup=False)

    def note(self, message: str) -> None:
        (self._bar.console if self._bar is not None else self.console).print(message, highlight=False)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
