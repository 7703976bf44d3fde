"""Reducing per-sample records to IDA-RD tables, confidence intervals and paired tests.

A record is one SR sample: (image, downscaler, model, metric, seed) -> ``value``, with
``finite`` False when the sample was non-finite or errored. The IDA-RD of a downscaler is
the mean over images of the mean over that image's samples, so every image weighs the same
whatever its number of surviving samples. Everything here follows from that definition:

* `per_image` reduces samples to one row per image (in Polars: records can be 10 million
  rows scanned lazily from Parquet, and only the columns needed are read).
* `ida_rd_table` reduces images to one row per (downscaler, model, metric[, scale]) with
  the paper's ± (std over images of per-image means) and a two-level percentile bootstrap
  CI. The data have two sources of variation, which images were chosen and which SR
  samples were drawn, so the bootstrap resamples both: images with replacement, then within
  each chosen image its samples with replacement.
* `paired_differences` compares downscalers on the same (image, seed) pairs. All
  downscalers share SR noise per seed, so paired differences are far less noisy than the
  difference of two IDA-RDs.
* `spearman_ladder` is the paper's validation: along a family of increasingly destructive
  downscalers, IDA-RD must rise monotonically.

Non-finite samples (``finite`` False, or a NaN/null ``value``) never enter a mean; they are
counted in ``n_nonfinite`` so that a downscaler which makes the model fail cannot hide it.
Error records (an image that could not be read, a unit no worker could compute: ``error``
set for another reason than a non-finite sample) never enter a mean either and are
counted apart, in ``n_errors``: a broken file is not the model's failure.
An image whose samples all failed has no mean: it is left out of ``ida_rd`` and
``n_images`` while its samples still count in ``n_nonfinite``. Samples a model flags as
unconverged (``converged`` False: PULSE never reached its eps) are counted in
``n_unconverged`` and, by default, left out of means the same way, as the reference PULSE
drops them. That is a selection: a downscaler whose LR the model cannot match keeps only
its easy samples. ``include_unconverged=True`` puts them in the means (the model's output
is its best attempt, and the decoder's distortion is what IDA-RD measures); tables say
which choice made them.

The bootstrap, exactly and fast. One replicate of the two-level bootstrap draws n images
with replacement (a count vector W, multinomial) and, for each of the n draws, c_i samples
of that image with replacement; it is the mean of those n resampled image means. For a
group of at most `EXACT_DRAWS` sample positions (n_boot x samples) `bootstrap_means` does
exactly that, on a compact copy of the finite values, in chunks of bounded memory. A
larger group (ten million records: 500,000 samples per group, 5e8 positions per CI) is
drawn in two parts, both from the same replicate distribution:

* The image level is drawn exactly: W as the bincount of n uniform image indices. Given
  W, the replicate is ``sum_i W_i x_i / n`` (x_i: image i's mean) plus the within-image
  term. Groups over the same set of images (every downscaler of a run, usually) share
  the draws of W (seeded by ``seed`` and the image set), so one draw and one matrix
  product serve all of them (`shared_image_replicates`).
* The within-image term, given W, is a sum of sum_i W_i c_i independent resampled
  values: its mean is exactly 0 and its variance exactly ``sum_i W_i s_i^2 / c_i / n^2``
  (s_i^2: the population variance of image i's samples). It is drawn as a normal with
  those two moments (seeded by ``seed`` and the group's key). By the central limit
  theorem over those sum_i W_i c_i > 4,000 draws the normal's error is far below the
  bootstrap's own Monte-Carlo error, and at ten million records this term holds well
  under 1 % of the replicate variance anyway (images differ much more than samples).

benchmark/ci_agreement.py measures the agreement: the endpoints of both methods, each
repeated with many seeds, differ by less than the exact method's own seed-to-seed
spread (|z| < 1) on synthetic records and on real quickstart records, even forcing the
fast form on groups far below its threshold (benchmark/results/ci_agreement.md).

Inputs of more than `COLUMNAR_ROWS` records are reduced to per-image rows by
`idard.measure.columnar` (integer codes and bincounts instead of Polars value lists;
the same numbers up to the last bit of a mean), and `report_tables` reads them once for
both tables. Memory is bounded by ``max_rows`` too, not by the number of records. Groups never interact
(a group's numbers, its CI included, depend only on its own records and key), so records
larger than ``max_rows`` are reduced a batch of whole groups at a time: one cheap pass
counts the records of each group, then each batch is read with a predicate on the group
keys, which a Parquet scan evaluates while reading, and reduced before the next is read.
The results are those of one pass over everything, row for row; only the number of passes
over the records grows. A single group larger than ``max_rows`` is still read whole.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import polars as pl

from idard.measure import columnar

#: Group keys always used by default, and the optional ones added when records have them.
DEFAULT_KEYS = ("downscaler", "model", "metric")
OPTIONAL_KEYS = ("scale",)

#: Output columns after the group keys, in order.
PER_IMAGE_COLUMNS = ("image", "mean", "std", "n_samples", "n_nonfinite", "n_errors", "n_unconverged")
TABLE_COLUMNS = ("ida_rd", "std_images", "ci_low", "ci_high", "n_images", "n_samples", "n_nonfinite", "n_errors",
                 "n_unconverged")
PAIRED_COLUMNS = ("baseline", "mean_diff", "std_images", "ci_low", "ci_high", "p_wilcoxon", "n_images", "n_pairs")

#: Most float elements one bootstrap chunk draws (about 50 MB of temporaries at 2**21).
_CHUNK_ELEMENTS = 1 << 21

#: Most records one reduction step reads at once. Above `COLUMNAR_ROWS` records are held
#: as integer codes and numpy arrays, about 150 bytes per record at the peak of a report
#: (table and paired differences from one read): 2.2 GB of resident memory for 10 million
#: records, measured by benchmark/report_scale.py. (The list path below `COLUMNAR_ROWS`
#: takes about 600 bytes per record.) Each batch is one more pass over the records, so a
#: smaller budget trades time for memory.
DEFAULT_MAX_ROWS = 12_000_000

#: Inputs with more records than this are reduced by `idard.measure.columnar` (integer
#: codes and numpy: some 20x less time and 10x less memory per record than Polars value
#: lists); smaller ones by the list path. The two agree up to the last bit of a mean.
COLUMNAR_ROWS = 250_000

#: A group whose exact bootstrap draws at most this many sample positions (``n_boot`` x its
#: samples) gets the exact two-level bootstrap; a larger one the shared-image-draw form
#: with a normal within-image term (see the module docstring). At n_boot=1000 that is
#: groups of up to 4,194 samples: every quickstart group, 1/100 of one of a 10 M run.
EXACT_DRAWS = 1 << 22

Frame = pl.DataFrame | pl.LazyFrame


# --------------------------------------------------------------------------- helpers


def _lazy(records: Frame) -> pl.LazyFrame:
    return records.lazy() if isinstance(records, pl.DataFrame) else records


def _keys(lf: pl.LazyFrame, by: Sequence[str] | None) -> list[str]:
    """The group keys: ``by`` as given, or the default keys plus optional ones present."""
    names = lf.collect_schema().names()
    keys = list(by) if by is not None else [*DEFAULT_KEYS, *(k for k in OPTIONAL_KEYS if k in names)]
    missing = [k for k in [*keys, "image", "value"] if k not in names]
    if missing:
        raise ValueError(f"records lack column(s) {missing}; they have {names}")
    if "image" in keys:
        raise ValueError("'image' is the unit of resampling and cannot be a group key")
    return keys


def _finite(names: Sequence[str]) -> pl.Expr:
    """True for samples with a finite value, flagged finite (a NaN value with ``finite``
    True should not occur, but a NaN must never reach a mean)."""
    ok = pl.col("value").is_finite()
    if "finite" in names:
        ok = ok & pl.col("finite")
    return ok.fill_null(False)


def _error(names: Sequence[str]) -> pl.Expr:
    """True for error records (the image or unit failed): counted in ``n_errors``, apart
    from the model's non-finite samples, which count in ``n_nonfinite``."""
    if "error" not in names:
        return pl.lit(False)
    from idard.measure.records import is_error

    return is_error()


