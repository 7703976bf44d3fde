"""Per-image reduction of many records with integer codes and numpy, for large inputs.

`idard.measure.statistics` reduces records to one row per (group keys, image). For a few
hundred thousand records it does so in Polars with each image's values as a list; at ten
million records that list aggregation, a hash group-by on four string keys and the image,
costs seconds per million records (benchmark/report_scale.py). This module computes the
same per-image frame from dense integer codes instead:

* String keys are read as Categorical (so ten million strings are never held) and mapped
  to codes ``0..d-1`` in the sorted order of their values, nulls last; numeric keys by
  ``searchsorted`` into their sorted distinct values. A group is a mixed-radix number of
  its key codes, and (group, image) a cell ``group * n_images + image``, so cells
  enumerate in exactly the sorted order of the output rows and no sort of records is ever
  needed.
* Sums, counts and flags per cell are ``np.bincount``. bincount adds in array order, and
  the records are put in seed order first (a stable sort of the seed column alone), so a
  cell's sum is always taken over its samples in seed order: the same records give the
  same numbers, bit for bit, whatever their row order or batching, as in the list path.
  The std is two-pass (squared deviations from the cell mean), as accurate as numpy's.
* Paired differences look up each record's baseline value in a dense (cell, image, seed)
  array (a sorted-key ``searchsorted`` when that array would be large and sparse), which
  replaces a ten-million-row join.

The numbers are those of the list path up to the last bit of a mean (the order of
additions inside a sum differs: pairwise in Polars, sequential here), and the counts are
identical; tests check both paths against each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import polars as pl

#: Dense lookup tables (baseline values by cell, image and seed) are used up to this many
#: entries per record; sparser layouts use a sorted-key search instead.
_DENSE_PER_RECORD = 4


@dataclasses.dataclass
class Encoded:
    """A batch of records as integer codes; ``usable`` marks samples that enter means."""

    keys: list[str]
    key_values: list[pl.Series]  # per key: its distinct values in code order
    group: np.ndarray  # int64 code of the group (mixed radix of the key codes)
    n_groups: int
    image: np.ndarray  # int64 code of the image
    images: pl.Series  # distinct image names in code order
    seed: np.ndarray | None  # int64 seeds (None when records have none)
    value: np.ndarray  # float64
    usable: np.ndarray  # bool: finite (and converged unless included)
    finite: np.ndarray  # bool
    unconverged: np.ndarray  # bool: finite but flagged unconverged
    error: np.ndarray | None = None  # bool: an error record (image or unit failed), not a sample


def _dense(series: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Codes 0..d-1 following the sorted order of the distinct values (nulls last)."""
    if series.dtype in (pl.String, pl.Categorical) or isinstance(series.dtype, pl.Categorical):
        cat = series.cast(pl.Categorical)
        physical = cat.to_physical()
        distinct = cat.unique()  # on the codes: only the distinct values become strings
        distinct = pl.DataFrame({"code": distinct.to_physical(), "value": distinct.cast(pl.String)})
        distinct = distinct.sort("value", nulls_last=True)
        if distinct.height == 1:  # one value (a run's model, metric...): nothing to look up
            return np.zeros(series.len(), dtype=np.int32), distinct["value"]
        null_code = int(distinct["code"].max() or 0) + 1
        lookup = np.empty(null_code + 1, dtype=np.int32)
        lookup[distinct["code"].fill_null(null_code).to_numpy()] = np.arange(distinct.height)
        codes = lookup[physical.fill_null(null_code).to_numpy()] if physical.null_count() else lookup[
            physical.to_numpy()]
        return codes, distinct["value"]
    distinct = series.unique().sort(nulls_last=True)
    present = distinct.drop_nulls().to_numpy()
    if distinct.len() == 1:
        return np.zeros(series.len(), dtype=np.int32), distinct
    raw = series.fill_null(present[0] if present.size else 0).to_numpy()
    if series.dtype.is_integer() and present.size and int(present[-1]) - int(present[0]) < 1 << 20:
        lookup = np.zeros(int(present[-1]) - int(present[0]) + 1, dtype=np.int32)  # small range: a table
        lookup[present - present[0]] = np.arange(present.size)
        codes = lookup[raw - present[0]]
    else:
        codes = np.searchsorted(present, raw).astype(np.int32)
    if series.null_count():
        codes[series.is_null().to_numpy()] = present.size
    return codes, distinct


