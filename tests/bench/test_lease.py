"""One writer per run directory: the lease, its heartbeat, takeover of a dead holder's."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idard.bench.store.lease import LEASE_NAME, LeaseHeld, LeaseLost, RunLease
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


# ---------------------------------------------------------------- a holder that stalls, a claimant that waits

def _run_store(tmp_path: Path, kind: str) -> RecordStore:
    """A run directory on a local disk, or on an object store (``file://`` through pyarrow's
    filesystem calls with no rename and no ``O_EXCL``: what ``s3://`` gets)."""
    (tmp_path / "run").mkdir(exist_ok=True)
    if kind == "disk":
        return RecordStore(tmp_path / "run")
    store = RecordStore(f"file://{tmp_path}/run")
    store.remote = True
    return store


def _records(first: int, n: int = 1):
    import polars as pl

    return pl.DataFrame({"image": [f"img{i:05d}" for i in range(first, first + n)], "downscaler": "bicubic",
                         "model": "m", "metric": "lpips", "seed": 0, "scale": 4, "value": 0.5, "finite": True})


@pytest.mark.parametrize("kind", ["disk", "object store"])
def test_a_holder_whose_heartbeat_stalled_past_its_ttl_writes_nothing_once_a_successor_claimed(
        tmp_path: Path, kind: str) -> None:
    """Its heartbeat stopped renewing (a stalled thread, a long pause) while the process
    lives on: once a successor has claimed the expired lease, the holder's next write is
    refused, before the heartbeat thread has had any chance to notice."""
    store = _run_store(tmp_path, kind)
    holder = RunLease(store, ttl=0.5, settle=0.05)
    with holder.hold():
        store.append(_records(0))
        holder._stop.set()  # fault injection: the heartbeat stops renewing, the holder lives on
        holder._beat.join()
        time.sleep(0.6)  # past its TTL
        successor = RunLease(_run_store(tmp_path, kind), ttl=0.5, settle=0.05)
        successor.acquire()  # the expired lease is taken over
        try:
            with pytest.raises(LeaseLost, match="taken over"):
                store.append(_records(1))
        finally:
            successor.release()
    assert RecordStore(tmp_path / "run").count() == 1


_CLAIMANT = """
import sys, time
from idard.bench.store.lease import LeaseHeld, RunLease
from idard.bench.store import RecordStore
run, remote, seconds = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
store = RecordStore(run)
store.remote = remote
refused, deadline = 0, time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        RunLease(store, settle=0.05).acquire()
    except LeaseHeld:
        refused += 1
        time.sleep(0.1)
        continue
    print(f"claimed a live holder's lease after {refused} refusals")
    sys.exit(1)
print(f"refused {refused} times")
"""


@pytest.mark.parametrize("kind", ["disk", "object store"])
def test_a_holder_keeps_its_lease_past_its_ttl_against_a_claimant_in_another_process(
        tmp_path: Path, kind: str) -> None:
    """The heartbeat is what keeps a long run's lease: a holder alive for several TTLs, a
    second process trying to claim the directory all along, and every claim refused while
    the holder goes on writing."""
    store = _run_store(tmp_path, kind)
    location = str(tmp_path / "run") if kind == "disk" else f"file://{tmp_path}/run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with RunLease(store, ttl=0.8, settle=0.05).hold():
        claimant = subprocess.Popen([sys.executable, "-c", _CLAIMANT, location, "1" if kind != "disk" else "0", "4"],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        written = 0
        while claimant.poll() is None:  # about five TTLs
            store.append(_records(written))
            written += 1
            time.sleep(0.1)
        output = claimant.communicate()[0]
    assert claimant.returncode == 0 and "refused" in output, output
    assert RecordStore(tmp_path / "run").count() == written > 20


def test_two_claimants_racing_for_a_free_object_store_lease_only_one_proceeds(tmp_path: Path) -> None:
    """No conditional PUT: both see the lease free and both write it; the read-back after
    the settle time is what leaves exactly one of them holding it."""
    import threading

    barrier = threading.Barrier(2, timeout=10)
    leases = [RunLease(_run_store(tmp_path, "object store"), settle=0.3) for _ in range(2)]
    for i, lease in enumerate(leases):
        write = lease._write

        def first_write_together(path, data, write=write, delay=0.05 * i, waited=[]):  # noqa: B006 - one per lease
            if not waited:
                waited.append(True)
                barrier.wait()  # fault injection: both have read "free" before either writes,
                time.sleep(delay)  # then they write one after the other (a PUT is atomic; file:// is not)
            write(path, data)
        lease._write = first_write_together
    outcome: dict[int, str] = {}

    def claim(i: int) -> None:
        try:
            leases[i].acquire()
            outcome[i] = "holds"
        except LeaseHeld:
            outcome[i] = "refused"

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(outcome.values()) == ["holds", "refused"], outcome
        winner = leases[0] if outcome[0] == "holds" else leases[1]
        assert json.loads((tmp_path / "run" / LEASE_NAME).read_text())["token"] == winner.token
    finally:
        for lease in leases:
            lease.release()


# ---------------------------------------------------------------- what a lease file may claim

def test_a_heartbeat_in_the_future_blocks_only_until_its_file_is_older_than_the_ttl(tmp_path: Path) -> None:
    from idard.bench.store.lease import MAX_CLOCK_SKEW

    _holder(tmp_path, host="elsewhere", pid=1, heartbeat=time.time() + 1e12)
    with pytest.raises(LeaseHeld) as held:  # fresh: held, and the message says what is odd
        RunLease(RecordStore(tmp_path)).acquire()
    assert "-99" not in str(held.value) and "in the future" in str(held.value) and LEASE_NAME in str(held.value)
    old = time.time() - 30 - MAX_CLOCK_SKEW - 1
    os.utime(tmp_path / LEASE_NAME, (old, old))  # written long ago, whatever it says
    with RunLease(RecordStore(tmp_path)).hold():
        pass


def test_a_lease_cannot_claim_a_ttl_longer_than_the_bound(tmp_path: Path) -> None:
    from idard.bench.store.lease import MAX_TTL

    _holder(tmp_path, host="elsewhere", pid=1, ttl=1e15, heartbeat=time.time() - MAX_TTL - 1)
    with RunLease(RecordStore(tmp_path)).hold():
        pass
    with pytest.raises(ValueError, match="IDARD_LEASE_TTL"):
        RunLease(RecordStore(tmp_path), ttl=MAX_TTL * 2)


@pytest.mark.parametrize("field", ["heartbeat", "ttl", "pid", "started"])
def test_a_lease_with_fields_that_are_not_numbers_is_named_and_expires(tmp_path: Path, field: str) -> None:
    _holder(tmp_path, host="elsewhere", **{field: "soon"})
    with pytest.raises(LeaseHeld) as held:  # just written: it may be a live holder's
        RunLease(RecordStore(tmp_path)).acquire()
    message = str(held.value)
    assert str(tmp_path / LEASE_NAME) in message and f"{field} 'soon' is not a number" in message, message
    assert "could not convert" not in message
    old = time.time() - 31
    os.utime(tmp_path / LEASE_NAME, (old, old))
    if field == "heartbeat":  # no usable heartbeat: the file's time stands in for it
        with RunLease(RecordStore(tmp_path)).hold():
            pass


@contextlib.contextmanager
def _displaced(tmp_path: Path) -> Iterator[tuple[RecordStore, RunLease, RecordStore]]:
    """A holder on an object store that wrote one record, then stalled past its TTL (its
    heartbeat stopped, the process lives on), and a successor that took its lease over:
    (the holder's store, the holder, the successor's store)."""
    store = _run_store(tmp_path, "object store")
    holder = RunLease(store, ttl=0.5, settle=0.05)
    with holder.hold():
        store.append(_records(0))
        holder._stop.set()  # the holder stalls...
        holder._beat.join()
        time.sleep(0.6)
        successor_store = _run_store(tmp_path, "object store")
        with RunLease(successor_store, ttl=0.5, settle=0.05).hold():
            yield store, holder, successor_store


def test_a_part_that_lands_after_a_takeover_is_left_out_then_set_aside(tmp_path: Path, monkeypatch) -> None:
    """No check can stop a PUT already past it when its holder stalls: the successor fences
    the displaced token at takeover, so such a late part doubles no key."""
    with _displaced(tmp_path) as (store, _, successor_store):
        monkeypatch.setattr(store, "check_lease", lambda read=True: None)  # ...after its last check
        late = store.append(_records(1))  # its PUT lands now
        assert successor_store.count() == 1  # the record written before the takeover only
        assert [path for path, _ in successor_store.skipped_parts] == [late]
        assert "taken over" in successor_store.skipped_parts[0][1]
        successor_store.append(_records(1))  # the successor computes that key itself
        assert successor_store.count() == 2 and successor_store.duplicate_keys().is_empty()
        moved = successor_store.quarantine()
        assert [Path(p).parent.name for p, _ in moved] == ["quarantine"]


def test_a_displaced_holders_late_lease_write_neither_stops_its_successor_nor_lets_it_write_on(
        tmp_path: Path) -> None:
    """Without conditional PUT, a holder stopped between reading its lease and rewriting it
    (heartbeat or re-claim) writes it over its successor's verified claim when resumed (2 of
    3 stall trials on a real S3 API): the successor claims the lease back, and the displaced
    holder, which finds its token fenced, stops; every part it would write is left out."""
    with _displaced(tmp_path) as (store, holder, successor_store):
        holder._write(holder.path, holder._document())  # ...and its lease write lands late
        holder._renewed = holder._clock()  # as if that write had renewed it
        successor_store.append(_records(1))  # not LeaseLost: the late write is its fenced holder's
        with pytest.raises(LeaseLost, match="taken over"):
            store.append(_records(2))
        assert successor_store.count() == 2 and successor_store.duplicate_keys().is_empty()


def test_a_part_half_written_when_its_holder_stalled_is_not_let_in_by_the_fence(tmp_path: Path) -> None:
    """On a filesystem a PUT's file can be there before it is whole: the fence lists only
    whole parts, so the one completed after the takeover stays out."""
    store = _run_store(tmp_path, "object store")
    holder = RunLease(store, ttl=0.5, settle=0.05)
    with holder.hold():
        holder._stop.set()  # the holder stalls mid-PUT, before its first part is whole
        holder._beat.join()
        in_flight = tmp_path / "run" / "records" / f"part-20990101T000000000000-inflight{store.writer_suffix()}.parquet"
        in_flight.parent.mkdir(parents=True, exist_ok=True)
        in_flight.write_bytes(b"")
        time.sleep(0.6)
        successor_store = _run_store(tmp_path, "object store")
        with RunLease(successor_store, ttl=0.5, settle=0.05).hold():
            scratch = RecordStore(tmp_path / "scratch")
            whole = Path(scratch.append(_records(0))).read_bytes()  # a whole part of the store's schema
            in_flight.write_bytes(whole)  # the PUT completes after the takeover
            assert successor_store.count() == 0
            assert [path for path, _ in successor_store.skipped_parts] == [str(in_flight)]
