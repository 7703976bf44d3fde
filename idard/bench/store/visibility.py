"""Which parts a reader reads: the rule of compaction manifests and lease fences.

Kept apart from compaction (`idard.bench.store.compact`, the writer of manifests) and from
`RecordStore` (which applies this rule in `RecordStore.parts`), so that both import it and
neither imports the other: reading a run never needs the code that rewrites one. The
rule itself, and why it shows each record exactly once at every instant, is in
`idard.bench.store.compact`'s docstring.
"""

from __future__ import annotations

import json
import time
from pathlib import PurePosixPath
from collections.abc import Callable
from typing import Protocol

import pyarrow.fs

MANIFEST_PREFIX = "compaction-"
FENCE_PREFIX = "fence-"


class Listing(Protocol):
    """What the rule reads of a `idard.bench.store.records.RecordStore` (which passes itself)."""

    _fs: pyarrow.fs.FileSystem
    records_dir: str
    part_rows: dict[str, int]
    skipped_parts: list[tuple[str, str]]


def part_writer(name: str) -> str | None:
    """The lease token (its first 8 hex digits) a part was written under, from its name
    ``part-<time>-<id>.<token8>.parquet``; None for parts written without a lease."""
    stem = name.removesuffix(".parquet")
    return stem.rsplit(".", 1)[1] if "." in stem else None


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


def _read_json(store: Listing, path: str) -> tuple[object, str | None]:
    """A small JSON file's content, or why it has none; FileNotFoundError passes."""
    with store._fs.open_input_stream(path) as stream:
        raw = stream.read()
    try:
        return json.loads(raw), None
    except ValueError as exc:
        return None, f"not JSON ({exc})"


def read_control_files(store: Listing) -> tuple[dict[str, dict], dict[str, set[str]], list[tuple[str, str]]]:
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


def read_manifests(store: Listing) -> dict[str, dict]:
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


def consistent_parts(store: Listing, list_parts: Callable[[], list[str]]) -> list[str]:
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
