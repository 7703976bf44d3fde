"""Specifications of the large-input paths of `idard.measure.statistics`: the columnar
per-image reduction (`idard.measure.columnar`) and the fast form of the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from idard.measure import statistics
from idard.measure.records import NONFINITE_SAMPLE
from idard.measure.statistics import ida_rd_table, paired_differences, report_tables, shared_image_replicates

NAN = float("nan")


def _records(n_images: int, k: int, downscalers: dict[str, float], seed: int = 0) -> pl.DataFrame:
    """Difficulty per image, a shift per downscaler, SR noise shared by seed, skewed own
    noise, failures, unconverged samples, a second metric, shuffled rows."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.2, 0.6, n_images)
    shared = rng.normal(0.0, 0.02, (n_images, k))
    frames = []
    for metric in ("lpips", "psnr"):
        for name, shift in downscalers.items():
            value = (difficulty[:, None] + shift + shared + rng.gamma(2.0, 0.01, (n_images, k))).ravel()
            frames.append(pl.DataFrame({
                "image": np.repeat([f"img{i:05d}" for i in range(n_images)], k), "downscaler": name,
                "model": "m", "metric": metric, "seed": np.tile(np.arange(k, dtype=np.int64), n_images),
                "scale": np.int64(4), "value": value if metric == "lpips" else 30 - 10 * value,
            }))
    frame = pl.concat(frames)
    failed = pl.Series(rng.random(frame.height) < 0.03)
    unconverged = pl.Series(rng.random(frame.height) < 0.05)
    broken = pl.Series(rng.random(frame.height) < 0.3) & failed  # some failures are error records
    return frame.with_columns(
        value=pl.when(failed).then(NAN).otherwise(pl.col("value")), finite=~failed, converged=~unconverged,
        error=pl.when(broken).then(pl.lit("ImageError: cannot read")).when(failed).then(pl.lit(NONFINITE_SAMPLE))
        .otherwise(None),
    ).sample(fraction=1.0, shuffle=True, seed=seed)


@pytest.fixture
def columnar_always(monkeypatch):
    monkeypatch.setattr(statistics, "COLUMNAR_ROWS", 0)


@pytest.mark.parametrize("include_unconverged", [False, True])
def test_the_columnar_reduction_gives_the_tables_of_the_list_path(include_unconverged: bool, monkeypatch) -> None:
    """Counts identical, means to the last bits, CIs identical (same values, same seeds)."""
    frame = _records(40, 6, {"a": 0.0, "b": 0.02, "c": 0.05})
    kwargs = {"n_boot": 200, "include_unconverged": include_unconverged}
    lists = (ida_rd_table(frame, **kwargs), paired_differences(frame, "a", **kwargs))
    monkeypatch.setattr(statistics, "COLUMNAR_ROWS", 0)
    codes = (ida_rd_table(frame, **kwargs), paired_differences(frame, "a", **kwargs))
    for expected, got in zip(lists, codes):
        assert got.schema == expected.schema
        assert_frame_equal(got, expected, check_exact=False, rel_tol=1e-12, abs_tol=1e-15)
        assert got.select(pl.col("^n_.*$")).equals(expected.select(pl.col("^n_.*$")))


def test_the_columnar_reduction_keeps_null_keys_and_images_without_usable_samples(columnar_always) -> None:
    frame = pl.DataFrame({
        "image": ["a", "a", "b", "c"], "downscaler": ["x", "x", "x", None], "seed": [0, 1, 0, 0],
        "scale": [4, 4, 4, None], "value": [0.1, 0.3, NAN, 0.5], "finite": [True, True, False, True],
    })
    table = ida_rd_table(frame, by=["downscaler", "scale"], n_boot=50)
    assert table.select("downscaler", "scale", "ida_rd", "n_images", "n_nonfinite").rows() == [
        ("x", 4, pytest.approx(0.2), 1, 1), (None, None, 0.5, 1, 0)]


