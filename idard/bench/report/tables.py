"""Rendering report tables: the terminal, Markdown, CSV, Parquet and JSON.

Every renderer here takes a `idard.bench.report.model.TableModel` and nothing else (the
HTML page's table is `idard.bench.report.views.table_html`, the same way), so every
surface lists the same rows in the same order under the same labels, with the same
notes and banner; only the rounding differs. Two tables, each written by `write_reports`
as Markdown (for reading and pasting), CSV (for spreadsheets), Parquet (exact types, for
further analysis) and, on request, JSON:

* ``ida_rd.*``: one row per (downscaler, model, metric, scale).
* ``paired_vs_<baseline>.*``: with a baseline, the paired differences against it, named by
  the baseline so that reports against two baselines never replace each other. It is a
  table of its own because its columns differ and because a CSV or Parquet file holds one
  table.

Markdown and the terminal show rounded numbers, with ``—`` for an undefined std, CI or
p-value. CSV, Parquet and JSON hold every number unrounded and each plug-in's id beside
its label (``downscaler_id``), plus ``ci_few_images`` and a readable ``caveats`` per row.
Markdown, Parquet (key-value metadata ``idard``) and JSON carry the title, the banner,
the scope of keys reduced, the reduction's settings and the notes.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

from idard.bench.report.model import TableModel
from idard.bench.store.records import RecordStore

#: The formats `write_reports` can write, by file suffix.
FORMATS = ("md", "csv", "parquet", "json")
DEFAULT_FORMATS = ("md", "csv", "parquet")


def markdown_table(model: TableModel) -> str:
    """The bare Markdown table: a header line, a rule, one line per row."""
    lines = ["| " + " | ".join(model.headers()) + " |", "|" + "---|" * len(model.columns)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in model.cells()]) + "\n"


def markdown(model: TableModel) -> str:
    """``ida_rd.md``: title, banner, scope and reduction, the table, then its notes."""
    head = [f"**{model.title}**", ""]
    if model.banner:
        head += [f"> **{model.banner}**", ""]
    if model.scope:
        head += [f"keys: {model.scope}", ""]
    if model.reduction:
        head += ["; ".join(f"{k}: {v}" for k, v in model.reduction.items()), ""]
    notes = "".join(f"\n{note}\n" for note in model.notes)
    return "\n".join(head) + "\n" + markdown_table(model) + notes


def csv(model: TableModel) -> str:
    """The rows, unrounded, with ids and caveats: a CSV holds no heading."""
    return model.rows.write_csv()


def parquet(model: TableModel) -> bytes:
    """Parquet bytes of the rows; the heading goes into the key-value metadata (``idard``)."""
    import pyarrow.parquet as pq

    arrow = model.rows.to_arrow()
    meta = json.dumps(model.heading(), default=str).encode()
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), b"idard": meta})
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer)
    return buffer.getvalue()


def _plain(value: object) -> object:
    """JSON has no NaN: an undefined number (a p-value of one image) is null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def json_text(model: TableModel) -> str:
    """The heading, the shown columns and the rows (unrounded)."""
    rows = [{k: _plain(v) for k, v in row.items()} for row in model.rows.iter_rows(named=True)]
    columns = [{"name": c.name, "header": c.header} for c in model.columns]
    return json.dumps({**model.heading(), "columns": columns, "rows": rows}, indent=2, default=str) + "\n"


def encoded(model: TableModel, formats: Sequence[str]) -> dict[str, bytes]:
    """``model`` as the requested formats' file contents, by suffix."""
    render = {"md": lambda m: markdown(m).encode(), "csv": lambda m: csv(m).encode(), "parquet": parquet,
              "json": lambda m: json_text(m).encode()}
    unknown = [f for f in formats if f not in render]
    if unknown:
        raise ValueError(f"unknown report format {unknown[0]!r}; allowed: {', '.join(FORMATS)}")
    return {fmt: render[fmt](model) for fmt in formats}


def parse_formats(text: str) -> tuple[str, ...]:
    """``md,csv,parquet,json`` -> a tuple of formats; an unknown one raises `ValueError`."""
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--format {text!r}: allowed formats are {', '.join(FORMATS)} (comma-separated)")
    return formats


def write_reports(models: Sequence[TableModel], target: RecordStore | str | Path, *,
                  formats: Sequence[str] = DEFAULT_FORMATS) -> list[str]:
    """``<model.name>.<fmt>`` for each model in ``target`` (a directory, an object-store
    URI or its `RecordStore`: by default the run directory, beside the records they were
    reduced from; ``report --out`` names another), each file written atomically (a reader
    never sees half a table). Returns the paths written."""
    store = target if isinstance(target, RecordStore) else RecordStore(target)
    return [store.write_bytes(f"{model.name}.{ext}", data)
            for model in models for ext, data in encoded(model, formats).items()]
