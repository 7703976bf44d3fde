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
from pathlib import Path, PurePosixPath

import polars as pl
import pyarrow.fs

from idard.bench.store import FENCE_PREFIX, RecordStore, part_writer

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
    set_aside: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (new path, why): quarantined


def _name(path: str) -> str:
    return PurePosixPath(path).name


def _plain_part_name(name: object) -> bool:
    """A part file name of this ``records/`` folder: no separators, no way out of it."""
    return (isinstance(name, str) and name.startswith("part-") and name.endswith(".parquet")
            and "/" not in name and "\\" not in name and ".." not in name)


def manifest_problem(manifest: object) -> str | None:
    """Why ``manifest`` is not a compaction manifest (None when its form is sound)."""
    if not isinstance(manifest, dict):
        return f"not a JSON object but a {type(manifest).__name__}"
    part, replaces, rows = manifest.get("part"), manifest.get("replaces"), manifest.get("rows")
    if not _plain_part_name(part):
        return f"part {part!r} is not a part name of this records/ folder"
    if not isinstance(replaces, list) or not replaces:
        return "replaces is not a list of part names"
    strange = [r for r in replaces if not _plain_part_name(r)]
    if strange:
        return f"replaces {strange[0]!r}, not a part name of this records/ folder"
    if part in replaces or len(set(replaces)) != len(replaces):
        return "replaces its own part, or one part twice"
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        return f"rows {rows!r} is not a count"
    return None


def fence_problem(fence: object) -> str | None:
    """Why ``fence`` is not a lease fence (None when its form is sound)."""
    if not isinstance(fence, dict) or not isinstance(fence.get("writer"), str):
        return "not a fence (a JSON object naming a writer)"
    parts = fence.get("parts")
    if not isinstance(parts, list) or not all(_plain_part_name(p) for p in parts):
        return "parts is not a list of part names of this records/ folder"
    return None


def _read_json(store: RecordStore, path: str) -> tuple[object, str | None]:
    """A small JSON file's content, or why it has none; FileNotFoundError passes."""
    with store._fs.open_input_stream(path) as stream:
        raw = stream.read()
    try:
        return json.loads(raw), None
    except ValueError as exc:
        return None, f"not JSON ({exc})"


def read_control_files(store: RecordStore) -> tuple[dict[str, dict], dict[str, set[str]], list[tuple[str, str]]]:
    """One listing of ``records/``: the sound manifests (file name -> content), the fences
    (writer -> the parts it may have written), and (path, why) of those not sound."""
    selector = pyarrow.fs.FileSelector(store.records_dir, allow_not_found=True)
    manifests, fences, bad = {}, {}, []
    for info in store._fs.get_file_info(selector):
        name = _name(info.path)
        if info.type != pyarrow.fs.FileType.File or not name.endswith(".json"):
            continue
        if not name.startswith((MANIFEST_PREFIX, FENCE_PREFIX)):
            continue
        try:
            content, why = _read_json(store, info.path)
        except FileNotFoundError:  # deleted (step 4) since the listing: it hides nothing
            continue
        if name.startswith(MANIFEST_PREFIX):
            why = why or manifest_problem(content)
            if why is None:
                manifests[name] = content
        else:
            why = why or fence_problem(content)
            if why is None:
                fences[content["writer"]] = set(content["parts"])
        if why is not None:
            kind = "compaction manifest" if name.startswith(MANIFEST_PREFIX) else "lease fence"
            bad.append((info.path, f"{kind} {why}; it hides and deletes nothing"))
    return manifests, fences, bad


def read_manifests(store: RecordStore) -> dict[str, dict]:
    """Manifest file name -> its content, for every sound manifest of ``store``."""
    return read_control_files(store)[0]


def _inconsistency(manifest: dict, rows: dict[str, int]) -> str | None:
    """Why a committed manifest disagrees with the parts it names (``rows``: name -> rows
    of each readable part listed), or None: the new part holds the rows it says, and the
    replaced parts still present hold no more than that."""
    if rows[manifest["part"]] != manifest["rows"]:
        return f"says its part holds {manifest['rows']} rows, its footer says {rows[manifest['part']]}"
    replaced = sum(rows[r] for r in manifest["replaces"] if r in rows)
    if replaced > manifest["rows"]:
        return f"replaces parts holding {replaced} rows with a part of {manifest['rows']}"
    return None


def visible_parts(listed: list[str], manifests: dict[str, dict], rows: dict[str, int] | None = None,
                  fences: dict[str, set[str]] | None = None,
                  rejected: list[tuple[str, str]] | None = None) -> list[str]:
    """The parts a reader reads: ``listed`` minus parts fenced out (written under a lease
    token after its takeover) and those replaced by a manifest whose new part is itself
    listed and agrees with them (see the module docstring). What was left out for a
    reason other than compaction is appended to ``rejected`` as (name, why)."""
    fences = fences or {}
    rejected = rejected if rejected is not None else []
    kept = []
    for path in listed:
        writer = part_writer(_name(path))
        if writer in fences and _name(path) not in fences[writer]:
            rejected.append((path, f"written under lease {writer} after that lease was taken over"))
        else:
            kept.append(path)
    present = {_name(p) for p in kept}
    rows = rows if rows is not None else {}
    hidden = set()
    for name, manifest in manifests.items():
        if manifest["part"] not in present:
            continue  # inert: its part was never written
        why = _inconsistency(manifest, rows) if manifest["part"] in rows else None
        if why is not None:
            rejected.append((name, f"compaction manifest {why}; it hides and deletes nothing"))
            continue
        hidden.update(manifest["replaces"])
    return [p for p in kept if _name(p) not in hidden]


def consistent_parts(store: RecordStore, list_parts) -> list[str]:
    """``list_parts()`` filtered by the manifests and fences, all taken at the same instant;
    files left out as untrustworthy are added to ``store.skipped_parts``."""
    for _ in range(100):
        before, _, _ = read_control_files(store)
        listed = list_parts()
        after, fences, bad = read_control_files(store)
        if before.keys() == after.keys():
            rows = {_name(p): store.part_rows[p] for p in listed}
            rejected: list[tuple[str, str]] = []
            visible = visible_parts(listed, after, rows, fences, rejected)
            store.skipped_parts.extend(bad)
            store.skipped_parts.extend(
                (f"{store.records_dir}/{name}" if "/" not in name else name, why) for name, why in rejected)
            return visible
        time.sleep(0.01)
    raise RuntimeError(f"{store.records_dir}: compaction manifests keep changing; is a compaction looping?")


def _delete(store: RecordStore, path: str) -> None:
    store.delete(path)


def _keys_covered(store: RecordStore, part: str, replaced: list[str]) -> bool:
    """Every key of the ``replaced`` parts still present is in ``part`` (read, not trusted)."""
    if not replaced:
        return True
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
    from idard.bench.lease import holding

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


if __name__ == "__main__":  # ``python -m idard.bench.compact RUN [TARGET_MB]``: no CLI imports
    result = compact(RecordStore(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else TARGET_MB)
    print(json.dumps(dataclasses.asdict(result)))
