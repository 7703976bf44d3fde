"""Chaos: SIGKILL the driver of ``idard-bench run`` at random instants, then check the store.

Each round starts ``idard-bench run`` on the same run directory (a local Ray of its own,
one Parquet part per unit so that kills land between and during flushes) and kills the
driver with SIGKILL after a random delay: while Python starts, while it plans, while Ray
starts, mid-computation, while it writes the tables. Its successor must take over the
dead driver's lease at once and compute only what is missing. After the last kill one
run goes to the end, and the store must hold every key of the suite exactly once:

* lost: keys of the suite missing from the store (must be 0);
* duplicate: keys held more than once (must be 0);
* unreadable parts left in the store (must be 0; a killed writer's temporary file is not
  a part).

The suite is tiny (small crops, few seeds) so that twenty kills take minutes. Writes
``benchmark/results/chaos_kill.{json,md}``::

    nice -n 15 python benchmark/chaos_kill.py --kills 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "motorcycle_left", "flower")
DOWNSCALERS = ("bicubic", "nearest", "box")


def write_suite(folder: Path, images: int, size: int, samples: int) -> tuple[Path, int]:
    """Crops of bundled photographs and a suite over them; returns (suite, number of keys)."""
    from idard.measure.datasets import bundled_path

    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        photo = Image.open(bundled_path(PHOTOS[i % len(PHOTOS)])).convert("RGB")
        offset = 30 + 11 * (i // len(PHOTOS))
        photo.crop((offset, offset, offset + size, offset + size)).save(folder / "images" / f"img{i:03d}.png")
    suite = folder / "chaos.yaml"
    suite.write_text(f"name: chaos\nimages: [images]\ndownscalers: {list(DOWNSCALERS)!r}\n"
                     f"models: [srflow-tiny-4x]\nmetrics: [lpips-alex]\nsamples: {samples}\n")
    return suite, images * len(DOWNSCALERS) * samples


def start_run(suite: Path, out: Path, log: Path) -> subprocess.Popen:
    """``idard-bench run`` in a session of its own, so its Ray processes can be cleaned up."""
    command = [sys.executable, "-m", "idard.bench.cli", "run", "--suite", str(suite), "--out", str(out),
               "--flush-records", "1", "--bootstrap", "100"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "ab") as sink:
        return subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def reap(process: subprocess.Popen) -> None:
    """After the driver's death, end what it left running (its local Ray) by its session."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def store_state(out: Path, expected_keys: int) -> dict:
    from idard.bench.store import RecordStore

    store = RecordStore(out)
    records = store.scan().collect()
    keys = records.select("image", "downscaler", "model", "metric", "seed")
    return {
        "records": records.height,
        "unique_keys": keys.n_unique() if records.height else 0,
        "duplicate_keys": store.duplicate_keys().height,
        "unreadable_parts": len(store.skipped_parts),
        "lost": expected_keys - (keys.n_unique() if records.height else 0),
        "parts": len(store.parts()),
    }


def wait_for_new_part(process: subprocess.Popen, out: Path, parts_before: int, timeout: float) -> float:
    """Seconds until the run flushed its first part (or ended, or ``timeout`` passed)."""
    from idard.bench.store import RecordStore

    started = time.monotonic()
    while process.poll() is None and time.monotonic() - started < timeout:
        if len(RecordStore(out).parts()) > parts_before:
            break
        time.sleep(0.2)
    return time.monotonic() - started


