"""From a run directory's record store to its IDA-RD report, in bounded memory.

`scan_records` opens the store lazily and `build_report` reduces it to the IDA-RD table
(downscaler x model x metric x scale) and, given a baseline, the paired differences. This
is what ``idard-bench report`` and the end of ``idard-bench run`` compute; rendering and
writing the tables is `idard.bench.report.tables`'s job.

A run directory can hold 10 million records in thousands of small parts while its driver
is still appending to it, so:

* The scan is a snapshot: it lists the complete parts once (``part-*.parquet``; a
  ``.part-*.parquet.tmp`` being written is never matched) and every pass of the reduction
  reads that same list, so a part flushed mid-report cannot make the table and the paired
  differences disagree.
* Only the columns the statistics need are read, and `idard.measure.statistics` reduces
  at most ``max_rows`` records at a time (batches of whole groups read with a predicate on
  the group keys), so memory does not grow with the number of records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from idard.bench.store.records import PART_GLOB, RecordStore
from idard.measure.records import KEY_COLUMNS
from idard.measure.statistics import DEFAULT_MAX_ROWS, ida_rd_table, report_tables

#: The rows of the report: one per (downscaler, model, metric, scale).
REPORT_KEYS = ("downscaler", "model", "metric", "scale")
#: The record columns the reduction reads; the store's other columns are never loaded.
REPORT_COLUMNS = (*KEY_COLUMNS, "scale", "value", "finite")
#: Read too when present (records of frames made before the column existed lack it).
OPTIONAL_COLUMNS = ("converged", "error", "higher_is_better")


@dataclasses.dataclass(frozen=True)
class Report:
    """The reduced tables of a run and the settings that produced them.

    ``table`` has one row per `REPORT_KEYS` (see `ida_rd_table` for its columns);
    ``paired`` holds each downscaler minus ``baseline`` (see `paired_differences`), or is
    None when no baseline was asked for.
    """

    table: pl.DataFrame
    paired: pl.DataFrame | None
    baseline: str | None
    n_boot: int
    seed: int
    include_unconverged: bool = False
    ci: float = 0.95
    #: The paired intervals' level: ``ci``, or an adaptive paired rule's alpha-spent level.
    paired_ci: float = 0.95
    #: Why there are no paired differences although a baseline was asked for (the table
    #: is still complete): e.g. the baseline has no finite converged records.
    paired_error: str | None = None
    #: Which record keys were reduced (`idard.bench.suite.scope.Scope.describe`).
    scope: str = "the records given"
    #: The suite the keys are of (name and hash), written beside the reduction.
    suite: Mapping[str, object] = dataclasses.field(default_factory=dict)
    #: An adaptive run's decisions (`idard.bench.run.adaptive.read_sampling`): K per group and
    #: why sampling stopped, with the rule's one-line description; None for fixed K.
    sampling: tuple[pl.DataFrame, str] | None = None

    def reduction(self) -> dict[str, object]:
        """How the tables were reduced, written beside them so a table says how it was made."""
        return {"n_boot": self.n_boot, "bootstrap_seed": self.seed, "ci_level": self.ci,
                "baseline": self.baseline,
                **({"paired_ci_level": self.paired_ci} if self.paired_ci != self.ci else {}),
                "unconverged": "in the means" if self.include_unconverged else "left out of the means"}


def scan_records(run_dir: str | Path | RecordStore) -> pl.LazyFrame:
    """All records of ``run_dir`` (a directory or object-store URI), as a lazy scan.

    Every column of the store is available (``error``, provenance...), but nothing is read
    until a query is collected, and then only the columns and rows it needs. Raises
    `FileNotFoundError` naming the directory when it holds no complete part, since an empty
    table would otherwise look like a run whose every sample failed.
    """
    store = run_dir if isinstance(run_dir, RecordStore) else RecordStore(run_dir)
    parts = store.parts()
    if not parts:
        raise FileNotFoundError(f"{run_dir}: no records (no {PART_GLOB} under {store.records_dir})")
    return store.scan(parts)


def _needed(records: pl.LazyFrame) -> pl.LazyFrame:
    """``records`` narrowed to `REPORT_COLUMNS`, refusing records that lack one."""
    names = records.collect_schema().names()
    missing = [c for c in REPORT_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"records lack column(s) {missing} needed for the report; they have {names}")
    return records.select(*REPORT_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in names))


def build_report(
    records: pl.LazyFrame | pl.DataFrame,
    *,
    baseline: str | None,
    n_boot: int = 1000,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_ROWS,
    include_unconverged: bool = False,
    scope: str = "the records given",
    suite: Mapping[str, object] | None = None,
    paired_ci: float = 0.95,
) -> Report:
    """The IDA-RD table of ``records`` and, if ``baseline`` is given, paired differences.

    ``n_boot`` resamples give the 95% CIs, deterministic given ``seed`` (a group's CI does
    not depend on the other groups, on row order or on ``max_rows``). ``max_rows`` bounds
    the records held at once; lowering it trades passes over the records for memory.
    ``include_unconverged`` puts samples that missed their model's goal (PULSE's eps) in
    the means instead of leaving them out (see `idard.measure.statistics`); either way
    the table counts them. ``baseline`` may be any spelling of a downscaler in the records;
    an unknown one raises `SpecError` ("unknown downscaler", with the known ones). A
    baseline without usable records leaves ``paired`` None and says why in
    ``paired_error``: the IDA-RD table is always complete. ``scope`` says which keys
    ``records`` are (the caller filtered them) and ``suite`` whose; both are carried to
    every table (`idard.bench.report.model.table_models`). ``paired_ci``: the paired
    intervals' level (an adaptive run's paired rule decides at 1 - alpha / L, and its
    table shows the intervals it decided on).
    """
    lf = _needed(records.lazy())
    keys = list(REPORT_KEYS)
    paired, paired_error = None, None
    if baseline is not None:  # first: an unknown baseline fails before the long bootstrap
        baseline = resolve_baseline(lf, baseline)
    options = {"by": keys, "n_boot": n_boot, "seed": seed, "max_rows": max_rows,
               "include_unconverged": include_unconverged}
    try:  # one call for both tables: records that fit in one batch are read once for both
        table, paired = report_tables(lf, baseline, paired_ci=paired_ci, **options)
    except ValueError as exc:  # no usable baseline records: the table still stands
        if baseline is None:
            raise
        table = ida_rd_table(lf, **options)
        hint = "" if include_unconverged else "; --include-unconverged puts unconverged samples in the means"
        paired_error = f"no paired differences: {exc}{hint}"
    table = with_direction(table, lf)
    if paired is not None:
        paired = with_loss_direction(paired, table)
    return Report(table=table, paired=paired, baseline=baseline, n_boot=n_boot, seed=seed,
                  include_unconverged=include_unconverged, paired_ci=paired_ci, paired_error=paired_error, scope=scope,
                  suite=dict(suite or {}))


def resolve_baseline(records: pl.LazyFrame, baseline: str) -> str:
    """The downscaler id of the records that ``baseline`` means, in any spelling
    (``blur``, ``blur(sigma=1)``, ``blur(sigma=1.0)``); an unknown one raises `ValueError`
    saying "unknown downscaler" and listing the known ones."""
    known = (records.select("downscaler").unique().collect(engine="streaming")["downscaler"]
             .drop_nulls().to_list())
    if baseline in known:  # the usual case: no need to load the registry (and with it torch)
        return baseline
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.downscalers import DOWNSCALERS

    return DOWNSCALERS.match(baseline, known)


def _directions(records: pl.LazyFrame, metrics: list[str]) -> dict[str, bool]:
    """metric id -> higher_is_better: from the records, else from the metric registry."""
    out: dict[str, bool] = {}
    if "higher_is_better" in records.collect_schema().names():
        known = (records.filter(pl.col("higher_is_better").is_not_null())
                 .group_by("metric").agg(pl.col("higher_is_better").first()).collect(engine="streaming"))
        out.update(dict(known.iter_rows()))
    missing = [m for m in metrics if m not in out]
    if missing:  # records of an older idard: ask the registry (imports torch, once)
        # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
        from idard.measure.distortions import DISTORTIONS
        from idard.measure.registry import SpecError

        for metric in missing:
            try:
                out[metric] = bool(DISTORTIONS.create(metric).higher_is_better)
            except SpecError:
                out[metric] = False
    return out


def with_direction(table: pl.DataFrame, records: pl.LazyFrame) -> pl.DataFrame:
    """``table`` with ``higher_is_better`` per metric, so that tables can sort and sign every
    metric the same way: from least to most information lost."""
    directions = _directions(records, table["metric"].unique().to_list())
    return table.with_columns(
        higher_is_better=pl.col("metric").replace_strict(directions, default=False, return_dtype=pl.Boolean))


def with_loss_direction(paired: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """Paired differences with ``loss_diff``, ``loss_ci_low``, ``loss_ci_high``: the
    difference signed so that positive means "loses more information than the baseline"
    for every metric (for PSNR, SSIM, MS-SSIM the raw difference is negated), and
    ``p_floor``, the smallest two-sided Wilcoxon p that ``n_images`` images can give
    (2 / 2**n: with 4 images 0.125, so no test on 4 images can reach 0.05)."""
    directions = dict(table.select("metric", "higher_is_better").unique().iter_rows())
    sign = pl.when(pl.col("metric").replace_strict(directions, default=False, return_dtype=pl.Boolean)) \
        .then(pl.lit(-1.0)).otherwise(pl.lit(1.0))
    return paired.with_columns(
        loss_diff=pl.col("mean_diff") * sign,
        loss_ci_low=pl.when(sign > 0).then(pl.col("ci_low")).otherwise(-pl.col("ci_high")),
        loss_ci_high=pl.when(sign > 0).then(pl.col("ci_high")).otherwise(-pl.col("ci_low")),
        p_floor=(2.0 / pl.lit(2.0).pow(pl.col("n_images").cast(pl.Float64))).clip(upper_bound=1.0),
    )
