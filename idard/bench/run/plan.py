"""Planning: a suite, minus what the record store holds, grouped into work units.

A task is one record key (image, downscaler, model, metric, seed). The plan expands the
suite into all of them, removes the keys already in the store (each held key coded as its
integer position in the suite's grid of keys, streaming, so the store may hold tens of
millions of records in bounded memory; see `missing_keys`), and groups the rest by (image,
model): one work unit decodes its HR image once, downscales it once per downscaler and
draws all the seeds it needs in one batched model call, on one worker. An image whose
keys take several model calls (more LR images x seeds than the suite's ``max_batch``) is
split into one unit per call (`split_by_batch`), so progress moves per batch and several
workers share a large image.

Identity: a model's id says its family, weights file name and temperature, so a new heat
is a new model and nothing is reused for it. Ids never hold paths (a suite and its run
directory can move between machines), so new weights under an unchanged file name keep
the id: the planner compares weights hashes and refuses to mix, and records made with
other weights are never silently counted as this model's. Work units carry each
plug-in's id (the record key) and its spec (how to build it on the worker's machine).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence

import polars as pl

from idard.bench.suite.sources import ImageRef, scan_sources
from idard.measure.batching import model_calls
from idard.bench.store.records import RecordStore
from idard.bench.suite.definition import Suite
from idard.measure.records import KEY_COLUMNS
from idard.measure.models import MODELS


class StaleRecordsError(ValueError):
    """The store holds records of a model id made with different weights."""


class ChangedInputError(ValueError):
    """An HR file changed under a key the store holds records of."""


#: Beside the records: SHA-256 of each HR file by location, with the file's fingerprint
#: when it was hashed (`ImageRef.stat`), so that a re-run does not read every image again
#: to find the changed ones (12,500 DIV2K files are 50 GB; on an object store, minutes).
HASH_CACHE = "hr_hashes.json"


class _HashCache:
    """HR files' SHA-256 by location, trusted while the file's fingerprint is unchanged:
    size, mtime, ctime and inode of a local file (any write changes its ctime, even with
    the mtime set back), size and mtime of an object. Entries of another form (caches
    of earlier versions, keyed on size and mtime only) are hashed again once.
    """

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        try:
            loaded = json.loads(store.read_text(HASH_CACHE) or "{}")
        except json.JSONDecodeError:
            loaded = {}  # a damaged cache is only a cache: hash again
        self.entries: dict[str, list] = loaded if isinstance(loaded, dict) else {}
        self.dirty = False

    def sha256(self, ref: ImageRef) -> str:
        stat = ref.stat()
        cached = self.entries.get(ref.location)
        if stat is not None and isinstance(cached, list) and cached[:-1] == list(stat):
            return cached[-1]
        digest = hashlib.sha256(ref.read()).hexdigest()
        if stat is not None:
            self.entries[ref.location] = [*stat, digest]
            self.dirty = True
        return digest

    def save(self) -> None:
        if self.dirty:
            self.store.write_text(HASH_CACHE, json.dumps(self.entries, sort_keys=True))
            self.dirty = False


def changed_images(store: RecordStore, images: Sequence[ImageRef]) -> list[tuple[ImageRef, str, str, bool]]:
    """(image, recorded SHA-256, current SHA-256, only_errors) of every image whose file
    changed since records of it were computed; ``only_errors`` when all those records are
    error records (a broken file since replaced: nothing computed is at stake). Hashes
    each image the store has records of, reading only files whose fingerprint (size,
    mtime, ctime, inode) differs from the run directory's hash cache (`HASH_CACHE`); records made before
    hashes were recorded are not checked."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.records import is_error

    names = [ref.name for ref in images]
    scan = store.scan()
    if "hr_sha256" not in scan.collect_schema().names():  # an object store's parts of idard 0.1.0
        return []
    held = (
        scan.filter(pl.col("image").is_in(names) & pl.col("hr_sha256").is_not_null())
        .group_by("image", "hr_sha256").agg(only_errors=is_error().all()).collect(engine="streaming")
    )
    recorded: dict[str, dict[str, bool]] = {}
    for image, digest, only_errors in held.iter_rows():
        recorded.setdefault(image, {})[digest] = only_errors
    cache = _HashCache(store)
    changed = []
    for ref in images:
        if ref.name not in recorded:
            continue
        try:
            current = cache.sha256(ref)
        except OSError:
            continue  # unreadable now: the run's own read turns it into error records
        stale = sorted(d for d in recorded[ref.name] if d != current)
        if stale:
            changed.append((ref, stale[0], current, all(recorded[ref.name][d] for d in stale)))
    cache.save()
    return changed


