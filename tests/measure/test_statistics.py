"""Specifications of `idard.measure.statistics`: IDA-RD tables, bootstrap CIs, paired tests."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idard.measure.statistics import (
    bootstrap_means,
    format_pm,
    ida_rd_table,
    paired_differences,
    per_image,
    spearman_ladder,
)

NAN = float("nan")


def records(rows: list[tuple], model: str = "m", metric: str = "lpips", scale: int | None = 4) -> pl.DataFrame:
    """Records from (image, downscaler, seed, value[, finite]) tuples; finite defaults to
    whether the value is a finite number, as `evaluate` writes it."""
    data = {"image": [], "downscaler": [], "model": [], "metric": [], "seed": [], "value": [], "finite": []}
    for row in rows:
        image, downscaler, seed, value = row[:4]
        data["image"].append(image)
        data["downscaler"].append(downscaler)
        data["model"].append(model)
        data["metric"].append(metric)
        data["seed"].append(seed)
        data["value"].append(value)
        data["finite"].append(row[4] if len(row) > 4 else math.isfinite(value))
    frame = pl.DataFrame(data, schema_overrides={"seed": pl.Int64, "value": pl.Float64})
    return frame.with_columns(scale=pl.lit(scale, dtype=pl.Int64)) if scale is not None else frame


def synthetic(n_images: int, k: int, downscalers: dict[str, float], seed: int = 0) -> pl.DataFrame:
    """Per image a random difficulty, per downscaler a shift, per sample noise shared by seed
    across downscalers (as with real SR noise), so paired differences are low-variance."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.2, 0.6, n_images)
    noise = rng.normal(0.0, 0.02, (n_images, k))
    frames = []
    for name, shift in downscalers.items():
        frames.append(pl.DataFrame({
            "image": np.repeat([f"img{i:06d}" for i in range(n_images)], k),
            "downscaler": name, "model": "m", "metric": "lpips",
            "seed": np.tile(np.arange(k, dtype=np.int64), n_images),
            "scale": np.int64(4),
            "value": (difficulty[:, None] + shift + noise).ravel(),
            "finite": True,
        }))
    return pl.concat(frames)


# --------------------------------------------------------------------------- per image and point estimates

HAND = records([
    ("a", "bicubic", 0, 1.0), ("a", "bicubic", 1, 2.0), ("a", "bicubic", 2, 3.0),
    ("b", "bicubic", 0, 10.0), ("b", "bicubic", 1, NAN),          # failed sample
    ("b", "bicubic", 2, 999.0, False),                          # errored: value must not count
    ("c", "bicubic", 0, NAN), ("c", "bicubic", 1, NAN),            # image with no finite sample
])


def test_per_image_means_stds_and_counts() -> None:
    out = per_image(HAND)
    assert out.columns == ["downscaler", "model", "metric", "scale", "image", "mean", "std", "n_samples", "n_nonfinite",
                           "n_errors", "n_unconverged"]
    assert out["image"].to_list() == ["a", "b", "c"]
    assert out["mean"].to_list() == [2.0, 10.0, None]
    assert out["std"].to_list()[0] == pytest.approx(1.0)  # ddof=1 of 1, 2, 3
    assert out["std"].to_list()[1:] == [None, None]        # undefined for < 2 samples
    assert out["n_samples"].to_list() == [3, 1, 0]
    assert out["n_nonfinite"].to_list() == [0, 2, 2]


def test_ida_rd_is_mean_of_per_image_means_not_pooled_mean() -> None:
    table = ida_rd_table(HAND, n_boot=200)
    assert table.columns == ["downscaler", "model", "metric", "scale", "ida_rd", "std_images", "ci_low", "ci_high",
                             "n_images", "n_samples", "n_nonfinite", "n_errors", "n_unconverged"]
    row = table.row(0, named=True)
    assert row["ida_rd"] == pytest.approx((2.0 + 10.0) / 2)      # pooled mean would be 16 / 4 = 4
    assert row["std_images"] == pytest.approx(math.sqrt(32.0))   # std([2, 10], ddof=1)
    assert (row["n_images"], row["n_samples"], row["n_nonfinite"]) == (2, 4, 4)


