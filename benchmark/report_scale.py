"""Reducing a 10-million-record run directory to its IDA-RD report, in bounded memory.

A synthetic run directory is written in the record store's own layout and schema
(``records/part-*.parquet``, `STORE_SCHEMA`, parts of ``--part-rows`` records as the runner
flushes them: whole images, every downscaler and seed), then `build_report` reduces it with
a paired baseline (``bicubic``) in a fresh process whose peak resident memory is recorded.

More fresh processes measure what it is compared with: the in-memory size of the records
frame that a naive ``collect()`` would hold, the same reduction without bootstrap, the
store side of planning (listing parts, subtracting the held keys from the suite's), and, after
``idard-bench compact`` on the same directory, planning and the report again. Every
measurement has its own process so that no peak (generating the parts included) raises
another. Times are wall and CPU seconds: on a shared machine the CPU time is the steadier.

Values: per image a difficulty, per downscaler a shift, per (image, seed) SR noise shared by
all downscalers (as with real SR samples drawn from the same seed), small independent noise
on top, and a few failed samples (non-finite, ``finite`` False), all from a seeded RNG.

Writes ``benchmark/results/report_scale.json`` (the Parquet parts go under ``--dir``, by
default a temporary directory, and are never part of the repository).

    python benchmark/report_scale.py [--images 12500 --downscalers 20 --seeds 40]
                                     [--dir /tmp/idard-scale] [--keep] [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from idard.bench.report.reduce import REPORT_COLUMNS, build_report, scan_records
from idard.bench.store import STORE_SCHEMA
from idard.measure.statistics import DEFAULT_MAX_ROWS

RESULTS = Path(__file__).parent / "results"
MODEL, METRIC, SCALE = "srflow-tiny-4x", "lpips-alex", 4
NONFINITE_RATE = 1e-4


#: The suite's keys, written beside the records by `generate`.
GRID = "grid.json"


def downscaler_ids(n: int) -> list[str]:
    """Registry-style ids: the baseline, then blur and contrast ladders, then others."""
    names = ["bicubic", "nearest", "bilinear", "lanczos3", "area"]
    names += [f"blur(sigma={s / 2:.1f})" for s in range(1, 9)]
    names += [f"contrast(factor={f / 8:.3f})" for f in range(1, 8)]
    names += [f"jpeg(quality={q})" for q in range(5, 100, 5)]
    if n > len(names):
        raise ValueError(f"at most {len(names)} downscalers")
    return names[:n]


def _part(rng: np.random.Generator, images: np.ndarray, first: int, downscalers: list[str], shifts: np.ndarray,
          difficulty: np.ndarray, n_seeds: int, written_at: dt.datetime) -> pl.DataFrame:
    """The records of images ``first .. first + len(images) - 1``, all downscalers and seeds."""
    n_img, n_ds = images.size, len(downscalers)
    shared = rng.normal(0.0, 0.02, (n_img, 1, n_seeds))          # SR noise of (image, seed)
    own = rng.normal(0.0, 0.005, (n_img, n_ds, n_seeds))          # noise of the sample itself
    value = (difficulty[images][:, None, None] + shifts[None, :, None] + shared + own).ravel()
    finite = rng.random(value.size) >= NONFINITE_RATE
    value[~finite] = np.nan
    rows = value.size
    return pl.DataFrame({
        "image": np.repeat([f"div2k/{i + 1:05d}" for i in range(first, first + n_img)], n_ds * n_seeds),
        "downscaler": np.tile(np.repeat(downscalers, n_seeds), n_img),
        "model": MODEL, "metric": METRIC,
        "seed": np.tile(np.arange(n_seeds, dtype=np.int64), n_img * n_ds),
        "scale": np.int64(SCALE), "value": value, "finite": finite,
        "converged": pl.Series([None] * rows, dtype=pl.Boolean),  # a model without that notion
        "higher_is_better": False,  # LPIPS, written on every record as the runner does
        "error": pl.Series([None] * rows, dtype=pl.String),
        "weights_hash": "9f2c4e" * 10 + "a1b2", "sample_seconds": rng.uniform(0.01, 0.03, rows),
        "metric_seconds": rng.uniform(0.001, 0.003, rows), "device": "cuda:0", "code_version": "0.1.0",
        "suite_hash": "5d41402abc4b2a76", "worker": f"worker-{first % 8}", "written_at": written_at,
    }).with_columns(error=pl.when(pl.col("finite")).then(None).otherwise(pl.lit("non-finite SR sample")))


def generate(run_dir: Path, n_images: int, n_downscalers: int, n_seeds: int, part_rows: int, seed: int) -> dict:
    """Write the run directory; returns its shape (records, parts, bytes on disk)."""
    rng = np.random.default_rng(seed)
    downscalers = downscaler_ids(n_downscalers)
    shifts = np.concatenate(([0.0], rng.uniform(0.0, 0.2, n_downscalers - 1)))
    difficulty = rng.uniform(0.1, 0.6, n_images)
    per_image = n_downscalers * n_seeds
    images_per_part = max(1, part_rows // per_image)
    records_dir = run_dir / "records"
    records_dir.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    parts = 0
    for first in range(0, n_images, images_per_part):
        images = np.arange(first, min(first + images_per_part, n_images))
        frame = _part(rng, images, first, downscalers, shifts, difficulty, n_seeds, start + dt.timedelta(seconds=first))
        # columns the synthetic records do not model (hashes) are null, as in old parts
        frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                      for c, t in STORE_SCHEMA.items()]).write_parquet(
            records_dir / f"part-{first:08d}-{seed:04x}.parquet")
        parts += 1
    (records_dir / ".part-unfinished.parquet.tmp").write_bytes(b"PAR1 truncated")  # must be ignored
    # what the suite would list, for measure_plan (a planner takes its keys from the suite)
    (run_dir / GRID).write_text(json.dumps({
        "image": [f"div2k/{i + 1:05d}" for i in range(n_images)], "downscaler": downscalers, "model": [MODEL],
        "metric": [METRIC], "seed": list(range(n_seeds))}))
    size = sum(p.stat().st_size for p in records_dir.glob("part-*.parquet"))
    return {"records": n_images * per_image, "parts": parts, "records_per_part": images_per_part * per_image,
            "images": n_images, "downscalers": n_downscalers, "seeds": n_seeds, "parquet_mb": size / 2**20}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ measurements, one per process
# Each runs in a fresh interpreter (`_measure`), so that its peak RSS is its own: not raised by
# generating the parts, nor by another measurement. ``rss_after_imports_mb`` is the floor
# (Python, Polars, and torch, which `idard.bench.store` imports through `idard.measure.evaluate`).


def measure_report(run_dir: Path, n_boot: int, max_rows: int) -> dict:
    """`build_report` as ``idard-bench report`` runs it: scan, table, paired differences.
    The clock starts after the imports, the paired p-values' `scipy.stats` included."""
    import scipy.stats  # noqa: F401 - imported on first use by the report; an import, not reduction, cost

    before = peak_rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    report = build_report(scan_records(run_dir), baseline="bicubic", n_boot=n_boot, seed=0, max_rows=max_rows)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert report.paired is not None
    with pl.Config(tbl_rows=6, tbl_cols=12, tbl_width_chars=160):
        print(report.table.sort("ida_rd").head(5), file=sys.stderr)
        print(report.paired.sort("mean_diff").head(5), file=sys.stderr)
    return {
        "seconds": seconds, "cpu_seconds": cpu, "rss_after_imports_mb": before, "peak_rss_mb": peak_rss_mb(),
        "load_average_1min": os.getloadavg()[0], "table_rows": report.table.height, "paired_rows": report.paired.height,
        "n_samples": int(report.table["n_samples"].sum()), "n_nonfinite": int(report.table["n_nonfinite"].sum()),
    }


