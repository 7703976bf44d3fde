"""A real multi-node Ray on 127.0.0.1: a head and worker raylets started by ``ray start``,
each its own process tree with its own ``--temp-dir``, and ``idard-bench run --address``
driving them as it drives a cluster.

Worker nodes advertise a ``GPU`` resource so the runner takes its GPU path (one actor per
GPU; torch sees no CUDA device and computes on the CPU). Everything a test starts is
found again by its temp dir and ended by the test; ``ray stop`` is never called, because
it stops every Ray of the machine, other users' too.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from idard.bench.store import RecordStore
from idard.measure.records import KEY_COLUMNS
from tests.bench.conftest import write_crops
from tests.netns import isolated
from tests.s3server import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def _ray_env(**extra: str) -> dict[str, str]:
    """``ray start``'s environment: token auth off (Ray Jobs need it), this checkout's idard
    importable by the workers.

    With ``--node-ip-address 127.0.0.1`` the GCS and each raylet still listen on every
    interface (Ray's single-machine mode binds 127.0.0.1 but refuses worker nodes), so each
    test runs in a private network namespace whose only interface is loopback
    (`tests.netns.isolated`)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            **extra}


def _command_lines() -> dict[int, list[str]]:
    """Every process's command line, from /proc (psutil is not a dependency)."""
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                lines[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
    return lines


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _ray_port() -> int:
    """A free port that none of Ray's fixed defaults uses (its worker ports 10002-19999, the
    dashboard agent's 52365, GCS's 6379, the dashboard's 8265): Ray refuses a clash."""
    while True:
        port = free_port()
        if not 10002 <= port <= 19999 and port not in (6379, 8265, 52365, 52366):
            return port


class LocalCluster:
    """``ray start`` nodes on 127.0.0.1; `stop` kills every process of their temp dirs."""

    def __init__(self) -> None:
        # Short: Ray's unix sockets live under the temp dir (108-byte path limit).
        self.root = Path(tempfile.mkdtemp(prefix="idr", dir="/tmp"))
        self.port = _ray_port()
        self.address = f"127.0.0.1:{self.port}"
        self.workers: dict[str, int] = {}  # name -> node manager port

    def _start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        temp = self.root / name
        command = [RAY, "start", "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp),
                   "--disable-usage-stats", *args]
        done = subprocess.run(command, env=env or _ray_env(), capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"{' '.join(command)}: {done.stdout[-1500:]}{done.stderr[-1500:]}"

    def start_head(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._start("head", "--head", "--port", str(self.port), "--include-dashboard=false", *args, env=env)

    def add_worker(self, name: str, cpus: int = 1, gpus: int = 1) -> None:
        port = _ray_port()
        self._start(name, "--address", self.address, "--num-cpus", str(cpus), "--num-gpus", str(gpus),
                    "--node-manager-port", str(port))
        self.workers[name] = port

    def raylet(self, name: str) -> int:
        """The pid of worker ``name``'s raylet (found by its node manager port)."""
        flag = f"--node_manager_port={self.workers[name]}"
        for pid, line in _command_lines().items():
            if line and line[0].endswith("raylet") and flag in line:
                return pid
        raise AssertionError(f"no raylet for {name}")

    def processes(self) -> list[int]:
        """Every live process whose command line names this cluster's temp dir or port."""
        marks = (str(self.root), f"127.0.0.1:{self.port}")
        return [pid for pid, line in _command_lines().items()
                if pid != os.getpid() and any(mark in " ".join(line) for mark in marks)]

    def stop(self) -> None:
        for _ in range(3):  # a raylet may start a worker while its siblings die
            _kill(self.processes())
            time.sleep(1)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture()
def local_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster()
    try:
        yield cluster
    finally:
        cluster.stop()
    assert not cluster.processes(), "a Ray process of the test outlived it"


def _suite(folder: Path, images: int, ms: int) -> Path:
    write_crops(folder / "images", images)
    path = folder / "suite.yaml"
    path.write_text(f"name: cluster\nimages: [images]\ndownscalers: [bicubic, nearest]\n"
                    f"models: ['latency(ms={ms})']\nmetrics: [psnr]\nsamples: 2\n")
    return path


def _exactly_once(out: Path, expected: int) -> pl.DataFrame:
    records = RecordStore(out).scan().collect()
    assert records.height == expected, f"{records.height} records, expected {expected}"
    assert records.select(KEY_COLUMNS).unique().height == expected, "a key is held twice"
    assert records["error"].null_count() == expected, records.filter(pl.col("error").is_not_null())["error"][0]
    return records


def test_a_worker_raylet_killed_mid_run_leaves_every_key_exactly_once(local_cluster: LocalCluster, tmp_path: Path,
                                                                      request: pytest.FixtureRequest) -> None:
    if not isolated(request):
        return
    local_cluster.start_head("--num-cpus", "1", "--num-gpus", "0")
    local_cluster.add_worker("w1")
    local_cluster.add_worker("w2")
    suite = _suite(tmp_path, images=6, ms=300)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "idard.bench.cli", "run", "--suite", str(suite), "--out", str(out),
               "--address", local_cluster.address, "--flush-records", "1", "--bootstrap", "100"]
    run = subprocess.Popen(command, env=_ray_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def both_wrote() -> bool:
            store = RecordStore(out)
            return bool(store.parts()) and store.scan().select(pl.col("worker").n_unique()).collect().item() >= 2

        wait_for(lambda: run.poll() is not None or both_wrote(), 240, "records from both worker nodes")
        assert run.poll() is None, run.communicate()[0]
        before = RecordStore(out).count()
        _kill([local_cluster.raylet("w2")])  # the node is gone: its actor and in-flight units with it
        output, _ = run.communicate(timeout=400)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, output
    records = _exactly_once(out, 24)
    print(f"raylet of w2 killed after {before} of 24 records; workers that wrote: "
          f"{records['worker'].value_counts().rows()}")


# ------------------------------------------------------------------------------ autoscaling
def _autoscaling_config(path: Path, gcs: str, head_cpus: int, head_gpus: int, max_nodes: int) -> Path:
    """Ray's fake multi-node provider ("Testing Autoscaling Locally"): the autoscaler on the
    head starts each worker node as raylet processes of this machine, and stops it when it
    has been idle ``idle_timeout_minutes``. Worker nodes advertise a GPU, as cloud GPU nodes do."""
    import yaml

    node = {"node_config": {}}
    config = {
        "cluster_name": "idard-autoscaling", "max_workers": max_nodes, "upscaling_speed": 10.0,
        "idle_timeout_minutes": 0.1,
        "provider": {"type": "fake_multinode", "gcs_address": gcs, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {**node, "resources": {"CPU": head_cpus, "GPU": head_gpus}, "max_workers": 0},
            "ray.worker.gpu": {**node, "resources": {"CPU": 1, "GPU": 1, "object_store_memory": 80_000_000},
                               "min_workers": 0, "max_workers": max_nodes},
        },
        "head_node_type": "ray.head.default", "auth": {}, "docker": {}, "file_mounts": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [], "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _parent(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return None


class NodeWatch:
    """Which Ray nodes (raylets of the cluster's temp dir) live when, and which worker
    processes (a raylet's children: the actors) each one ran: sampled from /proc in a thread."""

    def __init__(self, cluster: LocalCluster, every: float = 0.5) -> None:
        self.cluster, self.every = cluster, every
        self.seen: dict[int, list[float]] = {}  # raylet pid -> [first seen, last seen] (monotonic)
        self.node_of: dict[int, int] = {}  # worker pid -> its raylet pid
        self.trace: list[tuple[float, int]] = []  # (time, live nodes) at each change
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        now = time.monotonic()
        lines = _command_lines()
        root = str(self.cluster.root)
        raylets = {pid for pid, line in lines.items()
                   if line and line[0].endswith("raylet") and any(root in part for part in line)}
        for pid in raylets:
            self.seen.setdefault(pid, [now, now])[1] = now
        for pid in lines:
            parent = _parent(pid)
            if parent in raylets:
                self.node_of.setdefault(pid, parent)
        if not self.trace or self.trace[-1][1] != len(raylets):
            self.trace.append((now - self.started, len(raylets)))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def live(self) -> int:
        return self.trace[-1][1] if self.trace else 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_an_autoscaling_cluster_adds_nodes_mid_run_that_take_work_and_removes_them_when_idle(
        local_cluster: LocalCluster, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if not isolated(request):
        return
    config = _autoscaling_config(tmp_path / "autoscaling.yaml", local_cluster.address, head_cpus=1, head_gpus=1,
                                 max_nodes=2)
    watch = NodeWatch(local_cluster)
    try:
        local_cluster.start_head("--num-cpus", "1", "--num-gpus", "1", f"--autoscaling-config={config}",
                                 env=_ray_env(RAY_FAKE_CLUSTER="1"))
        wait_for(lambda: watch.live() == 1, 30, "the head's raylet")
        at_start = set(watch.seen)
        suite = _suite(tmp_path, images=16, ms=500)  # 2 s a unit: 32 s on the head alone
        out = tmp_path / "run"
        # Three GPU actors on a cluster with one GPU: two wait for nodes the autoscaler adds.
        started = time.monotonic() - watch.started
        run = subprocess.run([sys.executable, "-m", "idard.bench.cli", "run", "--suite", str(suite), "--out",
                              str(out), "--address", local_cluster.address, "--workers", "3", "--flush-records",
                              "1", "--bootstrap", "100"], env=_ray_env(), capture_output=True, text=True,
                             timeout=300)
        ended = time.monotonic() - watch.started
        assert run.returncode == 0, run.stdout + run.stderr
        records = _exactly_once(out, 64)
        peak = max(n for _, n in watch.trace)
        wait_for(lambda: watch.live() == 1, 90, "the idle worker nodes to be removed")
    finally:
        watch.stop()
    pids = {int(w.rsplit(":", 1)[1]): n for w, n in records["worker"].value_counts().rows()}
    per_node: collections.Counter[int] = collections.Counter()
    for pid, count in pids.items():
        per_node[watch.node_of.get(pid, -1)] += count // 4  # 4 records a unit
    joined = {node: units for node, units in per_node.items() if node not in at_start}
    print(f"run from {started:.1f} s to {ended:.1f} s; live nodes over time (s, nodes): "
          f"{[(round(t, 1), n) for t, n in watch.trace]}; units per node (raylet pid: units): {dict(per_node)}, "
          f"of which on nodes added mid-run: {joined}")
    assert peak == 3, f"the autoscaler should have added 2 nodes: {watch.trace}"
    assert -1 not in per_node, f"a worker ran on no node the test saw: {pids} {watch.node_of}"
    assert joined and sum(joined.values()) >= 2, f"no unit ran on a node added mid-run: {dict(per_node)}"
