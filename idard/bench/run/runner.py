"""Running a plan on Ray: long-lived model actors, bounded streaming, atomic flushes.

The driver (this module) plans, reads HR image bytes and hands work units with their
bytes to actors (Ray keeps large ones in its object store), never more than
``in_flight_per_worker`` per actor, so memory
stays flat however many images a suite has. Each actor (`idard.bench.run.worker.Worker`)
holds one device and keeps its models loaded. Results come back as small record frames
and the driver, the store's only writer, flushes them as atomic Parquet parts.

Failures:

* An image that cannot be read or decoded, a too-small image, a non-finite sample: error
  records, written like any other (the worker never raises for them).
* A worker process or node dies: Ray restarts the actor (``max_restarts``) where resources
  allow; its in-flight units fail with an actor error and the driver resubmits them to the
  workers that are alive (up to ``max_unit_attempts``), and takes the restarted actor back
  once it answers again. The driver keeps asking a lost actor until it answers (a probe
  sent while Ray is still restarting it fails, and is sent again), so a run with a single
  worker survives its loss too; only when no worker has answered for
  ``restart_wait_s`` does the run stop. Every key is still written exactly once: a unit's
  records are written only when its result arrives, and each unit's result is accepted
  once.
* A setup error raised on a worker (weights that vanished after planning) is not an
  image's fault: the run stops with that error's one-line message, keeping every record
  written, instead of writing error records that a later run would never recompute. The
  results still in flight are read and dropped (`_abandon`), so Ray prints no traceback
  of its own for them after that line.
* SIGTERM stops a run as SIGINT does: the driver finishes its loop step, flushes, stops
  its workers and raises `RunInterrupted`.
* The driver dies: at most the unflushed records are lost; the next run's plan subtracts
  what the store holds and computes the rest.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import polars as pl

from idard.bench.run.plan import Plan, WorkUnit
from idard.bench.run.progress import RunProgress
from idard.bench.store.records import RecordStore
from idard.measure.errors import RayUnavailable, RunInterrupted, WorkersLost
from idard.measure.records import RECORD_SCHEMA
from idard.measure.models import MODELS


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to execute (not what: that is the suite)."""

    address: str | None = None  # existing Ray cluster; None starts a local one
    workers: int | None = None  # default: one per GPU, else node cores / cpus_per_worker
    cpus_per_worker: int | None = None  # CPU workers: torch threads each; default all of a node
    use_gpus: bool = True
    in_flight_per_worker: int = 2  # one computing, one queued: actors never wait for the driver
    flush_records: int = 2000
    flush_seconds: float = 15.0
    max_unit_attempts: int = 3
    restart_wait_s: float = 600.0  # every worker lost: how long to wait for one to come back
    waiting_note_s: float = 60.0  # workers asked for but not up by then are named once (`_Pool.waiting_note`)
    verbose: bool = False


