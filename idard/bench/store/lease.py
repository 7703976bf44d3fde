"""One writer per run directory: a lease with an owner and a heartbeat.

The record store is safe against crashes because exactly one process adds parts, and the
planner subtracts what the store holds before scheduling. Two drivers on one run
directory would each plan the same missing keys and write every one of them twice, so a
run (and anything else that writes records: compaction, migrate) holds a lease first::

    with RunLease(store).hold():
        ...  # append parts, write tables

The lease is the file ``RUN_DIR/lease.json``: who holds it (host, pid, command, a random
token) and when it last said it was alive. While held, a thread rewrites the heartbeat
every ``ttl / 4`` seconds. A second process finds a live lease and stops with
`LeaseHeld`, naming the holder. A lease is *stale*, and may be taken over, when its
heartbeat is older than its ``ttl`` or, on the same host, when its pid no longer runs (a
SIGKILLed driver's successor need not wait for the expiry). What a lease file may claim
is bounded, so no file can block a directory for ever: a ``ttl`` above `MAX_TTL` counts
as `MAX_TTL`, and a heartbeat that is missing, not a number, or more than
`MAX_CLOCK_SKEW` in the future is replaced by the file's modification time (the message
names the file and what is wrong with it).

How a lease is claimed:

* **Local disk** (and POSIX shared filesystems): a free lease is created with
  ``O_CREAT | O_EXCL``, which exactly one process wins. A stale one is replaced under a
  short-lived takeover file (also ``O_EXCL``) after re-reading it unchanged, so two
  successors never both take over.
* **Object stores** (``s3://``, ``gs://``): pyarrow's filesystems have no conditional
  PUT, so the claim is *write, wait, verify*: write the lease with a fresh token, wait
  ``settle`` seconds, read it back, and proceed only if the token is still ours. Two
  claimants that both wrote see the same last write, and only its author proceeds.

How a holder stops writing once it may have lost the lease (`RunLease.check`, which the
store calls before every part, table and deletion):

* The holder knows, by its own monotonic clock, when it last renewed the lease; nobody
  may take a lease over before ``ttl`` has passed since then. So it writes only while
  less than ``ttl - ttl / 4`` has passed (the *validity*); past that (its heartbeat
  thread stalled, the process was stopped or suspended) it must claim the lease again,
  exactly as a successor would, and stops with `LeaseLost` if the lease is no longer
  its own. The validity is checked *after* the read below, so a stall during that read
  is caught too.
* Before each part it also reads the lease (one small GET) and stops if another token is
  there (a clock far off, a lease deleted by hand), or if a successor fenced its token
  (a second small request).

Parts are named with the holder's token (``part-<time>-<id>.<token8>.parquet``), and a
successor that takes a lease over writes a *fence* before it plans: which parts of the
displaced token exist at that instant (`RecordStore.fence`). Readers leave out any other
part of that token: it landed after the takeover.

What this guarantees, and what it does not:

* A holder stopped (SIGSTOP, a VM pause, swap) past its TTL at any instant before the
  last check of a write never makes that write once a successor could have claimed the
  lease: it finds the validity lapsed, reads the successor's token, and stops.
* Nothing can stop a write whose last check has passed (there is no conditional PUT): a
  holder stopped between its check and its PUT (or rename) lands that one part after
  resuming. The fence makes that part invisible, so no key is held twice: the successor,
  which planned without it, computes its keys, and its next run sets the part aside in
  ``records/quarantine/``. Measured with ``benchmark/lease_stall.py``: 10
  stall-and-resume trials on an object-store path, 0 duplicate keys.
* Deletions and rewrites in place (compaction's removal of replaced parts,
  ``--retry-errors``) are checked the same way but cannot be fenced: one that was past its
  check when its holder stopped still happens. Compaction's deletions are harmless then
  (their records are in a compacted part written, and checked, before them); a late
  rewrite drops records the successor then lacks until its next run computes them.
* Object-store lease writes: a holder stopped between reading its lease and writing it
  again (a heartbeat, or a claim after a lapse) writes it over its successor's verified
  claim when resumed; on a real S3 API that happened in 2 of 3 stall trials. The
  successor knows that token (it fenced it), so it claims the lease back instead of
  stopping, and the displaced holder finds its fence and stops (test_lease.py,
  ``benchmark/lease_stall.py --s3``: 10 trials on moto's S3 server, 0 duplicate and 0
  lost keys). A claimant of a *free* lease that stalls more than ``settle`` between
  reading it and writing its claim can still overwrite a claim already verified; the
  displaced one stops at its next check (its token is gone).
* It needs read-after-write consistency for objects and listings (S3 and GCS have it),
  and hosts whose clocks differ by less than ``ttl / 4`` (a successor judges expiry by
  its own clock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from idard.bench.store.records import RecordStore, StoreWriteError, store_problem

LEASE_NAME = "lease.json"
#: Seconds without a heartbeat after which a lease is stale (env ``IDARD_LEASE_TTL``).
DEFAULT_TTL = 30.0
#: The longest TTL a lease may claim: a lease file (bogus, hand-edited, or another
#: version's) blocks a directory at most this long after its heartbeat.
MAX_TTL = 600.0
#: How far in the future a heartbeat may be (clock skew between hosts) before the lease
#: file's modification time stands in for it.
MAX_CLOCK_SKEW = 60.0
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


def bounded_ttl(ttl: float | str | None) -> float:
    """This process's TTL: ``ttl``, else ``$IDARD_LEASE_TTL``, else `DEFAULT_TTL`; a value
    that is not a number in (0, `MAX_TTL`] is refused in one line."""
    raw = ttl if ttl is not None else os.environ.get("IDARD_LEASE_TTL", DEFAULT_TTL)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value <= MAX_TTL:  # also NaN
        raise ValueError(f"lease TTL {raw!r} (IDARD_LEASE_TTL) must be a number of seconds in (0, {MAX_TTL:.0f}]")
    return value


def _number(doc: dict[str, Any], field: str, problems: list[str]) -> float | None:
    """``doc[field]`` as a finite number, or None (noting why in ``problems``)."""
    value = doc.get(field)
    if value is None:
        problems.append(f"no {field}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{field} {value!r} is not a number")
        return None
    return float(value)


def parse_holder(raw: bytes, default_ttl: float, mtime: Callable[[], float]) -> dict[str, Any]:
    """A lease file's content, with every field a lease may claim bounded.

    ``heartbeat`` and ``ttl`` decide when the lease may be taken over, so neither may
    block a directory for ever: a ``ttl`` that is not a number falls back to
    ``default_ttl`` and one above `MAX_TTL` counts as `MAX_TTL`; a heartbeat that is
    missing, not a number or more than `MAX_CLOCK_SKEW` ahead is replaced by the file's
    modification time (``mtime``, only asked for then). ``problem`` says what was wrong
    (None when nothing was); ``raw`` is kept so a takeover can tell the file changed.
    """
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        # Empty (a claimant between create and write) or garbage: stale only once it is
        # older than the TTL, so a lease being written is never taken over.
        what = "empty" if not raw.strip() else "not a JSON object"
        return {"token": None, "host": "?", "pid": None, "command": "unreadable lease", "started": None,
                "heartbeat": mtime(), "ttl": default_ttl, "problem": what, "raw": raw}
    problems: list[str] = []
    heartbeat = _number(doc, "heartbeat", problems)
    if heartbeat is not None and heartbeat > _now() + MAX_CLOCK_SKEW:
        problems.append(f"heartbeat {heartbeat - _now():.0f} s in the future")
        heartbeat = None
    ttl = _number(doc, "ttl", problems) if "ttl" in doc else default_ttl
    if ttl is not None and ttl > MAX_TTL:
        problems.append(f"ttl {ttl:g} s above the bound of {MAX_TTL:.0f} s")
        ttl = MAX_TTL
    elif ttl is not None and ttl <= 0:
        problems.append(f"ttl {ttl:g} s is not positive")
        ttl = None
    pid = doc.get("pid")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        problems.append(f"pid {pid!r} is not a number")
        pid = None
    started = _number(doc, "started", []) if isinstance(doc.get("started"), int | float) else None
    if "started" in doc and started is None:
        problems.append(f"started {doc['started']!r} is not a number")
    token = doc.get("token")
    return {"token": token if isinstance(token, str) else None, "host": str(doc.get("host", "?")), "pid": pid,
            "command": str(doc.get("command", "?")), "started": started,
            "heartbeat": heartbeat if heartbeat is not None else mtime(),
            "ttl": ttl if ttl is not None else default_ttl,
            "problem": "; ".join(problems) or None, "raw": raw}


def describe(holder: dict[str, Any], path: str | None = None) -> str:
    """``pid 123 on host-a (idard-bench run ...), heartbeat 4 s ago``, and what is wrong
    with the lease file, naming it, when something is."""
    age = _now() - float(holder.get("heartbeat", 0))
    started = holder.get("started")
    when = (f"started {dt.datetime.fromtimestamp(started, dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC, "
            if isinstance(started, float) else "")
    beat = f"heartbeat {age:.0f} s ago" if age >= 0 else f"heartbeat {-age:.0f} s in the future"
    text = f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command', '?')}), {when}{beat}"
    if holder.get("problem"):
        text += f" ({path or LEASE_NAME}: {holder['problem']})"
    return text


@contextlib.contextmanager
def holding(store: RecordStore, command: str) -> Iterator[RunLease]:
    """The lease of ``store`` for the block: the one this process holds already (a run that
    compacts), or a new one held until the block ends (``idard-bench compact``, migrate).
    What writes records calls this, so no command can write beside a run."""
    if store.lease is not None and store.lease.held:
        yield store.lease
        return
    with RunLease(store, command=command).hold() as lease:
        yield lease


class RunLease:
    """The lease on one run directory. Use `hold` (a context manager), or `acquire` and
    `release`; `check` raises `LeaseLost` once this process may no longer write."""

    def __init__(self, store: RecordStore, ttl: float | None = None, settle: float = DEFAULT_SETTLE,
                 command: str | None = None) -> None:
        self.store = store
        self.ttl = bounded_ttl(ttl)
        self.settle = settle
        self.path = f"{store._root}/{LEASE_NAME}"
        self.token = secrets.token_hex(16)
        #: Tokens this lease fenced when it took over: a lease file naming one was written
        #: by a displaced holder that will stop at its next check (it finds its fence).
        self._fenced: set[str] = set()
        self.command = command or " ".join(["idard-bench", *sys.argv[1:3]])
        self.host = socket.gethostname()
        self.started = _now()
        self.held = False
        self.lost: str | None = None
        self._made_folder: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._lock = threading.RLock()  # the writer's checks and the heartbeat never interleave
        self._renewed = (-math.inf, -math.inf)  # (monotonic, wall) clock when the lease was last renewed

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
        try:
            self._acquire()
        except OSError as exc:
            raise StoreWriteError(f"{self.store.run_dir}: cannot be used as a run directory "
                                  f"({store_problem(exc)}{': ' + exc.filename if exc.filename else ''})") from None

    def _acquire(self) -> None:
        for _ in range(20):  # each pass either returns, raises, or lost a race and re-reads
            current = self._read()
            if current is not None and current.get("token") != self.token and not self.is_stale(current):
                raise LeaseHeld(f"{self.store.run_dir} is in use by another run: {describe(current, self.path)}; "
                                f"wait for it to end, or use another --out (its lease expires {current['ttl']:.0f} s "
                                f"after its last heartbeat; {LEASE_NAME} there names it)")
            began = self._clock()
            if self._claim(current):
                self._renewed = began
                self.held = True
                self._beat = threading.Thread(target=self._heartbeat, name="idard-lease", daemon=True)
                self._beat.start()
                if current is not None and current.get("token") and not self._dead(current):
                    self._fence(current["token"])
                return
        raise LeaseHeld(f"{self.store.run_dir}: could not claim {LEASE_NAME}: other processes keep claiming it")

    def _fence(self, token: str) -> None:
        """The lease was taken over from ``token``, whose holder may be alive (stopped, not
        dead) with a PUT in flight: parts of that token that land from now on are left
        out by readers (`RecordStore.fence`). Released again if that cannot be written."""
        try:
            self.store.fence(token)
        except BaseException:
            self.release()
            raise
        self._fenced.add(token)

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

    def check(self, read: bool = True) -> None:
        """Raise `LeaseLost` unless this process may still write; called before every write.

        ``read``: also read the lease (one small GET) and stop if another token is there;
        without it only the local validity is checked (free: for a batch of deletions
        after one full check). The validity is judged after the read, so a process
        stopped during the read finds it lapsed and claims again rather than trust it.
        """
        with self._lock:
            if self.lost is not None:
                raise LeaseLost(self.lost)
            if not self.held:
                return
            current = self._read() if read else None
            if read and self.store.is_fenced(self.token):
                self._lose(current, fenced=True)  # a successor took over and fenced this token's parts
            if self._lapsed():
                self._claim_again()
            elif read and current is not None and current.get("token") in self._fenced:
                self._reassert()
            elif read and (current is None or current.get("token") != self.token):
                self._lose(current)

    def is_stale(self, holder: dict[str, Any]) -> bool:
        """Expired, or held by a process of this host that no longer runs."""
        return _now() - holder["heartbeat"] > holder["ttl"] or self._dead(holder)

    def _dead(self, holder: dict[str, Any]) -> bool:
        """Held by a process of this host that no longer runs (it can write nothing more)."""
        pid = holder.get("pid")
        return holder.get("host") == self.host and isinstance(pid, int) and not _pid_alive(pid)

    # ------------------------------------------------------------------ validity
    @staticmethod
    def _clock() -> tuple[float, float]:
        return time.monotonic(), _now()

    def _elapsed(self) -> float:
        """Seconds since the lease was last renewed: the larger of the monotonic and the
        wall clock's, so neither a suspend (monotonic stops) nor a clock set back hides it."""
        mono, wall = self._clock()
        return max(mono - self._renewed[0], wall - self._renewed[1])

    def _lapsed(self) -> bool:
        """Could a successor have judged the lease expired (with a quarter TTL of margin)?"""
        return self._elapsed() > self.ttl - self.ttl / 4

    def _reassert(self) -> None:
        """The lease names a token this process fenced: its displaced holder, stopped
        between reading the lease and writing it (no conditional PUT), wrote it late. That
        holder stops at its next check (it finds its fence), so claim the lease back."""
        began = self._clock()
        if not self._claim(self._read()):
            self._lose(self._read())
        self._renewed = began

    def _claim_again(self) -> None:
        """After a lapse: claim as a successor would, if the lease is still ours."""
        current = self._read()
        if current is not None and current.get("token") in self._fenced:
            return self._reassert()
        if current is None or current.get("token") != self.token:
            self._lose(current)
        began = self._clock()
        if not self._claim(current):
            self._lose(self._read())
        self._renewed = began

    def _lose(self, current: dict[str, Any] | None, fenced: bool = False) -> None:
        whom = (f"taken over by {describe(current, self.path)}" if current and current.get("token") != self.token
                else "taken over (its successor fenced this run's parts)" if fenced else "removed")
        self.lost = (f"{self.store.run_dir}: this run's lease was {whom}"
                     " (this process stalled longer than the lease TTL); stopping before writing more")
        raise LeaseLost(self.lost)

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
            if after is not None and after.get("token") == self.token and self.store.is_fenced(self.token):
                self._lose(None, fenced=True)  # a displaced holder's late claim: its successor claims it back
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
        """Replace a stale lease, under a takeover file so only one successor does, and
        only if the file is unchanged since it was judged (a late heartbeat revives it)."""
        guard = f"{self.path}.takeover"
        with contextlib.suppress(FileNotFoundError):
            if _now() - os.stat(guard).st_mtime > self.ttl:  # a successor died mid-takeover
                os.unlink(guard)
        if not self._create_exclusive(guard, self.token.encode()):
            time.sleep(0.2)
            return False
        try:
            current = self._read()
            if current is None or current.get("raw") != stale.get("raw"):
                return False  # renewed, or someone else took it over first: re-read and judge again
            self._write(self.path, self._document())
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(guard)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                with self._lock:
                    self._renew()
            except LeaseLost:
                return
            except OSError:
                continue  # a transient failure: the next beat, or the writer's check, tries again

    def _renew(self) -> None:
        """One heartbeat: rewrite the lease if it is still ours and still valid."""
        if self.lost is not None:
            return
        if self._lapsed():  # this thread (or the process) stalled: claim again, as a successor would
            self._claim_again()
            return
        began = self._clock()
        current = self._read()
        if current is not None and current.get("token") in self._fenced:
            return self._reassert()
        if current is None or current.get("token") != self.token:
            self._lose(current)
        if self.store.is_fenced(self.token):
            self._lose(current, fenced=True)
        if self._lapsed() or time.monotonic() - began[0] > self.settle / 2:
            return  # too slow to be sure no claim came in between: the next beat tries again
        self._write(self.path, self._document())
        self._renewed = began

    # ------------------------------------------------------------------ files
    def _read(self) -> dict[str, Any] | None:
        """The lease's content (`parse_holder`); None when absent."""
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
        return parse_holder(raw, self.ttl, self._mtime)

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
