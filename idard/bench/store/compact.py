"""Compaction: many small record parts rewritten as few large ones, safe to kill at any point.

A long run flushes a part every ``--flush-records`` records, so ten million records are
thousands of parts, and every plan and report lists and opens them all (on 2 cores, the
per-file cost is most of a report's read time: benchmark/report_scale.py). Compaction
concatenates runs of consecutive small parts into parts of about ``target_mb`` each.

Readers must never see a record twice or miss one, whenever the compaction is killed.
Each compacted part ``N`` replacing parts ``O1..Ok`` is committed in four steps, each
atomic (a rename on a disk, one PUT or DELETE on an object store):

1. a manifest ``records/compaction-<id>.json`` naming ``N`` and ``O1..Ok``;
2. ``N`` itself (written to a temporary name, fsynced, renamed);
3. ``O1..Ok`` deleted;
4. the manifest deleted.

The rule readers apply (`idard.bench.store.visibility`, which `RecordStore.parts` calls): a part named
as replaced by a manifest is hidden if and only if that manifest's new part exists.
Before step 2 the manifest is inert (its new part is absent): the old parts are read.
From step 2 on the new part is read and the old ones, while they still exist, are not.
After step 4 the new part is an ordinary part. So at every instant the visible parts hold
each record exactly once. A reader lists the manifests, then the parts, then the
manifests again, and starts over if a manifest came or went in between, so its listing
and the manifests it applies belong to the same instant. A reader that already listed
parts can still find one deleted by step 3 before it opens it: it then fails (file not
found) rather than read wrong numbers, and a second attempt succeeds.

The next compaction (or ``idard-bench compact``) first finishes what a killed one left:
inert manifests are deleted (their part never became visible), and for committed ones the
replaced parts and then the manifest are deleted, once every key of each replaced part is
found in the new part. Only one process may compact or write a run at a time (the run's
driver does both; `compact` takes the run-directory lease when its caller holds none).

A manifest is trusted only when it could have been written by a compaction: a JSON object
whose ``part`` and ``replaces`` are plain part names of its own ``records/`` folder (no
separators: a manifest can never name a file elsewhere), whose ``rows`` is the new part's
row count from its footer, and whose replaced parts still present hold no more rows than
that. Any other manifest hides nothing and deletes nothing: readers name it and leave it
out, and the lease holder moves it to ``records/quarantine/``.

Fences (``records/fence-<token8>.json``, written by `RecordStore.fence` when a lease is
taken over) are read with the manifests: a part written under a fenced lease token that
the fence does not list landed after the takeover, and readers leave it out.

A compacted part keeps its records in the order of the parts it replaces and takes the
name stamp of the first of them, so the order of records in a scan does not change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import sys
import time
import uuid
from pathlib import Path

import polars as pl

from idard.bench.store.lease import holding
from idard.bench.store.records import RecordStore
from idard.bench.store.visibility import MANIFEST_PREFIX, _name, read_manifests

#: Size a compacted part aims at: some 1.2 M records of the usual schema (27 B/record).
TARGET_MB = 32.0
#: ``idard-bench run`` compacts its run directory when it holds more parts than this.
AUTO_COMPACT_PARTS = 256


@dataclasses.dataclass(frozen=True)
class CompactResult:
    parts_before: int
    parts_after: int
    rewritten: int  # old parts replaced
    written: int  # compacted parts written
    records: int  # records moved into compacted parts
    recovered: int  # manifests of an interrupted compaction finished or dropped
    seconds: float
    set_aside: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (new path, why): quarantined


def _delete(store: RecordStore, path: str) -> None:
    store.delete(path)


def _keys_covered(store: RecordStore, part: str, replaced: list[str]) -> bool:
    """Every key of the ``replaced`` parts still present is in ``part`` (read, not trusted)."""
    if not replaced:
        return True
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.records import KEY_COLUMNS

    new = store.scan([part]).select(KEY_COLUMNS)
    old = store.scan(replaced).select(KEY_COLUMNS)
    return old.join(new, on=list(KEY_COLUMNS), how="anti", nulls_equal=True).select(pl.len()).collect().item() == 0


def recover(store: RecordStore) -> tuple[int, list[tuple[str, str]]]:
    """Finish or drop what a killed compaction left, and set aside (``records/quarantine/``)
    every file readers leave out, untrustworthy manifests among them, which are never acted
    on. Returns the manifests handled and (new path, why) of each file set aside."""
    store.parts()  # names the manifests readers would not trust
    distrusted = {_name(path) for path, _ in store.skipped_parts}
    manifests = {n: m for n, m in read_manifests(store).items() if n not in distrusted}
    listed = {_name(p): p for p in store._listed_parts()}
    handled, mismatched = 0, []
    for name, manifest in manifests.items():
        if manifest["part"] in listed:  # committed: finish steps 3 and 4
            replaced = [listed[old] for old in manifest["replaces"] if old in listed]
            if not _keys_covered(store, listed[manifest["part"]], replaced):
                mismatched.append((f"{store.records_dir}/{name}", "compaction manifest whose part lacks keys of "
                                   "the parts it replaces; it hides and deletes nothing"))
                continue
            store.check_lease()
            for old in replaced:
                _delete(store, old)
        _delete(store, f"{store.records_dir}/{name}")  # inert or finished: nothing left to hide
        handled += 1
    store.remove_partials()
    if not store.remote:
        for stale in Path(store.records_dir).glob(f".{MANIFEST_PREFIX}*.json.tmp"):
            stale.unlink(missing_ok=True)
    moved = [(store.set_aside(path), why) for path, why in mismatched]
    return handled, moved + store.quarantine()


def _chunks(parts: list[tuple[str, int]], target: int) -> list[list[str]]:
    """Runs of consecutive parts smaller than half the target, each summing to at most the
    target (runs of a single part are left alone: rewriting it would gain nothing)."""
    runs: list[list[str]] = []
    current: list[str] = []
    size = 0
    for path, nbytes in parts:
        if nbytes >= target // 2 or size + nbytes > target:
            if len(current) > 1:
                runs.append(current)
            current, size = [], 0
        if nbytes < target // 2:
            current.append(path)
            size += nbytes
    if len(current) > 1:
        runs.append(current)
    return runs


def _compacted_name(first: str, writer_suffix: str = "") -> str:
    """A new part name sorting where ``first`` did: its stamp, a fresh id, this writer's
    lease token (`RecordStore.writer_suffix`)."""
    stem = _name(first).removesuffix(".parquet").split(".", 1)[0]
    prefix = stem.rsplit("-", 1)[0] if stem.count("-") >= 2 else stem
    return f"{prefix}-c{uuid.uuid4().hex[:11]}{writer_suffix}.parquet"


def compact(store: RecordStore, target_mb: float = TARGET_MB) -> CompactResult:
    """Rewrite ``store``'s small parts into parts of about ``target_mb``, crash-safely,
    holding the run directory's lease (the caller's, or its own while it compacts)."""
    with holding(store, "idard-bench compact"):
        return _compact(store, target_mb)


def _compact(store: RecordStore, target_mb: float) -> CompactResult:
    started = time.perf_counter()
    recovered, set_aside = recover(store)
    parts = store.parts()
    if not parts:
        raise FileNotFoundError(f"{store.run_dir}: no records to compact (no part-*.parquet under {store.records_dir})")
    target = int(target_mb * 2**20)
    runs = _chunks([(p, store.part_sizes[p]) for p in parts], target)
    records = 0
    for run in runs:
        frame = store.scan(run).collect()
        name = _compacted_name(run[0], store.writer_suffix())
        manifest = {"part": name, "replaces": [_name(p) for p in run], "rows": frame.height,
                    "created": dt.datetime.now(dt.timezone.utc).isoformat()}
        manifest_path = f"{store.records_dir}/{MANIFEST_PREFIX}{uuid.uuid4().hex}.json"
        store._put(manifest_path, json.dumps(manifest).encode(), partial=f"{store.records_dir}/.{_name(manifest_path)}.tmp")
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        target_path = f"{store.records_dir}/{name}"
        store._put(target_path, buffer.getvalue(), partial=f"{store.records_dir}/.{name}.tmp")
        store.check_lease()
        for old in run:
            _delete(store, old)
        _delete(store, manifest_path)
        records += frame.height
    return CompactResult(
        parts_before=len(parts), parts_after=len(store.parts()), rewritten=sum(len(r) for r in runs),
        written=len(runs), records=records, recovered=recovered, seconds=time.perf_counter() - started,
        set_aside=set_aside,
    )


def compact_if_many(store: RecordStore, threshold: int = AUTO_COMPACT_PARTS) -> CompactResult | None:
    """`compact` when the store holds more than ``threshold`` parts (what ``run`` does)."""
    return compact(store) if len(store.parts()) > threshold else None


if __name__ == "__main__":  # ``python -m idard.bench.store.compact RUN [TARGET_MB]``: no CLI imports
    result = compact(RecordStore(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else TARGET_MB)
    print(json.dumps(dataclasses.asdict(result)))
