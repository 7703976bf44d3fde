"""Rendering IDA-RD tables: a rich table for the terminal, Markdown and CSV for papers.

Two tables, each written as Markdown (for reading and pasting), CSV (for spreadsheets) and
Parquet (exact types, for further analysis) by `write_reports`:

* ``ida_rd.*``: the IDA-RD table of `idard.measure.statistics.ida_rd_table`, one row per
  (downscaler, model, metric, scale).
* ``paired.*``: with a baseline, `paired_differences` against it. It is a table of its
  own rather than a section of ``ida_rd.md`` because its columns differ and because a CSV
  or Parquet file holds one table.

Markdown and the terminal show rounded numbers, IDA-RD sorted within each (model, metric,
scale) and paired differences by signed difference, with ``—`` for an undefined std, CI or
p-value; CSV and Parquet hold the tables unrounded, in their own (key) order.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import polars as pl
from rich.table import Table

from idard.bench.store import RecordStore

#: table column -> (header, format); a column absent from a table is skipped
_COLUMNS = {
    "downscaler": ("downscaler", "{}"),
    "model": ("model", "{}"),
    "metric": ("metric", "{}"),
    "scale": ("scale", "x{}"),
    "ida_rd": ("IDA-RD", "{:.4f}"),
    "std_images": ("± images", "{:.4f}"),
    "ci": ("95% CI", "{}"),
    "n_images": ("images", "{}"),
    "n_samples": ("samples", "{}"),
    "n_nonfinite": ("non-finite", "{}"),
    "n_unconverged": ("unconverged", "{}"),
}


def _headers(unconverged_in_mean: bool) -> dict[str, tuple[str, str]]:
    """`_COLUMNS` with the unconverged header saying whether those samples are in the mean,
    since the same count means either "left out" or "included" depending on the reduction."""
    label = "unconverged (in mean)" if unconverged_in_mean else "unconverged (left out)"
    return _COLUMNS | {"n_unconverged": (label, _COLUMNS["n_unconverged"][1])}


def _display(table: pl.DataFrame) -> pl.DataFrame:
    ci = [
        None if low is None or high is None else f"[{low:.4f}, {high:.4f}]"
        for low, high in zip(table["ci_low"].to_list(), table["ci_high"].to_list())
    ]
    shown = table.with_columns(pl.Series("ci", ci, dtype=pl.String))
    if "n_unconverged" in shown.columns and shown["n_unconverged"].fill_null(0).sum() == 0:
        shown = shown.drop("n_unconverged")  # only models with a convergence goal (PULSE) have any
    return shown.sort([c for c in ("model", "metric", "scale") if c in shown.columns] + ["ida_rd"])


def _cells(row: dict) -> list[str]:
    out = []
    for column, (_, fmt) in _COLUMNS.items():
        if column in row:
            value = row[column]
            out.append("—" if value is None else fmt.format(value))
    return out


def rich_table(
    table: pl.DataFrame, title: str = "IDA-RD (lower = less information lost)", unconverged_in_mean: bool = False
) -> Table:
    shown = _display(table)
    out = Table(title=title, title_justify="left")
    for column, (header, _) in _headers(unconverged_in_mean).items():
        if column in shown.columns:
            out.add_column(header, justify="left" if column in ("downscaler", "model", "metric") else "right")
    for row in shown.iter_rows(named=True):
        out.add_row(*_cells(row))
    return out


def markdown(table: pl.DataFrame, unconverged_in_mean: bool = False) -> str:
    shown = _display(table)
    headers = [h for c, (h, _) in _headers(unconverged_in_mean).items() if c in shown.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in shown.iter_rows(named=True)]
    return "\n".join(lines) + "\n"


_PAIRED = {
    "downscaler": ("downscaler", "{}"),
    "model": ("model", "{}"),
    "metric": ("metric", "{}"),
    "scale": ("scale", "x{}"),
    "baseline": ("minus", "{}"),
    "mean_diff": ("mean difference", "{:+.4f}"),
    "ci": ("95% CI", "{}"),
    "p_wilcoxon": ("Wilcoxon p", "{:.3g}"),
    "n_images": ("images", "{}"),
    "n_pairs": ("pairs", "{}"),
}


def _missing(value: object) -> bool:
    """Null, or NaN: `paired_differences` gives a NaN p-value when the test is undefined."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _paired_rows(paired: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of a paired-differences table, by signed mean difference."""
    shown = paired.with_columns(pl.Series("ci", [
        None if lo is None or hi is None else f"[{lo:+.4f}, {hi:+.4f}]"
        for lo, hi in zip(paired["ci_low"].to_list(), paired["ci_high"].to_list())], dtype=pl.String))
    columns = [c for c in _PAIRED if c in shown.columns]
    rows = [["—" if _missing(row[c]) else _PAIRED[c][1].format(row[c]) for c in columns]
            for row in shown.sort("mean_diff").iter_rows(named=True)]
    return [_PAIRED[c][0] for c in columns], rows


def rich_paired_table(paired: pl.DataFrame) -> Table:
    """Paired differences against a baseline: same images and seeds, so far tighter CIs."""
    headers, rows = _paired_rows(paired)
    out = Table(title="Paired differences (positive = loses more than the baseline)", title_justify="left")
    for header in headers:
        out.add_column(header, justify="left" if header in ("downscaler", "model", "metric", "minus") else "right")
    for row in rows:
        out.add_row(*row)
    return out


def paired_markdown(paired: pl.DataFrame) -> str:
    """The paired differences as a Markdown table, formatted as in the terminal."""
    headers, rows = _paired_rows(paired)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _encoded(table: pl.DataFrame, render) -> dict[str, bytes]:
    """``table`` as Markdown (rendered by ``render``), CSV and Parquet file contents."""
    parquet = io.BytesIO()
    table.write_parquet(parquet)
    return {"md": render(table).encode(), "csv": table.write_csv().encode(), "parquet": parquet.getvalue()}


def write_reports(
    table: pl.DataFrame,
    run_dir: RecordStore | str | Path,
    paired: pl.DataFrame | None = None,
    unconverged_in_mean: bool = False,
) -> list[str]:
    """``ida_rd.{md,csv,parquet}`` in ``run_dir``, and ``paired.{md,csv,parquet}`` if given.

    ``run_dir`` is a directory, an object-store URI or its `RecordStore`: the tables go
    beside the records they were reduced from, each file written atomically (a reader
    never sees half a table). Returns the paths written.
    """
    store = run_dir if isinstance(run_dir, RecordStore) else RecordStore(run_dir)
    render = functools.partial(markdown, unconverged_in_mean=unconverged_in_mean)
    files = {f"ida_rd.{ext}": data for ext, data in _encoded(table, render).items()}
    if paired is not None:
        files |= {f"paired.{ext}": data for ext, data in _encoded(paired, paired_markdown).items()}
    return [store.write_bytes(name, data) for name, data in files.items()]