def _unconverged(names: Sequence[str]) -> pl.Expr:
    """True for samples whose model says they missed their goal (PULSE's eps); null-safe."""
    return (pl.col("converged") == False).fill_null(False) if "converged" in names else pl.lit(False)  # noqa: E712


def _usable(lf: pl.LazyFrame, include_unconverged: bool) -> pl.Expr:
    """True for samples that enter means: finite, and unless ``include_unconverged``, not
    flagged as unconverged."""
    names = lf.collect_schema().names()
    return _finite(names) if include_unconverged else _finite(names) & ~_unconverged(names)


def _image_frame(lf: pl.LazyFrame, keys: list[str], with_values: bool, include_unconverged: bool) -> pl.DataFrame:
    """One row per (keys..., image), sorted; ``values`` (finite values by seed) on request.

    Values are ordered by seed, and images by name, so that bootstrap draws (which index into
    these arrays) do not depend on the row order of the records, e.g. of a Parquet scan.
    The per-image mean, std and count are computed from that ordered list, not by Polars'
    grouped ``mean``/``std``, whose partial sums are combined in an order that varies from
    run to run (last-bit differences): so the same records always give the same numbers,
    whatever their row order and however they were batched.
    """
    ok = _usable(lf, include_unconverged)
    names = lf.collect_schema().names()
    has_seed = "seed" in names
    cols = [*keys, "image", "value", *(c for c in ("seed", "finite", "converged", "error") if c in names)]
    slim = lf.select(cols).with_columns(
        _ok=ok, _finite=_finite(names), _unconverged=_finite(names) & _unconverged(names), _error=_error(names),
        value=pl.when(ok).then(pl.col("value")),  # failed -> null, dropped from the list
    )
    ordered = pl.col("value").sort_by("seed") if has_seed else pl.col("value")
    values = pl.col("values")
    images = (
        slim.group_by([*keys, "image"])
        .agg(ordered.drop_nulls().alias("values"),
             (~pl.col("_finite") & ~pl.col("_error")).sum().cast(pl.Int64).alias("n_nonfinite"),
             pl.col("_error").sum().cast(pl.Int64).alias("n_errors"),
             pl.col("_unconverged").sum().cast(pl.Int64).alias("n_unconverged"))
        .with_columns(
            mean=values.list.mean(),
            std=values.list.std(ddof=1),
            n_samples=values.list.len().cast(pl.Int64),
        )
        .sort([*keys, "image"], nulls_last=True)
        .collect()
    )
    return images if with_values else images.drop("values")