def read(lf: pl.LazyFrame, keys: Sequence[str], include_unconverged: bool) -> Encoded:
    """Collect a batch of records as codes: only keys, image, seed, value and the flags.

    A sample is usable (enters means) when its value is finite, ``finite`` is not False
    and, unless ``include_unconverged``, ``converged`` is not False: the rules of
    `statistics._usable`, computed here in numpy on the raw columns.
    """
    schema = lf.collect_schema()
    names = schema.names()
    strings = [c for c in [*keys, "image"] if schema[c] == pl.String]
    flags = [pl.col("finite").fill_null(False)] if "finite" in names else []
    flags += [(pl.col("converged") == False).fill_null(False).alias("_unconverged")] if "converged" in names else []  # noqa: E712
    if "error" in names:
        from idard.measure.records import is_error

        flags.append(is_error().alias("_error"))
    frame = (
        lf.select(*keys, "image", *(["seed"] if "seed" in names else []), "value", *flags)
        .with_columns(pl.col(strings).cast(pl.Categorical))
        .collect(engine="streaming")
    )
    group = np.zeros(frame.height, dtype=np.int64)
    key_values = []
    n_groups = 1
    for key in keys:
        codes, values = _dense(frame[key])
        if values.len() > 1:  # a key with one value (a run's model, metric...) adds nothing
            group = group * values.len() + codes
            n_groups *= values.len()
        key_values.append(values.cast(schema[key]))
    image, images = _dense(frame["image"])
    value = frame["value"].fill_null(np.nan).to_numpy().astype(np.float64)
    finite = np.isfinite(value)
    if "finite" in frame.columns:
        finite &= frame["finite"].to_numpy()
    unconverged = finite & frame["_unconverged"].to_numpy() if "_unconverged" in frame.columns else np.zeros_like(finite)
    return Encoded(
        keys=list(keys), key_values=key_values, group=group, n_groups=n_groups, image=image,
        images=images.cast(schema["image"]), seed=frame["seed"].to_numpy() if "seed" in frame.columns else None,
        value=value, usable=finite if include_unconverged else finite & ~unconverged, finite=finite,
        unconverged=unconverged, error=frame["_error"].to_numpy() if "_error" in frame.columns else None,
    )


def _seed_order(seed: np.ndarray | None, size: int) -> np.ndarray | slice:
    """Positions of the records in seed order (stable), so that sums follow seeds."""
    if seed is None:
        return slice(None)
    low, high = (int(seed.min()), int(seed.max())) if seed.size else (0, 0)
    if high - low < 2**15:  # numpy sorts 16-bit integers with a linear-time radix sort
        return np.argsort((seed - low).astype(np.int16), kind="stable")
    return np.argsort(seed, kind="stable")