def measure_unbatched(run_dir: Path) -> dict:
    """The same reduction in one pass (``max_rows`` above the record count), without
    bootstrap: what the report costs when the CIs cost nothing."""
    before = peak_rss_mb()
    started = time.perf_counter()
    build_report(scan_records(run_dir), baseline="bicubic", n_boot=0, max_rows=2**62)
    return {"seconds": time.perf_counter() - started, "rss_after_imports_mb": before, "peak_rss_mb": peak_rss_mb()}


def measure_collect(run_dir: Path) -> dict:
    """Every record collected at once, as a naive reduction would start: its size in memory."""
    before = peak_rss_mb()
    everything = scan_records(run_dir).collect()
    return {
        "all_columns_mb": everything.estimated_size() / 2**20,
        "report_columns_mb": everything.select(REPORT_COLUMNS).estimated_size() / 2**20,
        "rss_after_imports_mb": before, "peak_rss_mb": peak_rss_mb(),
    }


def measure_plan(run_dir: Path) -> dict:
    """What planning costs on the store side: list the parts, then subtract the keys held
    from every key of the suite (``grid.json``: what the suite lists), as
    `idard.bench.run.plan.make_plan` does (`missing_keys`)."""
    from idard.bench.run.plan import missing_keys
    from idard.bench.store import RecordStore
    from idard.measure.records import KEY_COLUMNS

    if not (run_dir / GRID).is_file():
        raise SystemExit(f"{run_dir / GRID}: missing; it is written by this script's generate step (rerun without --reuse)")
    dtypes = {"seed": pl.Int64}
    grid = {c: pl.Series(c, v, dtypes.get(c, pl.String)) for c, v in json.loads((run_dir / GRID).read_text()).items()}
    before = peak_rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    store = RecordStore(run_dir)
    todo = missing_keys(grid, (scan.select(KEY_COLUMNS) for scan in store.scan_batches()))  # lists the parts once
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "parts": len(store.part_sizes), "missing_keys": todo.height,
            "rss_after_imports_mb": before, "peak_rss_mb": peak_rss_mb(), "load_average_1min": os.getloadavg()[0]}


