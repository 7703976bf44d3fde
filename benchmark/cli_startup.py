"""How long the small commands take: ``--help``, ``list``, ``status``, ``report``.

Each command runs as a fresh process (as a user runs it), first once to warm the bytecode
cache, then ``--repeats`` times; the median wall time and the peak RSS of each run are
kept. ``status`` and ``report`` read a quickstart-like run directory this script writes
(the quickstart suite's 4 images x 8 downscalers x srflow-tiny-4x x lpips-alex x 8 seeds,
synthetic values), so no model runs. The machine's load average is recorded beside the
times: on a shared machine it says how much of a time is the command's own.

Target (issue 22, item 8): ``status`` and ``list`` under 1.5 s on 2 cores.

    python benchmark/cli_startup.py [--repeats 7] [--out benchmark/results]
    python benchmark/cli_startup.py --smoke                  # one repeat, results in a temporary folder
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART_IMAGES = ("astronaut", "chelsea", "coffee", "china")
QUICKSTART_DOWNSCALERS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "blur", "blur(sigma=2.0)",
                          "blur(sigma=3.0)")


def write_run(run_dir: Path) -> int:
    """A run directory holding every record of the quickstart suite (synthetic values)."""
    import numpy as np
    import polars as pl

    from idard.bench.store import RecordStore

    rng = np.random.default_rng(0)
    rows = [(image, downscaler, seed) for image in QUICKSTART_IMAGES for downscaler in QUICKSTART_DOWNSCALERS
            for seed in range(8)]
    frame = pl.DataFrame({
        "image": [r[0] for r in rows], "downscaler": [r[1] for r in rows], "model": "srflow-tiny-4x",
        "metric": "lpips-alex", "seed": [r[2] for r in rows], "scale": 4,
        "value": rng.uniform(0.2, 0.5, len(rows)), "finite": True, "higher_is_better": False,
    })
    RecordStore(run_dir).append(frame, suite_hash="synthetic")
    return frame.height


def timed(arguments: list[str], program: str = "from idard.bench.cli import main; main()") -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS in MB, exit code, CPU seconds) of ``idard-bench ARGUMENTS`` in
    a new process. CPU seconds (user + system) depend far less on the machine's load than
    wall time: on a shared machine they are the better guess of an idle machine's time."""
    command = [sys.executable, "-c", program, *arguments]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, process.returncode, usage.ru_utime + usage.ru_stime


def measure(name: str, arguments: list[str], repeats: int, program: str | None = None) -> dict:
    run = (lambda: timed(arguments, program)) if program is not None else (lambda: timed(arguments))
    run()  # warms the bytecode cache (and the page cache)
    runs = [run() for _ in range(repeats)]
    codes = sorted({code for _, _, code, _ in runs})
    if codes != [0]:
        raise SystemExit(f"idard-bench {' '.join(arguments)} exited {codes}")
    seconds = [s for s, _, _, _ in runs]
    label = f"python -c {program!r}" if program is not None else f"idard-bench {' '.join(arguments)}"
    return {"command": label, "name": name, "repeats": repeats,
            "median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
            "max_s": round(max(seconds), 3), "median_cpu_s": round(statistics.median(c for *_, c in runs), 3),
            "peak_rss_mb": round(max(m for _, m, _, _ in runs), 1),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "cli_startup.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Small commands: start-up time (`benchmark/cli_startup.py`)", "",
             f"{results['when']}, {results['cpus']} CPUs, Python {results['python']}; each command a fresh "
             f"process, bytecode cache warm, median of {results['repeats']} runs. Load average (1 min) "
             f"before: {results['load_before']}, after: {results['load_after']}.", "",
             "| command | median s | min s | max s | median CPU s | peak RSS MB | load avg (1 min) after |",
             "|---|---|---|---|---|---|---|"]
    for row in results["commands"]:
        lines.append(f"| `{row['command'].replace(str(results['tmp']), 'TMP')}` | {row['median_s']} | {row['min_s']} | "
                     f"{row['max_s']} | {row['median_cpu_s']} | {row['peak_rss_mb']} | {row['load_average_1min']} |")
    (out / "cli_startup.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results")
    parser.add_argument("--smoke", action="store_true", help="one repeat (the smoke test)")
    parser.add_argument("--write-run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_run is not None:
        print(write_run(args.write_run))
        return
    repeats = 1 if args.smoke else args.repeats
    if args.smoke and args.out == ROOT / "benchmark" / "results":  # a smoke run never replaces the results
        args.out = Path(tempfile.mkdtemp(prefix="idard-cli-startup-smoke-"))
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp:
        run = Path(tmp) / "run"
        # In a child: this process stays small, so the children it forks start small (a
        # forked child's peak RSS counts the parent's pages it shared before exec).
        written = subprocess.run([sys.executable, __file__, "--write-run", str(run)], check=True, capture_output=True,
                                 text=True)
        records = int(written.stdout.split()[-1])
        load_before = [round(x, 2) for x in os.getloadavg()]
        rows = [measure("python", [], repeats, program="pass")]  # the interpreter alone: the floor on this machine
        print(f"python alone: median {rows[-1]['median_s']} s", flush=True)
        commands = [
            ("help", ["--help"]),
            ("list", ["list"]),
            ("status", ["status", "--out", str(run)]),
            ("report", ["report", str(run), "--out", str(Path(tmp) / "tables"), "--baseline", "bicubic"]),
        ]
        for name, arguments in commands:
            rows.append(measure(name, arguments, repeats))
            print(f"{rows[-1]['command']}: median {rows[-1]['median_s']} s ({rows[-1]['median_cpu_s']} s CPU), "
                  f"peak {rows[-1]['peak_rss_mb']} MB "
                  f"(load {rows[-1]['load_average_1min']})", flush=True)
        results = {"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "python": platform.python_version(),
                   "repeats": repeats, "records": records, "tmp": tmp, "load_before": load_before,
                   "load_after": [round(x, 2) for x in os.getloadavg()], "commands": rows}
        write_results(results, args.out)
    print(f"results: {args.out / 'cli_startup.md'}")


if __name__ == "__main__":
    main()
