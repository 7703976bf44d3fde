"""Stall and resume: a lease holder stopped past its TTL must not write once a successor took over.

Each trial starts a writer process (the *holder*) on an object-store run directory: it
takes the lease, plans the keys the store lacks and writes them one part per key, as a
run's driver does. The trial stops it with SIGSTOP at a random instant, waits past the
TTL, starts a second writer (the *successor*), which takes the expired lease over and
plans the same keys, and once the successor holds the lease resumes the holder with
SIGCONT. Both then go on, and the store is checked:

* duplicate: keys held more than once (must be 0: the holder must stop, `LeaseLost`);
* lost: keys missing after the successor finished (must be 0);
* how long the holder took to stop after SIGCONT, and how many parts it landed after the
  successor's takeover (a PUT already past its last check when it was stopped), which
  readers leave out because the successor fenced the holder's lease token.

The object store is a local folder behind pyarrow's filesystem interface, each request
delayed by ``--latency`` (20 ms, a same-region S3 GET), through the store's object-store
code path (no rename, no ``O_EXCL``: the lease is claimed by write, wait, verify), since
no S3 server is reachable offline; the holder's checks are the same GET and PUT calls.
Without the latency the holder's heartbeat thread notices the takeover before its
writer's next PUT (idard before the per-write check left 0 duplicates on a local path
and 2-4 per trial on S3).
With ``--s3`` the store is a real S3 API instead: moto's server on 127.0.0.1
(`tests.s3server`, the object-store tests' fixture), reached through the AWS variables a
user sets, so every check is a real GET and every part a real PUT. Writes
``benchmark/results/lease_stall.{json,md}`` (``lease_stall_s3.*`` with ``--s3``)::

    nice -n 15 python benchmark/lease_stall.py --trials 10 [--s3]
"""

from __future__ import annotations

import argparse
import contextlib
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

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
EXIT_LOST = 3


def slow_filesystem(latency: float):
    """A local folder behind pyarrow's filesystem interface that answers each request
    (listing, GET, PUT, DELETE) after ``latency`` seconds, as an object store does: a
    holder's check of its lease then takes as long as it does against S3."""
    import pyarrow.fs
    from fsspec.implementations.local import LocalFileSystem

    class Slow(pyarrow.fs.FSSpecHandler):
        def _wait(self) -> None:
            time.sleep(latency)

        def get_file_info(self, paths):
            self._wait()
            return super().get_file_info(paths)

        def get_file_info_selector(self, selector):
            self._wait()
            return super().get_file_info_selector(selector)

        def delete_file(self, path):
            self._wait()
            return super().delete_file(path)

        def move(self, src, dest):
            self._wait()
            return super().move(src, dest)

        def open_input_stream(self, path):
            self._wait()
            return super().open_input_stream(path)

        def open_input_file(self, path):
            self._wait()
            return super().open_input_file(path)

        def open_output_stream(self, path, metadata):
            self._wait()
            return super().open_output_stream(path, metadata)

    return pyarrow.fs.PyFileSystem(Slow(LocalFileSystem()))


def open_store(run: Path | str, latency: float = 0.0):
    """The run directory through the object-store code path (see the module docstring);
    an ``s3://`` run is the real thing."""
    from idard.bench.store import RecordStore

    if str(run).startswith("s3://"):
        return RecordStore(str(run))
    store = RecordStore(f"file://{run}")
    store.remote = True
    if latency:
        store._fs = slow_filesystem(latency)
    return store


def writer(run: Path | str, name: str, keys: int, ttl: float, settle: float, pause: float, latency: float) -> int:
    """One writer: hold the lease, write each missing key as its own part."""
    import polars as pl

    from idard.bench.store.lease import LeaseLost, RunLease

    store = open_store(run, latency)
    try:
        with RunLease(store, ttl=ttl, settle=settle, command=f"lease_stall {name}").hold():
            held = set(store.scan().select("image").collect()["image"].to_list())
            print("holding", flush=True)
            for key in range(keys):
                if f"k{key:05d}" in held:
                    continue
                store.append(pl.DataFrame({
                    "image": [f"k{key:05d}"], "downscaler": "bicubic", "model": "m", "metric": "lpips", "seed": 0,
                    "scale": 4, "value": 0.5, "finite": True, "worker": name}))
                time.sleep(pause)
    except LeaseLost as exc:
        print(f"lost: {exc}", flush=True)
        return EXIT_LOST
    return 0