def changed_input_message(run_dir: str, changed: list[tuple[ImageRef, str, str, bool]]) -> str:
    shown = "; ".join(f"{ref.name} ({ref.location}: sha256 {old[:12]}… -> {new[:12]}…)" for ref, old, new, _ in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return (f"{run_dir} holds records of {len(changed)} image(s) whose file changed since: {shown}{more}; "
            "records of different inputs must not mix: pass --recompute-changed to replace their records, "
            "or run into a new --out")


@dataclasses.dataclass(frozen=True)
class Item:
    """One LR image's share of a unit: its downscaler, the seeds and metrics to score."""

    downscaler: str
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]

    @property
    def tasks(self) -> int:
        return len(self.seeds) * len(self.metrics)


@dataclasses.dataclass(frozen=True)
class WorkUnit:
    """Everything one worker computes for one (HR image, model)."""

    image: ImageRef
    model: str
    items: tuple[Item, ...]
    #: (id, spec) of the unit's plug-ins: ids are record keys, specs what the worker builds.
    specs: tuple[tuple[str, str], ...] = ()

    @property
    def tasks(self) -> int:
        return sum(item.tasks for item in self.items)

    def spec(self, plugin_id: str) -> str:
        """How to build plug-in ``plugin_id`` on the worker (its id when no spec is known)."""
        return dict(self.specs).get(plugin_id, plugin_id)


@dataclasses.dataclass
class Plan:
    suite: Suite
    images: list[ImageRef]
    units: list[WorkUnit]
    total_tasks: int  # keys the suite defines
    done_tasks: int  # of those, already in the store
    skipped: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)  # sources' entries left out

    @property
    def todo_tasks(self) -> int:
        return self.total_tasks - self.done_tasks


def _grid(suite: Suite, images: Sequence[ImageRef]) -> dict[str, pl.Series]:
    """The suite's key values, one axis per key column, in the order tasks are planned."""
    return {
        "image": pl.Series("image", list(dict.fromkeys(ref.name for ref in images)), pl.String),
        "downscaler": pl.Series("downscaler", list(dict.fromkeys(suite.downscalers)), pl.String),
        "model": pl.Series("model", list(dict.fromkeys(suite.models)), pl.String),
        "metric": pl.Series("metric", list(dict.fromkeys(suite.metrics)), pl.String),
        "seed": pl.Series("seed", list(dict.fromkeys(suite.seeds)), pl.Int64),
    }


def missing_keys(grid: dict[str, pl.Series], held: pl.LazyFrame | Iterable[pl.LazyFrame]) -> pl.DataFrame:
    """The keys of ``grid`` (every combination of its axes) that ``held`` lacks, in grid
    order (the first axis slowest). ``held`` may come in several scans (`RecordStore.scan_batches`).

    Each held key is coded as its position in the grid (mixed radix over the axes, in one
    streaming pass; keys outside the grid are ignored), and a bitmap of the grid marks the
    held ones. This is an exact set difference, like an anti-join of the expanded grid
    against the held keys, but it holds one integer per held record and one byte per grid
    key instead of both sides' strings: at ten million records 0.3 GB instead of 1.8 GB
    (benchmark/results/report_scale.json).
    """
    import numpy as np

    axes = list(grid.values())
    size = 1
    code = pl.lit(0, dtype=pl.Int64)
    for axis in axes:
        code = code * axis.len() + _position(axis)  # null (outside the grid) stays null
        size *= axis.len()
    present = np.zeros(size, dtype=bool)
    for scan in [held] if isinstance(held, pl.LazyFrame) else held:
        present[scan.select(code.alias("code")).drop_nulls().collect()["code"].to_numpy()] = True
    rest = np.flatnonzero(~present)
    columns = {}
    for axis in reversed(axes):
        rest, position = np.divmod(rest, axis.len())
        columns[axis.name] = axis.gather(position)
    return pl.DataFrame([columns[axis.name] for axis in axes])


