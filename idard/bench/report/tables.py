"""Rendering IDA-RD tables: a rich table for the terminal, Markdown and CSV for papers.

Two tables, each written as Markdown (for reading and pasting), CSV (for spreadsheets),
Parquet (exact types, for further analysis) and, on request, JSON by `write_reports`:

* ``ida_rd.*``: the IDA-RD table of `idard.measure.statistics.ida_rd_table`, one row per
  (downscaler, model, metric, scale).
* ``paired_vs_<baseline>.*``: with a baseline, `paired_differences` against it, named by
  the baseline so that reports against two baselines never replace each other. It is a
  table of its own because its columns differ and because a CSV or Parquet file holds one
  table.

Every metric reads the same way: rows go from least to most information lost (PSNR, SSIM
and MS-SSIM, where higher is better, sort descending), and paired differences are signed
so that positive means "loses more than the baseline". Plug-ins are labelled so that two
rows of one family always show the parameter that tells them apart. Markdown and the
terminal show rounded numbers, with ``—`` for an undefined std, CI or p-value; CSV and
Parquet hold the tables unrounded, in their own (key) order. Markdown, Parquet and JSON
record how the table was reduced (bootstrap size and seed, CI level, baseline, the
unconverged policy) and the suite.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
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
    "n_errors": ("errors", "{}"),
    "n_unconverged": ("unconverged", "{}"),
    "better": ("better", "{}"),
}

#: The formats `write_reports` can write, by file suffix.
FORMATS = ("md", "csv", "parquet", "json")
DEFAULT_FORMATS = ("md", "csv", "parquet")
#: The title of every IDA-RD table: rows go from least to most information lost for every
#: metric, whichever way the metric points (the ``better`` column says which).
TITLE = "IDA-RD (rows from least to most information lost; 'better': each metric's direction)"


def _labelled(table: pl.DataFrame, columns: Sequence[str] = ("downscaler", "baseline")) -> pl.DataFrame:
    """``table`` with plug-in ids replaced by labels that never hide what tells two rows
    apart (`Registry.labels`): ``blur(sigma=1.0)`` next to ``blur(sigma=2.0)``."""
    from idard.measure.downscalers import DOWNSCALERS

    ids = [v for c in columns if c in table.columns for v in table[c].drop_nulls().to_list()]
    if not ids:
        return table
    labels = DOWNSCALERS.labels(ids)
    out = table.with_columns([pl.col(c).replace(labels) for c in columns if c in table.columns])
    if "model" in out.columns:
        out = out.with_columns(pl.col("model").replace(_model_labels(out["model"].unique().to_list())))
    return out


def _model_labels(ids: list[str]) -> dict[str, str]:
    """Model labels as for downscalers; the model registry (and torch) is only imported
    when two models of one family share a table."""
    from idard.measure.registry import SpecError, parse_spec

    families: dict[str, int] = {}
    for i in ids:
        try:
            families[parse_spec(i)[0]] = families.get(parse_spec(i)[0], 0) + 1
        except SpecError:
            continue
    if all(n < 2 for n in families.values()):
        return {}
    from idard.measure.models import MODELS

    return MODELS.labels(ids)


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
    higher = pl.col("higher_is_better").fill_null(False) if "higher_is_better" in shown.columns else pl.lit(False)
    # From least to most information lost, whichever way the metric points.
    shown = shown.with_columns(_loss=pl.when(higher).then(-pl.col("ida_rd")).otherwise(pl.col("ida_rd")))
    if "higher_is_better" in shown.columns:
        shown = shown.with_columns(better=pl.when(higher).then(pl.lit("higher")).otherwise(pl.lit("lower")))
    shown = shown.sort([c for c in ("model", "metric", "scale") if c in shown.columns] + ["_loss"], nulls_last=True)
    return _labelled(shown)


def _cells(row: dict) -> list[str]:
    out = []
    for column, (_, fmt) in _COLUMNS.items():
        if column in row:
            value = row[column]
            out.append("—" if value is None else fmt.format(value))
    return out


def rich_table(table: pl.DataFrame, title: str = TITLE, unconverged_in_mean: bool = False) -> Table:
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
    "baseline": ("vs", "{}"),
    "mean_diff": ("loses more by", "{:+.4f}"),
    "ci": ("95% CI", "{}"),
    "p_wilcoxon": ("Wilcoxon p", "{:.3g}"),
    "n_images": ("images", "{}"),
    "n_pairs": ("pairs", "{}"),
}
#: The paired table's title: its difference is signed so that positive means the row loses
#: more information than the baseline, for every metric (PSNR's raw difference is negated).
PAIRED_TITLE = "Paired differences (positive = loses more information than the baseline, for every metric)"
#: Fewer images than this and a two-sided Wilcoxon signed-rank test cannot reach p < 0.05.
WILCOXON_MIN_IMAGES = 6


def _missing(value: object) -> bool:
    """Null, or NaN: `paired_differences` gives a NaN p-value when the test is undefined."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _paired_rows(paired: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of a paired-differences table, by signed loss difference."""
    if "loss_diff" in paired.columns:  # signed so that positive = loses more, for every metric
        paired = paired.with_columns(mean_diff=pl.col("loss_diff"), ci_low=pl.col("loss_ci_low"),
                                     ci_high=pl.col("loss_ci_high"))
    shown = paired.with_columns(pl.Series("ci", [
        None if lo is None or hi is None else f"[{lo:+.4f}, {hi:+.4f}]"
        for lo, hi in zip(paired["ci_low"].to_list(), paired["ci_high"].to_list())], dtype=pl.String))
    columns = [c for c in _PAIRED if c in shown.columns]
    rows = [["—" if _missing(row[c]) else _PAIRED[c][1].format(row[c]) for c in columns]
            for row in _labelled(shown.sort([*(c for c in ("model", "metric", "scale") if c in shown.columns),
                                              "mean_diff"], nulls_last=True)).iter_rows(named=True)]
    return [_PAIRED[c][0] for c in columns], rows


