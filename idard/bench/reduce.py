"""From a run directory's record store to its IDA-RD report, in bounded memory.

`scan_records` opens the store lazily and `build_report` reduces it to the IDA-RD table
(downscaler x model x metric x scale) and, given a baseline, the paired differences. This
is what ``idard-bench report`` and the end of ``idard-bench run`` compute; rendering and
writing the tables is `idard.bench.report`'s job.

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
from pathlib import Path

import polars as pl

from idard.bench.store import PART_GLOB, RecordStore
from idard.measure.records import KEY_COLUMNS
from idard.measure.statistics import DEFAULT_MAX_ROWS, ida_rd_table, paired_differences

#: The rows of the report: one per (downscaler, model, metric, scale).
REPORT_KEYS = ("downscaler", "model", "metric", "scale")
#: The record columns the reduction reads; the store's other columns are never loaded.
REPORT_COLUMNS = (*KEY_COLUMNS, "scale", "value", "finite")
#: Read too when present (records of frames made before the column existed lack it).
OPTIONAL_COLUMNS = ("converged",)


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
) -> Report:
    """The IDA-RD table of ``records`` and, if ``baseline`` is given, paired differences.

    ``n_boot`` resamples give the 95% CIs, deterministic given ``seed`` (a group's CI does
    not depend on the other groups, on row order or on ``max_rows``). ``max_rows`` bounds
    the records held at once; lowering it trades passes over the records for memory.
    ``include_unconverged`` puts samples that missed their model's goal (PULSE's eps) in
    the means instead of leaving them out (see `idard.measure.statistics`); either way
    the table counts them. Raises `ValueError` naming ``baseline`` when it has no finite
    records.
    """
    lf = _needed(records.lazy())
    keys = list(REPORT_KEYS)
    paired = None
    if baseline is not None:  # first: an unknown baseline fails before the long bootstrap
        paired = paired_differences(lf, baseline, by=keys, n_boot=n_boot, seed=seed, max_rows=max_rows,
                                    include_unconverged=include_unconverged)
    table = ida_rd_table(lf, by=keys, n_boot=n_boot, seed=seed, max_rows=max_rows,
                         include_unconverged=include_unconverged)
    return Report(table=table, paired=paired, baseline=baseline, n_boot=n_boot, seed=seed,
                  include_unconverged=include_unconverged)
