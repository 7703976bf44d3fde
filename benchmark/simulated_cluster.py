"""The runner with many GPUs simulated on one machine: does the driver keep them busy?

A `ray.cluster_utils.Cluster` is started on this machine with several nodes that declare
fake GPUs, and a real suite (real images, downscalers, the ``latency`` model, PSNR) runs
through the real runner: `idard.bench.run.plan.make_plan`, `idard.bench.run.runner.execute` with
its bounded in-flight queue, resubmission and single writer, and a real `RecordStore`.

What is simulated is the device. Each actor is a `LatencyWorker`: it takes a work unit
and the image bytes from the object store exactly as `idard.bench.run.worker.Worker` does,
sleeps ``ms`` per SR sample (the ``latency`` model's cost, a device keeping its host
thread waiting) and returns the unit's records. It does not import torch: a torch import
costs each process some 290 MB of private memory, so 64 real workers need 20 GB, and this
machine has less. For the same reason the work unit travels as a plain tuple (a custom
Ray serializer registered by this script), since unpickling the runner's `WorkUnit` in an
actor imports the suite module and with it torch. Everything the driver does is real.

Weak scaling: each configuration gets ``--units-per-actor`` units per actor, so the ideal
time is the same at every size: units_per_actor x samples_per_unit x ms. The actors are
started first (`idard.bench.run.runner.start_workers`) and the clock starts once every one has
answered: here 64 actor processes share 2 cores and come up one by one over tens of
seconds, which on a real cluster (each node starting its own actors on its own CPUs, in
parallel) would not happen, and with the runner using each actor as it answers, the
first ones would take the late ones' work and make the measure one of this machine's
process start-up. ``startup`` is reported apart. Efficiency is ideal / measured, from
`execute`'s start to the last record written. ``driver_cpu_ms_per_unit`` is the driver
process's CPU time (all its threads, Ray's included) per unit.

One configuration loses a node mid-run (``Cluster.remove_node``): its actors die, their
in-flight units are resubmitted, Ray restarts the actors elsewhere, and the store must
end with every key exactly once.

    nice -n 15 python benchmark/simulated_cluster.py [--actors 1 8 32 64] [--ms 20] [--smoke]

Writes ``benchmark/results/simulated_cluster.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

RESULTS = Path(__file__).parent / "results"
DOWNSCALERS = ["bicubic", "bilinear", "nearest", "box"]
METRIC = "psnr"


class LatencyWorker:
    """A worker whose device is a sleep: same constructor, ``info`` and ``run`` as
    `idard.bench.run.worker.Worker`, records of the same schema, no torch."""

    def __init__(self, threads: int | None = None, max_batch: int = 64, **_: Any) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.units_done = 0

    def info(self) -> dict[str, Any]:
        return {"worker": self.name, "device": "simulated-gpu", "threads": 1, "models": []}

    def run(self, unit: tuple, data: bytes | Exception) -> pl.DataFrame:
        image, model, ms, items = unit
        samples = sum(len(seeds) for _, seeds, _ in items)
        time.sleep(ms / 1000.0 * samples)
        keys = [(image, d, m, s) for d, seeds, metrics in items for m in metrics for s in seeds]
        size = len(data) if isinstance(data, bytes) else 0
        frame = pl.DataFrame(keys, schema=["image", "downscaler", "metric", "seed"], orient="row")
        self.units_done += 1
        return frame.with_columns(
            model=pl.lit(model), scale=pl.lit(4, dtype=pl.Int64), value=pl.lit(float(size % 97)),
            finite=pl.lit(True), sample_seconds=pl.lit(ms / 1000.0), device=pl.lit("simulated-gpu"),
            worker=pl.lit(self.name),
        )


@functools.lru_cache(maxsize=None)
def _latency_ms(model: str) -> float:
    from idard.measure.models import MODELS

    return MODELS.create(model).ms


def _unit_to_tuple(unit) -> tuple:
    ms = _latency_ms(unit.model)
    items = tuple((i.downscaler, tuple(i.seeds), tuple(i.metrics)) for i in unit.items)
    return (unit.image.name, unit.model, ms, items)


def _tuple_to_unit(value: tuple) -> tuple:
    return value


class TimedProgress:
    """The runner's progress interface, recording when each unit's records arrived."""

    def __init__(self) -> None:
        self.computed = 0
        self.times: list[float] = []
        self.workers: list[str] = []
        self.notes: list[str] = []
        self.started = 0.0

    def start(self, total: int, done: int, workers: int) -> None:
        self.started = time.perf_counter()

    def advance(self, tasks: int, worker: str) -> None:
        self.computed += tasks
        self.times.append(time.perf_counter())
        self.workers.append(worker)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def stop(self) -> None:
        pass


def _agent_ports() -> dict[str, int]:
    """Free ports for a node's agents, given up front: otherwise its raylet waits for the
    agents to write theirs to a file, which a loaded machine can make it give up on."""
    ports = []
    for _ in range(4):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    return {"metrics_agent_port": ports[0], "runtime_env_agent_port": ports[1], "metrics_export_port": ports[2],
            "dashboard_agent_listen_port": ports[3]}


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{i:05d}.png")


def run_config(work: Path, actors: int, units_per_actor: int, ms: float, seeds: int, in_flight: int,
               kill_node=None) -> dict:
    """One weak-scaling point: ``actors`` x ``units_per_actor`` units through the runner."""
    from idard.bench.run.plan import make_plan
    from idard.bench.run.runner import RunOptions, execute, start_workers
    from idard.bench.store import RecordStore
    from idard.bench.suite import load_suite

    images = work / f"images-{actors}"
    make_images(images, actors * units_per_actor)
    suite_file = work / f"suite-{actors}.yaml"
    suite_file.write_text(json.dumps({
        "name": f"simulated-{actors}", "images": [str(images)], "downscalers": DOWNSCALERS,
        "models": [f"latency(ms={ms})"], "metrics": [METRIC], "samples": seeds,
    }))
    run_dir = work / f"run-{actors}{'-nodeloss' if kill_node else ''}"
    store = RecordStore(run_dir)
    plan = make_plan(load_suite(suite_file), store)
    progress = TimedProgress()
    unit_seconds = len(DOWNSCALERS) * seeds * ms / 1000.0
    if kill_node is not None:  # after a third of the units, take a node away
        def killer() -> None:
            while progress.computed < plan.total_tasks / 3:
                time.sleep(0.05)
            kill_node()
            progress.notes.append(f"node removed after {progress.computed} records")
        threading.Thread(target=killer, daemon=True).start()
    options = RunOptions(workers=actors, in_flight_per_worker=in_flight, flush_records=2000)
    import ray

    # Start-up apart: on this machine 64 actor processes share 2 cores and come up one by
    # one over tens of seconds, where a real cluster starts each node's actors on its own
    # CPUs. The runner uses each actor as it answers (see `execute`); the question here is
    # whether the driver keeps them all busy, so the clock starts once every actor is up.
    began = time.perf_counter()
    pool = start_workers(plan, options, worker_cls=LatencyWorker)
    ray.get([actor.info.remote() for actor in pool])
    startup = time.perf_counter() - began
    cpu = time.process_time()
    started = time.perf_counter()
    try:
        result = execute(plan, store, options, progress, actors=pool)
    finally:
        for actor in pool:
            ray.kill(actor, no_restart=True)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    first_dispatch = started
    measured = progress.times[-1] - first_dispatch
    ideal = units_per_actor * unit_seconds
    # Utilisation: busy unit-seconds over the time each actor was in use (end of run minus
    # its first dispatch); with every actor up at the start it equals the efficiency
    # unless an actor was lost and restarted.
    first_seen: dict[str, float] = {}
    for when, worker in zip(progress.times, progress.workers):
        first_seen.setdefault(worker, when - unit_seconds)
    available = sum(progress.times[-1] - max(t, first_dispatch) for t in first_seen.values())
    utilisation = len(plan.units) * unit_seconds / available if available > 0 else float("nan")
    held = store.scan().select("image", "downscaler", "model", "metric", "seed")
    count = held.select(pl.len()).collect().item()
    duplicates = store.duplicate_keys().height
    return {
        "actors": actors, "units": len(plan.units), "records": plan.total_tasks, "unit_seconds": unit_seconds,
        "ideal_seconds": round(ideal, 2), "measured_seconds": round(measured, 2),
        "efficiency": round(ideal / measured, 3), "utilisation": round(utilisation, 3),
        "actors_seen": len(first_seen), "first_result_spread_seconds": round(max(first_seen.values()) - min(
            first_seen.values()), 2), "startup_seconds": round(startup, 2),
        "wall_seconds": round(wall, 2), "driver_cpu_ms_per_unit": round(1000 * cpu / len(plan.units), 2),
        "units_per_second": round(len(plan.units) / measured, 1), "records_written": count,
        "every_key_once": count == plan.total_tasks and duplicates == 0, "duplicate_keys": duplicates,
        "parts": len(store.parts()), "failed_units": result.failed_units, "notes": progress.notes[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--gpus-per-node", type=int, default=16)
    parser.add_argument("--units-per-actor", type=int, default=8)
    parser.add_argument("--ms", type=float, default=20.0, help="device latency per SR sample")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=2, help="units per actor in flight (the runner's default)")
    parser.add_argument("--node-loss-actors", type=int, default=32, help="the configuration that loses a node (0: none)")
    parser.add_argument("--out", type=Path, default=RESULTS / "simulated_cluster.json")
    parser.add_argument("--smoke", action="store_true", help="2 nodes, 1 and 2 actors, a node loss; temp results")
    args = parser.parse_args()
    if args.smoke:
        args.actors, args.gpus_per_node, args.units_per_actor, args.ms, args.node_loss_actors = [1, 2], 2, 3, 5.0, 2
        args.out = Path(tempfile.mkdtemp(prefix="idard-cluster-smoke-")) / "simulated_cluster.json"

    import ray
    from ray.cluster_utils import Cluster

    from idard.bench.run.plan import WorkUnit

    # on a loaded 2-core machine a node's agents can take more than Ray's default to start
    for name, value in (("RAY_agent_register_timeout_ms", "300000"), ("RAY_raylet_start_wait_time_s", "300"),
                        ("RAY_worker_register_timeout_seconds", "300")):
        os.environ.setdefault(name, value)
    largest = max([*args.actors, args.node_loss_actors])
    nodes = -(-largest // args.gpus_per_node) + (1 if args.node_loss_actors else 0)  # one spare for the loss
    for attempt in range(3):  # Ray gives a node 30 s to register, which a loaded machine can exceed
        try:
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 1, "num_gpus": 0, "include_dashboard": False, **_agent_ports()})
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this
            if attempt == 2:
                raise
            print(f"cluster start failed ({exc}); again", file=sys.stderr)
    workers = [cluster.add_node(num_cpus=args.gpus_per_node, num_gpus=args.gpus_per_node, **_agent_ports())
               for _ in range(nodes)]
    work = Path(tempfile.mkdtemp(prefix="idard-cluster-"))
    rows = []
    try:
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        ray.util.register_serializer(WorkUnit, serializer=_unit_to_tuple, deserializer=_tuple_to_unit)
        for actors in args.actors:
            rows.append(run_config(work, actors, args.units_per_actor, args.ms, args.seeds, args.in_flight))
            print(json.dumps(rows[-1]), file=sys.stderr)
        if args.node_loss_actors:
            victim = workers[0]
            row = run_config(work, args.node_loss_actors, args.units_per_actor, args.ms, args.seeds, args.in_flight,
                             kill_node=lambda: cluster.remove_node(victim, allow_graceful=False))
            row["node_loss"] = True
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    result = {"ms_per_sample": args.ms, "samples_per_unit": len(DOWNSCALERS) * args.seeds,
              "units_per_actor": args.units_per_actor, "in_flight_per_worker": args.in_flight,
              "gpus_per_node": args.gpus_per_node, "nodes": nodes, "cpus": os.cpu_count(),
              "load_average_1min_at_end": round(os.getloadavg()[0], 1), "configs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| actors | units | ideal s | measured s | efficiency | utilisation | units/s | "
             "driver CPU ms/unit | actors' start-up s (not timed) | every key once |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['actors']}{' (node lost)' if r.get('node_loss') else ''} | {r['units']} | "
                     f"{r['ideal_seconds']} | {r['measured_seconds']} | {r['efficiency']} | {r['utilisation']} | "
                     f"{r['units_per_second']} | "
                     f"{r['driver_cpu_ms_per_unit']} | {r['startup_seconds']} | {r['every_key_once']} |")
    header = [f"# The runner on simulated GPUs ({nodes} nodes x {args.gpus_per_node} fake GPUs, {os.cpu_count()} real cores)",
              "", f"Written by `benchmark/simulated_cluster.py`: {args.units_per_actor} units per actor, "
              f"{len(DOWNSCALERS) * args.seeds} samples per unit at {args.ms} ms each "
              f"({len(DOWNSCALERS) * args.seeds * args.ms / 1000:.2f} s per unit), "
              f"{args.in_flight} units in flight per actor. Efficiency = ideal / measured, from the start "
              f"of `execute` (every actor up) to the last record; 1-minute load average at the end: {result['load_average_1min_at_end']}.",
              ""]
    args.out.with_suffix(".md").write_text("\n".join(header + lines) + "\n")
    print("\n".join(lines))
    if any(not r["every_key_once"] for r in rows):
        raise SystemExit("a configuration did not end with every key exactly once")


if __name__ == "__main__":
    main()