def _setup_errors() -> tuple[type[BaseException], ...]:
    """Errors of a run's setup (its weights), not of one image: they stop the run."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.errors import LPIPSWeightsInvalid, LPIPSWeightsUnavailable
    from idard.measure.models.pulse.generators import GeneratorWeightsError
    from idard.measure.models.srflow.checkpoint import SRFlowWeightsError
    from idard.measure.weights import WeightsNotFound

    return (SRFlowWeightsError, GeneratorWeightsError, WeightsNotFound, LPIPSWeightsInvalid, LPIPSWeightsUnavailable)


@dataclasses.dataclass
class RunResult:
    computed_tasks: int
    written_records: int
    failed_units: int  # images with a unit (or a batch of one) that failed on every attempt
    seconds: float
    workers: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class WorkerShape:
    count: int
    num_cpus: int
    num_gpus: int


def worker_shape(options: RunOptions, units: int) -> WorkerShape:
    """How many actors, with what resources, from what the Ray cluster has now."""
    import ray

    return shape_for([n["Resources"] for n in ray.nodes() if n.get("Alive")], options, units)


def shape_for(nodes: Sequence[Mapping[str, float]], options: RunOptions, units: int) -> WorkerShape:
    """`worker_shape` of the live nodes' resources (``{"CPU": 8, "GPU": 1, ...}`` each).

    A count the user gave is a request, not a cap, where the resources of one worker are
    known: GPU workers (one GPU each), and CPU workers given ``--cpus-per-worker``. An
    autoscaling cluster adds nodes for the pending actors and the run uses each as it
    comes up; a fixed cluster runs on the workers that fit. Otherwise CPU workers are
    sized to the nodes there now."""
    gpus = int(sum(n.get("GPU", 0) for n in nodes))
    if options.use_gpus and gpus > 0:
        count = options.workers or gpus
        return WorkerShape(count=max(1, min(count, units)), num_cpus=1, num_gpus=1)
    node_cpus = [int(n.get("CPU", 0)) for n in nodes if n.get("CPU", 0) >= 1]
    if not node_cpus:
        raise RuntimeError("the Ray cluster has no CPU or GPU to run workers on")
    total = sum(node_cpus)
    if options.cpus_per_worker:
        per = options.cpus_per_worker
    elif options.workers:
        per = max(1, total // options.workers)
    else:
        per = min(node_cpus)  # one worker per (smallest) node, using all its cores
    per = min(per, max(node_cpus))
    fit = sum(c // per for c in node_cpus)
    if options.workers and options.cpus_per_worker:
        count = options.workers  # both given: a request the autoscaler can grow the cluster for
    else:
        count = min(options.workers or fit, fit) if fit else 1
    return WorkerShape(count=max(1, min(count, units)), num_cpus=per, num_gpus=0)


def _read(unit: WorkUnit) -> bytes | Exception:
    try:
        return unit.image.read()
    except Exception as exc:  # noqa: BLE001 - the worker turns it into error records
        return exc


def unit_error_records(unit: WorkUnit, error: str, suite_hash: str) -> pl.DataFrame:
    """Error records for every key of a unit that no worker could compute."""
    model = MODELS.create(unit.spec(unit.model))
    rows = [
        {"image": unit.image.name, "downscaler": item.downscaler, "model": unit.model, "metric": metric,
         "seed": seed, "scale": model.scale, "value": float("nan"), "finite": False, "error": error,
         "weights_hash": model.weights_hash, "device": None}
        for item in unit.items for metric in item.metrics for seed in item.seeds
    ]
    frame = pl.DataFrame(rows, schema={k: RECORD_SCHEMA[k] for k in rows[0]})
    return frame.with_columns(worker=pl.lit("driver"), suite_hash=pl.lit(suite_hash))


class _Writer:
    """Buffers record frames and flushes them as one part by size or age."""

    def __init__(self, store: RecordStore, suite_hash: str, options: RunOptions) -> None:
        self.store, self.suite_hash, self.options = store, suite_hash, options
        self.buffer: list[pl.DataFrame] = []
        self.rows = self.written = 0
        self.last_flush = time.monotonic()

    def add(self, frame: pl.DataFrame) -> None:
        self.buffer.append(frame)
        self.rows += frame.height
        if self.rows >= self.options.flush_records or time.monotonic() - self.last_flush >= self.options.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.store.append(pl.concat(self.buffer, how="diagonal_relaxed"), self.suite_hash)
            self.written += self.rows
        self.buffer, self.rows, self.last_flush = [], 0, time.monotonic()


class _DefaultTokenAuthNotice(logging.Filter):
    """Drops Ray's notice, printed on every local start, that token authentication is on.

    That is Ray's safe default, and the notice lands in the middle of the progress display;
    its warning that authentication is *off* still passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


_RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _init_ray(options: RunOptions) -> None:
    import ray

    if ray.is_initialized():
        return
    notice = logging.getLogger(_RAY_AUTH_LOGGER)
    if not options.verbose and not any(isinstance(f, _DefaultTokenAuthNotice) for f in notice.filters):
        notice.addFilter(_DefaultTokenAuthNotice())
    common = {"logging_level": logging.WARNING if not options.verbose else logging.INFO,
              "log_to_driver": options.verbose, "configure_logging": True}
    try:
        if options.address:
            ray.init(address=options.address, **common)
        else:
            with _loopback_only():
                # address="local": always a new cluster of this run's own, never one that
                # another user happened to `ray start` on this machine
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **common)
    except Exception as exc:  # noqa: BLE001 - Ray raises bare Exception for a start that timed out
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray"
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RayUnavailable(f"could not start or reach {where}: {why}; nothing was lost: run the same "
                             "command again") from None


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """A local Ray cluster that listens on 127.0.0.1 only.

    Ray takes a new node's IP from ``get_node_ip_address``, which answers the loopback
    address when ``ray_constants.ENABLE_RAY_CLUSTER`` is off (what Ray does on macOS and
    Windows: one machine, no firewall prompts); its GCS, raylet, object manager and
    worker servers then bind to that address instead of an outside interface. Nothing of
    a single-machine run needs to be reachable from elsewhere. Restored once started.
    """
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):  # a Ray without the flag: its default binding
        yield
        return
    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


class _TermSignal:
    """Turns SIGTERM into a flag the driver loop checks between steps.

    Ray's own SIGTERM handler calls ``sys.exit`` wherever the driver is, often inside
    Ray's C++ (``ray.wait``), which then aborts (exit -6, a stack dump) before anything
    is flushed. Checked in the loop, SIGTERM stops the run as cleanly as SIGINT.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: Any = None
        self.installed = False

    def __enter__(self) -> _TermSignal:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    def check(self) -> None:
        if self.received is not None:
            raise RunInterrupted()


class _Pool:
    """Actors, their in-flight units, and the ones lost to a failure until they return."""

    #: Seconds between probes of an actor whose last probe failed (Ray was restarting it).
    REPROBE_S = 1.0

    def __init__(self, actors: list[Any], per_actor: int) -> None:
        self.actors = actors
        self.per_actor = per_actor
        self.load = [0] * len(actors)
        # Actors join the rotation when they first answer: on an autoscaling cluster some
        # wait for a node to be added, and the run starts on those already up.
        self.alive = [False] * len(actors)
        self.probes: dict[Any, int] = {actor.info.remote(): i for i, actor in enumerate(actors)}
        self.reprobe: dict[int, float] = {}  # actor -> when to probe it again
        self.infos: dict[int, dict[str, Any]] = {}
        self.last_alive = self.started = time.monotonic()
        self.waiting_noted = False

    def waiting_note(self, after_s: float) -> str | None:
        """Once, ``after_s`` seconds in: how many workers have never answered while others
        run. The start line counts the workers asked for; on an autoscaling cluster the rest
        wait for nodes, on a fixed one for resources that will not come, and a user should
        know which of the two numbers the run is going at."""
        if self.waiting_noted or time.monotonic() - self.started < after_s:
            return None
        never, total = sum(1 for i in range(len(self.actors)) if i not in self.infos), len(self.actors)
        if never == total:  # none up yet (a cluster still starting): nothing to compare, ask again later
            return None
        self.waiting_noted = True
        if never == 0:
            return None
        return (f"{never} of {total} workers are still waiting for resources after {after_s:.0f} s: an autoscaling "
                f"cluster adds nodes for them; a fixed one runs on the {total - never} up")

    def free(self) -> int | None:
        candidates = [i for i in range(len(self.actors)) if self.alive[i] and self.load[i] < self.per_actor]
        return min(candidates, key=lambda i: self.load[i]) if candidates else None

    def lost(self, index: int) -> None:
        """An actor failed: take it out and ask when it is back (Ray restarts it)."""
        if self.alive[index]:
            self.alive[index] = False
            self.probes[self.actors[index].info.remote()] = index

    def revived(self, probe: Any, info: dict[str, Any]) -> None:
        index = self.probes.pop(probe)
        self.alive[index] = True
        self.infos[index] = info
        self.last_alive = time.monotonic()

    def probe_failed(self, probe: Any) -> None:
        """A probe failed (the actor was dead or restarting): ask again a little later.

        Giving up here lost a lone worker for good: the probe sent right after its death
        reaches Ray before the restart, and fails, though the actor comes back.
        """
        self.reprobe[self.probes.pop(probe)] = time.monotonic() + self.REPROBE_S

    def send_due_probes(self) -> None:
        now = time.monotonic()
        for index, due in list(self.reprobe.items()):
            if due <= now:
                del self.reprobe[index]
                self.probes[self.actors[index].info.remote()] = index

    def any_alive(self) -> bool:
        return any(self.alive)


def _final_infos(pool: _Pool, timeout: float = 10.0) -> None:
    """Ask the live workers once more who they are, now that they have loaded their models:
    run.json's worker list names the models each one loaded (at start it holds none)."""
    import ray

    live = {i: pool.actors[i].info.remote() for i in range(len(pool.actors)) if pool.alive[i]}
    for index, ref in live.items():
        try:
            pool.infos[index] = ray.get(ref, timeout=timeout)
        except Exception:  # noqa: BLE001 - a worker lost at the very end keeps its first answer
            continue