def _position(axis: pl.Series) -> pl.Expr:
    """Each value's index in ``axis`` (null when absent): strings through an Enum of the
    axis (cheaper than a replace map over millions of records), other types by replacing."""
    if axis.dtype == pl.String:
        return pl.col(axis.name).cast(pl.Enum(axis), strict=False).to_physical().cast(pl.Int64)
    return pl.col(axis.name).replace_strict(axis, pl.int_range(axis.len(), eager=True), default=None,
                                            return_dtype=pl.Int64)


def check_weights(suite: Suite, store: RecordStore) -> None:
    """Raise `StaleRecordsError` if the store holds a suite model made with other weights."""
    held = (
        store.scan().filter(pl.col("model").is_in(list(suite.models)) & pl.col("weights_hash").is_not_null())
        .select("model", "weights_hash").unique().collect()
    )
    for model_id, old_hash in held.iter_rows():
        current = MODELS.create(suite.spec(model_id)).weights_hash
        if old_hash != current:
            raise StaleRecordsError(
                f"{store.run_dir} holds records of {model_id} made with weights sha256 {old_hash[:12]}…, "
                f"but its weights file now hashes to {current[:12]}…; records of different weights "
                "must not mix: run into a new --out directory"
            )


def batches(items: Sequence[Item], max_batch: int) -> list[tuple[Item, ...]]:
    """``items`` as the worker's model calls take them (`idard.measure.batching`)."""
    return [tuple(call) for call in model_calls(items, lambda item: item.seeds, max_batch)]


def split_by_batch(unit: WorkUnit, max_batch: int) -> list[WorkUnit]:
    """A unit of several model calls as one unit per call (same image, model and specs).

    A whole image of many downscalers and seeds can take minutes; as one unit, progress
    would move only when all of it returns, and one worker would compute it alone. Split,
    progress moves per batch and idle workers take the other batches; each costs the
    driver one more remote call per batch of samples (never per sample), and each worker
    decodes the HR image once per batch it gets. The batches are those the worker would
    have made, so no model call changes.
    """
    parts = batches(unit.items, max_batch)
    if len(parts) <= 1:
        return [unit]
    return [dataclasses.replace(unit, items=part) for part in parts]


def _units(todo: pl.DataFrame, refs: dict[str, ImageRef], specs: tuple[tuple[str, str], ...] = ()) -> Iterator[WorkUnit]:
    """Group missing keys by (image, model), then by the seeds and metrics they share."""
    by_item = (
        todo.group_by("image", "model", "downscaler", "metric", maintain_order=True)
        .agg(pl.col("seed").sort())
        .group_by("image", "model", "downscaler", "seed", maintain_order=True)
        .agg(pl.col("metric").sort())
    )
    for (image, model), part in by_item.group_by("image", "model", maintain_order=True):
        items = tuple(
            Item(downscaler, tuple(seeds), tuple(metrics))
            for downscaler, seeds, metrics in part.select("downscaler", "seed", "metric").iter_rows()
        )
        used = {model, *(item.downscaler for item in items), *(m for item in items for m in item.metrics)}
        yield WorkUnit(refs[image], model, items, tuple((i, spec) for i, spec in specs if i in used))


def make_plan(suite: Suite, store: RecordStore, images: list[ImageRef] | None = None,
              skipped: dict[str, tuple[int, str]] | None = None) -> Plan:
    """Expand ``suite`` and subtract ``store``: the work left to do. ``images`` (and the
    entries ``skipped`` while listing them) are listed from the suite when not given."""
    from pathlib import Path

    skipped = dict(skipped or {})
    if images is None:
        listing = scan_sources(list(suite.images), Path(suite.base_dir))
        images, skipped = listing.refs, listing.skipped
    check_weights(suite, store)
    # In grid order: units follow the suite's image order, so progress is predictable.
    todo = missing_keys(_grid(suite, images), (scan.select(KEY_COLUMNS) for scan in store.scan_batches()))
    total = len(images) * len(suite.downscalers) * len(suite.models) * len(suite.metrics) * len(suite.seeds)
    units = [part for unit in _units(todo, {ref.name: ref for ref in images}, suite.specs)
             for part in split_by_batch(unit, suite.max_batch)]
    return Plan(suite=suite, images=images, units=units, total_tasks=total, done_tasks=total - todo.height,
                skipped=skipped)
