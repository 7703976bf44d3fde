"""Rendering IDA-RD tables: a rich table for the terminal, Markdown and CSV for papers."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.table import Table

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
}


def _display(table: pl.DataFrame) -> pl.DataFrame:
    ci = [
        None if low is None or high is None else f"[{low:.4f}, {high:.4f}]"
        for low, high in zip(table["ci_low"].to_list(), table["ci_high"].to_list())
    ]
    shown = table.with_columns(pl.Series("ci", ci, dtype=pl.String))
    return shown.sort([c for c in ("model", "metric", "scale") if c in shown.columns] + ["ida_rd"])


def _cells(row: dict) -> list[str]:
    out = []
    for column, (_, fmt) in _COLUMNS.items():
        if column in row:
            value = row[column]
            out.append("—" if value is None else fmt.format(value))
    return out


def rich_table(table: pl.DataFrame, title: str = "IDA-RD (lower = less information lost)") -> Table:
    shown = _display(table)
    out = Table(title=title, title_justify="left")
    for column, (header, _) in _COLUMNS.items():
        if column in shown.columns:
            out.add_column(header, justify="left" if column in ("downscaler", "model", "metric") else "right")
    for row in shown.iter_rows(named=True):
        out.add_row(*_cells(row))
    return out


def markdown(table: pl.DataFrame) -> str:
    shown = _display(table)
    headers = [h for c, (h, _) in _COLUMNS.items() if c in shown.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in shown.iter_rows(named=True)]
    return "\n".join(lines) + "\n"


def write_reports(table: pl.DataFrame, out_dir: Path) -> list[Path]:
    """``ida_rd.md``, ``ida_rd.csv`` and ``ida_rd.parquet`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "ida_rd.md", out_dir / "ida_rd.csv", out_dir / "ida_rd.parquet"]
    paths[0].write_text(markdown(table))
    table.write_csv(paths[1])
    table.write_parquet(paths[2])
    return paths