def small_sample_note(paired: pl.DataFrame) -> str | None:
    """Says when a row has too few images for its Wilcoxon test to reach p < 0.05 (the
    smallest two-sided p with n images is 2 / 2**n: 0.125 with 4), so that a bootstrap CI
    that excludes 0 next to p = 0.125 is read as what it is."""
    few = paired.filter(pl.col("n_images") < WILCOXON_MIN_IMAGES)
    if few.is_empty():
        return None
    counts = sorted(set(few["n_images"].to_list()))
    floors = ", ".join(f"{n} image{'s' if n != 1 else ''}: p >= {2.0 / 2 ** n:.3g}" for n in counts if n > 0)
    return (f"Too few images for the Wilcoxon test to reach p < 0.05 in {few.height} row(s) ({floors}; it needs "
            f"at least {WILCOXON_MIN_IMAGES} images): read those rows' p-values as 'not testable', not as 'no difference'.")


def rich_paired_table(paired: pl.DataFrame) -> Table:
    """Paired differences against a baseline: same images and seeds, so far tighter CIs."""
    headers, rows = _paired_rows(paired)
    out = Table(title=PAIRED_TITLE, title_justify="left", caption=small_sample_note(paired), caption_justify="left")
    for header in headers:
        out.add_column(header, justify="left" if header in ("downscaler", "model", "metric", "minus") else "right")
    for row in rows:
        out.add_row(*row)
    return out


def paired_markdown(paired: pl.DataFrame) -> str:
    """The paired differences as a Markdown table, formatted as in the terminal."""
    headers, rows = _paired_rows(paired)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    note = small_sample_note(paired)
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n" + (f"\n{note}\n" if note else "")


def _front_matter(title: str, meta: Mapping[str, object] | None) -> str:
    """A Markdown table's heading: what it is and how it was reduced."""
    if not meta:
        return ""
    details = "; ".join(f"{k}: {v}" for k, v in meta.items())
    return f"**{title}**\n\n{details}\n\n"


def _parquet(table: pl.DataFrame, meta: Mapping[str, object] | None) -> bytes:
    """Parquet bytes; the reduction goes into the file's key-value metadata (``idard``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = table.to_arrow()
    if meta:
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), b"idard": json.dumps(meta, default=str).encode()})
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer)
    return buffer.getvalue()


def _encoded(table: pl.DataFrame, render, title: str, meta: Mapping[str, object] | None,
             formats: Sequence[str]) -> dict[str, bytes]:
    """``table`` as the requested formats' file contents, by suffix."""
    out: dict[str, bytes] = {}
    for fmt in formats:
        if fmt == "md":
            out["md"] = (_front_matter(title, meta) + render(table)).encode()
        elif fmt == "csv":
            out["csv"] = table.write_csv().encode()
        elif fmt == "parquet":
            out["parquet"] = _parquet(table, meta)
        elif fmt == "json":
            out["json"] = (json.dumps({"title": title, "reduction": dict(meta or {}), "rows": table.to_dicts()},
                                      indent=2, default=str) + "\n").encode()
        else:
            raise ValueError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return out


def parse_formats(text: str) -> tuple[str, ...]:
    """``md,csv,parquet,json`` -> a tuple of formats; an unknown one raises `ValueError`."""
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--format {text!r}: allowed formats are {', '.join(FORMATS)} (comma-separated)")
    return formats


def paired_name(baseline: str) -> str:
    """``paired_vs_<baseline>``: reports against different baselines never replace each other."""
    return "paired_vs_" + re.sub(r"[^A-Za-z0-9._=-]+", "_", baseline).strip("_")


def write_reports(
    table: pl.DataFrame,
    run_dir: RecordStore | str | Path,
    paired: pl.DataFrame | None = None,
    unconverged_in_mean: bool = False,
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    meta: Mapping[str, object] | None = None,
) -> list[str]:
    """``ida_rd.<fmt>`` in ``run_dir`` and, if given, ``paired_vs_<baseline>.<fmt>``.

    ``run_dir`` is a directory, an object-store URI or its `RecordStore` (by default the
    run directory, beside the records they were reduced from; ``report --out`` names
    another), each file written atomically (a reader never sees half a table). ``meta``
    (the reduction and the suite) is written into the Markdown heading, the Parquet
    metadata and the JSON; CSV holds the bare table. Returns the paths written.
    """
    store = run_dir if isinstance(run_dir, RecordStore) else RecordStore(run_dir)
    render = functools.partial(markdown, unconverged_in_mean=unconverged_in_mean)
    files = {f"ida_rd.{ext}": data for ext, data in _encoded(table, render, TITLE, meta, formats).items()}
    if paired is not None:
        baseline = paired["baseline"][0] if paired.height else (meta or {}).get("baseline") or "baseline"
        stem = paired_name(str(baseline))
        files |= {f"{stem}.{ext}": data for ext, data in _encoded(paired, paired_markdown, PAIRED_TITLE, meta, formats).items()}
    return [store.write_bytes(name, data) for name, data in files.items()]