def measure_compact(run_dir: Path) -> dict:
    """`idard-bench compact` on the run directory."""
    import dataclasses

    from idard.bench.store.compact import compact
    from idard.bench.store import RecordStore

    result = compact(RecordStore(run_dir))
    return {**dataclasses.asdict(result), "peak_rss_mb": peak_rss_mb(), "load_average_1min": os.getloadavg()[0]}


def measure_cli_report(run_dir: Path) -> dict:
    """What a user types, whole: ``idard-bench report RUN --out DIR`` as a process of its
    own (interpreter start and imports, the duplicate-key check, the reduction, writing
    the tables), its wall time and its peak resident memory."""
    # Timed as a user's second report runs: after an untimed first one, so that the modules
    # it imports have their bytecode cached. A PYTHONDONTWRITEBYTECODE environment (this
    # project's sandboxes set it) would otherwise add 1.5-3 s of compiling scipy's and
    # polars' Python to every measured run, which no user's machine pays twice.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = Path(tempfile.mkdtemp(prefix="idard-scale-report-"))
    command = [sys.executable, "-m", "idard.bench.cli", "report", str(run_dir), "--out", str(out), "--format", "md,csv"]
    try:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        seconds = time.perf_counter() - started
        tables = sorted(p.name for p in out.iterdir())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # ru_maxrss: the larger of the two runs'
    cpu = children.ru_utime + children.ru_stime - before.ru_utime - before.ru_stime
    return {"seconds": seconds, "cpu_seconds": cpu,
            "peak_rss_mb": children.ru_maxrss / 1024, "load_average_1min": os.getloadavg()[0], "tables": tables,
            "second_run": True}


MEASUREMENTS = {"report": measure_report, "cli_report": measure_cli_report, "unbatched": measure_unbatched, "collect": measure_collect,
                "plan": measure_plan, "compact": measure_compact}


