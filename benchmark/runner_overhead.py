"""What distribution costs: the Ray runner against a plain in-process loop, same model work.

Three measurements of one suite (default: the quickstart), each into a fresh run dir:

* ``in-process``: the plan's work units computed by one `Worker` in this process, with
  all cores as torch threads: the model work alone, no Ray, no Parquet.
* ``ray x1``: ``run_suite`` end to end (Ray start, actor start, model load, streaming,
  Parquet flushes) with one worker holding all cores.
* ``ray x2``: the same with two workers of half the cores each.

Writes ``benchmark/results/runner_overhead.{json,md}``.

    python benchmark/runner_overhead.py [--suite benchmark/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console

from idard.bench.run.jobs import run_suite
from idard.bench.run.plan import make_plan
from idard.bench.run.runner import RunOptions
from idard.bench.store import RecordStore
from idard.bench.suite import load_suite
from idard.bench.run.worker import Worker

RESULTS = Path(__file__).parent / "results"


def in_process(suite_path: Path, cores: int) -> dict:
    suite = load_suite(suite_path)
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_plan(suite, RecordStore(tmp))
        started = time.perf_counter()
        worker = Worker(device="cpu", threads=cores, max_batch=suite.max_batch)
        records = sum(worker.run(unit, unit.image.read()).height for unit in plan.units)
        seconds = time.perf_counter() - started
    return {"records": records, "seconds": seconds, "records_per_s": records / seconds}


def with_ray(suite_path: Path, workers: int, cores: int) -> dict:
    import ray

    suite = load_suite(suite_path)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = run_suite(suite, Path(tmp) / "run", RunOptions(workers=workers, cpus_per_worker=cores // workers),
                            Console(file=io.StringIO()))
        seconds = time.perf_counter() - started
        records = RecordStore(Path(tmp) / "run").count()
    ray.shutdown()
    return {"records": records, "seconds": seconds, "records_per_s": records / seconds,
            "workers": summary.result.workers if summary.result else []}


def _tiny_suite(folder: Path) -> Path:
    """A suite of one 32 px crop of a bundled photo, bicubic, the embedded model, K = 1."""
    from idard.measure.datasets import load_bundled
    from idard.measure.images import save_image

    image = load_bundled("astronaut")
    save_image(folder / "images" / "astronaut.png", image.pixels[:32, :32])
    path = folder / "tiny.yaml"
    path.write_text(json.dumps({"name": "tiny", "images": [str(folder / "images")], "downscalers": ["bicubic"],
                                "models": ["srflow-tiny-4x"], "metrics": ["psnr"], "samples": 1}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, default=Path(__file__).parent / "quickstart.yaml")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="seconds-long check that the script runs (tiny sizes, temp output)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.smoke:  # one 32 px image, one downscaler, one sample; one Ray worker; temp output
        args.out = Path(tempfile.mkdtemp(prefix="idard-smoke-"))
        args.suite = _tiny_suite(args.out)

    results = {"suite": str(args.suite), "cores": cores, "machine": platform.processor() or platform.machine()}
    results["in_process"] = in_process(args.suite, cores)
    print("in-process", results["in_process"], flush=True)
    results["ray_1_worker"] = with_ray(args.suite, 1, cores)
    print("ray x1", results["ray_1_worker"], flush=True)
    if cores >= 2 and not args.smoke:
        results["ray_2_workers"] = with_ray(args.suite, 2, cores)
        print("ray x2", results["ray_2_workers"], flush=True)
    base = results["in_process"]["seconds"]
    results["overhead_ratio_1_worker"] = results["ray_1_worker"]["seconds"] / base

    args.out.mkdir(exist_ok=True)
    (args.out / "runner_overhead.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Runner overhead: {args.suite.name}, {results['in_process']['records']} records, {cores} CPU cores",
             "", "| configuration | seconds | records/s | vs in-process |", "|---|---|---|---|"]
    for key, label in (("in_process", "in-process loop (no Ray)"), ("ray_1_worker", "idard-bench runner, 1 worker"),
                       ("ray_2_workers", "idard-bench runner, 2 workers")):
        if key in results:
            r = results[key]
            lines.append(f"| {label} | {r['seconds']:.1f} | {r['records_per_s']:.2f} | {r['seconds'] / base:.2f}x |")
    (args.out / "runner_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