def _compress(cell: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell index of each record, the distinct cells in order): dense when that is small."""
    if size <= _DENSE_PER_RECORD * max(cell.size, 1) + 1024:
        present = np.flatnonzero(np.bincount(cell, minlength=size))
        lookup = np.zeros(size, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        return lookup[cell], present
    present, index = np.unique(cell, return_inverse=True)
    return index.astype(np.int64), present


def _subset(enc: Encoded, rows: np.ndarray | None, values: np.ndarray | None) -> Encoded:
    """``enc`` restricted to ``rows`` (a mask), its values replaced by ``values``."""
    if rows is None and values is None:
        return enc
    value = enc.value if values is None else values
    if rows is None:
        return dataclasses.replace(enc, value=value)
    return dataclasses.replace(
        enc, group=enc.group[rows], image=enc.image[rows], seed=None if enc.seed is None else enc.seed[rows],
        value=value[rows], usable=enc.usable[rows], finite=enc.finite[rows], unconverged=enc.unconverged[rows],
        error=None if enc.error is None else enc.error[rows],
    )


def image_frame(enc: Encoded) -> tuple[pl.DataFrame, np.ndarray]:
    """One row per (keys..., image) with records, sorted, with ``mean, std, n_samples,
    n_nonfinite, n_unconverged`` as `statistics._image_frame` computes them; and each
    row's cell number (for `values_of`)."""
    n_images = max(enc.images.len(), 1)
    order = _seed_order(enc.seed, enc.value.size)
    index, present = _compress((enc.group * n_images + enc.image)[order], enc.n_groups * n_images)
    m = present.size
    ok = enc.usable[order]
    used_index, used_values = index[ok], enc.value[order][ok]
    n = np.bincount(used_index, minlength=m)
    total = np.bincount(used_index, weights=used_values, minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        deviation = used_values - mean[used_index]
        std = np.sqrt(np.bincount(used_index, weights=deviation * deviation, minlength=m) / (n - 1))
    error = np.zeros(enc.value.size, dtype=bool) if enc.error is None else enc.error[order]
    nonfinite = np.bincount(index, weights=~enc.finite[order] & ~error, minlength=m).astype(np.int64)
    errors = np.bincount(index, weights=error, minlength=m).astype(np.int64)
    unconverged = np.bincount(index, weights=enc.unconverged[order], minlength=m).astype(np.int64)
    group, image = np.divmod(present, n_images)
    columns: dict[str, pl.Series] = {}
    for key, distinct in reversed(list(zip(enc.keys, enc.key_values))):
        group, code = np.divmod(group, distinct.len())
        columns[key] = distinct.gather(code).alias(key)
    out = pl.DataFrame([*(columns[k] for k in enc.keys), enc.images.gather(image).alias("image")])
    out = out.with_columns(
        mean=pl.Series(np.where(n > 0, mean, np.nan)).fill_nan(None),
        std=pl.Series(np.where(n > 1, std, np.nan)).fill_nan(None),
        n_samples=pl.Series(n.astype(np.int64)),
        n_nonfinite=pl.Series(nonfinite), n_errors=pl.Series(errors), n_unconverged=pl.Series(unconverged),
    )
    return out, present


def values_of(enc: Encoded, cells: np.ndarray, keep: np.ndarray) -> pl.Series:
    """The usable values of each cell where ``keep`` (null elsewhere), in seed order, as a
    list column: what the exact bootstrap needs, gathered only for the groups small
    enough to use it."""
    if not keep.any():
        return pl.Series("values", [None] * cells.size, dtype=pl.List(pl.Float64))
    n_images = max(enc.images.len(), 1)
    cell = enc.group * n_images + enc.image
    rows = enc.usable & np.isin(cell, cells[keep])
    seed = enc.seed[rows] if enc.seed is not None else np.zeros(int(rows.sum()), dtype=np.int64)
    order = np.lexsort((seed, cell[rows]))
    picked_cells, picked = cell[rows][order], enc.value[rows][order]
    starts = np.searchsorted(picked_cells, cells, side="left")
    ends = np.searchsorted(picked_cells, cells, side="right")
    lists = [picked[s:e].tolist() if k else None for s, e, k in zip(starts, ends, keep)]
    return pl.Series("values", lists, dtype=pl.List(pl.Float64))


def group_counts(enc: Encoded) -> pl.DataFrame:
    """Records (``_rows``) and usable ones (``_usable``) per group present, sorted by keys."""
    rows = np.bincount(enc.group, minlength=enc.n_groups)
    usable = np.bincount(enc.group, weights=enc.usable, minlength=enc.n_groups).astype(np.int64)
    present = np.flatnonzero(rows)
    columns: dict[str, pl.Series] = {}
    group = present
    for key, distinct in reversed(list(zip(enc.keys, enc.key_values))):
        group, code = np.divmod(group, distinct.len())
        columns[key] = distinct.gather(code).alias(key)
    return pl.DataFrame([columns[k] for k in enc.keys]).with_columns(
        _rows=pl.Series(rows[present].astype(np.int64)), _usable=pl.Series(usable[present]))


def _seed_codes(seed: np.ndarray | None) -> tuple[np.ndarray | int, int]:
    """Seeds as dense codes 0..d-1 in increasing order, and d (numpy alone: at ten
    million records a Polars round trip costs a third of a second). Records without
    seeds all have code 0."""
    if seed is None or seed.size == 0:
        return 0, 1
    low, high = int(seed.min()), int(seed.max())
    if high - low < 1 << 20:
        present = np.flatnonzero(np.bincount(seed - low, minlength=high - low + 1))
        lookup = np.zeros(high - low + 1, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        return lookup[seed - low], max(present.size, 1)
    distinct, codes = np.unique(seed, return_inverse=True)
    return codes.astype(np.int64), max(distinct.size, 1)


def paired(enc: Encoded, baseline: str) -> Encoded:
    """The usable pairs, their value the other minus the baseline value: pairing on the
    keys other than downscaler, the image and the seed (baseline records are not pairs)."""
    ds_position = enc.keys.index("downscaler")
    radices = [v.len() for v in enc.key_values]
    # Split the group code (mixed radix of the key codes; keys with one value take no
    # digit) into the downscaler's code and the code of the other keys, the cell:
    # group = (high * r_ds + ds) * below + low, cell = high * below + low.
    r_ds = radices[ds_position]
    below = int(np.prod([r for r in radices[ds_position + 1:] if r > 1], dtype=np.int64))
    n_cells = int(np.prod([r for i, r in enumerate(radices) if i != ds_position and r > 1], dtype=np.int64))
    ds_values = enc.key_values[ds_position]
    base_code = ds_values.to_list().index(baseline) if baseline in ds_values.to_list() else -1
    if r_ds == 1:
        is_base = np.full(enc.group.size, base_code == 0)
        cell = enc.group
    else:
        upper, low = np.divmod(enc.group, below) if below > 1 else (enc.group, 0)
        high, ds = np.divmod(upper, r_ds)
        is_base = ds == base_code
        del upper, ds
        cell = high * below + low if below > 1 else high
        del high, low
    seed_codes, n_seeds = _seed_codes(enc.seed)
    n_images = max(enc.images.len(), 1)
    slot = (cell * n_images + enc.image) * n_seeds + seed_codes
    base_rows = is_base & enc.usable
    size = n_cells * n_images * n_seeds
    if size <= _DENSE_PER_RECORD * max(slot.size, 1) + 1024:
        table = np.full(size, np.nan)
        table[slot[base_rows]] = enc.value[base_rows]
        base_value = table[slot]
    else:
        keys = slot[base_rows]
        order = np.argsort(keys, kind="stable")
        keys, vals = keys[order], enc.value[base_rows][order]
        base_value = np.full(slot.size, np.nan)
        if keys.size:
            at = np.minimum(np.searchsorted(keys, slot), keys.size - 1)
            found = keys[at] == slot
            base_value[found] = vals[at[found]]
    ok = enc.usable & ~is_base & np.isfinite(base_value)
    with np.errstate(invalid="ignore"):
        return _subset(enc, ok, enc.value - base_value)
