"""Fault tolerance, for real: a multi-node Ray cluster simulated on this machine.

Each test starts a head node (no CPUs: only the driver's bookkeeping lands there) and two
one-core worker nodes, then breaks something mid-run: a worker node dies, or the driver
is killed with SIGKILL. The run must still end with every key of the suite exactly once.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from idard.bench.run.jobs import run_suite
from idard.bench.run.runner import RunOptions
from idard.bench.store import RecordStore
from idard.bench.suite import load_suite
from idard.measure.records import KEY_COLUMNS
from tests.bench.conftest import write_crops, write_suite

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

IMAGES = 18
DOWNSCALERS = ["bicubic", "nearest", "box"]
SAMPLES = 2
EXPECTED = IMAGES * len(DOWNSCALERS) * SAMPLES


@pytest.fixture()
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20})
    workers = [cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


@pytest.fixture()
def suite_dir(tmp_path: Path) -> Path:
    write_crops(tmp_path / "images", IMAGES, size=96)
    write_suite(tmp_path, DOWNSCALERS, samples=SAMPLES)
    return tmp_path


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _workers_written(run_dir: Path) -> int:
    """How many distinct workers the stored records come from so far."""
    return RecordStore(run_dir).scan().select(pl.col("worker").n_unique()).collect().item()


def _assert_complete(run_dir: Path) -> pl.DataFrame:
    store = RecordStore(run_dir)
    records = store.scan().collect()
    assert store.duplicate_keys().is_empty(), "a key was written twice"
    assert records.height == EXPECTED, f"{records.height} records, expected {EXPECTED}"
    assert records.select(KEY_COLUMNS).n_unique() == EXPECTED
    assert records["finite"].all()
    return records


def test_a_worker_node_dies_mid_run_and_the_run_completes(cluster, suite_dir: Path) -> None:
    cluster_, workers = cluster
    ray.init(address=cluster_.address, log_to_driver=False)
    suite = load_suite(suite_dir / "suite.yaml")
    out = suite_dir / "run"
    options = RunOptions(flush_records=1)  # a part per unit: progress is visible on disk
    outcome: dict = {}
    log = io.StringIO()

    def drive() -> None:
        try:
            outcome["summary"] = run_suite(suite, out, options, Console(file=log))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            outcome["error"] = exc

    driver = threading.Thread(target=drive)
    driver.start()
    # Both workers must have written before one is lost: waiting for any two parts let
    # the faster-starting worker write them all while the other still loaded its model.
    _wait_for(lambda: _workers_written(out) >= 2, 240, "records from both workers")
    cluster_.remove_node(workers[1])  # the node and its actor are gone, mid-run
    driver.join(timeout=400)
    assert not driver.is_alive(), "the run did not finish after losing a node"
    assert "error" not in outcome, outcome.get("error")
    records = _assert_complete(out)
    assert outcome["summary"].result.failed_units == 0
    assert records["worker"].n_unique() == 2  # both workers wrote before one was lost
    assert "resubmitting" in log.getvalue()  # the lost node's in-flight units were redone


def test_the_driver_is_killed_and_a_rerun_completes_exactly_once(cluster, suite_dir: Path) -> None:
    cluster_, _ = cluster
    out = suite_dir / "run"
    command = [sys.executable, "-m", "idard.bench.cli", "run", "--suite", str(suite_dir / "suite.yaml"),
               "--out", str(out), "--address", cluster_.address, "--flush-records", "1", "--bootstrap", "100"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(RecordStore(out).parts()) >= 2, 240, "the first records")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = RecordStore(out).count()
    assert 0 < before < EXPECTED, f"the kill came too late to test anything ({before} records)"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{EXPECTED - before} tasks to compute ({before} of {EXPECTED} already" in rerun.stdout
    _assert_complete(out)
