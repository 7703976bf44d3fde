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

The rule readers apply (`visible_parts`, which `RecordStore.parts` calls): a part named
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
replaced parts and then the manifest are deleted. Only one process may compact or write a
run at a time (the run's driver does both); see the run-directory lease.

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
from pathlib import Path, PurePosixPath

import polars as pl
import pyarrow.fs

from idard.bench.store import RecordStore

MANIFEST_PREFIX = "compaction-"
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


def _name(path: str) -> str:
    return PurePosixPath(path).name


def read_manifests(store: RecordStore) -> dict[str, dict]:
    """Manifest file name -> its content, for every complete manifest of ``store``."""
    selector = pyarrow.fs.FileSelector(store.records_dir, allow_not_found=True)
    out = {}
    for info in store._fs.get_file_info(selector):
        name = _name(info.path)
        if info.type != pyarrow.fs.FileType.File or not name.startswith(MANIFEST_PREFIX) or not name.endswith(".json"):
            continue
        try:
            with store._fs.open_input_stream(info.path) as stream:
                out[name] = json.loads(stream.read())
        except FileNotFoundError:  # deleted (step 4) since the listing: it hides nothing
            continue
    return out


def visible_parts(listed: list[str], manifests: dict[str, dict]) -> list[str]:
    """The parts a reader reads: ``listed`` minus those replaced by a manifest whose new
    part is itself listed (see the module docstring)."""
    present = {_name(p) for p in listed}
    hidden = set()
    for manifest in manifests.values():
        if manifest.get("part") in present:
            hidden.update(manifest.get("replaces", []))
    return [p for p in listed if _name(p) not in hidden]


def consistent_parts(store: RecordStore, list_parts) -> list[str]:
    """``list_parts()`` filtered by the manifests, both taken at the same instant."""
    for _ in range(100):
        before = read_manifests(store)
        listed = list_parts()
        after = read_manifests(store)
        if before.keys() == after.keys():
            return visible_parts(listed, after)
        time.sleep(0.01)
    raise RuntimeError(f"{store.records_dir}: compaction manifests keep changing; is a compaction looping?")


def _delete(store: RecordStore, path: str) -> None:
    try:
        store._fs.delete_file(path)
    except FileNotFoundError:
        pass


def recover(store: RecordStore) -> int:
    """Finish or drop what a killed compaction left; returns the manifests handled."""
    manifests = read_manifests(store)
    listed = {_name(p) for p in store._listed_parts()}
    for name, manifest in manifests.items():
        if manifest.get("part") in listed:  # committed: finish steps 3 and 4
            for old in manifest.get("replaces", []):
                _delete(store, f"{store.records_dir}/{old}")
        _delete(store, f"{store.records_dir}/{name}")  # inert or finished: nothing left to hide
    store.remove_partials()
    if not store.remote:
        for stale in Path(store.records_dir).glob(f".{MANIFEST_PREFIX}*.json.tmp"):
            stale.unlink(missing_ok=True)
    return len(manifests)


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


def _compacted_name(first: str) -> str:
    """A new part name sorting where ``first`` did: its stamp, a fresh suffix."""
    stem = _name(first).removesuffix(".parquet")
    prefix = stem.rsplit("-", 1)[0] if stem.count("-") >= 2 else stem
    return f"{prefix}-c{uuid.uuid4().hex[:11]}.parquet"


def compact(store: RecordStore, target_mb: float = TARGET_MB) -> CompactResult:
    """Rewrite ``store``'s small parts into parts of about ``target_mb``, crash-safely."""
    started = time.perf_counter()
    recovered = recover(store)
    parts = store.parts()
    if not parts:
        raise FileNotFoundError(f"{store.run_dir}: no records to compact (no part-*.parquet under {store.records_dir})")
    target = int(target_mb * 2**20)
    runs = _chunks([(p, store.part_sizes[p]) for p in parts], target)
    records = 0
    for run in runs:
        frame = store.scan(run).collect()
        name = _compacted_name(run[0])
        manifest = {"part": name, "replaces": [_name(p) for p in run], "rows": frame.height,
                    "created": dt.datetime.now(dt.timezone.utc).isoformat()}
        manifest_path = f"{store.records_dir}/{MANIFEST_PREFIX}{uuid.uuid4().hex}.json"
        store._put(manifest_path, json.dumps(manifest).encode(), partial=f"{store.records_dir}/.{_name(manifest_path)}.tmp")
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        target_path = f"{store.records_dir}/{name}"
        store._put(target_path, buffer.getvalue(), partial=f"{store.records_dir}/.{name}.tmp")
        for old in run:
            _delete(store, old)
        _delete(store, manifest_path)
        records += frame.height
    return CompactResult(
        parts_before=len(parts), parts_after=len(store.parts()), rewritten=sum(len(r) for r in runs),
        written=len(runs), records=records, recovered=recovered, seconds=time.perf_counter() - started,
    )


def compact_if_many(store: RecordStore, threshold: int = AUTO_COMPACT_PARTS) -> CompactResult | None:
    """`compact` when the store holds more than ``threshold`` parts (what ``run`` does)."""
    return compact(store) if len(store.parts()) > threshold else None


if __name__ == "__main__":  # ``python -m idard.bench.compact RUN [TARGET_MB]``: no CLI imports
    result = compact(RecordStore(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else TARGET_MB)
    print(json.dumps(dataclasses.asdict(result)))
