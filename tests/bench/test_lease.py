"""One writer per run directory: the lease, its heartbeat, takeover of a dead holder's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idard.bench.lease import LEASE_NAME, LeaseHeld, LeaseLost, RunLease
from idard.bench.store import RecordStore, StoreWriteError

REPO = Path(__file__).resolve().parents[2]


def _holder(tmp_path: Path, **changes) -> dict:
    """Write a lease as another process would have written it."""
    lease = {"token": "other", "host": os.uname().nodename, "pid": os.getpid(), "command": "idard-bench run",
             "started": time.time(), "heartbeat": time.time(), "ttl": 30.0, **changes}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / LEASE_NAME).write_text(json.dumps(lease))
    return lease


def test_a_lease_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    with RunLease(store).hold():
        assert json.loads((tmp_path / LEASE_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(LeaseHeld, match=rf"in use by another run: pid {os.getpid()} on "):
            RunLease(RecordStore(tmp_path)).acquire()
    assert not (tmp_path / LEASE_NAME).exists()  # released
    with RunLease(store).hold():  # and free again
        pass


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _holder(tmp_path, pid=dead.pid)
    lease = RunLease(RecordStore(tmp_path))
    lease.acquire()
    assert json.loads((tmp_path / LEASE_NAME).read_text())["token"] == lease.token
    lease.release()


def test_a_live_lease_of_another_host_waits_for_its_expiry(tmp_path: Path) -> None:
    _holder(tmp_path, host="elsewhere", pid=1)
    with pytest.raises(LeaseHeld, match="pid 1 on elsewhere"):
        RunLease(RecordStore(tmp_path)).acquire()
    _holder(tmp_path, host="elsewhere", pid=1, heartbeat=time.time() - 31)  # expired
    with RunLease(RecordStore(tmp_path)).hold():
        pass


def test_a_holder_whose_lease_was_taken_over_stops_writing(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    lease = RunLease(store, ttl=0.4)
    with lease.hold():
        _holder(tmp_path, token="successor")  # it stalled; a successor took over
        time.sleep(0.5)  # a heartbeat notices
        with pytest.raises(LeaseLost, match="taken over"):
            store.write_text("run.json", "{}")
    assert json.loads((tmp_path / LEASE_NAME).read_text())["token"] == "successor"  # left to its holder


def test_a_run_directory_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreWriteError, match=r"file: cannot be used as a run directory"):
        RunLease(RecordStore(tmp_path / "file")).acquire()


def test_object_stores_claim_by_write_then_verify(tmp_path: Path) -> None:
    """The object-store protocol (no conditional PUT), run through pyarrow's filesystem."""
    (tmp_path / "run").mkdir()  # an object store needs no folders; a local one does
    store = RecordStore(f"file://{tmp_path}/run")
    store.remote = True  # file:// stands in for s3://: the same pyarrow calls, no rename
    lease = RunLease(store, settle=0.05)
    with lease.hold():
        with pytest.raises(LeaseHeld):
            RunLease(store, settle=0.05).acquire()
    assert not (tmp_path / "run" / LEASE_NAME).exists()


def test_two_real_runs_on_one_directory_the_second_stops_naming_the_first(tmp_path: Path) -> None:
    from tests.bench.conftest import write_crops, write_suite

    write_crops(tmp_path / "images", 2, size=32)
    suite = write_suite(tmp_path, ["bicubic"], samples=1)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "idard.bench.cli", "run", "--suite", str(suite), "--out", str(out),
               "--bootstrap", "100"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / LEASE_NAME).exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lease"
            time.sleep(0.1)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by another run: pid {first.pid} on " in lines[0], second.stderr
    assert not list((out / "records").glob("*.parquet")) or "tasks to compute" not in second.stdout