def test_one_image_has_no_std_but_a_ci_from_its_samples() -> None:
    frame = records([("a", "x", s, v) for s, v in enumerate([1.0, 2.0, 3.0, 4.0])])
    row = ida_rd_table(frame, n_boot=500).row(0, named=True)
    assert row["ida_rd"] == 2.5 and row["std_images"] is None
    assert 1.0 <= row["ci_low"] < 2.5 < row["ci_high"] <= 4.0


def test_group_with_only_failed_samples_stays_visible() -> None:
    table = ida_rd_table(records([("a", "bad", 0, NAN), ("a", "good", 0, 0.5)]), n_boot=10)
    bad = table.filter(pl.col("downscaler") == "bad").row(0, named=True)
    assert bad["ida_rd"] is None and bad["ci_low"] is None
    assert (bad["n_images"], bad["n_samples"], bad["n_nonfinite"]) == (0, 0, 1)


def test_default_keys_follow_the_columns_present_and_rows_are_sorted() -> None:
    frame = pl.concat([records([("a", d, 0, 0.1)], metric=m) for d in ("z", "b") for m in ("psnr", "lpips")])
    table = ida_rd_table(frame, n_boot=0)
    assert table.select("downscaler", "metric").rows() == [("b", "lpips"), ("b", "psnr"), ("z", "lpips"), ("z", "psnr")]
    assert table["ci_low"].to_list() == [None] * 4  # n_boot=0: no CI
    assert "scale" not in ida_rd_table(frame.drop("scale"), n_boot=0).columns
    pooled = ida_rd_table(frame, by=["downscaler"], n_boot=0)
    assert pooled.columns[0] == "downscaler" and pooled.height == 2


def test_lazyframe_gives_the_same_table_as_dataframe() -> None:
    frame = synthetic(30, 4, {"a": 0.0, "b": 0.1})
    assert ida_rd_table(frame.lazy(), n_boot=100).equals(ida_rd_table(frame, n_boot=100))
    assert per_image(frame.lazy()).equals(per_image(frame))
    assert paired_differences(frame.lazy(), "a", n_boot=100).equals(paired_differences(frame, "a", n_boot=100))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="lack"):
        ida_rd_table(HAND.drop("image"))
    with pytest.raises(ValueError, match="ci"):
        ida_rd_table(HAND, ci=95)
    with pytest.raises(ValueError, match="baseline"):
        paired_differences(HAND, "nonexistent")


# --------------------------------------------------------------------------- bootstrap CI


