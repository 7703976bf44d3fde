"""One writer per run directory: a lease with an owner and a heartbeat.

The record store is safe against crashes because exactly one process adds parts, and the
planner subtracts what the store holds before scheduling. Two drivers on one run
directory would each plan the same missing keys and write every one of them twice, so a
run (and anything else that writes records, such as compaction) holds a lease first::

    with RunLease(store).hold():
        ...  # append parts, write tables

The lease is the file ``RUN_DIR/lease.json``: who holds it (host, pid, command, a random
token) and when it last said it was alive. While held, a thread rewrites the heartbeat
every ``ttl / 4`` seconds. A second process finds a live lease and stops with
`LeaseHeld`, naming the holder. A lease is *stale*, and may be taken over, when its
heartbeat is older than ``ttl`` or, on the same host, when its pid no longer runs (a
SIGKILLed driver's successor need not wait for the expiry).

How a lease is claimed, and what that guarantees:

* **Local disk** (and POSIX shared filesystems): a free lease is created with
  ``O_CREAT | O_EXCL``, which exactly one process wins. A stale one is replaced under a
  short-lived takeover file (also ``O_EXCL``) after re-reading it, so two successors
  never both take over. Exclusive.
* **Object stores** (``s3://``, ``gs://``): pyarrow's filesystems have no conditional
  PUT, so the claim is *write, wait, verify*: write the lease with a fresh token, wait
  ``settle`` seconds, read it back, and proceed only if the token is still ours. Two
  claimants that both wrote see the same last write, and only its author proceeds. The
  limit: a claimant whose read-then-write takes longer than ``settle`` can overwrite a
  lease already verified; the heartbeat verifies the token before every beat, so the
  displaced holder notices within ``ttl / 4`` and stops before its next write
  (`LeaseLost`). It needs read-after-write consistency (S3 and GCS have it) and clocks
  within a few seconds of each other across hosts.

Every write of the store calls `RunLease.check`, so a holder that lost its lease (a
stalled process whose lease expired and was taken over) stops instead of writing beside
its successor.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from idard.bench.store import RecordStore

LEASE_NAME = "lease.json"
#: Seconds without a heartbeat after which a lease is stale (env ``IDARD_LEASE_TTL``).
DEFAULT_TTL = 30.0
#: Object stores: seconds between writing a claim and verifying it.
DEFAULT_SETTLE = 2.0


class LeaseHeld(RuntimeError):
    """Another live process holds the run directory's lease; the message names it."""

    def __init__(self, message: str) -> None:  # one argument: picklable as is
        super().__init__(message)