def _abandon(refs: list[Any], wait_s: float = 5.0) -> None:
    """Read and drop the results of work a stopped run no longer wants.

    Ray prints the traceback of every failed task whose result nobody read ("Unhandled
    error"), when its reference is freed: after a setup error's one line (weights that
    vanished), each other unit in flight, failed the same way, added an 18-line traceback.
    Queued tasks are cancelled and killed actors' tasks end at once, so the wait is short.
    """
    import ray

    for ref in refs:
        with contextlib.suppress(Exception):  # an actor task already running, or its actor gone
            ray.cancel(ref)
    if not refs:
        return
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s)
    for ref in ready:
        with contextlib.suppress(Exception):  # the errors are the point: read, so Ray reports none
            ray.get(ref, timeout=0)


def start_workers(plan: Plan, options: RunOptions, worker_cls: type | None = None) -> list[Any]:
    """Start the actors for ``plan`` (they load their models on first use).

    Separate from `execute` so that a caller can keep one pool warm across several plans
    (each model loaded once per actor for all of them) or, as
    benchmark/simulated_cluster.py does, wait until every actor is up before timing.
    ``worker_cls`` replaces `idard.bench.run.worker.Worker` (same constructor and methods).
    """
    import ray

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.run.worker import Worker

    _init_ray(options)
    shape = worker_shape(options, len(plan.units))
    actor_cls = ray.remote(worker_cls or Worker).options(
        num_cpus=shape.num_cpus, num_gpus=shape.num_gpus, max_restarts=-1, max_task_retries=0,
        scheduling_strategy="SPREAD",
    )
    threads = shape.num_cpus if shape.num_gpus == 0 else None
    return [actor_cls.remote(threads=threads, max_batch=plan.suite.max_batch) for _ in range(shape.count)]


def _ready(waiting: list[Any], timeout: float) -> list[Any]:
    """Every ref of ``waiting`` that is ready, waiting up to ``timeout`` s for the first.

    One blocking wait for the first result, then one non-blocking wait that collects all
    others already done: with dozens of actors several results arrive between two loop
    steps, and handling them in one step keeps the driver's cost per unit flat.
    """
    import ray

    ready, rest = ray.wait(waiting, num_returns=1, timeout=timeout)
    if ready and rest:
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
        ready += more
    return ready


