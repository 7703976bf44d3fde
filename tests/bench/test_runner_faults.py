"""The runner when its own processes fail: a lone worker killed, weights gone mid-run.

On a local Ray of this test module's own (``address="local"``: never a cluster another
process started on this machine).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from idard.bench.run.jobs import run_suite
from idard.bench.run.plan import make_plan
from idard.bench.run.progress import RunProgress
from idard.bench.run.runner import RunOptions, execute
from idard.bench.store import RecordStore
from idard.bench.suite import load_suite
from idard.measure.models.embedded import TINY_4X_WEIGHTS
from idard.measure.models.srflow.checkpoint import SRFlowWeightsError
from tests.bench.conftest import write_crops, write_suite

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow  # two model loads and a restart: about a minute on 2 cores
def test_a_lone_worker_killed_is_restarted_and_its_units_resubmitted(tmp_path: Path) -> None:
    """With the default single CPU worker, SIGKILL of it once aborted the run."""
    write_crops(tmp_path / "images", 8, size=64)
    suite = load_suite(write_suite(tmp_path, ["bicubic", "nearest"], samples=2))
    out = tmp_path / "run"
    log = io.StringIO()
    outcome: dict = {}

    def drive() -> None:
        try:
            outcome["summary"] = run_suite(suite, out, RunOptions(flush_records=1), Console(file=log, width=200))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            outcome["error"] = exc

    driver = threading.Thread(target=drive)
    driver.start()
    deadline = time.monotonic() + 300
    while not RecordStore(out).parts():
        assert driver.is_alive() and time.monotonic() < deadline, outcome or "no records came"
        time.sleep(0.2)
    worker = RecordStore(out).scan().collect()["worker"][0]  # host:pid of the only worker
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
    driver.join(timeout=400)
    assert not driver.is_alive() and "error" not in outcome, outcome.get("error")
    assert outcome["summary"].result.failed_units == 0
    assert len(outcome["summary"].result.workers) == 1
    store = RecordStore(out)
    records = store.scan().collect()
    assert records.height == 8 * 2 * 2 and store.duplicate_keys().is_empty()
    assert records["worker"].n_unique() == 2  # the restarted worker is a new process
    assert "resubmitting" in log.getvalue()


def test_weights_that_vanish_mid_run_stop_it_with_one_line_through_ray(tmp_path: Path) -> None:
    """The worker's error crosses Ray whole (it once could not be deserialised), and is the
    only thing said: the other units in flight, which failed the same way, are read and
    dropped, not left for Ray to print as "Unhandled error" tracebacks (18 lines each)."""
    write_crops(tmp_path / "images", 4, size=32)
    weights = tmp_path / "w.safetensors"
    shutil.copy(TINY_4X_WEIGHTS, weights)
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text("images: [images]\ndownscalers: [bicubic, nearest]\nmetrics: [lpips-alex]\nsamples: 1\n"
                          f"models: [{{name: srflow, weights: '{weights}', config: TINY_4X}}]\n")
    suite = load_suite(suite_path)
    store = RecordStore(tmp_path / "run")
    plan = make_plan(suite, store)
    weights.unlink()  # after planning, before any worker loads it
    said = _RayErrorLog()
    with said.listening():
        with pytest.raises(SRFlowWeightsError, match=rf"{weights.name}': no such weights file"):
            execute(plan, store, RunOptions(workers=1), RunProgress(Console(file=io.StringIO())))
        gc.collect()  # the run's references are freed: Ray reports any failed result nobody read
        time.sleep(2)
    assert not said.records, said.records[0]
    assert not store.parts()  # no error records that a later run would never recompute


class _RayErrorLog(logging.Handler):
    """What Ray's driver logs at ERROR (where its "Unhandled error" tracebacks go)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())

    @contextlib.contextmanager
    def listening(self):
        logger = logging.getLogger("ray._private.worker")
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)
