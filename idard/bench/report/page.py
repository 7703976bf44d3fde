"""``idard-bench report RUN --html``: one self-contained HTML page to *see* a run.

The page holds, with every image embedded as base64 PNG (it works offline, as one file
to mail or attach):

* the IDA-RD table with its bootstrap 95 % CIs and the paired differences, the same
  `TableModel` s the terminal and every file show (rows, order, labels, counts, notes),
  and the suite's checks;
* one bar chart per (model, metric, scale): IDA-RD per downscaler, error bars = the CI;
* one plot per degradation ladder (the suite's ``spearman`` checks, else the paper's
  ladders found in the run): IDA-RD against the degradation parameter, with its Spearman rho;
* for a few images, the grid of the supplement's Figure 3 (`idard.bench.report.grid`): HR,
  LR, SR samples and their difference maps as zoomed crops, each sample's value next to its
  record's, recomputed from the records' seeds on the worker's own path. The grid is a
  self-contained fragment with its own style; when the images or the model cannot be had
  it says why and the rest of the page is written.

Plots are drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from idard.bench.report.grid import GridOptions, grid_html
from idard.bench.report.model import CI_MARK, SMOKE_TEST, TableModel, table_models
from idard.bench.report.views import table_html



def _figure_png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG data URI (and the figure closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _groups(table: pl.DataFrame):
    keys = [k for k in ("model", "metric", "scale") if k in table.columns]
    for key, part in table.group_by(keys, maintain_order=True):
        yield dict(zip(keys, key)), part


def _group_title(key: dict[str, Any]) -> str:
    return " · ".join(f"x{v}" if k == "scale" else str(v) for k, v in key.items())


# ------------------------------------------------------------------------ bar charts

def bar_charts(model: TableModel) -> list[tuple[str, str]]:
    """(title, data URI) per (model, metric, scale) of the IDA-RD table: IDA-RD per
    downscaler with CI error bars, in the table's order and under its labels."""
    plt = _pyplot()
    charts = []
    for key, part in _groups(model.rows):
        part = part.filter(pl.col("ida_rd").is_not_null())
        if part.is_empty():
            continue
        means = part["ida_rd"].to_numpy()
        low = np.where(part["ci_low"].is_null().to_numpy(), means, part["ci_low"].fill_null(0).to_numpy())
        high = np.where(part["ci_high"].is_null().to_numpy(), means, part["ci_high"].fill_null(0).to_numpy())
        fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * part.height + 2), 3.6))
        ax.bar(range(part.height), means, yerr=[means - low, high - means], capsize=3, color="#4878a8")
        ax.set_xticks(range(part.height), part["downscaler"].to_list(), rotation=40, ha="right", fontsize=8)
        ax.set_ylabel(f"IDA-RD ({key.get('metric', '')})")
        note = "error bars: bootstrap 95% CI" + (f"; {CI_MARK} few images" if part["ci_few_images"].any() else "")
        title = _group_title(key) + f"  ({note})" + (f"\n{SMOKE_TEST}" if model.banner else "")
        ax.set_title(title, fontsize=9, color="#c62828" if model.banner else "black")
        ax.grid(axis="y", alpha=0.3)
        charts.append((_group_title(key), _figure_png(fig)))
    return charts


# ------------------------------------------------------------------------ ladders

@dataclasses.dataclass(frozen=True)
class LadderPlot:
    family: str
    group: str
    rho: float
    uri: str


def _ladders(checks: Sequence[Any], table: pl.DataFrame) -> list[tuple[str, list[str], list[float]]]:
    """(family, downscaler ids, parameters) of the suite's spearman checks, else of the
    paper's ladders whose rungs are all in the table."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.checks import _canonical

    found = [(c.params["family"], [_canonical(d, "downscaler") for d in c.params["downscalers"]],
              list(c.params["parameter"])) for c in checks if c.kind == "spearman"]
    if found:
        return found
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.ladders import PAPER_LADDERS

    present = set(table["downscaler"].to_list())
    out = []
    for ladder in PAPER_LADDERS:
        ids = ladder.ids()
        if set(ids) <= present:
            out.append((ladder.family, list(ids), [float(v) for v in ids.values()]))
    return out


def ladder_plots(checks: Sequence[Any], table: pl.DataFrame) -> list[LadderPlot]:
    """IDA-RD against degradation strength per ladder and group, titled with Spearman rho."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.statistics import spearman_ladder

    plt = _pyplot()
    plots = []
    for family, ids, params in _ladders(checks, table):
        for key, part in _groups(table):
            rows = {r["downscaler"]: r for r in part.iter_rows(named=True) if r["downscaler"] in ids}
            points = [(p, rows[d]) for d, p in zip(ids, params) if d in rows and rows[d]["ida_rd"] is not None]
            if len(points) < 2:
                continue
            rho = spearman_ladder(part, {d: p for d, p in zip(ids, params)})
            x = np.array([p for p, _ in points])
            y = np.array([r["ida_rd"] for _, r in points])
            lo = np.array([r["ci_low"] if r["ci_low"] is not None else r["ida_rd"] for _, r in points])
            hi = np.array([r["ci_high"] if r["ci_high"] is not None else r["ida_rd"] for _, r in points])
            fig, ax = plt.subplots(figsize=(4.2, 3.2))
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, color="#b04a3a")
            if x.min() > 0 and x.max() / x.min() >= 50:
                ax.set_xscale("log")
            ax.set_xlabel("degradation parameter")
            ax.set_ylabel("IDA-RD")
            rho_text = "—" if math.isnan(rho) else f"{rho:+.3f}"
            ax.set_title(f"{family}: Spearman rho {rho_text}\n{_group_title(key)}", fontsize=9)
            ax.grid(alpha=0.3)
            plots.append(LadderPlot(family, _group_title(key), rho, _figure_png(fig)))
    return plots