def execute(plan: Plan, store: RecordStore, options: RunOptions, progress: RunProgress,
            worker_cls: type | None = None, actors: list[Any] | None = None) -> RunResult:
    """Compute every unit of ``plan`` on Ray and write the records to ``store``.

    ``actors`` are workers already started by `start_workers` (left running at the end,
    for the caller to reuse or kill); by default this run starts its own and kills them
    when it ends. ``worker_cls`` is passed to `start_workers`.
    """
    import ray
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, ObjectLostError, RayActorError, RayTaskError

    started = time.perf_counter()
    suite_hash = plan.suite.digest()
    owned = actors is None
    if owned:
        actors = start_workers(plan, options, worker_cls)
    else:
        _init_ray(options)
    pool = _Pool(actors, options.in_flight_per_worker)
    progress.start(plan.total_tasks, plan.done_tasks, len(actors))
    writer = _Writer(store, suite_hash, options)
    queue = collections.deque((unit, 1) for unit in plan.units)
    in_flight: dict[Any, tuple[WorkUnit, int, int]] = {}  # result ref -> unit, attempt, actor
    failed_images: set[str] = set()

    def give_up(unit: WorkUnit, error: str) -> None:
        failed_images.add(unit.image.name)
        writer.add(unit_error_records(unit, error, suite_hash))
        progress.advance(unit.tasks, "driver")

    setup_errors = _setup_errors()
    term = _TermSignal().__enter__()  # after ray.init, which installs its own handler
    try:
        while queue or in_flight:
            term.check()
            pool.send_due_probes()
            if (note := pool.waiting_note(options.waiting_note_s)) is not None:
                progress.note(note)
            while queue and (index := pool.free()) is not None:
                unit, attempt = queue.popleft()
                # the bytes go as a plain argument: Ray inlines a small one in the call and
                # puts a large one (> 100 KB) in the object store itself, as ray.put would,
                # without a put's round trip for every small image
                ref = actors[index].run.remote(unit, _read(unit))
                in_flight[ref] = (unit, attempt, index)
                pool.load[index] += 1
            if not in_flight and queue and not pool.any_alive():  # every actor is down
                if time.monotonic() - pool.last_alive > options.restart_wait_s:
                    raise WorkersLost(f"all {len(actors)} worker(s) were lost and none came back within "
                                       f"{options.restart_wait_s:.0f} s; the records written so far are kept")
            waiting = [*in_flight, *pool.probes]
            if not waiting:
                time.sleep(0.2)  # only re-probes are due: nothing to wait on yet
                continue
            for ref in _ready(waiting, timeout=1.0):
                if ref in pool.probes:
                    try:
                        pool.revived(ref, ray.get(ref))
                    except (RayActorError, ActorUnavailableError):
                        pool.probe_failed(ref)  # dead or restarting: ask again soon
                    continue
                unit, attempt, index = in_flight.pop(ref)
                pool.load[index] -= 1
                try:
                    frame = ray.get(ref)
                except (RayActorError, ActorUnavailableError, ObjectLostError, GetTimeoutError) as exc:
                    pool.lost(index)
                    if attempt < options.max_unit_attempts:
                        progress.note(f"worker {index} lost ({type(exc).__name__}); resubmitting {unit.image.name}")
                        queue.appendleft((unit, attempt + 1))
                    else:
                        give_up(unit, f"gave up after {attempt} attempts: {type(exc).__name__}")
                    continue
                except RayTaskError as exc:
                    if isinstance(exc.cause, setup_errors):
                        raise exc.cause from None  # one line for the user; records so far kept
                    give_up(unit, f"worker error: {exc.cause!r}" if exc.cause else str(exc).splitlines()[0])
                    continue
                pool.last_alive = time.monotonic()
                writer.add(frame)
                progress.advance(unit.tasks, str(frame["worker"][0]) if frame.height else f"worker {index}")
    except BaseException:
        stopped = True
        raise
    else:
        stopped = False
    finally:
        term.__exit__()
        writer.flush()
        progress.stop()
        _final_infos(pool)
        if owned:
            for actor in actors:
                ray.kill(actor, no_restart=True)
        if stopped:
            _abandon([*in_flight, *pool.probes])
    return RunResult(computed_tasks=progress.computed, written_records=writer.written, failed_units=len(failed_images),
                     seconds=time.perf_counter() - started, workers=[pool.infos[i] for i in sorted(pool.infos)])
