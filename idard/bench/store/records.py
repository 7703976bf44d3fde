"""The record store of a run: immutable Parquet parts under ``RUN_DIR/records/``.

Records are the source of truth of every table, so the store is built so that no crash
can damage them:

* Each flush writes a new part, ``part-<time>-<uuid>.parquet``. On a local disk it is
  written as ``.part-*.parquet.tmp`` and renamed, and a rename is atomic, so a reader
  sees a whole part or none. On an object store (``s3://``, ``gs://``) one PUT of an
  object is atomic by itself. A crash loses at most the records not yet flushed.
* Parts are never modified; readers glob ``part-*.parquet`` only, so a leftover temporary
  file from a killed writer is ignored (and removed by the next writer once it is older
  than any live write could be).
* Exactly one process writes a run's records at a time: the holder of the run
  directory's lease (`idard.bench.store.lease.RunLease`); every write checks the lease. The
  planner subtracts what the store holds before scheduling, so re-running never writes a
  key twice. `RecordStore.duplicate_keys` checks the invariant, and readers count a key
  held twice once (`without_duplicates`), saying so.
* A part that cannot be read (truncated, empty, garbage, another schema: a disk fault or
  a hand-copied file) is left out by readers and named in `skipped_parts`; the lease
  holder moves it to ``records/quarantine/`` (`quarantine`), so its keys are missing
  and the run recomputes them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import polars as pl
import pyarrow.fs
import pyarrow.ipc

from idard.measure.records import KEY_COLUMNS, RECORD_SCHEMA

from idard.bench.store.visibility import FENCE_PREFIX, consistent_parts, part_writer


class Lease(Protocol):
    """What the store needs of the lease it writes under (`idard.bench.store.lease.RunLease`):
    its token, to name parts, and a check before each write. A protocol, not an import,
    so that the store does not depend on the lease, which depends on the store."""

    token: str

    def check(self, read: bool = True) -> None: ...

#: The per-sample record schema of the measure, plus run provenance.
STORE_SCHEMA: dict[str, pl.DataType] = {
    **RECORD_SCHEMA,
    "suite_hash": pl.String,
    "worker": pl.String,
    "written_at": pl.Datetime("us", "UTC"),
}
PART_GLOB = "part-*.parquet"
QUARANTINE = "quarantine"
#: A temporary part younger than this may belong to a live writer: never removed.
PARTIAL_MIN_AGE_S = 120.0
#: What was found checking a part, by (path, size): (why it cannot be read or None, its
#: rows). Parts are immutable once renamed (a rewrite in place changes the size).
_CHECKED: dict[tuple[str, int], tuple[str | None, int]] = {}
#: Columns without which a part's records mean nothing (a part lacking ``value`` would
#: count as non-finite for ever, never recomputed).
REQUIRED_COLUMNS = (*KEY_COLUMNS, "value", "finite")


class StoreWriteError(RuntimeError):
    """A write to the run directory failed (disk full, read-only, permissions): one line."""

    def __init__(self, message: str) -> None:  # one argument: picklable as is
        super().__init__(message)


#: What the AWS SDK's error names (inside pyarrow's OSError text) mean to a user, in order.
_OBJECT_STORE_PROBLEMS = (
    (("ACCESS_DENIED", "SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID", "HTTP status 403"),
     "access denied: check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"),
    (("NO_SUCH_BUCKET", "not found. To create buckets"), "the bucket does not exist: create it first"),
    (("NETWORK_CONNECTION", "curlCode"), "cannot reach the object store"),
)


def store_problem(exc: BaseException) -> str:
    """One line saying why an object-store request failed, in the user's terms.

    pyarrow reports S3 failures as an OSError quoting the AWS SDK ("AWS Error
    ACCESS_DENIED during HeadObject operation: No response body"); users set credentials
    and endpoints, not SDK operations, so the line names what to check, with the endpoint
    and, when no credentials are set at all, that.
    """
    text = str(exc)
    reason = next((why for needles, why in _OBJECT_STORE_PROBLEMS if any(n in text for n in needles)), None)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    no_keys = not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
    if "AWS Error" in text and no_keys and reason != "the bucket does not exist: create it first":
        reason = "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    if reason is None:
        return getattr(exc, "strerror", None) or text
    if endpoint and reason.startswith(("cannot reach", "access denied", "no credentials")):
        reason += f"; endpoint {endpoint} (AWS_ENDPOINT_URL)"
    return reason


def _inspect_part(fs: pyarrow.fs.FileSystem, path: str, size: int) -> tuple[str | None, int]:
    """Why a part cannot be read as records (None when it can), and its rows: read from its
    footer only (the rows let readers check a compaction manifest against its parts)."""
    import pyarrow.parquet as pq

    if size == 0:
        return "empty file", 0
    try:
        with fs.open_input_file(path) as handle:
            metadata = pq.read_metadata(handle)
        schema = metadata.schema.to_arrow_schema()
    except Exception as exc:  # noqa: BLE001 - ArrowInvalid, OSError: truncated or not Parquet
        return f"not a readable Parquet file ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})", 0
    return _schema_problem(schema.serialize().to_pybytes()), metadata.num_rows


@functools.lru_cache(maxsize=64)
def _schema_problem(serialized: bytes) -> str | None:
    """Why records with this (serialized Arrow) schema cannot be read, or None.

    Cached by the exact serialized schema, field metadata included: a run's thousands of
    parts share one or two schemas, and converting one to Polars types costs more than
    reading the footer (1 s of a 10 M-record report's 6,250 parts, before this cache).
    """
    schema = pyarrow.ipc.read_schema(pyarrow.py_buffer(serialized))
    try:
        columns = pl.from_arrow(schema.empty_table()).schema
    except Exception as exc:  # noqa: BLE001 - types Polars cannot read
        return f"unreadable column types ({exc})"
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        return f"another schema: no {', '.join(missing)} column(s)"
    extra = [c for c in columns if c not in STORE_SCHEMA]
    if extra:
        return f"another schema: unknown column(s) {', '.join(extra[:5])}"
    wrong = [f"{c} is {t}, not {STORE_SCHEMA[c]}" for c, t in columns.items() if t != STORE_SCHEMA[c]]
    if wrong:
        return f"another schema: {'; '.join(wrong[:3])}"
    return None


def skipped_part_notes(store: RecordStore) -> list[str]:
    """One line per file the last `RecordStore.parts` left out: unreadable parts, parts a
    displaced lease holder wrote late, compaction manifests and fences it could not trust."""
    return [f"warning: {path}: {why}; left out (the next run moves it to records/{QUARANTINE}/"
            + (" and recomputes its keys)" if Path(path).name.startswith("part-") else ")")
            for path, why in store.skipped_parts]


def without_duplicates(records: pl.LazyFrame, store: RecordStore | None = None) -> tuple[pl.LazyFrame, int]:
    """``records`` with each key once, and how many extra copies there were.

    A key held twice means two processes wrote into one run directory (before leases, or
    by hand); its copies are the same computation, so one is kept and the count is
    reported, never silently doubled. ``records`` are ``store``'s when it is given: the
    first test then reads it in bounded batches (`RecordStore.scan_batches`).
    """
    # First a cheap test that is exact when it passes: if the keys' 64-bit hashes are all
    # distinct, so are the keys. At ten million records it costs a quarter of grouping by
    # the five key columns (2 s and 0.7 GB instead of 8 s and 2.5 GB), and 0.3 GB read in
    # batches; only a store with repeated hashes (a duplicate, or rarely a collision) is
    # grouped exactly. Batches list the store again: a writer only adds records and a
    # compaction keeps them, so that listing holds every key of ``records`` and no
    # duplicate there means none in ``records``.
    key_hash = pl.struct(KEY_COLUMNS).hash(0)
    if store is None:
        probe = records.select(rows=pl.len(), distinct=key_hash.n_unique()).collect(engine="streaming").row(0)
    else:
        hashes = pl.concat([scan.select(key_hash).collect().to_series() for scan in store.scan_batches()])
        probe = (hashes.len(), hashes.n_unique())
    if probe[0] == probe[1]:
        return records, 0
    extra = (
        records.group_by(KEY_COLUMNS).agg(pl.len().alias("copies")).filter(pl.col("copies") > 1)
        .select((pl.col("copies") - 1).sum()).collect(engine="streaming").item()
    )
    extra = int(extra or 0)
    if not extra:
        return records, 0
    return records.unique(subset=list(KEY_COLUMNS), keep="any"), extra


def is_uri(location: str | Path) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


class RecordStore:
    """A run directory's records, on a local disk or an object store."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = str(run_dir).rstrip("/")
        self.remote = is_uri(self.run_dir)
        if self.remote:
            self._fs, self._root = pyarrow.fs.FileSystem.from_uri(self.run_dir)
        else:
            local = self.run_dir.removeprefix("file://")
            self._fs, self._root = pyarrow.fs.LocalFileSystem(), str(Path(local).resolve())
        self.records_dir = f"{self._root}/records"
        self.lease: Lease | None = None  # set while a RunLease is held: writes check it
        self.skipped_parts: list[tuple[str, str]] = []  # (path, why) of the last `parts()`
        self.part_sizes: dict[str, int] = {}  # bytes of each part listed so far (parts are immutable)
        self.part_rows: dict[str, int] = {}  # rows of each readable part listed so far (from its footer)

    def __repr__(self) -> str:
        return f"RecordStore({self.run_dir!r})"

    def _uri(self, path: str) -> str:
        """A filesystem path of this store as the user names it (``s3://bucket/...``)."""
        if not self.remote or "://" in path:
            return path
        return f"{self.run_dir.split('://', 1)[0]}://{path}"

    # ------------------------------------------------------------------ reading
    def parts(self) -> list[str]:
        """Paths of the complete, readable parts (filesystem paths, without the URI scheme),
        minus those a compaction has replaced (`idard.bench.store.compact` says when that is).

        Unreadable parts are left out and listed, with why, in `skipped_parts`; each part
        is checked once per process (its footer), since parts never change.
        """
        return consistent_parts(self, self._listed_parts)

    def _listed_parts(self) -> list[str]:
        """Every complete, readable part file present, replaced or not."""
        try:
            selector = pyarrow.fs.FileSelector(self.records_dir, allow_not_found=True)
            infos = self._fs.get_file_info(selector)
        except OSError as exc:
            raise StoreWriteError(f"{self._uri(self.records_dir)}: cannot list records ({store_problem(exc)})") from None
        good, self.skipped_parts = [], []
        for info in sorted(infos, key=lambda i: i.path):
            name = Path(info.path).name
            if info.type != pyarrow.fs.FileType.File or not (name.startswith("part-") and name.endswith(".parquet")):
                continue
            key = (info.path, int(info.size or 0))
            self.part_sizes[info.path] = key[1]
            if key not in _CHECKED:
                _CHECKED[key] = _inspect_part(self._fs, info.path, key[1])
            problem, self.part_rows[info.path] = _CHECKED[key]
            if problem is None:
                good.append(info.path)
            else:
                self.skipped_parts.append((info.path, problem))
        return good

    def quarantine(self) -> list[tuple[str, str]]:
        """Move the files readers left out (`skipped_parts`: unreadable parts, late parts
        of a displaced holder, untrusted manifests) to ``records/quarantine/``; returns
        (new path, why).

        Only the lease holder calls this: the parts' keys are then missing from the store,
        so the plan recomputes them, and the files stay for whoever wants to look.
        """
        self.parts()
        moved = [(self.set_aside(path), why) for path, why in self.skipped_parts]
        self.skipped_parts = []
        return moved

    def set_aside(self, path: str) -> str:
        """Move one file of ``records/`` to ``records/quarantine/``; returns its new path."""
        self.check_lease()
        target = f"{self.records_dir}/{QUARANTINE}/{Path(path).name}"
        if self.remote:
            self._fs.create_dir(target.rsplit("/", 1)[0], recursive=True)  # hierarchical stores need it
            self._fs.move(path, target)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
        return target

    def scan(self, parts: list[str] | None = None) -> pl.LazyFrame:
        """All records, lazily (only the columns and rows a query needs are read).

        The parts are listed once, here (or given, as listed by `parts`): however many
        passes a query makes, it reads the same snapshot while a writer adds parts.
        """
        parts = self.parts() if parts is None else parts
        if not parts:
            return pl.LazyFrame(schema=STORE_SCHEMA)
        if not self.remote:
            # parts written before a column existed (e.g. ``converged``) read it as null
            return pl.scan_parquet(parts, schema=STORE_SCHEMA, missing_columns="insert")
        import pyarrow.dataset

        dataset = pyarrow.dataset.dataset(parts, format="parquet", filesystem=self._fs)
        return pl.scan_pyarrow_dataset(dataset)

    def scan_batches(self, max_mb: float = 32.0) -> Iterator[pl.LazyFrame]:
        """All records as lazy scans of consecutive parts about ``max_mb`` on disk each (a
        larger part alone), for one pass in bounded memory: Polars' streaming engine
        prefetches a whole multi-part scan's row groups ahead of a cheap computation (a
        10 M-record pass over five key columns peaks 1 GB above its 0.1 GB result)."""
        parts = self.parts()  # sizes come with the listing: no request per part on an object store
        limit = int(max_mb * 2**20)
        batch: list[str] = []
        size = 0
        for path in parts:
            if batch and size + self.part_sizes[path] > limit:
                yield self.scan(batch)
                batch, size = [], 0
            batch.append(path)
            size += self.part_sizes[path]
        if batch or not parts:
            yield self.scan(batch)

    def count(self) -> int:
        return self.scan().select(pl.len()).collect().item()

    def duplicate_keys(self) -> pl.DataFrame:
        """Keys held more than once (empty when the store is sound)."""
        return (
            self.scan().group_by(KEY_COLUMNS).agg(pl.len().alias("copies"))
            .filter(pl.col("copies") > 1).collect(engine="streaming")
        )

    # ------------------------------------------------------------------ writing
    def append(self, records: pl.DataFrame, suite_hash: str = "") -> str | None:
        """Write ``records`` as one new part; returns its path (None when empty).

        Missing provenance columns are filled in; the column order and types are fixed
        by `STORE_SCHEMA`, so parts written by any version of the runner concatenate.
        """
        if records.is_empty():
            return None
        now = dt.datetime.now(dt.timezone.utc)
        fill = {
            "suite_hash": pl.lit(suite_hash, dtype=pl.String),
            "worker": pl.lit(None, dtype=pl.String),
            "written_at": pl.lit(now, dtype=pl.Datetime("us", "UTC")),
        }
        frame = records.select([
            pl.col(c).cast(t) if c in records.columns else fill.get(c, pl.lit(None, dtype=t)).alias(c)
            for c, t in STORE_SCHEMA.items()
        ])
        name = f"part-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}{self.writer_suffix()}.parquet"
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        return self._put(f"{self.records_dir}/{name}", buffer.getvalue(), partial=f"{self.records_dir}/.{name}.tmp")

    def writer_suffix(self) -> str:
        """``.<token8>`` of the lease held, for the names of new parts (`part_writer`): a
        successor that takes the lease over fences the parts of that token it finds, and
        readers leave out any part of it that lands later."""
        return f".{self.lease.token[:8]}" if self.lease is not None else ""

    def fence(self, token: str) -> str:
        """After taking over the lease of ``token``: record which of its parts exist now
        (``records/fence-<token8>.json``), so that a part its displaced holder lands later
        (a PUT in flight when it stalled) is left out by readers instead of doubling keys
        the successor computes. Written even when it lists no part: the displaced
        holder's first PUT may be the one in flight. Returns the fence's path."""
        writer = token[:8]
        # Complete, readable parts only: a part being written when its holder stopped (a
        # file already there on a filesystem, not yet whole) must not be let in by name.
        names = sorted(name for name in (Path(p).name for p in self._listed_parts()) if part_writer(name) == writer)
        target = f"{self.records_dir}/{FENCE_PREFIX}{writer}.json"
        body = json.dumps({"writer": writer, "parts": names,
                           "created": dt.datetime.now(dt.timezone.utc).isoformat()}).encode()
        return self._put(target, body, partial=f"{self.records_dir}/.{FENCE_PREFIX}{writer}.json.tmp")

    def is_fenced(self, token: str) -> bool:
        """Whether a successor fenced ``token`` (`fence`): its holder was displaced and
        every part it writes from now on is left out, so it must stop."""
        target = f"{self.records_dir}/{FENCE_PREFIX}{token[:8]}.json"
        if self.remote:
            return self._fs.get_file_info(target).type != pyarrow.fs.FileType.NotFound
        return os.path.exists(target)

    def remove_partials(self, min_age_s: float = PARTIAL_MIN_AGE_S) -> int:
        """Delete temporary files left by a killed writer; call holding the lease.

        Only files older than ``min_age_s`` go: a write takes well under a second, so a
        younger one may be a live writer's (the lease keeps out other runs, but a reader
        must never be able to break a writer by mistake).
        """
        if self.remote:
            return 0
        folder = Path(self.records_dir)
        partials = list(folder.glob(".part-*.parquet.tmp")) if folder.is_dir() else []
        removed = 0
        for path in partials:
            try:
                if time.time() - path.stat().st_mtime < min_age_s:
                    continue
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue  # its writer renamed it meanwhile
        return removed

    def read_bytes(self, name: str) -> bytes:
        """A small file beside the records; `FileNotFoundError` when there is none."""
        target = f"{self._root}/{name}"
        if not self.remote:
            return Path(target).read_bytes()
        if self._fs.get_file_info(target).type != pyarrow.fs.FileType.File:
            raise FileNotFoundError(target)
        with self._fs.open_input_stream(target) as stream:
            return stream.read()

    def read_text(self, name: str) -> str | None:
        """A small text file beside the records (``run.json``), or None when absent."""
        target = f"{self._root}/{name}"
        try:
            with self._fs.open_input_stream(target) as stream:
                return stream.read().decode()
        except (FileNotFoundError, OSError):
            return None

    def drop_records(self, predicate: pl.Expr) -> int:
        """Remove the records matching ``predicate`` (``--retry-errors``,
        ``--recompute-changed``); returns how many were removed.

        Each part holding such records is replaced, in one atomic step (rename on a disk,
        one PUT on an object store), by a part with the other records: a crash leaves the
        old part or the new one, never both, so no key is ever held twice and nothing
        else is lost. Must run before the run writes (one writer per run directory).
        """
        removed = 0
        for part in self.parts():
            frame = self.scan([part]).collect()
            keep = frame.filter(~predicate.fill_null(False))
            if keep.height == frame.height:
                continue
            removed += frame.height - keep.height
            self.replace_part(part, keep)
        return removed

    def replace_part(self, part: str, records: pl.DataFrame) -> None:
        """Replace one part's records in one atomic step (rename, or one PUT); an empty
        frame deletes the part. For rewrites before a run writes (`drop_records`, migrate)."""
        if records.is_empty():
            self.check_lease()
            self.delete(part)
            return
        buffer = io.BytesIO()
        records.write_parquet(buffer)
        name = part.rsplit("/", 1)[-1]
        self._put(part, buffer.getvalue(), partial=f"{self.records_dir}/.{name}.tmp")

    def write_text(self, name: str, text: str) -> str:
        """A small text file beside the records (suite copy, run metadata), atomically."""
        return self.write_bytes(name, text.encode())

    def write_bytes(self, name: str, data: bytes) -> str:
        """A small file beside the records (tables, metadata), atomically; returns where it
        is as a user names it: a path on disk, the full URI on an object store (the
        filesystem's own ``bucket/key`` is not something to paste into a command)."""
        target = f"{self._root}/{name}"
        written = self._put(target, data, partial=f"{target}.tmp")
        return f"{self.run_dir}/{name}" if self.remote else written

    def check_lease(self, read: bool = True) -> None:
        """Raise `LeaseLost` if this process held the lease and may no longer write
        (`RunLease.check`; ``read=False`` skips the GET of the lease, for a batch of
        deletions after one full check). A store without a lease writes unchecked."""
        if self.lease is not None:
            self.lease.check(read=read)

    def delete(self, path: str) -> None:
        """Delete one file of the run (a replaced part, a finished manifest), checking the
        lease's validity first; a file already gone is fine."""
        self.check_lease(read=False)
        try:
            self._fs.delete_file(path)
        except FileNotFoundError:
            pass

    def _put(self, target: str, data: bytes, partial: str) -> str:
        """Write ``data`` so that readers see all of it or nothing: one PUT on an object
        store; on a disk, ``partial`` written and fsynced, then renamed (atomic).

        Checks the lease as the last step before the write becomes visible (a holder
        that may have lost its lease must not write; the later the check, the smaller the
        window a stall can slip through, see `idard.bench.store.lease`), and
        turns a failed write (disk full, read-only, not a folder) into a one-line
        `StoreWriteError` naming the file; a partial file is removed, never left half.
        """
        try:
            if self.remote:
                # Object stores need no folders, but hierarchical ones (HDFS, Azure with a
                # hierarchical namespace, pyarrow's mock://) refuse a file in a missing folder.
                self._fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                self.check_lease()  # the last step before the PUT: see idard.bench.store.lease
                with self._fs.open_output_stream(target) as stream:
                    stream.write(data)
                return target
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                with open(partial, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())  # on disk before the rename makes it visible
                self.check_lease()  # the last step before the rename makes it visible
                os.replace(partial, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
                raise
        except OSError as exc:
            raise StoreWriteError(f"{self._uri(target)}: cannot write ({store_problem(exc)})") from None
        return target