def _start(run: Path | str, name: str, args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, str(Path(__file__).resolve()), "--writer", name, "--run", str(run),
               "--keys", str(args.keys), "--ttl", str(args.ttl), "--settle", str(args.settle),
               "--pause", str(args.pause), "--latency", str(args.latency)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_line(process: subprocess.Popen, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            return
        if not line and process.poll() is not None:
            raise RuntimeError(f"writer ended (exit {process.returncode}) before {text!r}")
    raise TimeoutError(f"no {text!r} within {timeout} s")


def _parts(run: Path | str) -> int:
    if str(run).startswith("s3://"):
        from idard.bench.store import RecordStore

        time.sleep(0.05)  # a listing is a request: poll the server gently
        return len(RecordStore(str(run)).parts())
    folder = Path(run) / "records"
    return len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0


def trial(run: Path | str, args: argparse.Namespace, rng: random.Random) -> dict:
    """One stall-and-resume trial; returns what the store holds afterwards."""
    holder = _start(run, "holder", args)
    try:
        _wait_line(holder, "holding", 120)
        while _parts(run) < args.before:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, args.pause * 3))  # a random instant: mid-sleep, mid-check, mid-PUT
        holder.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        time.sleep(args.ttl + 0.2)  # past the TTL: the lease may be taken over
        successor = _start(run, "successor", args)
        _wait_line(successor, "holding", 120)  # its claim is verified and its plan made
        resumed_at = time.time()
        holder.send_signal(signal.SIGCONT)
        stalled = time.monotonic() - stopped
        holder_out = holder.communicate(timeout=120)[0]
        holder_stopped_s = time.time() - resumed_at
        successor.communicate(timeout=300)
    finally:
        for process in (holder, locals().get("successor")):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait()
    from idard.bench.store import RecordStore

    store = RecordStore(run)
    records = store.scan().select("image", "worker").collect()
    fenced = [path for path, why in store.skipped_parts if "taken over" in why]
    return {
        "stalled_s": round(stalled, 2),
        "holder_exit": holder.returncode, "holder_said": holder_out.strip().splitlines()[-1:],
        "holder_stop_s": round(holder_stopped_s, 3),
        "successor_exit": successor.returncode,
        "late_parts_left_out": len(fenced),
        "duplicate": int(records.height - records["image"].n_unique()),
        "lost": args.keys - records["image"].n_unique(),
        "records": records.height,
    }


def _write_results(results: dict, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    rows = "\n".join(f"| {i + 1} | {t['stalled_s']} | {t['holder_exit']} | {t['holder_stop_s']} | "
                     f"{t['late_parts_left_out']} | "
                     f"{t['duplicate']} | {t['lost']} |" for i, t in enumerate(results["trials"]))
    (folder / f"{name}.md").write_text(
        f"# Stall and resume a lease holder ({results['store']})\n\n"
        f"{results['machine']}; TTL {results['ttl']} s, settle {results['settle']} s, "
        f"{results['latency'] * 1000:.0f} ms per object-store request, {results['keys']} keys, "
        f"one part per key. Holder exit {EXIT_LOST} = stopped with LeaseLost.\n\n"
        f"| trial | stalled s | holder exit | holder stopped s after SIGCONT | late parts fenced out | "
        f"duplicate keys | lost keys |\n|---|---|---|---|---|---|---|\n{rows}\n\n"
        f"Total duplicate keys: {results['duplicate']}; lost: {results['lost']}; "
        f"wall time {results['seconds']} s.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--before", type=int, default=20, help="parts the holder writes before it is stopped")
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=0.2)
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between the holder's parts")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds each object-store request takes")
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--s3", action="store_true", help="a real S3 API: moto's server on 127.0.0.1")
    parser.add_argument("--smoke", action="store_true", help="one short trial, results to a temporary folder")
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        sys.exit(writer(args.run, args.writer, args.keys, args.ttl, args.settle, args.pause, args.latency))
    if args.smoke:
        args.trials, args.keys, args.before, args.out = 1, 60, 5, Path(tempfile.mkdtemp(prefix="lease-stall-"))
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.s3:
            sys.path.insert(0, str(REPO))
            from tests.s3server import s3_server

            server = stack.enter_context(s3_server(Path(tempfile.mkdtemp(prefix="lease-stall-s3-")) / "moto.log"))
            os.environ.update(server.env())  # the writers inherit what a user exports
            server.make_bucket("stall")
            args.latency = 0.0  # the server's own
        trials = []
        for i in range(args.trials):
            with tempfile.TemporaryDirectory(prefix="lease-stall-") as tmp:
                run: Path | str = f"s3://stall/trial-{i}" if args.s3 else Path(tmp) / "run"
                if not args.s3:
                    run.mkdir()
                trials.append(trial(run, args, rng))
            print(f"trial {i + 1}: {trials[-1]}", flush=True)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "store": "S3 API (moto server on 127.0.0.1)" if args.s3 else "local folder through the object-store code path",
        "ttl": args.ttl, "settle": args.settle, "latency": args.latency, "keys": args.keys, "trials": trials,
        "duplicate": sum(t["duplicate"] for t in trials), "lost": sum(t["lost"] for t in trials),
        "seconds": round(time.perf_counter() - started, 1),
    }
    name = "lease_stall_s3" if args.s3 else "lease_stall"
    _write_results(results, args.out, name)
    print(f"duplicate keys {results['duplicate']}, lost {results['lost']} over {args.trials} trials "
          f"({results['seconds']} s); {args.out / (name + '.md')}")
    if results["duplicate"] or results["lost"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
