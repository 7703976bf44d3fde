"""The adaptive sampling decision (`idard.measure.stopping`) on constructed records."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from idard.measure import stopping
from idard.measure.stopping import SamplingRule, decide


def _records(image_means: dict[str, list[float]], noise: dict[str, float], seeds: int, rng_seed: int = 0
             ) -> pl.DataFrame:
    """Records of downscalers whose image means and per-sample noise are given: a
    two-level model (every downscaler shares the same seeds, as real ones do)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for downscaler, means in image_means.items():
        for i, mean in enumerate(means):
            for seed in range(seeds):
                rows.append((f"img{i}", downscaler, "m", "lpips-alex", seed,
                             float(mean + noise[downscaler] * rng.standard_normal()), True))
    return pl.DataFrame(rows, schema={"image": pl.String, "downscaler": pl.String, "model": pl.String,
                                      "metric": pl.String, "seed": pl.Int64, "value": pl.Float64,
                                      "finite": pl.Boolean}, orient="row")


def _decisions(table: pl.DataFrame) -> dict[str, str]:
    return dict(table.select("downscaler", "decision").iter_rows())


def test_looks_double_from_min_and_end_at_max() -> None:
    assert SamplingRule(min=4, max=64, ci_halfwidth=0.01).looks() == (4, 8, 16, 32, 64)
    assert SamplingRule(min=3, max=20, ci_halfwidth=0.01).looks() == (3, 6, 12, 20)
    assert SamplingRule(min=8, max=8, ci_halfwidth=0.01).looks() == (8,)


def test_a_width_rule_keeps_the_nominal_level_and_a_paired_rule_spends_alpha_over_its_looks() -> None:
    assert SamplingRule(min=4, max=64, ci_halfwidth=0.01).level == 0.95
    assert SamplingRule(min=4, max=64, paired_halfwidth=0.01, baseline="bicubic").level == pytest.approx(0.99)


@pytest.mark.parametrize("bad", [dict(min=0, max=4, ci_halfwidth=0.1), dict(min=8, max=4, ci_halfwidth=0.1),
                                 dict(min=4, max=8), dict(min=4, max=8, ci_halfwidth=0.1, paired_halfwidth=0.1),
                                 dict(min=4, max=8, ci_halfwidth=0.0), dict(min=4, max=8, paired_halfwidth=0.1)])
def test_an_impossible_rule_is_refused(bad) -> None:
    with pytest.raises(ValueError):
        SamplingRule(**bad)


# Images that agree (small between-image spread) with noisy samples: the target is reachable by
# more seeds. 'noisy' needs many more seeds than 'quiet'; 'spread' has images far apart.
SAME = [0.30, 0.301, 0.299, 0.30, 0.302, 0.298, 0.30, 0.301, 0.299, 0.30]
SPREAD = [0.1, 0.5, 0.2, 0.6, 0.3, 0.4, 0.15, 0.55, 0.25, 0.45]


def test_each_stop_reason_of_the_width_rule() -> None:
    records = _records({"quiet": SAME, "noisy": SAME, "spread": SPREAD}, {"quiet": 0.001, "noisy": 0.05,
                                                                          "spread": 0.001}, seeds=4)
    rule = SamplingRule(min=4, max=16, ci_halfwidth=0.005)
    first = _decisions(decide(records, rule, k=4, n_boot=500))
    assert first == {"quiet": stopping.TARGET_MET, "noisy": stopping.CONTINUE, "spread": stopping.IMAGES_LIMIT}
    last = _decisions(decide(records, rule, k=16, n_boot=500))  # only 4 seeds held: still not met at the last look
    assert last["noisy"] == stopping.MAX_REACHED


def test_more_seeds_meet_a_target_that_the_images_allow() -> None:
    records = _records({"noisy": SAME}, {"noisy": 0.05}, seeds=64)
    rule = SamplingRule(min=4, max=64, ci_halfwidth=0.01)
    by_look = {k: _decisions(decide(records, rule, k=k, n_boot=500))["noisy"] for k in rule.looks()}
    assert by_look[4] == stopping.CONTINUE and by_look[64] == stopping.TARGET_MET


def test_a_look_sees_only_the_seeds_below_its_k() -> None:
    """Decisions depend on the look, not on what was drawn since: a resumed run agrees."""
    records = _records({"noisy": SAME}, {"noisy": 0.05}, seeds=64)
    rule = SamplingRule(min=4, max=64, ci_halfwidth=0.01)
    at_4 = decide(records, rule, k=4, n_boot=500)
    assert at_4.equals(decide(records.filter(pl.col("seed") < 4), rule, k=4, n_boot=500))
    assert at_4["decision"].to_list() == [stopping.CONTINUE]


def test_the_paired_rule_stops_a_downscaler_whose_difference_has_a_sign() -> None:
    base = SAME
    records = _records({"bicubic": base, "worse": [m + 0.05 for m in base], "same": base},
                       {"bicubic": 0.02, "worse": 0.02, "same": 0.02}, seeds=4)
    rule = SamplingRule(min=4, max=16, paired_halfwidth=0.001, baseline="bicubic")
    out = decide(records, rule, k=4, n_boot=500)
    assert set(out["downscaler"]) == {"worse", "same"}  # the baseline follows the others
    assert _decisions(out) == {"worse": stopping.EXCLUDES_ZERO, "same": stopping.CONTINUE}
    assert (out["ci_high"] - out["ci_low"]).min() > 0.002  # neither is narrow: 'worse' stopped for its sign


def test_non_finite_samples_never_enter_a_decision() -> None:
    records = _records({"quiet": SAME}, {"quiet": 0.001}, seeds=4).with_columns(
        value=pl.when(pl.col("seed") == 3).then(float("nan")).otherwise(pl.col("value")),
        finite=pl.col("seed") != 3)
    out = decide(records, SamplingRule(min=4, max=8, ci_halfwidth=0.005), k=4, n_boot=200)
    assert out["decision"].to_list() == [stopping.TARGET_MET] and out["ci_low"].is_finite().all()
