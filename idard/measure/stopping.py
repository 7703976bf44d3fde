"""Adaptive sampling: when to stop drawing SR samples, decided from the records alone.

A fixed K (8 samples x every image x every downscaler) costs the same whatever precision
it reaches. A suite may instead ask for a precision (`SamplingRule`)::

    samples: {min: 4, max: 64, ci_halfwidth: 0.002}      # each group's IDA-RD CI
    samples: {min: 4, max: 64, paired_halfwidth: 0.002}  # each downscaler's paired CI vs the baseline

The rule. Seeds are drawn in rounds on a schedule fixed before any data are seen: K =
min, 2 min, 4 min, ... up to max (`SamplingRule.looks`; max is always the last look), so
there are L looks. After each look every group that is still sampling (group =
downscaler x model x metric [x scale], the rows of the IDA-RD table) gets one of:

* ``target met``: its CI's half-width is at most the target (paired rule: or its paired
  CI excludes 0, the difference is known to have a sign);
* ``images limit``: more seeds cannot reach the target. The CI has two variance sources,
  which images were chosen and which samples were drawn (the two-level bootstrap of
  `idard.measure.statistics`), and more seeds shrink only the second. The between-image
  variance is estimated by moments, tau^2 = var(image means) - mean(s_i^2 / c_i) (s_i^2
  the within-image variance, c_i its samples); when z sqrt(tau^2 / n) alone is at least
  the target, and the image means vary clearly more than sampling noise would make them
  (`IMAGE_EVIDENCE`), the group stops instead of burning samples up to max. More images
  would help; more seeds would not. Like the width rule it looks at spreads, not at the
  mean, so it costs no coverage;
* ``max reached``: the last look, target not met;
* ``continue``: the next look draws more seeds for it.

Decisions are a pure function of the records with seeds below the look's K (and a fixed
bootstrap seed), so a resumed run recomputes nothing and reaches the same decisions.

Why the intervals stay valid (and when they need a correction). Stopping on the data can
make the interval reported at the stopping time optimistic:

* Width rules (``ci_halfwidth``; the width part of ``paired_halfwidth``) stop on the
  interval's width, i.e. on the spread of the data, not on where the mean lies. For
  normal data the sample mean is independent of the sample variance, so the stopping
  time carries (almost) no information about the mean's error, and the interval at the
  stopping time keeps its nominal coverage up to the small dependence of a bootstrap's
  width on its centre. These intervals are reported at the nominal level (95 %).
* The ``excludes 0`` part of the paired rule stops exactly when the interval says
  something: optional stopping. Looking L times at a 95 % interval and stopping at the
  first that excludes the truth 0 misses 0 more often than 5 % (up to 1 - 0.95^L for
  independent looks; correlated looks less). The correction is alpha spent over the
  pre-declared looks (Bonferroni): every look's interval is at level 1 - alpha / L, so by
  the union bound the probability that *any* look's interval misses the truth is at most
  alpha, and the interval reported at the stopping time (one of them) covers with at
  least 1 - alpha, however the stopping time depended on the data. A paired rule's
  decisions and the paired table of its run are therefore at level 1 - alpha / L
  (`SamplingRule.level`), and the table's CI header says so (``98.75% CI`` for 4 looks);
  the IDA-RD table, whose intervals no rule stops on, stays at the nominal level.

benchmark/adaptive_coverage.py measures both by simulation (a two-level model of image
effects and per-sample noise, >= 1,000 simulated studies, the same bootstrap code as the
tables): benchmark/results/adaptive_coverage.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import polars as pl

from idard.measure import statistics

CONTINUE = "continue"
TARGET_MET = "target met"
EXCLUDES_ZERO = "excludes 0"
IMAGES_LIMIT = "images limit"
MAX_REACHED = "max reached"
#: Every decision; all but `CONTINUE` stop a group.
DECISIONS = (CONTINUE, TARGET_MET, EXCLUDES_ZERO, IMAGES_LIMIT, MAX_REACHED)
#: Group keys of the decisions (the IDA-RD table's rows).
GROUP_KEYS = ("downscaler", "model", "metric", "scale")


@dataclasses.dataclass(frozen=True)
class SamplingRule:
    """How many seeds to draw: at least ``min``, at most ``max``, until a target is met.

    Exactly one of ``ci_halfwidth`` (each group's IDA-RD CI) and ``paired_halfwidth``
    (each downscaler's paired CI against ``baseline``) is set. ``ci`` is the nominal level;
    `level` the one decisions and reported intervals use.
    """

    min: int
    max: int
    ci_halfwidth: float | None = None
    paired_halfwidth: float | None = None
    baseline: str | None = None
    ci: float = 0.95

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise ValueError(f"need 1 <= min <= max, got min {self.min}, max {self.max}")
        if (self.ci_halfwidth is None) == (self.paired_halfwidth is None):
            raise ValueError("give exactly one target: ci_halfwidth or paired_halfwidth")
        if not self.target > 0:
            raise ValueError(f"the target half-width must be > 0, got {self.target}")
        if self.paired and not self.baseline:
            raise ValueError("paired_halfwidth needs a baseline downscaler")

    @property
    def paired(self) -> bool:
        return self.paired_halfwidth is not None

    @property
    def target(self) -> float:
        return float(self.paired_halfwidth if self.paired else self.ci_halfwidth)  # type: ignore[arg-type]

    def looks(self) -> tuple[int, ...]:
        """The pre-declared K of each look: min, 2 min, 4 min, ..., and max last."""
        out, k = [], self.min
        while k < self.max:
            out.append(k)
            k *= 2
        return (*out, self.max)

    @property
    def level(self) -> float:
        """The CI level of decisions and reported intervals: nominal for a width rule,
        1 - alpha / L (Bonferroni over the L looks) for the paired rule, which stops when
        its interval excludes 0 (see the module docstring)."""
        alpha = 1.0 - self.ci
        return 1.0 - alpha / len(self.looks()) if self.paired else self.ci

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


#: The image means' variance must be at least this multiple of what the samples alone
#: would give before a group is said to be at its images limit. With no image effect the
#: ratio is F-distributed around 1 (F(n-1, n(c-1))); it exceeds 3 with probability about
#: 1 % at 10 images x 4 seeds, so sampling noise rarely passes for an image effect.
IMAGE_EVIDENCE = 3.0


def between_halfwidth(means: np.ndarray, stds: np.ndarray, counts: np.ndarray, level: float) -> float:
    """The CI half-width that infinitely many seeds would leave: the image part alone.

    tau^2 = var(image means) - mean(s_i^2 / c_i), by moments: the image means' spread less
    what the finite samples add to it. NaN (not known) with fewer than 2 images or when
    the image means vary less than `IMAGE_EVIDENCE` times the samples' share: then the
    estimate is mostly sampling noise, and more seeds may well help.
    """
    means = np.asarray(means, dtype=np.float64)
    if means.size < 2:
        return math.nan
    within = float((np.nan_to_num(np.asarray(stds, dtype=np.float64) ** 2)
                    / np.asarray(counts, dtype=np.float64)).mean())
    spread = float(np.var(means, ddof=1))
    if spread < IMAGE_EVIDENCE * within:
        return math.nan
    # (n-1)/n: the bootstrap's plug-in variance of the image means, as the tables' CI has it
    plug_in = (spread - within) * (means.size - 1) / means.size
    return NormalDist().inv_cdf(0.5 + level / 2.0) * math.sqrt(plug_in / means.size)


def decision(low: float | None, high: float | None, between: float, k: int, rule: SamplingRule) -> str:
    """One group's decision at a look of K = ``k`` from its CI and its image-only half-width."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return MAX_REACHED if k >= rule.max else CONTINUE  # no interval yet (one image, no finite sample)
    if (high - low) / 2.0 <= rule.target:
        return TARGET_MET
    if rule.paired and (low > 0.0 or high < 0.0):
        return EXCLUDES_ZERO
    if not math.isnan(between) and between >= rule.target:
        return IMAGES_LIMIT
    return MAX_REACHED if k >= rule.max else CONTINUE


def decide_arrays(values: np.ndarray, counts: np.ndarray, k: int, rule: SamplingRule, rng: np.random.Generator,
                  n_boot: int = 1000, level: float | None = None) -> tuple[str, float, float]:
    """(decision, ci_low, ci_high) of one group given as flat values and per-image counts:
    the bootstrap of the tables (`statistics.bootstrap_interval`) and `decision`. What the
    coverage simulation runs per simulated look; ``level`` replaces the rule's (to show
    what an uncorrected paired rule would do)."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    level = rule.level if level is None else level
    low, high = statistics.bootstrap_interval(values, counts, n_boot, level, rng)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    means = np.add.reduceat(values, starts) / counts
    stds = np.array([np.std(values[s:s + c], ddof=1) if c > 1 else 0.0 for s, c in zip(starts, counts)])
    return decision(low, high, between_halfwidth(means, stds, counts, level), k, rule), low, high


def _paired_records(records: pl.DataFrame, baseline: str, keys: list[str]) -> pl.DataFrame:
    """Each downscaler minus the baseline on the same (keys, image, seed), as records."""
    on = [*(k for k in keys if k != "downscaler"), "image", "seed"]
    usable = records.filter(pl.col("value").is_finite() & pl.col("finite").fill_null(False))
    base = usable.filter(pl.col("downscaler") == baseline).select(*on, _base=pl.col("value"))
    return (usable.filter(pl.col("downscaler") != baseline).join(base, on=on, how="inner", nulls_equal=True)
            .with_columns(value=pl.col("value") - pl.col("_base")).drop("_base"))


def decide(records: pl.DataFrame | pl.LazyFrame, rule: SamplingRule, k: int, n_boot: int = 1000,
           seed: int = 0) -> pl.DataFrame:
    """Each group's decision at the look of K = ``k``, from ``records`` (those of the
    groups still sampling). Records of seeds at or past the look's K-th seed are ignored,
    so a look sees exactly what it saw when first made, whatever was drawn since.

    The CIs are the tables' own (`statistics.ida_rd_table`, `paired_differences`) at
    `SamplingRule.level`. Columns: the group keys, ``k``, ``ci_low``, ``ci_high``,
    ``halfwidth``, ``between_halfwidth`` (what infinitely many seeds would leave),
    ``decision``. Under the paired rule the baseline's rows are absent (it is sampled
    while any downscaler it is compared with is).
    """
    frame = records.lazy() if isinstance(records, pl.DataFrame) else records
    names = frame.collect_schema().names()
    keys = [c for c in GROUP_KEYS if c in names]
    seeds = sorted(frame.select(pl.col("seed").unique()).collect()["seed"].to_list())[:k]
    frame = frame.filter(pl.col("seed").is_in(seeds))
    if "finite" not in names:
        frame = frame.with_columns(finite=pl.lit(True))
    cols = [*keys, "image", "seed", "value", "finite", *(c for c in ("converged", "error") if c in names)]
    data = frame.select(cols).collect()
    if rule.paired:
        data = _paired_records(data, rule.baseline, keys)  # type: ignore[arg-type]
        table = statistics.paired_differences(frame, rule.baseline, by=keys, n_boot=n_boot, ci=rule.level,
                                              seed=seed)
    else:
        table = statistics.ida_rd_table(data, by=keys, n_boot=n_boot, ci=rule.level, seed=seed)
    images = statistics.per_image(data, by=keys) if data.height else None
    rows = []
    for row in table.iter_rows(named=True):
        key = {c: row[c] for c in keys}
        between = math.nan
        if images is not None:
            part = images.filter(*(pl.col(c).eq_missing(v) for c, v in key.items())).filter(pl.col("n_samples") > 0)
            between = between_halfwidth(part["mean"].to_numpy(), part["std"].fill_null(0.0).to_numpy(),
                                        part["n_samples"].to_numpy(), rule.level)
        low, high = row["ci_low"], row["ci_high"]
        rows.append({**key, "k": k, "ci_low": low, "ci_high": high,
                     "halfwidth": None if low is None or high is None else (high - low) / 2.0,
                     "between_halfwidth": None if math.isnan(between) else between,
                     "decision": decision(low, high, between, k, rule)})
    schema = {**{c: data.schema[c] for c in keys}, "k": pl.Int64, "ci_low": pl.Float64, "ci_high": pl.Float64,
              "halfwidth": pl.Float64, "between_halfwidth": pl.Float64, "decision": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def stopped(decisions: pl.DataFrame) -> pl.Expr:
    """True for rows whose decision stops sampling."""
    return pl.col("decision") != CONTINUE


def describe(rule: SamplingRule) -> str:
    """One line for tables: the rule, its looks and the level of its intervals."""
    target = (f"paired CI half-width <= {rule.target:g} or excludes 0 (vs {rule.baseline})" if rule.paired
              else f"CI half-width <= {rule.target:g}")
    looks: Sequence[int] = rule.looks()
    level = (f"paired CIs at {rule.level:.2%} (Bonferroni: {1 - rule.ci:.0%} spent over {len(looks)} looks)"
             if rule.paired else f"CIs at {rule.level:.0%}")
    return f"adaptive sampling: {target}; K in {', '.join(map(str, looks))}; {level}"