def chaos(kills: int, images: int, size: int, samples: int, max_delay: float, seed: int, work: Path,
          after_first_record: bool = False) -> dict:
    """``after_first_record``: the random delay counts from the round's first flushed part,
    so every kill lands while records are computed and written (on a loaded machine a
    run's start alone can outlast any fixed delay)."""
    rng = random.Random(seed)
    suite, expected = write_suite(work, images, size, samples)
    out, log = work / "run", work / "runs.log"
    rounds = []
    for k in range(kills):
        state_before = store_state(out, expected)
        before = state_before["records"]
        delay = rng.uniform(0.0, max_delay)
        process = start_run(suite, out, log)
        waited = wait_for_new_part(process, out, state_before["parts"], 1800) if after_first_record else 0.0
        time.sleep(delay)
        alive = process.poll() is None
        if alive:
            os.kill(process.pid, signal.SIGKILL)  # the driver only: what a crash or OOM kill does
        code = process.wait()
        reap(process)
        state = store_state(out, expected)
        rounds.append({"round": k + 1, "delay_s": round(delay, 2), "first_part_s": round(waited, 1),
                       "killed": alive, "exit_code": code,
                       "records_before": before, "records_after": state["records"],
                       "duplicate_keys": state["duplicate_keys"]})
        print(f"kill {k + 1}/{kills}: {delay:.1f} s after {'its first part' if after_first_record else 'start'}, "
              f"{'killed' if alive else f'had exited ({code})'}, "
              f"records {before} -> {state['records']} of {expected}", flush=True)
    final = start_run(suite, out, log)
    code = final.wait(timeout=3600)
    reap(final)
    state = store_state(out, expected)
    return {"kills": sum(r["killed"] for r in rounds), "rounds": rounds, "final_exit_code": code,
            "expected_keys": expected, **state, "lease_left": (out / "lease.json").exists(),
            "images": images, "crop": size, "samples": samples, "downscalers": list(DOWNSCALERS),
            "max_delay_s": max_delay, "seed": seed, "after_first_record": after_first_record}


def write_results(result: dict, name: str = "chaos_kill") -> list[Path]:
    RESULTS.mkdir(exist_ok=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
            "command": "nice -n 15 python benchmark/chaos_kill.py " + " ".join(sys.argv[1:])}
    json_path = RESULTS / f"{name}.json"
    json_path.write_text(json.dumps({**meta, **result}, indent=2) + "\n")
    lines = [
        "# Driver SIGKILLs at random instants", "",
        f"`{meta['command']}` on {meta['machine']}.", "",
        f"{result['kills']} SIGKILLs of the driver of `idard-bench run` at uniform random delays in "
        f"[0, {result['max_delay_s']:.0f}] s after "
        f"{'its first flushed part' if result.get('after_first_record') else 'its start'} ({result['images']} crops of {result['crop']} px, "
        f"{len(result['downscalers'])} downscalers, {result['samples']} seeds: {result['expected_keys']} keys), "
        "then one run to the end:", "",
        "| lost keys | duplicate keys | unreadable parts | records | final exit code | lease left |",
        "|---:|---:|---:|---:|---:|---|",
        f"| {result['lost']} | {result['duplicate_keys']} | {result['unreadable_parts']} | {result['records']} | "
        f"{result['final_exit_code']} | {result['lease_left']} |", "",
        "| round | delay (s) | first part after (s) | killed | records before | after |",
        "|---:|---:|---:|---|---:|---:|",
        *[f"| {r['round']} | {r['delay_s']} | {r.get('first_part_s', '')} | {r['killed']} | {r['records_before']} "
          f"| {r['records_after']} |" for r in result["rounds"]],
    ]
    md_path = RESULTS / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return [json_path, md_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=32, help="HR crop side in pixels")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-delay", type=float, default=40.0, help="kill at a uniform delay in [0, this] s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--after-first-record", action="store_true",
                        help="count the delay from the round's first flushed part (kills land mid-computation)")
    parser.add_argument("--name", default="chaos_kill", help="results file name under benchmark/results")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write benchmark/results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="idard-chaos-") as tmp:
        result = chaos(args.kills, args.images, args.size, args.samples, args.max_delay, args.seed, Path(tmp),
                       after_first_record=args.after_first_record)
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
    if not args.no_write:
        print("wrote", ", ".join(map(str, write_results(result, args.name))))
    sound = result["lost"] == 0 and result["duplicate_keys"] == 0 and result["unreadable_parts"] == 0
    return 0 if sound and result["final_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