def _groups(images: pl.DataFrame, keys: list[str]) -> Iterator[tuple[dict, pl.DataFrame]]:
    """(key values, that group's image rows) for each group, in sorted order."""
    if not keys:
        yield {}, images
        return
    for part in images.partition_by(keys, maintain_order=True):
        yield {k: part[k][0] for k in keys}, part


def _rng(seed: int, *key: object) -> np.random.Generator:
    """A generator for one group, seeded by ``seed`` and the group's key.

    Seeding by key (not by position) makes a group's CI independent of which other groups
    happen to be in the same records, e.g. after filtering to one downscaler.
    """
    digest = hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
    words = np.frombuffer(digest, dtype=np.uint32).tolist()
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def _check(n_boot: int, ci: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")


def _check_max_rows(max_rows: int) -> None:
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")


# --------------------------------------------------------------------------- batches of groups


def _group_counts(lf: pl.LazyFrame, keys: list[str], include_unconverged: bool = False) -> pl.DataFrame:
    """Records (``_rows``) and usable ones (``_usable``) per group, sorted as the outputs are.

    Reads only the key columns and the value flags, with the streaming engine: its memory
    is the number of groups, not of records.
    """
    return (
        lf.group_by(keys)
        .agg(pl.len().cast(pl.Int64).alias("_rows"),
             _usable(lf, include_unconverged).sum().cast(pl.Int64).alias("_usable"))
        .sort(keys, nulls_last=True)
        .collect(engine="streaming")
    )


def _pack(
    sizes: Sequence[int], max_rows: int, shared: Sequence[tuple[object, int]] | None = None
) -> list[list[int]]:
    """Consecutive runs of indices whose sizes sum to at most ``max_rows`` (a larger one alone).

    ``shared[i]`` is (key, size) of records item ``i`` needs besides its own, counted once
    per run however many of its items need them: a paired group's baseline cell.
    Runs are consecutive so that batches taken in order of the sorted group counts give
    output rows already in sorted order.
    """
    runs: list[list[int]] = []
    total, held = 0, set()
    for i, size in enumerate(sizes):
        key, extra = shared[i] if shared is not None else (None, 0)
        cost = size + (0 if key in held else extra)
        if not runs or total + cost > max_rows:
            runs.append([])
            total, held, cost = 0, set(), size + extra
        runs[-1].append(i)
        total += cost
        held.add(key)
    return runs


def _in_groups(groups: pl.DataFrame) -> pl.Expr:
    """True exactly for records whose key columns equal one row of ``groups``.

    One key is a plain ``is_in``; several are compared as a struct, nulls equal. Either is
    a predicate Polars pushes into a Parquet scan, so only the batch's rows are materialised.
    """
    keys = groups.columns
    if len(keys) == 1:
        return pl.col(keys[0]).is_in(groups[keys[0]].implode(), nulls_equal=True)
    return pl.struct(keys).is_in(groups.select(pl.struct(keys)).to_series().implode())


def _total_rows(lf: pl.LazyFrame) -> int:
    """Number of records (from Parquet metadata alone when ``lf`` is a plain scan)."""
    return lf.select(pl.len()).collect().item()


def _group_batches(
    lf: pl.LazyFrame, keys: list[str], max_rows: int, total: int | None = None
) -> Iterator[pl.LazyFrame]:
    """The records as batches of whole groups, at most ``max_rows`` records each.

    Records that fit in one batch (and group-less reductions) are yielded as they are, so
    small inputs take exactly one pass, as before batching existed. ``total`` is the
    number of records when the caller knows it.
    """
    if not keys or (_total_rows(lf) if total is None else total) <= max_rows:
        yield lf
        return
    counts = _group_counts(lf, keys)
    for run in _pack(counts["_rows"].to_list(), max_rows):
        yield lf.filter(_in_groups(counts[run].select(keys)))


def _concat(tables: list[pl.DataFrame]) -> pl.DataFrame:
    """Batch results in batch order, which is already the sorted order of their keys."""
    return tables[0] if len(tables) == 1 else pl.concat(tables, how="vertical")


# --------------------------------------------------------------------------- bootstrap


def bootstrap_means(
    values: np.ndarray, counts: np.ndarray, n_boot: int, rng: np.random.Generator, chunk_elements: int = _CHUNK_ELEMENTS
) -> np.ndarray:
    """``n_boot`` two-level bootstrap replicates of the mean over images of per-image means.

    ``values`` holds the samples of image 0, then of image 1, ... (``counts[i]`` >= 1 each).
    One replicate draws n images with replacement and, for each draw, ``counts[i]`` samples
    of that image with replacement, and returns the mean of those resampled image means.

    The draws are an (chunk, n, Kmax) array of sample positions (positions past an image's
    count are masked), with the chunk sized so that one chunk has at most
    ``chunk_elements`` elements (at least one replicate): memory does not grow with n_boot.
    """
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.size
    if n == 0 or np.any(counts < 1) or counts.sum() != values.size:
        raise ValueError("need >= 1 image, each with >= 1 value, and len(values) == sum(counts)")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    kmax = int(counts.max())
    ragged = bool(np.any(counts != kmax))
    per_replicate = n * kmax
    chunk = max(1, chunk_elements // per_replicate)
    out = np.empty(n_boot, dtype=np.float64)
    for lo in range(0, n_boot, chunk):
        b = min(chunk, n_boot - lo)
        img = rng.integers(0, n, size=(b, n))
        if kmax == 1:  # one sample per image: the inner level has nothing to resample
            out[lo : lo + b] = values[starts[img]].mean(axis=1)
            continue
        if not ragged:  # every image has Kmax samples: no mask, one flat reduction
            pos = rng.integers(0, kmax, size=(b, n, kmax), dtype=np.int64)
            pos += starts[img][..., None]
            out[lo : lo + b] = values[pos].reshape(b, -1).mean(axis=1)
            continue
        c = counts[img]  # (b, n)
        u = rng.random((b, n, kmax), dtype=np.float32)
        pos = (u * c[..., None].astype(np.float32)).astype(np.int64)
        np.minimum(pos, c[..., None] - 1, out=pos)  # guard against u * c rounding up to c
        pos += starts[img][..., None]
        drawn = values[pos]
        drawn[np.arange(kmax) >= c[..., None]] = 0.0
        out[lo : lo + b] = (drawn.sum(axis=2) / c).mean(axis=1)
    return out


def _interval(
    values: np.ndarray, counts: np.ndarray, n_boot: int, ci: float, rng: np.random.Generator
) -> tuple[float | None, float | None]:
    """Percentile CI, clipped to [min, max] of the values.

    Every replicate is a mean of means of these values, so it lies in that range; clipping
    only removes floating-point rounding (e.g. (x + x + x) / 3 != x) that would otherwise
    put a CI a hair outside the data.
    """
    if n_boot == 0 or counts.size == 0:
        return None, None
    reps = bootstrap_means(values, counts, n_boot, rng)
    low, high = np.quantile(reps, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    lo_bound, hi_bound = float(values.min()), float(values.max())
    return float(np.clip(low, lo_bound, hi_bound)), float(np.clip(high, lo_bound, hi_bound))


def bootstrap_interval(
    values: np.ndarray, counts: np.ndarray, n_boot: int, ci: float, rng: np.random.Generator
) -> tuple[float | None, float | None]:
    """The percentile CI of one group as `ida_rd_table` computes it for a group of at most
    `EXACT_DRAWS` draws (values of image 0, then image 1, ...; ``counts`` per image): public
    so that `idard.measure.stopping` and its coverage simulation use the tables' own code."""
    return _interval(np.asarray(values, dtype=np.float64), np.asarray(counts, dtype=np.int64), n_boot, ci, rng)


def shared_image_replicates(
    means: np.ndarray, within: np.ndarray, n_boot: int, rng: np.random.Generator,
    chunk_elements: int = _CHUNK_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Image-level bootstrap draws shared by groups over the same images, and the
    within-image variance each draw implies.

    ``means`` and ``within`` are (n images, G groups): per image and group the mean of its
    samples and the variance of the mean of one within-image resample (sigma_i^2 / c_i,
    sigma ddof 0). Each replicate draws n images with replacement as a count vector W
    (bincount of n uniform indices: exactly the multinomial of the image bootstrap) and
    returns, per group, ``W @ means / n`` (the replicate's mean given those images, had
    every within-image resample hit its image mean) and ``W @ within / n**2`` (the
    variance of the within-image resampling around it, given W). Returns two (n_boot, G)
    arrays. One draw of W serves every group, so the cost is n_boot x n once plus a matrix
    product, instead of n_boot x n x K per group.
    """
    n = means.shape[0]
    chunk = max(1, chunk_elements // max(n, 1))
    centre = np.empty((n_boot, means.shape[1]))
    spread = np.empty((n_boot, means.shape[1]))
    for lo in range(0, n_boot, chunk):
        b = min(chunk, n_boot - lo)
        drawn = rng.integers(0, n, size=(b, n), dtype=np.int64)
        drawn += (np.arange(b, dtype=np.int64) * n)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        centre[lo : lo + b] = weights @ means / n
        spread[lo : lo + b] = weights @ within / (n * n)
    return centre, spread


def _image_set_digest(images: pl.Series) -> bytes:
    """Names the set of images a group averages over: groups with the same set share draws."""
    return hashlib.blake2b("\x00".join(images.cast(pl.String).to_list()).encode(), digest_size=16).digest()


def _intervals(
    images: pl.DataFrame, keys: list[str], n_boot: int, ci: float, seed: int, extra_key: tuple = ()
) -> list[tuple[float | None, float | None]]:
    """The CI of each group of ``images`` (in `_groups` order).

    Groups of at most `EXACT_DRAWS` draws get `bootstrap_means` on their values. Larger
    ones are collected by image set and get `shared_image_replicates` (seeded by ``seed``
    and the image set) plus, per group, a normal draw of the within-image term (seeded by
    ``seed`` and the group's key): the CI of a group still depends only on its own
    records, ``seed`` and key.
    """
    out: list[tuple[float | None, float | None]] = []
    shared: dict[bytes, list[tuple[int, np.ndarray, np.ndarray, np.random.Generator]]] = {}
    for i, (key, part) in enumerate(_groups(images, keys)):
        out.append((None, None))
        means, counts, values = _group_arrays(part)
        if n_boot == 0 or counts.size == 0:
            continue
        rng = _rng(seed, *key.values(), *extra_key)
        if n_boot * int(counts.sum()) <= EXACT_DRAWS:
            out[i] = _interval(values, counts, n_boot, ci, rng)
            continue
        kept = part.filter(pl.col("n_samples") > 0)
        variance = kept["std"].fill_null(0.0).to_numpy().astype(np.float64) ** 2 * (counts - 1) / counts
        shared.setdefault(_image_set_digest(kept["image"]), []).append((i, means, variance / counts, rng))
    for digest, members in shared.items():
        centre, spread = shared_image_replicates(
            np.stack([m[1] for m in members], axis=1), np.stack([m[2] for m in members], axis=1), n_boot,
            _rng(seed, "images", digest, *extra_key),
        )
        for column, (i, _, _, rng) in enumerate(members):
            reps = centre[:, column] + np.sqrt(spread[:, column]) * rng.standard_normal(n_boot)
            low, high = np.quantile(reps, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
            out[i] = (float(low), float(high))
    return out


def _group_arrays(part: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(per-image means, per-image counts, flat values) of the images with finite samples."""
    kept = part.filter(pl.col("n_samples") > 0)
    has_values = "values" in kept.columns and kept.height and kept["values"].null_count() < kept.height
    return (
        kept["mean"].to_numpy().astype(np.float64),
        kept["n_samples"].to_numpy().astype(np.int64),
        kept["values"].explode().to_numpy().astype(np.float64) if has_values else np.empty(0),
    )


def _std(means: np.ndarray) -> float | None:
    return float(np.std(means, ddof=1)) if means.size >= 2 else None


# --------------------------------------------------------------------------- public API


def per_image(
    records: Frame,
    by: Sequence[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    include_unconverged: bool = False,
) -> pl.DataFrame:
    """Per (group keys..., image): mean, std (ddof=1) and count of finite samples, and the
    count of non-finite ones.

    This is the inner level of IDA-RD and what one looks at to find the images that drive
    a difference. ``by`` defaults to downscaler, model, metric (and scale if present).
    ``mean`` is null for an image with no finite sample, ``std`` for fewer than two.

    Columns: ``*by, image, mean, std, n_samples, n_nonfinite, n_unconverged``; rows sorted by them. At most
    ``max_rows`` records are read at once (see the module docstring).
    """
    _check_max_rows(max_rows)
    lf = _lazy(records)
    keys = _keys(lf, by)
    parts = [_image_frame(batch, keys, False, include_unconverged) for batch in _group_batches(lf, keys, max_rows)]
    return _concat(parts).select([*keys, *PER_IMAGE_COLUMNS])


def _table(
    images: pl.DataFrame, keys: list[str], n_boot: int, ci: float, seed: int, extra_key: tuple = ()
) -> pl.DataFrame:
    """Reduce an image frame (with ``values``) to one row per group, with a bootstrap CI."""
    rows: dict[str, list] = {c: [] for c in TABLE_COLUMNS}
    key_rows = []
    intervals = _intervals(images, keys, n_boot, ci, seed, extra_key)
    for (key, part), (low, high) in zip(_groups(images, keys), intervals):
        means, counts, values = _group_arrays(part)
        key_rows.append(key)
        rows["ida_rd"].append(float(means.mean()) if means.size else None)
        rows["std_images"].append(_std(means))
        rows["ci_low"].append(low)
        rows["ci_high"].append(high)
        rows["n_images"].append(int(means.size))
        rows["n_samples"].append(int(part["n_samples"].sum()))
        rows["n_nonfinite"].append(int(part["n_nonfinite"].sum()))
        rows["n_errors"].append(int(part["n_errors"].sum()))
        rows["n_unconverged"].append(int(part["n_unconverged"].sum()))
    schema = {c: (pl.Int64 if c.startswith("n_") else pl.Float64) for c in TABLE_COLUMNS}
    out = pl.DataFrame(rows, schema=schema)
    if keys:
        key_frame = pl.DataFrame(key_rows, schema={k: images.schema[k] for k in keys})
        out = pl.concat([key_frame, out], how="horizontal")
    return out


def ida_rd_table(
    records: Frame,
    by: Sequence[str] | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_ROWS,
    include_unconverged: bool = False,
) -> pl.DataFrame:
    """The IDA-RD table: one row per group (default downscaler, model, metric[, scale]).

    * ``ida_rd``: mean over images of per-image means of finite samples (each image weighs
      the same whatever its sample count).
    * ``std_images``: std (ddof=1) over images of per-image means, the paper's ±; null for
      fewer than two images. It describes spread over images, not the estimate's precision.
    * ``ci_low``, ``ci_high``: ``ci`` percentile interval of ``n_boot`` two-level bootstrap
      replicates (images, then samples within each image, with replacement); null when
      ``n_boot`` is 0. Deterministic given ``seed`` and the group's key, independent of
      record order and of the other groups present.
    * ``n_images`` (with >= 1 sample in the mean), ``n_samples`` (the samples in the
      mean), ``n_nonfinite`` (non-finite samples, never in it), ``n_errors`` (error
      records, never in it) and ``n_unconverged`` (finite but unconverged: in the mean
      only with ``include_unconverged``).

    Columns: ``*by, ida_rd, std_images, ci_low, ci_high, n_images, n_samples, n_nonfinite,
    n_errors, n_unconverged``;
    rows sorted by the keys. At most ``max_rows`` records are read at once (a larger group
    alone), which changes the number of passes over ``records``, never the numbers.
    """
    _check(n_boot, ci)
    _check_max_rows(max_rows)
    lf = _lazy(records)
    keys = _keys(lf, by)
    total = _total_rows(lf)
    tables = [
        _table(_images_with_values(batch, keys, n_boot, include_unconverged, total > COLUMNAR_ROWS),
               keys, n_boot, ci, seed)
        for batch in _group_batches(lf, keys, max_rows, total)
    ]
    return _concat(tables)


def _images_with_values(
    lf: pl.LazyFrame, keys: list[str], n_boot: int, include_unconverged: bool, use_columnar: bool
) -> pl.DataFrame:
    """`_image_frame` with values, by the list path or (``use_columnar``) by codes and numpy,
    where only groups small enough for the exact bootstrap carry their values."""
    if not use_columnar:
        return _image_frame(lf, keys, True, include_unconverged)
    encoded = columnar.read(lf, keys, include_unconverged)
    if encoded.value.size == 0:
        return _image_frame(lf, keys, True, include_unconverged)
    return _columnar_images(encoded, keys, n_boot)


def _columnar_images(encoded: columnar.Encoded, keys: list[str], n_boot: int) -> pl.DataFrame:
    images, cells = columnar.image_frame(encoded)
    group_samples = images.select(pl.col("n_samples").sum().over(keys) if keys else pl.col("n_samples").sum())
    exact = (group_samples.to_series().to_numpy() * n_boot <= EXACT_DRAWS) & (n_boot > 0)
    return images.with_columns(columnar.values_of(encoded, cells, exact))


def _scipy_stats():
    """`scipy.stats`, imported on first use: its import (0.5-1.5 s of CPU, most of a
    report's start-up) is paid only by what needs it (Spearman's rho of the checks)."""
    import scipy.stats

    return scipy.stats


#: Above this many differences `scipy.stats.wilcoxon` (method 'auto') uses the normal
#: approximation; at or below, the exact null distribution (or, with ties or zeros, the
#: exact permutation distribution up to `_PERMUTATION_MAX` differences).
_EXACT_MAX = 50
_PERMUTATION_MAX = 13


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``diffs``, the p-value of
    ``scipy.stats.wilcoxon(diffs)`` (zeros dropped, average ranks for ties, no continuity
    correction, method 'auto') without importing `scipy.stats`, whose import cost more
    than the whole reduction of a million records (benchmark/report_scale.py).

    The null distribution of the signed-rank sum T+ is that of a sum over a random subset
    of the ranks (every sign equally likely); ranks are multiples of 1/2, so doubled ranks
    are integers and the distribution is a product of (1 + x^r) polynomials, exact. That
    is scipy's 'exact' method without ties or zeros and its enumerating permutation test
    with them (n <= 13); above, both use the normal approximation with the tie-corrected
    variance, as here. tests/measure/test_wilcoxon.py checks equality with scipy.
    """
    d = np.asarray(diffs, dtype=np.float64)
    nonzero = d[d != 0.0]
    m = nonzero.size
    if m == 0:
        return math.nan
    magnitude = np.abs(nonzero)
    order = np.argsort(magnitude, kind="stable")
    _, first, counts = np.unique(magnitude[order], return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(m)
    ranks[order] = np.repeat(average, counts)
    r_plus = float(ranks[nonzero > 0].sum())
    ties = bool(np.any(counts > 1))
    exact = d.size <= _EXACT_MAX and (not (ties or m < d.size) or d.size <= _PERMUTATION_MAX)
    if exact:
        doubled = np.rint(2.0 * ranks).astype(np.int64)
        dist = np.zeros(int(doubled.sum()) + 1)
        dist[0] = 1.0
        for r in doubled:  # multiply by (1 + x^r): each rank with a positive sign or not
            dist[r:] = dist[r:] + dist[: dist.size - r].copy()
        dist /= dist.sum()
        t = round(2.0 * r_plus)
        return float(min(1.0, 2.0 * min(dist[: t + 1].sum(), dist[t:].sum())))
    mean = m * (m + 1) / 4.0
    tie_term = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    se = math.sqrt((m * (m + 1) * (2 * m + 1) - tie_term / 2.0) / 24.0)
    return float(math.erfc(abs(r_plus - mean) / se / math.sqrt(2.0))) if se > 0 else math.nan


def _wilcoxon(diffs: np.ndarray) -> float:
    """Wilcoxon signed-rank p-value over per-image mean differences; NaN when undefined."""
    if diffs.size < 2 or not np.any(diffs != 0.0):
        return math.nan
    return wilcoxon_p(diffs)


def paired_differences(
    records: Frame,
    baseline: str,
    by: Sequence[str] | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_ROWS,
    include_unconverged: bool = False,
) -> pl.DataFrame:
    """Each downscaler minus ``baseline`` on the same (image, seed) pairs.

    Samples are paired on (keys other than downscaler, image, seed): same model, metric,
    scale, image and SR seed, hence the same SR noise. Pairs where either side is missing
    or non-finite are dropped. Per group (``by``, which must contain ``downscaler``):

    * ``mean_diff``: mean over images of per-image mean paired differences (other minus
      baseline; positive means the downscaler loses more information than the baseline).
    * ``std_images``: std (ddof=1) over images of per-image mean differences.
    * ``ci_low``, ``ci_high``: the same two-level bootstrap as `ida_rd_table`, on the
      differences (images, then pairs within each image).
    * ``p_wilcoxon``: Wilcoxon signed-rank p-value over per-image mean differences; NaN with
      fewer than two images or all differences zero.
    * ``n_images``, ``n_pairs``: images and pairs used.

    Columns: ``*by, baseline, mean_diff, std_images, ci_low, ci_high, p_wilcoxon, n_images,
    n_pairs``; rows sorted by the keys; the baseline itself and downscalers with no pair are
    absent. At most ``max_rows`` records are read at once, counting a group's baseline
    records with it (a larger group and its baseline alone).
    """
    _check(n_boot, ci)
    _check_max_rows(max_rows)
    lf = _lazy(records)
    keys = _keys(lf, by)
    if "downscaler" not in keys:
        raise ValueError("paired differences need 'downscaler' among the group keys")
    if "seed" not in lf.collect_schema().names():
        raise ValueError("paired differences need a 'seed' column to pair samples")
    counts = _group_counts(lf, keys, include_unconverged)
    _check_baseline(counts, baseline, include_unconverged)
    names = lf.collect_schema().names()
    columns = [*keys, "image", "seed", "value", *(c for c in ("finite", "converged") if c in names)]
    use_columnar = counts["_rows"].sum() > COLUMNAR_ROWS
    tables = [
        _paired_batch(batch, columns, keys, baseline, n_boot, ci, seed, include_unconverged, use_columnar)
        for batch in _paired_batches(lf, counts, keys, baseline, max_rows)
    ]
    return _concat(tables)


def _paired_batch(
    batch: pl.LazyFrame, columns: list[str], keys: list[str], baseline: str, n_boot: int, ci: float, seed: int,
    include_unconverged: bool, use_columnar: bool,
) -> pl.DataFrame:
    """`paired_differences` of one batch: by codes and numpy (``use_columnar``) or by a join."""
    if use_columnar:
        encoded = columnar.read(batch, keys, include_unconverged)
        pairs = columnar.paired(encoded, baseline) if encoded.value.size else None
        if pairs is not None and pairs.value.size:
            return _paired_from_images(_columnar_images(pairs, keys, n_boot), keys, baseline, n_boot, ci, seed)
    # a batch is read once, then joined with itself in memory: one pass, not two
    return _paired_table(batch.select(columns).collect(), keys, baseline, n_boot, ci, seed, include_unconverged)


def report_tables(
    records: Frame,
    baseline: str | None,
    by: Sequence[str] | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_ROWS,
    include_unconverged: bool = False,
    paired_ci: float | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """`ida_rd_table` and, given ``baseline``, `paired_differences` of the same records:
    the same tables as calling both, but records that fit in one columnar batch (more than
    `COLUMNAR_ROWS`, at most ``max_rows``) are read once for both instead of twice.
    The baseline is checked first, so an unknown one fails before any bootstrap.
    ``paired_ci`` is the paired intervals' level when it is not ``ci`` (an adaptive run's
    paired rule decides at an alpha-spent level, `idard.measure.stopping`)."""
    _check(n_boot, ci)
    paired_ci = ci if paired_ci is None else paired_ci
    _check(n_boot, paired_ci)
    _check_max_rows(max_rows)
    lf = _lazy(records)
    keys = _keys(lf, by)
    total = _total_rows(lf)
    names = lf.collect_schema().names()
    shared_read = baseline is not None and "downscaler" in keys and "seed" in names and COLUMNAR_ROWS < total <= max_rows
    if not shared_read:
        paired = None if baseline is None else paired_differences(
            lf, baseline, by=keys, n_boot=n_boot, ci=paired_ci, seed=seed, max_rows=max_rows,
            include_unconverged=include_unconverged)
        table = ida_rd_table(lf, by=keys, n_boot=n_boot, ci=ci, seed=seed, max_rows=max_rows,
                             include_unconverged=include_unconverged)
        return table, paired
    encoded = columnar.read(lf, keys, include_unconverged)
    _check_baseline(columnar.group_counts(encoded), baseline, include_unconverged)
    pairs = columnar.paired(encoded, baseline)
    paired = (_paired_from_images(_columnar_images(pairs, keys, n_boot), keys, baseline, n_boot, paired_ci, seed)
              if pairs.value.size else _paired_table(lf.filter(pl.lit(False)).select(
                  *keys, "image", "seed", "value").collect(), keys, baseline, n_boot, paired_ci, seed,
                  include_unconverged))
    del pairs
    table = _table(_columnar_images(encoded, keys, n_boot), keys, n_boot, ci, seed)
    return table, paired


def _check_baseline(counts: pl.DataFrame, baseline: str, include_unconverged: bool) -> None:
    """Refuse a baseline without usable records, naming the downscalers that have some."""
    if counts.filter(pl.col("downscaler") == baseline)["_usable"].sum() > 0:
        return
    known = counts.filter(pl.col("_usable") > 0)["downscaler"].drop_nulls().unique().sort().to_list()
    usable = "finite records" if include_unconverged else "finite converged records (unconverged ones are left out)"
    raise ValueError(
        f"baseline downscaler {baseline!r} has no {usable}; downscalers with some: "
        + (", ".join(map(repr, known)) or "none")
    )


def _paired_batches(
    lf: pl.LazyFrame, counts: pl.DataFrame, keys: list[str], baseline: str, max_rows: int
) -> Iterator[pl.LazyFrame]:
    """Batches of whole non-baseline groups, each with the baseline records they pair with.

    A batch's records are its groups' plus, once per (model, metric, scale...) cell of
    theirs, the baseline's in that cell. Groups with no finite record, or whose cell has no
    finite baseline record, cannot have a pair and are not read at all, as their rows would
    be absent from the result anyway.
    """
    if counts["_rows"].sum() <= max_rows:
        yield lf
        return
    others = [k for k in keys if k != "downscaler"]
    is_base = pl.col("downscaler") == baseline
    base = counts.filter(is_base & (pl.col("_usable") > 0)).select(*others, _base_rows=pl.col("_rows"))
    candidates = counts.filter(~is_base & (pl.col("_usable") > 0))
    if others:
        candidates = candidates.join(base, on=others, how="inner", nulls_equal=True, maintain_order="left")
    else:
        candidates = candidates.with_columns(_base_rows=pl.lit(base["_base_rows"].sum(), dtype=pl.Int64))
    if candidates.is_empty():
        yield lf.filter(pl.lit(False))  # the empty result, with its schema, reading nothing
        return
    cell_keys = candidates.select(others).rows() if others else [()] * candidates.height
    cells = list(zip(cell_keys, candidates["_base_rows"].to_list()))
    for run in _pack(candidates["_rows"].to_list(), max_rows, shared=cells):
        groups = candidates[run]
        in_cells = _in_groups(groups.select(others).unique(maintain_order=True)) if others else pl.lit(True)
        yield lf.filter(_in_groups(groups.select(keys)) | (is_base & in_cells))


def _paired_table(
    records: pl.DataFrame, keys: list[str], baseline: str, n_boot: int, ci: float, seed: int,
    include_unconverged: bool,
) -> pl.DataFrame:
    """`paired_differences` of the groups in ``records``, which hold their baseline records."""
    lf = records.lazy()
    on = [*(k for k in keys if k != "downscaler"), "image", "seed"]
    usable = lf.filter(_usable(lf, include_unconverged)).select([*keys, "image", "seed", "value"])
    is_base = pl.col("downscaler") == baseline
    base = usable.filter(is_base).select([*on, pl.col("value").alias("_base")])
    pairs = (
        usable.filter(~is_base)
        .join(base, on=on, how="inner", nulls_equal=True)
        .select([*keys, "image", "seed", (pl.col("value") - pl.col("_base")).alias("value")])
    )
    return _paired_from_images(_image_frame(pairs, keys, True, include_unconverged), keys, baseline, n_boot, ci, seed)


def _paired_from_images(
    images: pl.DataFrame, keys: list[str], baseline: str, n_boot: int, ci: float, seed: int
) -> pl.DataFrame:
    """The paired table of per-image differences (with values where the exact CI needs them)."""
    table = _table(images, keys, n_boot, ci, seed, extra_key=("paired", baseline))
    p_values = [_wilcoxon(_group_arrays(part)[0]) for _, part in _groups(images, keys)]
    return table.rename({"ida_rd": "mean_diff", "n_samples": "n_pairs"}).with_columns(
        baseline=pl.lit(baseline, dtype=pl.String),
        p_wilcoxon=pl.Series(p_values, dtype=pl.Float64),
    ).select([*keys, *PAIRED_COLUMNS])


def spearman_ladder(table: pl.DataFrame, parameter: Mapping[str, float] | str, value: str = "ida_rd") -> float:
    """Spearman correlation between a degradation parameter and IDA-RD along a ladder.

    The paper validates IDA-RD by checking that it rises with the strength of a degradation
    (blur sigma 1, 2, 3 -> rho = +1; contrast-decrease factor 0.75, 0.5, 0.25 -> -1).

    ``parameter`` is either {downscaler id: parameter value} (rows of other downscalers are
    ignored) or the name of a column of ``table``. The selected rows must be one per
    downscaler, i.e. ``table`` filtered to one model/metric/scale. rho is rounded to 12
    decimals: it is a correlation of exact ranks, so anything beyond is rounding error, and
    a perfect ladder then reads exactly +1.0 or -1.0. NaN for fewer than two rows or a
    constant side.
    """
    if isinstance(parameter, str):
        rows = table.with_columns(_p=pl.col(parameter).cast(pl.Float64))
    else:
        mapping = pl.DataFrame({"downscaler": list(parameter), "_p": [float(v) for v in parameter.values()]})
        rows = table.join(mapping, on="downscaler", how="inner")
    rows = rows.drop_nulls(["_p", value])
    if "downscaler" in rows.columns and rows["downscaler"].n_unique() != rows.height:
        raise ValueError("several rows per downscaler: filter the table to one model, metric and scale first")
    x, y = rows["_p"].to_numpy(), rows[value].to_numpy()
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return round(float(_scipy_stats().spearmanr(x, y).statistic), 12)


def format_pm(mean: float | None, std: float | None, digits: int = 3) -> str:
    """The paper's ``0.321±0.048`` (IDA-RD ± std over images); just the mean when std is
    missing (one image), and ``—`` when the mean is (no finite sample)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f}±{std:.{digits}f}"