def test_ci_contains_the_estimate_and_shrinks_with_more_images() -> None:
    small = ida_rd_table(synthetic(10, 8, {"a": 0.0}, seed=1), n_boot=1000).row(0, named=True)
    large = ida_rd_table(synthetic(1000, 8, {"a": 0.0}, seed=1), n_boot=1000).row(0, named=True)
    for row in (small, large):
        assert row["ci_low"] < row["ida_rd"] < row["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < 0.3 * (small["ci_high"] - small["ci_low"])  # ~ 1 / sqrt(100)


def test_ci_is_deterministic_given_seed_and_independent_of_row_order_and_other_groups() -> None:
    frame = synthetic(40, 5, {"a": 0.0, "b": 0.05})
    first = ida_rd_table(frame, n_boot=300, seed=7)
    assert ida_rd_table(frame, n_boot=300, seed=7).equals(first)
    assert ida_rd_table(frame.sample(fraction=1.0, shuffle=True, seed=3), n_boot=300, seed=7).equals(first)
    alone = ida_rd_table(frame.filter(pl.col("downscaler") == "b"), n_boot=300, seed=7)
    assert alone.equals(first.filter(pl.col("downscaler") == "b"))
    assert not ida_rd_table(frame, n_boot=300, seed=8)["ci_low"].equals(first["ci_low"])


@pytest.mark.parametrize("counts", [[4, 4, 4, 4, 4], [1, 2, 5, 3, 8]], ids=["equal-K", "ragged"])
def test_bootstrap_replicates_have_the_two_level_mean_and_variance(counts: list[int]) -> None:
    """Var of one replicate = [var over images of means + mean of sigma_i^2 / c_i] / n (ddof 0):
    the first term from resampling images, the second from resampling samples within them."""
    rng = np.random.default_rng(0)
    groups = [rng.normal(i, 0.5 + i, c) for i, c in enumerate(counts)]
    values, c = np.concatenate(groups), np.array(counts)
    means = np.array([g.mean() for g in groups])
    expected_var = (means.var() + np.mean([g.var() / len(g) for g in groups])) / len(groups)
    reps = bootstrap_means(values, c, 40_000, np.random.default_rng(1), chunk_elements=1000)
    assert reps.mean() == pytest.approx(means.mean(), abs=4 * math.sqrt(expected_var / reps.size))
    assert reps.var() == pytest.approx(expected_var, rel=0.05)


def test_bootstrap_with_one_sample_per_image_is_the_ordinary_image_bootstrap() -> None:
    values = np.array([0.0, 1.0])
    reps = bootstrap_means(values, np.ones(2, dtype=int), 2000, np.random.default_rng(0))
    assert set(np.unique(reps)) <= {0.0, 0.5, 1.0}
    assert reps.var() == pytest.approx(0.125, rel=0.1)  # var of a mean of 2 Bernoulli(1/2)


@settings(max_examples=40, deadline=None)
@given(
    images=st.lists(
        st.lists(st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False), min_size=1, max_size=5),
        min_size=1, max_size=8,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_ci_lies_within_the_range_of_the_data(images: list[list[float]], seed: int) -> None:
    """A replicate is a mean of resampled image means, so the CI lies within [min, max] of the
    sample values and, with one sample per image, within [min, max] of the per-image means.
    (With several samples per image it may leave the range of per-image means: an image
    with samples 0 and 1 has mean 0.5 but resampled means 0 and 1.)"""
    frame = records([(f"i{i}", "x", s, v) for i, vals in enumerate(images) for s, v in enumerate(vals)])
    row = ida_rd_table(frame, n_boot=50, seed=seed).row(0, named=True)
    flat = [v for vals in images for v in vals]
    assert min(flat) <= row["ci_low"] <= row["ci_high"] <= max(flat)
    first = records([(f"i{i}", "x", 0, vals[0]) for i, vals in enumerate(images)])
    row = ida_rd_table(first, n_boot=50, seed=seed).row(0, named=True)
    means = [vals[0] for vals in images]
    assert min(means) <= row["ci_low"] <= row["ci_high"] <= max(means)


# --------------------------------------------------------------------------- paired differences


def test_a_downscaler_against_an_identical_copy_differs_by_exactly_zero() -> None:
    frame = synthetic(20, 4, {"a": 0.0})
    frame = pl.concat([frame, frame.with_columns(downscaler=pl.lit("copy"))])
    out = paired_differences(frame, "a", n_boot=200)
    assert out.columns == ["downscaler", "model", "metric", "scale", "baseline", "mean_diff", "std_images", "ci_low",
                           "ci_high", "p_wilcoxon", "n_images", "n_pairs"]
    row = out.row(0, named=True)
    assert row["downscaler"] == "copy" and row["baseline"] == "a"
    assert (row["mean_diff"], row["std_images"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0, 0.0)
    assert math.isnan(row["p_wilcoxon"])
    assert (row["n_images"], row["n_pairs"]) == (20, 80)


def test_a_constant_shift_gives_that_shift() -> None:
    exact = records([(f"i{i}", d, s, 0.125 * (i + s) + shift) for i in range(5) for s in range(3)
                     for d, shift in (("base", 0.0), ("worse", 0.25))])  # dyadic: exact in binary
    row = paired_differences(exact, "base", n_boot=100).row(0, named=True)
    assert (row["mean_diff"], row["ci_low"], row["ci_high"]) == (0.25, 0.25, 0.25)
    assert row["p_wilcoxon"] == pytest.approx(0.0625)  # all 5 images positive: 2 / 2**5

    noisy = synthetic(200, 8, {"a": 0.0, "b": 0.03, "c": -0.01})
    out = paired_differences(noisy, "a", n_boot=500)
    assert out["downscaler"].to_list() == ["b", "c"]
    assert out["mean_diff"].to_list() == pytest.approx([0.03, -0.01], abs=1e-12)


def test_paired_ci_is_much_tighter_than_unpaired_and_wilcoxon_detects_a_small_shift() -> None:
    frame = synthetic(50, 8, {"a": 0.0, "b": 0.01})
    rng = np.random.default_rng(5)  # per-sample noise that is not shared, on top
    frame = frame.with_columns(value=pl.col("value") + rng.normal(0, 0.005, frame.height))
    row = paired_differences(frame, "a", n_boot=500).row(0, named=True)
    table = ida_rd_table(frame, n_boot=500)
    assert row["ci_low"] > 0.0 and row["p_wilcoxon"] < 1e-6
    unpaired_width = table["ci_high"][0] - table["ci_low"][0]
    assert row["ci_high"] - row["ci_low"] < 0.2 * unpaired_width


def test_pairs_missing_or_failed_on_either_side_are_dropped() -> None:
    frame = records([
        ("i", "base", 0, 1.0), ("i", "base", 1, 2.0), ("i", "base", 2, 3.0),
        ("i", "new", 0, 1.5), ("i", "new", 1, NAN), ("i", "new", 2, 4.0), ("i", "new", 3, 9.0),  # seed 3: no base
        ("j", "base", 0, NAN), ("j", "new", 0, 5.0),                                             # base failed
        ("k", "base", 0, 1.0), ("k", "base", 1, 1.0), ("k", "new", 0, 2.0), ("k", "new", 1, 3.0),
        ("l", "new", 0, 2.0),                                                                    # no base image
    ])
    row = paired_differences(frame, "base", n_boot=100).row(0, named=True)
    # image i: seeds 0 and 2 -> diffs 0.5, 1.0 -> 0.75; image k: 1.0, 2.0 -> 1.5
    assert row["mean_diff"] == pytest.approx((0.75 + 1.5) / 2)
    assert (row["n_images"], row["n_pairs"]) == (2, 4)
    assert math.isnan(paired_differences(frame.filter(pl.col("image") == "i"), "base", n_boot=10)["p_wilcoxon"][0])


def test_pairs_never_cross_models_or_metrics() -> None:
    frame = pl.concat([
        records([("i", "base", 0, 1.0), ("i", "new", 0, 1.5)], metric="lpips"),
        records([("i", "base", 0, 30.0), ("i", "new", 0, 20.0)], metric="psnr"),
    ])
    out = paired_differences(frame, "base", n_boot=10)
    assert out.select("metric", "mean_diff").rows() == [("lpips", 0.5), ("psnr", -10.0)]


# --------------------------------------------------------------------------- validation ladders and formatting


LADDER = pl.DataFrame({
    "downscaler": ["blur(sigma=1.0)", "blur(sigma=2.0)", "blur(sigma=3.0)", "contrast(factor=0.75)",
                   "contrast(factor=0.5)", "contrast(factor=0.25)", "bicubic"],
    "ida_rd": [0.20, 0.31, 0.45, 0.12, 0.19, 0.33, 0.10],
    "sigma": [1.0, 2.0, 3.0, None, None, None, None],
})


def test_spearman_is_plus_one_and_minus_one_on_monotone_ladders() -> None:
    assert spearman_ladder(LADDER, {"blur(sigma=1.0)": 1.0, "blur(sigma=2.0)": 2.0, "blur(sigma=3.0)": 3.0}) == 1.0
    assert spearman_ladder(LADDER, {"contrast(factor=0.75)": 0.75, "contrast(factor=0.5)": 0.5,
                                    "contrast(factor=0.25)": 0.25}) == -1.0
    assert spearman_ladder(LADDER, "sigma") == 1.0  # a column; rows without a parameter ignored
    five = pl.DataFrame({"downscaler": list("abcde"), "ida_rd": [1.0, 2.0, 3.0, 4.0, 5.5]})
    assert spearman_ladder(five, dict(zip("abcde", [0.05, 0.1, 0.2, 0.3, 0.4]))) == 1.0  # not 0.9999999999999999
    assert spearman_ladder(LADDER, {"blur(sigma=1.0)": 1.0, "blur(sigma=3.0)": 3.0, "blur(sigma=2.0)": 5.0}) == 0.5
    assert math.isnan(spearman_ladder(LADDER, {"bicubic": 1.0}))


def test_spearman_refuses_a_table_with_several_models() -> None:
    table = pl.concat([LADDER.with_columns(model=pl.lit(m)) for m in ("m1", "m2")])
    with pytest.raises(ValueError, match="one model"):
        spearman_ladder(table, {"blur(sigma=1.0)": 1.0, "blur(sigma=2.0)": 2.0})


def test_paper_style_formatting() -> None:
    assert format_pm(0.32149, 0.04751) == "0.321±0.048"
    assert format_pm(0.32149, 0.04751, digits=4) == "0.3215±0.0475"
    assert format_pm(0.5, None) == "0.500"
    assert format_pm(None, None) == "—"


# --------------------------------------------------------------------------- bounded memory


def test_batches_of_whole_groups_give_the_numbers_of_one_pass() -> None:
    """max_rows only changes how many records are read at once: results are identical,
    including with failures, a second metric and batches smaller than one group."""
    frame = synthetic(60, 5, {"a": 0.0, "b": 0.02, "c": 0.05}, seed=4)
    frame = pl.concat([frame, frame.with_columns(metric=pl.lit("psnr"), value=30 - 10 * pl.col("value"))])
    failed = pl.Series(np.random.default_rng(1).random(frame.height) < 0.03)
    frame = frame.with_columns(value=pl.when(failed).then(NAN).otherwise(pl.col("value")), finite=~failed)
    frame = frame.sample(fraction=1.0, shuffle=True, seed=2)
    one_pass = (ida_rd_table(frame, n_boot=200), paired_differences(frame, "a", n_boot=200), per_image(frame))
    for max_rows in (1, 299, 300, 1000):
        lf = frame.lazy()
        assert ida_rd_table(lf, n_boot=200, max_rows=max_rows).equals(one_pass[0])
        assert paired_differences(lf, "a", n_boot=200, max_rows=max_rows).equals(one_pass[1])
        assert per_image(lf, max_rows=max_rows).equals(one_pass[2])
    with pytest.raises(ValueError, match="max_rows"):
        ida_rd_table(frame, max_rows=0)


def test_batches_hold_at_most_max_rows_records_unless_one_group_is_larger() -> None:
    """The memory bound itself: what one batch reads, for the table and for paired differences."""
    from idard.measure.statistics import _group_batches, _group_counts, _paired_batches

    frame = synthetic(50, 4, {"a": 0.0, "b": 0.1, "c": 0.2, "d": 0.3})  # 4 groups of 200 records
    keys = ["downscaler", "model", "metric", "scale"]
    for max_rows, expected in ((450, [400, 400]), (600, [600, 200]), (150, [200] * 4), (800, [800])):
        sizes = [b.select(pl.len()).collect().item() for b in _group_batches(frame.lazy(), keys, max_rows)]
        assert sizes == expected
    counts = _group_counts(frame.lazy(), keys)  # paired: each batch also reads its baseline, once
    for max_rows, expected in ((700, [600, 400]), (450, [400] * 3), (150, [400] * 3)):
        batches = _paired_batches(frame.lazy(), counts, keys, "a", max_rows)
        assert [b.select(pl.len()).collect().item() for b in batches] == expected


def test_per_image_numbers_do_not_depend_on_row_order() -> None:
    """Per-image means come from the seed-ordered values, not from grouped partial sums
    whose combination order (and last bits) can vary between runs and row orders."""
    frame = synthetic(40, 6, {"a": 0.0, "b": 0.1}, seed=6)
    first = per_image(frame)
    for shuffle in range(5):
        assert per_image(frame.sample(fraction=1.0, shuffle=True, seed=shuffle)).equals(first)


# --------------------------------------------------------------------------- scale


def test_a_million_rows() -> None:
    """1e6 records (5 downscalers x 25,000 images x 8 seeds) through every reduction."""
    frame = synthetic(25_000, 8, {f"d{j}": 0.01 * j for j in range(5)}, seed=2)
    assert frame.height == 1_000_000
    table = ida_rd_table(frame.lazy(), n_boot=200)
    assert table["n_images"].to_list() == [25_000] * 5 and table["n_samples"].sum() == 1_000_000
    assert (table["ci_low"] < table["ida_rd"]).all() and (table["ida_rd"] < table["ci_high"]).all()
    paired = paired_differences(frame.lazy(), "d0", n_boot=200)
    assert paired["mean_diff"].to_list() == pytest.approx([0.01, 0.02, 0.03, 0.04], abs=1e-9)


def test_unconverged_samples_are_left_out_of_means_and_counted() -> None:
    """PULSE samples that never reached eps are dropped as the reference drops them, but
    the table says how many, per downscaler."""
    records = pl.DataFrame({
        "downscaler": ["nearest"] * 4, "image": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
        "value": [0.2, 0.9, 0.4, 0.6], "finite": [True] * 4, "converged": [True, False, True, None],
    })
    row = ida_rd_table(records, by=["downscaler"], n_boot=0).row(0, named=True)
    assert row["ida_rd"] == pytest.approx((0.2 + 0.5) / 2)
    assert (row["n_samples"], row["n_nonfinite"], row["n_unconverged"]) == (3, 0, 1)


def test_unconverged_samples_enter_every_mean_on_request_and_are_still_counted() -> None:
    """With include_unconverged a model's best attempt counts like any sample: in the
    table, per image and in the pairs; a non-finite sample stays out regardless."""
    frame = pl.DataFrame({
        "downscaler": ["nearest"] * 4 + ["bicubic"] * 4, "image": ["a", "a", "b", "b"] * 2,
        "seed": [0, 1] * 4, "value": [0.2, 0.9, 0.4, NAN, 0.1, 0.3, 0.2, 0.2],
        "finite": [True, True, True, False] + [True] * 4,
        "converged": [True, False, True, False] + [True, False, True, True],
    })
    table = ida_rd_table(frame, by=["downscaler"], n_boot=0, include_unconverged=True)
    row = table.filter(pl.col("downscaler") == "nearest").row(0, named=True)
    assert row["ida_rd"] == pytest.approx(((0.2 + 0.9) / 2 + 0.4) / 2)
    assert (row["n_samples"], row["n_nonfinite"], row["n_unconverged"]) == (3, 1, 1)
    images = per_image(frame, by=["downscaler"], include_unconverged=True)
    assert images.filter(pl.col("downscaler") == "bicubic")["n_samples"].to_list() == [2, 2]
    paired = paired_differences(frame, "bicubic", by=["downscaler"], n_boot=0, include_unconverged=True)
    assert paired.row(0, named=True)["n_pairs"] == 3  # (a,0), (a,1), (b,0): (b,1) is non-finite
    assert paired_differences(frame, "bicubic", by=["downscaler"], n_boot=0).row(0, named=True)["n_pairs"] == 2


def test_a_baseline_whose_samples_all_missed_their_goal_is_refused_saying_so() -> None:
    frame = pl.DataFrame({"downscaler": ["bicubic", "nearest"], "image": ["a", "a"], "seed": [0, 0],
                          "value": [0.1, 0.2], "finite": [True, True], "converged": [False, True]})
    with pytest.raises(ValueError, match="'bicubic' has no finite converged records .unconverged ones are left out."):
        paired_differences(frame, "bicubic", by=["downscaler"], n_boot=0)
    assert paired_differences(frame, "bicubic", by=["downscaler"], n_boot=0, include_unconverged=True).height == 1


def _exact_signed_rank_p(diffs: list[float]) -> float:
    """Two-sided exact p-value of the signed-rank statistic, by enumerating all 2^n signs
    (distinct non-zero |differences|, so ranks have no ties)."""
    import itertools

    ranks = {d: r for r, d in enumerate(sorted(diffs, key=abs), start=1)}
    observed = sum(ranks[d] for d in diffs if d > 0)
    n = len(diffs)
    sums = [sum(r for r, plus in zip(range(1, n + 1), signs) if plus)
            for signs in itertools.product((False, True), repeat=n)]
    low = sum(s <= observed for s in sums) / len(sums)
    high = sum(s >= observed for s in sums) / len(sums)
    return min(1.0, 2 * min(low, high))


def test_wilcoxon_uses_the_signs_of_per_image_differences() -> None:
    # Per-image mean differences of both signs; each image's two seeds average to it.
    diffs = [0.5, -1.5, 2.5, 3.5, -4.5, 5.5, 6.5, -0.25]
    rows = []
    for i, d in enumerate(diffs):
        for s, jitter in enumerate((-0.125, 0.125)):
            rows += [(f"i{i}", "base", s, 10.0), (f"i{i}", "new", s, 10.0 + d + jitter)]
    row = paired_differences(records(rows), "base", n_boot=10).row(0, named=True)
    expected = _exact_signed_rank_p(diffs)
    assert expected == 80 / 256  # T- = 1 + 3 + 6 = 10: 40 of 256 sign patterns reach it, times two sides
    assert row["p_wilcoxon"] == pytest.approx(expected, rel=1e-12)
    assert row["mean_diff"] == pytest.approx(sum(diffs) / len(diffs))