def test_per_image_sums_follow_seed_order_whatever_the_row_order(columnar_always) -> None:
    frame = _records(30, 7, {"a": 0.0, "b": 0.1}, seed=3)
    first = ida_rd_table(frame, n_boot=100, seed=1)
    for shuffle in range(3):
        assert ida_rd_table(frame.sample(fraction=1.0, shuffle=True, seed=shuffle), n_boot=100, seed=1).equals(first)


def test_one_read_for_both_tables_gives_what_two_calls_give(columnar_always) -> None:
    frame = _records(30, 5, {"bicubic": 0.0, "b": 0.03})
    table, paired = report_tables(frame, "bicubic", n_boot=100, seed=4)
    assert table.equals(ida_rd_table(frame, n_boot=100, seed=4))
    assert paired.equals(paired_differences(frame, "bicubic", n_boot=100, seed=4))
    with pytest.raises(ValueError, match="baseline downscaler 'nope'"):
        report_tables(frame, "nope")


# --------------------------------------------------------------------------- fast bootstrap


def test_shared_image_draws_have_the_two_level_mean_and_variance() -> None:
    """E = mean of image means; Var = [var of image means + mean within variance] / n."""
    rng = np.random.default_rng(0)
    means = rng.uniform(0, 1, (25, 2))
    within = rng.uniform(0, 0.01, (25, 2))
    centre, spread = shared_image_replicates(means, within, 20_000, np.random.default_rng(1), chunk_elements=1000)
    reps = centre + np.sqrt(spread) * np.random.default_rng(2).standard_normal(centre.shape)
    expected_var = (means.var(axis=0) + within.mean(axis=0)) / 25
    assert reps.mean(axis=0) == pytest.approx(means.mean(axis=0), abs=4 * math.sqrt(expected_var.max() / 20_000))
    assert reps.var(axis=0) == pytest.approx(expected_var, rel=0.05)


def test_fast_cis_agree_with_the_exact_bootstrap_within_its_monte_carlo_error(monkeypatch) -> None:
    """Each method repeated over seeds: the mean endpoints differ by less than the exact
    method's own seed-to-seed spread, for the table and the paired differences, on a
    group far smaller than the fast form is used for (its hardest case)."""
    frame = _records(25, 6, {"bicubic": 0.0, "b": 0.03}, seed=5).filter(pl.col("metric") == "lpips")

    def endpoints(exact: bool) -> np.ndarray:
        monkeypatch.setattr(statistics, "EXACT_DRAWS", 2**62 if exact else 0)
        runs = []
        for seed in range(12):
            table, paired = report_tables(frame, "bicubic", n_boot=400, seed=seed)
            runs.append(np.concatenate([table.select("ci_low", "ci_high").to_numpy().ravel(),
                                        paired.select("ci_low", "ci_high").to_numpy().ravel()]))
        return np.array(runs)

    exact, fast = endpoints(True), endpoints(False)
    mc_error = exact.std(axis=0, ddof=1)
    assert np.all(np.abs(fast.mean(axis=0) - exact.mean(axis=0)) < 1.5 * mc_error)


def test_fast_cis_depend_only_on_the_group_its_seed_and_key(monkeypatch) -> None:
    monkeypatch.setattr(statistics, "EXACT_DRAWS", 0)
    frame = _records(30, 4, {"a": 0.0, "b": 0.05})
    first = ida_rd_table(frame, n_boot=200, seed=7)
    alone = ida_rd_table(frame.filter(pl.col("downscaler") == "b"), n_boot=200, seed=7)
    assert alone.equals(first.filter(pl.col("downscaler") == "b"))
    assert not ida_rd_table(frame, n_boot=200, seed=8)["ci_low"].equals(first["ci_low"])
    row = first.row(0, named=True)
    assert row["ci_low"] < row["ida_rd"] < row["ci_high"]
