"""What an object store costs the record store: records/s written and read, S3 against disk,
and the plan's time over many small parts before and after compaction.

The S3 side is a real S3 API on 127.0.0.1 (moto's server, ``tests/s3server.py``), reached
as a user reaches MinIO: the AWS variables plus ``AWS_ENDPOINT_URL``. Loopback has no
network latency, so the figures are the floor of what a remote store costs: per-request
overhead (signing, HTTP, moto's own handling), not bandwidth.

The records are synthetic but shaped like a run's: the keys of a suite grid (images x 2
downscalers x 1 model x 1 metric x seeds), one PSNR-like value each, written as ``--parts``
parts through `RecordStore.append` (as a run with small flushes writes them). Then:

* **write**: records/s of the appends; **read**: records/s of ``scan().collect()``;
* **plan**: `make_plan` of the suite the records belong to (all done: it lists the parts,
  reads their key columns and subtracts them), over ``--parts`` parts on S3, then again
  after ``idard-bench compact``'s `compact`.

Writes ``benchmark/results/s3_throughput.{json,md}``.

    python benchmark/s3_throughput.py [--records 100000] [--parts 1000]
    python benchmark/s3_throughput.py --smoke        # seconds: 2,000 records in 20 parts
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/s3server.py: the loopback S3 server of the test suite

from idard.bench.store.compact import compact  # noqa: E402
from idard.bench.run.plan import make_plan  # noqa: E402
from idard.bench.suite.sources import ImageRef  # noqa: E402
from idard.bench.store import RecordStore  # noqa: E402
from idard.bench.suite import Suite, parse_suite  # noqa: E402
from idard.measure.records import RECORD_SCHEMA  # noqa: E402
from tests.s3server import s3_server  # noqa: E402

RESULTS = ROOT / "benchmark" / "results"
DOWNSCALERS = ("bicubic", "nearest")
MODEL = "latency(ms=1)"
SEEDS = 10  # records per image and downscaler


def synthetic_suite(images: int) -> tuple[Suite, list[ImageRef]]:
    """The suite whose grid the synthetic records fill, and its images (never read)."""
    suite = parse_suite({"name": "s3-throughput", "images": ["synthetic"], "downscalers": list(DOWNSCALERS),
                         "models": [MODEL], "metrics": ["psnr"], "samples": SEEDS})
    return suite, [ImageRef(f"img{i:06d}", f"/nonexistent/img{i:06d}.png") for i in range(images)]


def synthetic_records(suite: Suite, images: list[ImageRef]) -> pl.DataFrame:
    """One record per key of the grid: the columns a run writes, a value that varies."""
    grid = (pl.DataFrame({"image": [ref.name for ref in images]})
            .join(pl.DataFrame({"downscaler": list(suite.downscalers)}), how="cross")
            .join(pl.DataFrame({"seed": list(suite.seeds)}, schema={"seed": pl.Int64}), how="cross"))
    frame = grid.with_columns(
        model=pl.lit(suite.models[0]), metric=pl.lit("psnr"), scale=pl.lit(4, pl.Int64),
        value=(pl.int_range(grid.height) % 997).cast(pl.Float64) / 40.0 + 20.0, finite=pl.lit(True),
        sample_seconds=pl.lit(0.01), metric_seconds=pl.lit(0.001), device=pl.lit("cpu"),
        higher_is_better=pl.lit(True), hr_sha256=pl.lit("0" * 64), worker=pl.lit("bench:1"),
    )
    return frame.select([c for c in [*RECORD_SCHEMA, "worker"] if c in frame.columns])


def write(store: RecordStore, records: pl.DataFrame, parts: int, suite_hash: str) -> float:
    """Seconds to append ``records`` as ``parts`` parts."""
    size = -(-records.height // parts)
    started = time.perf_counter()
    for offset in range(0, records.height, size):
        store.append(records.slice(offset, size), suite_hash)
    return time.perf_counter() - started


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def measure(location: str, records: pl.DataFrame, parts: int, suite: Suite, images: list[ImageRef],
            plan_after_compaction: bool) -> dict:
    store = RecordStore(location)
    write_s = write(store, records, parts, suite.digest())
    read_s, frame = timed(lambda: RecordStore(location).scan().collect())
    assert frame.height == records.height, f"{location}: read {frame.height} of {records.height} records"
    plan_s, plan = timed(lambda: make_plan(suite, RecordStore(location), images=images))
    assert not plan.units and plan.done_tasks == records.height, f"{location}: the plan found work left"
    result = {"records": records.height, "parts": len(RecordStore(location).parts()),
              "write_s": round(write_s, 3), "write_records_per_s": round(records.height / write_s),
              "read_s": round(read_s, 3), "read_records_per_s": round(records.height / read_s),
              "plan_s": round(plan_s, 3)}
    if plan_after_compaction:
        compact_s, done = timed(lambda: compact(RecordStore(location)))
        plan_s, plan = timed(lambda: make_plan(suite, RecordStore(location), images=images))
        assert not plan.units and plan.done_tasks == records.height, f"{location}: compaction lost records"
        read_s, frame = timed(lambda: RecordStore(location).scan().collect())
        result.update(compact_s=round(compact_s, 3), parts_after_compaction=len(RecordStore(location).parts()),
                      plan_after_compaction_s=round(plan_s, 3),
                      read_after_compaction_records_per_s=round(records.height / read_s))
    return result


def markdown(result: dict) -> str:
    rows = [("records/s written", "write_records_per_s"), ("records/s read", "read_records_per_s"),
            ("parts", "parts"), (f"plan over {result['parts']} parts (s)", "plan_s"),
            ("compaction (s)", "compact_s"), ("parts after compaction", "parts_after_compaction"),
            ("plan after compaction (s)", "plan_after_compaction_s"),
            ("records/s read after compaction", "read_after_compaction_records_per_s")]
    lines = [f"# Record store on S3 (moto on 127.0.0.1) against local disk: {result['records']:,} records "
             f"in {result['parts']:,} parts", "", "| | S3 | local disk |", "|---|---:|---:|"]
    for label, key in rows:
        s3, disk = result["s3"].get(key, ""), result["local"].get(key, "")
        lines.append(f"| {label} | {s3:,} | {disk:,} |" if isinstance(s3, (int, float)) and isinstance(
            disk, (int, float)) else f"| {label} | {s3} | {disk} |")
    lines += ["", f"{result['machine']}. Loopback: no network latency, so the S3 figures are per-request "
              "overhead (signing, HTTP, moto), a floor for a remote store.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--parts", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="2,000 records in 20 parts, results to a temp dir")
    args = parser.parse_args()
    if args.smoke:
        args.records, args.parts, args.out = 2000, 20, Path(tempfile.mkdtemp(prefix="s3-throughput-"))
    images = max(1, args.records // (len(DOWNSCALERS) * SEEDS))
    suite, refs = synthetic_suite(images)
    records = synthetic_records(suite, refs)
    result = {"records": records.height, "parts": args.parts,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as tmp:
        result["local"] = measure(str(Path(tmp) / "run"), records, args.parts, suite, refs, True)
        print("local:", result["local"], flush=True)
        with s3_server(Path(tmp) / "moto.log") as server:
            os.environ.update(server.env())
            server.make_bucket("bench")
            result["s3"] = measure("s3://bench/runs/throughput", records, args.parts, suite, refs, True)
        print("s3:", result["s3"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "s3_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "s3_throughput.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
