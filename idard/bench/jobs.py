"""The jobs behind ``idard-bench run`` and ``status``: plan, execute, reduce.

Kept apart from the CLI so that Python users (and the benchmarks) run a suite the same
way the command line does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import polars as pl
import yaml
from rich.console import Console

import idard
from idard import __version__
from idard.bench.lease import RunLease
from idard.bench.plan import Plan, make_plan
from idard.bench.progress import RunProgress
from idard.bench.runner import RunOptions, RunResult, execute
from idard.bench.store import RecordStore, without_duplicates
from idard.bench.suite import Suite, SuiteError, suite_document

QUICKSTART = "benchmark/quickstart.yaml"


def default_suite() -> Path:
    """``benchmark/quickstart.yaml`` of the working directory, else of this checkout."""
    for candidate in (Path(QUICKSTART), Path(idard.__file__).resolve().parents[1] / QUICKSTART):
        if candidate.is_file():
            return candidate
    raise SuiteError(f"no suite given and no {QUICKSTART} here or beside the idard package: pass --suite FILE")


def suite_records(store: RecordStore, suite: Suite, image_names: list[str]) -> pl.LazyFrame:
    """The store's records that belong to ``suite`` (a run dir may hold several suites')."""
    return store.scan().filter(
        pl.col("image").is_in(image_names) & pl.col("downscaler").is_in(list(suite.downscalers))
        & pl.col("model").is_in(list(suite.models)) & pl.col("metric").is_in(list(suite.metrics))
        & pl.col("seed").is_in(list(suite.seeds))
    )


@dataclasses.dataclass
class RunSummary:
    plan: Plan
    result: RunResult | None  # None when there was nothing to compute
    records: pl.LazyFrame  # the suite's records, all of them, after the run


def run_suite(suite: Suite, out: str | Path, options: RunOptions, console: Console,
              lease: RunLease | None = None) -> RunSummary:
    """Compute what ``out`` lacks of ``suite``; everything already there is kept as is.

    The run holds the run directory's lease from before it plans until its last write, so
    a second run on the same directory stops at once, naming this one. A caller that took
    the lease already (the CLI, before its slow imports) passes it as ``lease``.
    """
    if lease is not None and lease.held:
        return _run_holding_lease(suite, lease.store, options, console)
    store = RecordStore(out)
    with RunLease(store).hold():
        return _run_holding_lease(suite, store, options, console)


def _run_holding_lease(suite: Suite, store: RecordStore, options: RunOptions, console: Console) -> RunSummary:
    for path, why in store.quarantine():
        console.print(f"moved unreadable part to {path} ({why}); its keys are computed again", highlight=False)
    removed = store.remove_partials()
    if removed:
        console.print(f"removed {removed} partial file(s) left by an interrupted run", highlight=False)
    plan = make_plan(suite, store)
    for line in plan_notes(plan):
        console.print(line, highlight=False)
    copy = suite_copy_name(store, suite)
    store.write_text(copy, SUITE_COPY_HEADER + yaml.safe_dump(suite_document(suite), sort_keys=False))
    if copy != SUITE_COPY:
        console.print(f"{store.run_dir}/{SUITE_COPY} is not a copy written by idard (the suite itself?): "
                      f"left as is; the run's copy of the suite is {copy}", highlight=False)
    result = None
    if plan.units:
        result = execute(plan, store, options, RunProgress(console))
    else:
        console.print(f"nothing to compute: all {plan.total_tasks} records of suite {suite.name!r} "
                      f"are in {store.run_dir}", highlight=False)
    meta = {
        "suite": suite.name, "suite_hash": suite.digest(), "code_version": __version__,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "total_tasks": plan.total_tasks, "already_done": plan.done_tasks,
        "computed": result.computed_tasks if result else 0,
        "seconds": round(result.seconds, 2) if result else 0.0,
        "workers": result.workers if result else [],
    }
    store.write_text("run.json", json.dumps(meta, indent=2) + "\n")
    return RunSummary(plan, result, suite_records(store, suite, [ref.name for ref in plan.images]))


#: The run directory's copy of its suite, loadable with ``--suite`` (it names absolute paths).
SUITE_COPY = "suite.yaml"
SUITE_COPY_HEADER = "# written by idard-bench run: the suite of this run directory (loadable with --suite)\n"


def suite_copy_name(store: RecordStore, suite: Suite) -> str:
    """``suite.yaml``, unless a file of that name there is not idard's copy (e.g. ``--out``
    is the suite's own folder): the user's file is never overwritten."""
    if not store.remote and Path(suite.path).resolve() == Path(store._root) / SUITE_COPY:
        return "suite.run.yaml"
    try:
        head = store.read_bytes(SUITE_COPY)[: len(SUITE_COPY_HEADER)].decode(errors="replace")
    except FileNotFoundError:
        return SUITE_COPY
    return SUITE_COPY if head == SUITE_COPY_HEADER else "suite.run.yaml"


def plan_notes(plan: Plan) -> list[str]:
    """What the user should know about a plan's images: entries skipped, and why."""
    return [f"skipped {count} entr{'y' if count == 1 else 'ies'} of the image sources: {why} (e.g. {example})"
            for why, (count, example) in sorted(plan.skipped.items())]


def suite_status(suite: Suite, out: str | Path) -> tuple[Plan, pl.DataFrame]:
    """Done and missing records per (model, downscaler) for a suite and a run dir."""
    store = RecordStore(out)
    plan = make_plan(suite, store)
    records, _ = without_duplicates(suite_records(store, suite, [ref.name for ref in plan.images]))
    held = (
        records
        .group_by("model", "downscaler")
        .agg(done=pl.len(), errors=pl.col("error").is_not_null().sum(), nonfinite=(~pl.col("finite")).sum())
        .collect()
    )
    per_pair = len(plan.images) * len(suite.metrics) * len(suite.seeds)
    grid = pl.DataFrame(
        [(m, d) for m in suite.models for d in suite.downscalers], schema=["model", "downscaler"], orient="row"
    )
    table = (
        grid.join(held, on=["model", "downscaler"], how="left")
        .with_columns(pl.col("done", "errors", "nonfinite").fill_null(0).cast(pl.Int64))
        .with_columns(missing=(pl.lit(per_pair, dtype=pl.Int64) - pl.col("done")).clip(lower_bound=0))
    )
    return plan, table