class LeaseLost(RuntimeError):
    """This process's lease was taken over (it stalled past the TTL): it must stop writing."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _now() -> float:
    return time.time()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def describe(holder: dict[str, Any]) -> str:
    """``pid 123 on host-a (idard-bench run ...), heartbeat 4 s ago``."""
    age = _now() - float(holder.get("heartbeat", 0))
    started = dt.datetime.fromtimestamp(float(holder.get("started", 0)), dt.timezone.utc)
    return (f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command', '?')}), "
            f"started {started:%Y-%m-%d %H:%M:%S} UTC, heartbeat {age:.0f} s ago")


class RunLease:
    """The lease on one run directory. Use `hold` (a context manager), or `acquire` and
    `release`; `check` raises `LeaseLost` once the lease is no longer this process's."""

    def __init__(self, store: RecordStore, ttl: float | None = None, settle: float = DEFAULT_SETTLE,
                 command: str | None = None) -> None:
        self.store = store
        self.ttl = float(ttl if ttl is not None else os.environ.get("IDARD_LEASE_TTL", DEFAULT_TTL))
        self.settle = settle
        self.path = f"{store._root}/{LEASE_NAME}"
        self.token = secrets.token_hex(16)
        self.command = command or " ".join(["idard-bench", *sys.argv[1:3]])
        self.host = socket.gethostname()
        self.started = _now()
        self.held = False
        self.lost: str | None = None
        self._made_folder: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ------------------------------------------------------------------ public
    @contextlib.contextmanager
    def hold(self) -> Iterator[RunLease]:
        """Hold the lease for the ``with`` block; the store's writes check it meanwhile."""
        self.acquire()
        previous, self.store.lease = self.store.lease, self
        try:
            yield self
        finally:
            self.store.lease = previous
            self.release()

    def acquire(self) -> None:
        """Claim the lease or raise `LeaseHeld` naming the live holder (`StoreWriteError`
        when the run directory cannot be written at all: a file, read-only, full)."""
        from idard.bench.store import StoreWriteError, store_problem

        try:
            self._acquire()
        except OSError as exc:
            raise StoreWriteError(f"{self.store.run_dir}: cannot be used as a run directory "
                                  f"({store_problem(exc)}{': ' + exc.filename if exc.filename else ''})") from None

    def _acquire(self) -> None:
        for _ in range(20):  # each pass either returns, raises, or lost a race and re-reads
            current = self._read()
            if current is not None and current.get("token") != self.token and not self.is_stale(current):
                raise LeaseHeld(f"{self.store.run_dir} is in use by another run: {describe(current)}; "
                                f"wait for it to end, or use another --out (its lease expires {self.ttl:.0f} s "
                                f"after its last heartbeat; {LEASE_NAME} there names it)")
            if self._claim(current):
                self.held = True
                self._beat = threading.Thread(target=self._heartbeat, name="idard-lease", daemon=True)
                self._beat.start()
                return
        raise LeaseHeld(f"{self.store.run_dir}: could not claim {LEASE_NAME}: other processes keep claiming it")

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still this process's."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        if self.held and self.lost is None:
            # The store may be what failed (an object store down mid-run): the run's own
            # error must reach the user, and a lease left behind expires after its TTL.
            with contextlib.suppress(OSError):
                current = self._read()
                if current is not None and current.get("token") == self.token:
                    self._delete(self.path)
            if self._made_folder is not None:
                with contextlib.suppress(OSError):  # not empty: the run wrote something
                    os.rmdir(self._made_folder)
        self.held = False

    def check(self) -> None:
        """Raise `LeaseLost` if the lease was taken over; called before every store write."""
        if self.lost is not None:
            raise LeaseLost(self.lost)

    def is_stale(self, holder: dict[str, Any]) -> bool:
        """Expired, or held by a process of this host that no longer runs."""
        if _now() - float(holder.get("heartbeat", 0)) > float(holder.get("ttl", self.ttl)):
            return True
        pid = holder.get("pid")
        return holder.get("host") == self.host and isinstance(pid, int) and not _pid_alive(pid)

    # ------------------------------------------------------------------ protocol
    def _document(self) -> bytes:
        return json.dumps({
            "token": self.token, "host": self.host, "pid": os.getpid(), "command": self.command,
            "started": self.started, "heartbeat": _now(), "ttl": self.ttl,
        }, indent=1).encode()

    def _claim(self, current: dict[str, Any] | None) -> bool:
        if self.store.remote:
            self._write(self.path, self._document())
            time.sleep(self.settle)
            after = self._read()
            return after is not None and after.get("token") == self.token
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            os.makedirs(folder)
            self._made_folder = folder  # removed again on release if nothing else was written
        if current is None:
            return self._create_exclusive(self.path, self._document())
        return self._take_over(current)

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def _take_over(self, stale: dict[str, Any]) -> bool:
        """Replace a stale lease, under a takeover file so only one successor does."""
        guard = f"{self.path}.takeover"
        with contextlib.suppress(FileNotFoundError):
            if _now() - os.stat(guard).st_mtime > self.ttl:  # a successor died mid-takeover
                os.unlink(guard)
        if not self._create_exclusive(guard, self.token.encode()):
            time.sleep(0.2)
            return False
        try:
            current = self._read()
            if current is not None and current.get("token") != stale.get("token"):
                return False  # someone else took it over first: re-read and judge again
            self._write(self.path, self._document())
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(guard)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                current = self._read()
            except OSError:
                continue  # a transient read failure: try again next beat
            if current is None or current.get("token") != self.token:
                self.lost = (f"{self.store.run_dir}: this run's lease was taken over"
                             + (f" by {describe(current)}" if current else "")
                             + " (this process stalled longer than the lease TTL); stopping before writing more")
                return
            with contextlib.suppress(OSError):
                self._write(self.path, self._document())

    # ------------------------------------------------------------------ files
    def _read(self) -> dict[str, Any] | None:
        """The lease's content; None when absent. Unreadable content counts as stale."""
        try:
            if self.store.remote:
                with self.store._fs.open_input_stream(self.path) as stream:
                    raw = stream.read()
            else:
                with open(self.path, "rb") as fh:
                    raw = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            text = str(exc).lower()
            if "not found" in text or "does not exist" in text or "errno 2]" in text:
                return None
            raise
        try:
            holder = json.loads(raw)
        except ValueError:
            holder = None
        if isinstance(holder, dict):
            return holder
        # Empty (a claimant between create and write) or garbage: stale only once it is
        # older than the TTL, so a lease being written is never taken over.
        return {"token": None, "heartbeat": self._mtime(), "host": "?", "pid": None, "command": "unreadable lease"}

    def _mtime(self) -> float:
        if self.store.remote:
            info = self.store._fs.get_file_info(self.path)
            return info.mtime.timestamp() if info.mtime is not None else _now()
        try:
            return os.stat(self.path).st_mtime
        except FileNotFoundError:
            return 0.0

    def _write(self, path: str, data: bytes) -> None:
        if self.store.remote:
            with self.store._fs.open_output_stream(path) as stream:
                stream.write(data)
            return
        partial = f"{path}.{self.token[:8]}.tmp"
        with open(partial, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)

    def _delete(self, path: str) -> None:
        if self.store.remote:
            self.store._fs.delete_file(path)
        else:
            os.unlink(path)
