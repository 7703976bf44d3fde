"""The record store of a run: immutable Parquet parts under ``RUN_DIR/records/``.

Records are the source of truth of every table, so the store is built so that no crash
can damage them:

* Each flush writes a new part, ``part-<time>-<uuid>.parquet``. On a local disk it is
  written as ``.part-*.parquet.tmp`` and renamed, and a rename is atomic, so a reader
  sees a whole part or none. On an object store (``s3://``, ``gs://``) one PUT of an
  object is atomic by itself. A crash loses at most the records not yet flushed.
* Parts are never modified; readers glob ``part-*.parquet`` only, so a leftover temporary
  file from a killed writer is ignored (and removed by the next writer).
* Exactly one process writes a run's records at a time: the run's driver. The planner
  subtracts what the store holds before scheduling, so re-running never writes a key
  twice. `RecordStore.duplicate_keys` checks the invariant.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid
from pathlib import Path

import polars as pl
import pyarrow.fs

from idard.measure.records import KEY_COLUMNS, RECORD_SCHEMA

#: The per-sample record schema of the measure, plus run provenance.
STORE_SCHEMA: dict[str, pl.DataType] = {
    **RECORD_SCHEMA,
    "suite_hash": pl.String,
    "worker": pl.String,
    "written_at": pl.Datetime("us", "UTC"),
}
PART_GLOB = "part-*.parquet"


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

    def __repr__(self) -> str:
        return f"RecordStore({self.run_dir!r})"

    # ------------------------------------------------------------------ reading
    def parts(self) -> list[str]:
        """Paths of the complete parts (filesystem paths, without the URI scheme)."""
        selector = pyarrow.fs.FileSelector(self.records_dir, allow_not_found=True)
        infos = self._fs.get_file_info(selector)
        names = [i.path for i in infos if i.type == pyarrow.fs.FileType.File]
        return sorted(p for p in names if Path(p).name.startswith("part-") and p.endswith(".parquet"))

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
        name = f"part-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        return self._put(f"{self.records_dir}/{name}", buffer.getvalue(), partial=f"{self.records_dir}/.{name}.tmp")

    def remove_partials(self) -> int:
        """Delete temporary files left by a killed writer; call before writing."""
        if self.remote:
            return 0
        folder = Path(self.records_dir)
        stale = list(folder.glob(".part-*.parquet.tmp")) if folder.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

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
            self._fs.delete_file(part)
            return
        buffer = io.BytesIO()
        records.write_parquet(buffer)
        name = part.rsplit("/", 1)[-1]
        self._put(part, buffer.getvalue(), partial=f"{self.records_dir}/.{name}.tmp")

    def write_text(self, name: str, text: str) -> str:
        """A small text file beside the records (suite copy, run metadata), atomically."""
        return self.write_bytes(name, text.encode())

    def write_bytes(self, name: str, data: bytes) -> str:
        """A small file beside the records (tables, metadata), atomically; returns its path."""
        target = f"{self._root}/{name}"
        return self._put(target, data, partial=f"{target}.tmp")

    def _put(self, target: str, data: bytes, partial: str) -> str:
        """Write ``data`` so that readers see all of it or nothing: one PUT on an object
        store; on a disk, ``partial`` written and fsynced, then renamed (atomic)."""
        if self.remote:
            with self._fs.open_output_stream(target) as stream:
                stream.write(data)
            return target
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(partial, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename makes it visible
        os.replace(partial, target)
        return target