def _measure(kind: str, run_dir: Path, *extra: str) -> dict:
    """Run measurement ``kind`` in a fresh interpreter; returns its JSON, rounded."""
    command = [sys.executable, __file__, "--measure", kind, "--dir", str(run_dir), *extra]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in json.loads(done.stdout).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12_500)
    parser.add_argument("--downscalers", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--part-rows", type=int, default=2000, help="records per part (the runner's flush size)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="records one reduction step holds")
    parser.add_argument("--dir", type=Path, default=None, help="run directory to write (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory afterwards")
    parser.add_argument("--reuse", action="store_true", help="reduce an existing --dir without regenerating it")
    parser.add_argument("--skip-unbatched", action="store_true", help="skip the one-pass comparison")
    parser.add_argument("--skip-compaction", action="store_true", help="skip compacting and measuring again")
    parser.add_argument("--out", type=Path, default=RESULTS / "report_scale.json")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long check that the script still runs (tiny sizes, results to a temp file)")
    parser.add_argument("--measure", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()

    if args.smoke:
        args.images, args.downscalers, args.seeds, args.n_boot, args.skip_unbatched = 30, 3, 4, 50, True
        args.out = Path(tempfile.mkdtemp(prefix="idard-scale-smoke-")) / "report_scale.json"
    if args.measure:
        extra = (args.n_boot, args.max_rows) if args.measure == "report" else ()
        print(json.dumps(MEASUREMENTS[args.measure](args.dir, *extra)))
        return

    run_dir = args.dir or Path(tempfile.mkdtemp(prefix="idard-scale-"))
    try:
        if args.reuse:
            shape = {"records": scan_records(run_dir).select(pl.len()).collect().item(), "reused": True,
                     "parts": len(list((run_dir / "records").glob("part-*.parquet")))}
        else:
            if (run_dir / "records").exists():
                shutil.rmtree(run_dir / "records")
            started = time.perf_counter()
            shape = generate(run_dir, args.images, args.downscalers, args.seeds, args.part_rows, seed=0)
            shape["generate_seconds"] = round(time.perf_counter() - started, 1)
            shape["parquet_mb"] = round(shape["parquet_mb"], 1)
        report = _measure("report", run_dir, f"--n-boot={args.n_boot}", f"--max-rows={args.max_rows}")
        cli_report = _measure("cli_report", run_dir)
        collect = _measure("collect", run_dir)
        unbatched = None if args.skip_unbatched else _measure("unbatched", run_dir)
        plan = _measure("plan", run_dir)
        compaction = None
        if not args.skip_compaction:  # the same run directory after `idard-bench compact`
            compacted = _measure("compact", run_dir)
            compaction = {"compact": compacted, "plan_after": _measure("plan", run_dir),
                          "report_after": _measure("report", run_dir, f"--n-boot={args.n_boot}",
                                                   f"--max-rows={args.max_rows}"),
                          "cli_report_after": _measure("cli_report", run_dir)}
        increase = report["peak_rss_mb"] - report["rss_after_imports_mb"]
        result = {
            **shape,
            "baseline": "bicubic", "n_boot": args.n_boot, "max_rows": args.max_rows,
            "build_report": report,
            "cli_report": cli_report,
            "collect_everything": collect,
            "unbatched_one_pass_n_boot0": unbatched,
            "plan": plan,
            "compaction": compaction,
            "summary": {
                "build_report_seconds": report["seconds"],
                "build_report_cpu_seconds": report["cpu_seconds"],
                "build_report_peak_rss_mb": report["peak_rss_mb"],
                "build_report_rss_above_imports_mb": round(increase, 1),
                "records_frame_all_columns_mb": collect["all_columns_mb"],
                "records_frame_report_columns_mb": collect["report_columns_mb"],
                "rss_above_imports_over_all_columns_frame": round(increase / collect["all_columns_mb"], 3),
                "parts_before_after_compaction": None if compaction is None else [
                    shape["parts"], compaction["compact"]["parts_after"]],
                "plan_seconds_before_after": None if compaction is None else [
                    plan["seconds"], compaction["plan_after"]["seconds"]],
                "report_seconds_before_after": None if compaction is None else [
                    report["seconds"], compaction["report_after"]["seconds"]],
                "cli_report_seconds_before_after": [cli_report["seconds"], None if compaction is None else
                                                    compaction["cli_report_after"]["seconds"]],
                "cli_report_peak_rss_mb_before_after": [cli_report["peak_rss_mb"], None if compaction is None else
                                                        compaction["cli_report_after"]["peak_rss_mb"]],
                "report_cpu_seconds_before_after": None if compaction is None else [
                    report["cpu_seconds"], compaction["report_after"]["cpu_seconds"]],
                "unbatched_rss_above_imports_mb": None if unbatched is None
                else round(unbatched["peak_rss_mb"] - unbatched["rss_after_imports_mb"], 1),
            },
            "machine": {"python": platform.python_version(), "polars": pl.__version__, "cpus": os.cpu_count(),
                        "polars_threads": pl.thread_pool_size()},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        if args.dir is None and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