# ------------------------------------------------------------------------ page

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1600px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em}td,th{padding:3px 8px;border:1px solid #ddd;text-align:right}
td.l,th.l{text-align:left}tr:nth-child(even){background:#f6f6f6}
.plots img{margin:4px;border:1px solid #eee}
.banner{color:#fff;background:#c62828;padding:4px 8px;font-weight:bold;display:inline-block}
.title{font-weight:bold;margin-bottom:2px}.pass{color:#1a7f37}.fail{color:#c62828}.undecided{color:#8a6d00}.note{color:#666;font-size:.85em}
"""


def _num(value: Any, fmt: str = "{:.4f}") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _checks_html(results: Sequence[Any], summary: Sequence[str]) -> str:
    if not results:
        return "<p class=note>The suite has no checks.</p>"
    css = {True: "pass", False: "fail", None: "undecided"}
    items = "".join(f"<tr><td class=l>{html.escape(r.label)}</td><td class=l>{html.escape(r.detail)}</td>"
                    f"<td class={css[r.passed]}>{r.verdict}</td></tr>" for r in results)
    lead = "".join(f"<p>{html.escape(line)}</p>" for line in summary[:1] if line.startswith("Spearman"))
    return f"{lead}<table id=checks><tr><th class=l>check</th><th class=l>result</th><th>holds</th></tr>{items}</table>"


def render_page(title: str, description: str, models: Sequence[TableModel], checks_html: str,
                bars: Sequence[tuple[str, str]], ladders: Sequence[LadderPlot], samples_html: str,
                validity_html: str = "") -> str:
    """The whole page as one string: no external file, script or font. ``validity_html``:
    a `validate-model` run's card (`idard.bench.report.validity`), shown after the checks."""
    bar_imgs = "".join(f"<img class=bar src='{uri}' alt='IDA-RD {html.escape(t)}'>" for t, uri in bars)
    ladder_imgs = "".join(f"<img class=ladder src='{p.uri}' alt='{html.escape(p.family)} {html.escape(p.group)}'>"
                          for p in ladders) or "<p class=note>No degradation ladder in this run.</p>"
    banner = next((m.banner for m in models if m.banner), None)
    tables = "".join(f"<h2>{'IDA-RD table' if m.name == 'ida_rd' else 'Paired differences'}</h2>{table_html(m)}"
                     for m in models)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(description)}</p>"
        + (f"<p class=banner>{html.escape(banner)}</p>" if banner else "") +
        "<p class=note>IDA-RD: mean over images of the mean distortion between the HR image and SR samples "
        "decoded from the downscaled image. Rows go from least to most information lost for every metric "
        "('better' says each metric's direction: lower LPIPS, higher PSNR). ± is the std over images, the CI a "
        "bootstrap over images and samples.</p>"
        f"{tables}"
        f"<h2>Checks (the paper's findings)</h2>{checks_html}{validity_html}"
        f"<h2>IDA-RD per downscaler</h2><div class=plots>{bar_imgs}</div>"
        f"<h2>IDA-RD against degradation strength</h2><div class=plots>{ladder_imgs}</div>"
        f"<h2>Samples (HR / LR / SR / difference maps, as the supplement's Figure 3)</h2>{samples_html}"
        "</body></html>"
    )


def write_html_report(run_dir: str, report: Any, records: pl.LazyFrame, path: str | Path | None = None, *,
                      grid: GridOptions = GridOptions(), log: Callable[[str], None] = print) -> str:
    """Write the page for ``report`` (a `idard.bench.report.reduce.Report`) of ``run_dir``; returns
    where. ``path`` defaults to ``report.html`` in the run directory. Its tables are the
    report's `table_models`, as every other format shows them."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.checks import checks_of_run, evaluate_checks, read_run_file, summary_lines
    from idard.bench.report.validity import validity_section
    from idard.bench.suite.safe_yaml import load_yaml
    from idard.bench.store.records import RecordStore

    checks, name = checks_of_run(run_dir)
    results = evaluate_checks(checks, report.table, records)
    try:
        suite = load_yaml(read_run_file(run_dir, "suite.yaml")) or {}
    except (FileNotFoundError, OSError):
        suite = {}
    models = table_models(report)
    page = render_page(
        f"IDA-RD report: {name or suite.get('name') or run_dir}", str(suite.get("description", "")), models,
        _checks_html(results, summary_lines(results) if results else []), bar_charts(models[0]),
        ladder_plots(checks, report.table), grid_html(run_dir, report.table, records, grid, log),
        validity_section(run_dir))
    if path is None:
        return RecordStore(run_dir).write_text("report.html", page)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page)
    return str(target)
