"""One table model behind every surface of a report.

`table_models` turns a `Report` (the reduced numbers) into `TableModel` s: the IDA-RD
table and, with a baseline, the paired differences. A model holds everything a reader
sees: the title, the columns (header, format, alignment) in order, the rows already
ordered and labelled, the notes and caveats, the banner of a smoke-test model, the
reduction's settings and the scope of keys reduced. The terminal, Markdown, CSV,
Parquet, JSON and HTML renderers (`idard.bench.report.tables`, `.page`) render a model
and nothing else, so they cannot disagree on which rows there are, in which order,
under which labels, with which counts. Data formats keep every number unrounded and
each plug-in's id beside its label; the others round through `Column.cell`.

Decisions every surface inherits from here:

* Rows go from least to most information lost within each (model, metric, scale),
  whichever way the metric points (PSNR, SSIM, MS-SSIM sort descending); paired
  differences are signed so that positive means "loses more than the baseline".
* Labels never hide what tells two rows apart (``blur(sigma=1.0)`` next to
  ``blur(sigma=2.0)``; `Registry.labels`).
* A CI over fewer than `MIN_CI_IMAGES` images is marked (`CI_MARK`) and explained: the
  image-level bootstrap resamples only the images at hand, so it is too narrow to cite.
* Rows of an embedded model (`EMBEDDED_MODELS`) carry `SMOKE_TEST`; the table a banner.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import polars as pl

from idard.bench.report.views import table_html, text

#: The embedded models: trained by idard for smoke runs, never for numbers to publish.
EMBEDDED_MODELS = ("srflow-tiny-4x", "resshift-tiny-4x")
SMOKE_TEST = "smoke-test model: not for publication"
#: A CI over fewer images than this is marked as not citable (see `ci_note`).
MIN_CI_IMAGES = 10
CI_MARK = "†"
#: Fewer images than this and a two-sided Wilcoxon signed-rank test cannot reach p < 0.05.
WILCOXON_MIN_IMAGES = 6
#: Width of the 95 % percentile bootstrap over n images relative to the exact t-interval
#: for a normal mean, 1.96 sqrt((n-1)/n) / t(0.975, n-1): the bootstrap's plug-in variance
#: divides by n, not n-1, and it uses normal quantiles where n-1 degrees of freedom need t's
#: (tests/bench/test_report_model.py recomputes them with scipy).
CI_WIDTH_RATIO = {2: 0.11, 3: 0.37, 4: 0.53, 5: 0.63, 6: 0.70, 7: 0.74, 8: 0.78, 9: 0.80, 10: 0.82}

#: The title of every IDA-RD table: rows go from least to most information lost for every
#: metric, whichever way the metric points (the ``better`` column says which).
TITLE = "IDA-RD (rows from least to most information lost; 'better': each metric's direction)"
#: The paired table's title: its difference is signed so that positive means the row loses
#: more information than the baseline, for every metric (PSNR's raw difference is negated).
PAIRED_TITLE = "Paired differences (positive = loses more information than the baseline, for every metric)"
#: Sort keys of the groups every table is ranked within.
GROUP_KEYS = ("model", "metric", "scale")


@dataclasses.dataclass(frozen=True)
class Column:
    """A shown column: ``name`` (and ``pair``, a CI's high end) are columns of the rows."""

    name: str
    header: str
    format: str = "{}"
    align: str = "right"
    pair: str | None = None
    #: A boolean column of the rows: True appends `CI_MARK` to the cell.
    mark: str | None = None

    def cell(self, row: Mapping[str, object]) -> str:
        """The cell shown for ``row``: ``—`` when a value is undefined (null or NaN)."""
        values = [row.get(self.name)] + ([row.get(self.pair)] if self.pair else [])
        if any(_missing(v) for v in values):
            return "—"
        text = self.format.format(*values)
        return text + CI_MARK if self.mark and row.get(self.mark) else text


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclasses.dataclass(frozen=True)
class TableModel:
    """A table as every surface shows it (see the module docstring).

    ``rows`` is a Polars frame in display order; labels are in ``downscaler``, ``model``
    (and ``baseline``), ids in ``downscaler_id``, ``model_id`` (``baseline_id``), numbers
    unrounded. ``print(model)`` shows it as the terminal does; ``model.rows`` is the data.
    """

    name: str  # file stem: ida_rd, paired_vs_<baseline>
    title: str
    columns: tuple[Column, ...]
    rows: pl.DataFrame
    notes: tuple[str, ...] = ()
    banner: str | None = None
    reduction: Mapping[str, object] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    scope: str = ""

    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def cells(self) -> list[list[str]]:
        """The shown cells, row by row: the one place numbers are rounded."""
        return [[c.cell(row) for c in self.columns] for row in self.rows.iter_rows(named=True)]

    def heading(self) -> dict[str, object]:
        """What the data formats carry besides the rows: title, banner, scope, reduction, notes."""
        return {"title": self.title, "banner": self.banner, "scope": self.scope, "reduction": dict(self.reduction),
                "notes": list(self.notes)}

    def __str__(self) -> str:
        return text(self)

    def _repr_html_(self) -> str:  # Jupyter
        return table_html(self)


# ------------------------------------------------------------------------ columns

def _ida_rd_columns(unconverged: bool, unconverged_in_mean: bool) -> tuple[Column, ...]:
    label = "unconverged (in mean)" if unconverged_in_mean else "unconverged (left out)"
    return (
        Column("downscaler", "downscaler", align="left"),
        Column("model", "model", align="left"),
        Column("metric", "metric", align="left"),
        Column("scale", "scale", "x{}"),
        Column("ida_rd", "IDA-RD", "{:.4f}"),
        Column("std_images", "± images", "{:.4f}"),
        Column("ci_low", "95% CI", "[{:.4f}, {:.4f}]", pair="ci_high", mark="ci_few_images"),
        Column("n_images", "images"),
        Column("n_samples", "samples"),
        Column("n_nonfinite", "non-finite"),
        Column("n_errors", "errors"),
        *((Column("n_unconverged", label),) if unconverged else ()),  # only PULSE-like models have any
        Column("better", "better", align="left"),
    )


PAIRED_COLUMNS = (
    Column("downscaler", "downscaler", align="left"),
    Column("model", "model", align="left"),
    Column("metric", "metric", align="left"),
    Column("scale", "scale", "x{}"),
    Column("baseline", "vs", align="left"),
    Column("loss_diff", "loses more by", "{:+.4f}"),
    Column("loss_ci_low", "95% CI", "[{:+.4f}, {:+.4f}]", pair="loss_ci_high", mark="ci_few_images"),
    Column("p_wilcoxon", "Wilcoxon p", "{:.3g}"),
    Column("n_images", "images"),
    Column("n_pairs", "pairs"),
)


# ------------------------------------------------------------------------ labels

def _model_labels(ids: list[str]) -> dict[str, str]:
    """Model labels as for downscalers; the model registry (and torch) is only imported
    when two models of one family share a table."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.registry import SpecError, parse_spec

    families: dict[str, int] = {}
    for i in ids:
        try:
            family = parse_spec(i)[0]
        except SpecError:
            continue
        families[family] = families.get(family, 0) + 1
    if all(n < 2 for n in families.values()):
        return {}
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.models import MODELS

    return MODELS.labels(ids)


def downscaler_labels(table: pl.DataFrame, paired: pl.DataFrame | None = None) -> dict[str, str]:
    """Each downscaler id of a report's tables -> its label (`Registry.labels`): what the
    tables, the charts and the sample grid all call it."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.downscalers import DOWNSCALERS

    frames = [f for f in (table, paired) if f is not None]
    ids = [v for f in frames for c in ("downscaler", "baseline") if c in f.columns for v in f[c].drop_nulls().to_list()]
    return DOWNSCALERS.labels(ids) if ids else {}


def _labels(table: pl.DataFrame, paired: pl.DataFrame | None) -> tuple[dict[str, str], dict[str, str]]:
    """Downscaler and model labels shared by both tables, so one id reads the same in each."""
    frames = [f for f in (table, paired) if f is not None]
    models = [v for f in frames if "model" in f.columns for v in f["model"].drop_nulls().unique().to_list()]
    return downscaler_labels(table, paired), _model_labels(list(dict.fromkeys(models)))


def _with_labels(frame: pl.DataFrame, downscalers: dict[str, str], models: dict[str, str]) -> pl.DataFrame:
    """Each plug-in column becomes its label, with its id beside it (``downscaler_id``)."""
    out = []
    for column in frame.columns:
        mapping = models if column == "model" else downscalers if column in ("downscaler", "baseline") else None
        if mapping is None:
            out.append(pl.col(column))
            continue
        out += [pl.col(column).replace(mapping).alias(column), pl.col(column).alias(f"{column}_id")]
    return frame.select(out)


# ------------------------------------------------------------------------ caveats

def is_embedded(model_id: str | None) -> bool:
    """True for ids of an embedded model (any parameters)."""
    return model_id is not None and model_id.split("(", 1)[0] in EMBEDDED_MODELS


def _caveats(frame: pl.DataFrame, id_column: str, ci_level: float, paired: bool) -> pl.DataFrame:
    """``ci_few_images`` and ``caveats`` (a readable text for CSV readers) per row."""
    few = pl.col("n_images").fill_null(0) < MIN_CI_IMAGES
    defined = pl.col("ci_low").is_not_null() if "ci_low" in frame.columns else pl.lit(True)
    smoke = pl.Series([is_embedded(m) for m in frame[id_column].to_list()], dtype=pl.Boolean)
    texts = [
        pl.when(smoke).then(pl.lit(SMOKE_TEST)),
        pl.when(few & defined).then(pl.format(f"CI from {{}} image(s): not citable (needs >= {MIN_CI_IMAGES})",
                                              pl.col("n_images"))),
    ]
    if paired:
        texts.append(pl.when(pl.col("n_images").fill_null(0) < WILCOXON_MIN_IMAGES).then(pl.format(
            "Wilcoxon cannot reach p < 0.05 with {} image(s)", pl.col("n_images"))))
    joined = pl.concat_list(texts).list.drop_nulls().list.join("; ")
    return frame.with_columns(ci_few_images=(few & defined).fill_null(False),
                              caveats=pl.when(joined != "").then(joined))


def ci_note(counts: Sequence[int], ci_level: float) -> str | None:
    """The rule behind `CI_MARK`, with the width ratio of each image count present."""
    few = sorted({int(n) for n in counts if n is not None and n < MIN_CI_IMAGES})
    if not few:
        return None
    ratios = ", ".join(f"{n} image{'s' if n != 1 else ''}: {CI_WIDTH_RATIO[n]:.2f}" for n in few if n in CI_WIDTH_RATIO)
    why = (f" Under a normal model its width is this fraction of the exact t-interval's ({ratios})."
           if ratios and abs(ci_level - 0.95) < 1e-9 else "")
    return (f"{CI_MARK} CI over fewer than {MIN_CI_IMAGES} images: not an interval to cite. The bootstrap "
            "resamples only the images at hand, so it cannot see how other images would vary and comes out "
            f"too narrow.{why} Run more images for a CI.")


def wilcoxon_note(counts: Sequence[int]) -> str | None:
    """Says when rows have too few images for their Wilcoxon test to reach p < 0.05 (the
    smallest two-sided p with n images is 2 / 2**n: 0.125 with 4), so that a bootstrap CI
    that excludes 0 next to p = 0.125 is read as what it is."""
    few = [int(n) for n in counts if n is not None and n < WILCOXON_MIN_IMAGES]
    if not few:
        return None
    floors = ", ".join(f"{n} image{'s' if n != 1 else ''}: p >= {2.0 / 2 ** n:.3g}" for n in sorted(set(few)) if n > 0)
    return (f"Too few images for the Wilcoxon test to reach p < 0.05 in {len(few)} row(s) ({floors}; it needs "
            f"at least {WILCOXON_MIN_IMAGES} images): read those rows' p-values as 'not testable', not as 'no difference'.")


def smoke_banner(model_ids: Sequence[str]) -> str | None:
    embedded = sorted({m for m in model_ids if is_embedded(m)})
    if not embedded:
        return None
    return (f"{SMOKE_TEST} ({', '.join(embedded)}: a small model idard trained for smoke runs; numbers to publish "
            "come from the published checkpoints, e.g. srflow(weights='SRFlow_DF2K_4X.pth', heat=1.1))")


# ------------------------------------------------------------------------ the models

#: The columns an adaptive run's tables add (`with_sampling`).
SAMPLING_COLUMNS = (Column("k_drawn", "K"), Column("sampling", "sampling stopped", align="left"))


def with_sampling(frame: pl.DataFrame, report) -> tuple[pl.DataFrame, tuple[Column, ...], str | None]:
    """An adaptive run's K per group and why sampling stopped, joined to a table by its
    ids (before labels), with the columns to show and the rule's note; a fixed-K run's
    table unchanged."""
    if getattr(report, "sampling", None) is None:
        return frame, (), None
    decisions, describe = report.sampling
    keys = [k for k in ("downscaler", "model", "metric") if k in frame.columns]
    joined = frame.join(decisions.select(*keys, "k_drawn", "sampling").unique(keys, keep="first"), on=keys,
                        how="left", maintain_order="left")
    return joined, SAMPLING_COLUMNS, describe or None


def _ranked(frame: pl.DataFrame, loss: pl.Expr) -> pl.DataFrame:
    """Within each (model, metric, scale), from least to most information lost."""
    keys = [k for k in GROUP_KEYS if k in frame.columns]
    return frame.with_columns(_loss=loss).sort([*keys, "_loss"], nulls_last=True, maintain_order=True).drop("_loss")


def _ida_rd_model(report, downscalers: dict[str, str], models: dict[str, str], reduction: dict, scope: str
                  ) -> TableModel:
    table = report.table
    if "higher_is_better" not in table.columns:
        table = table.with_columns(higher_is_better=pl.lit(False))
    if "n_errors" not in table.columns:
        table = table.with_columns(n_errors=pl.lit(0, dtype=pl.Int64))
    if "n_unconverged" not in table.columns:
        table = table.with_columns(n_unconverged=pl.lit(0, dtype=pl.Int64))
    higher = pl.col("higher_is_better").fill_null(False)
    table = table.with_columns(better=pl.when(higher).then(pl.lit("higher")).otherwise(pl.lit("lower")))
    table, sampling_columns, sampling_note = with_sampling(table, report)
    ranked = _ranked(table, pl.when(higher).then(-pl.col("ida_rd")).otherwise(pl.col("ida_rd")))
    rows = _caveats(_with_labels(ranked, downscalers, models), "model_id", report.ci, paired=False)
    unconverged = int(rows["n_unconverged"].fill_null(0).sum())
    notes = [ci_note(rows.filter(pl.col("ci_few_images"))["n_images"].to_list(), report.ci), sampling_note]
    if unconverged and not report.include_unconverged:
        notes.append(f"{unconverged} unconverged samples are left out of the means (as the reference PULSE drops "
                     "them): a downscaler whose LR the model cannot match keeps only its easy samples. "
                     "Compare with --include-unconverged.")
    return TableModel(
        name="ida_rd", title=TITLE, columns=_ida_rd_columns(unconverged > 0, report.include_unconverged)[:-1]
        + sampling_columns + _ida_rd_columns(False, False)[-1:], rows=rows,
        notes=tuple(n for n in notes if n), banner=smoke_banner(rows["model_id"].to_list()),
        reduction=MappingProxyType(reduction), scope=scope)


def _paired_model(report, downscalers: dict[str, str], models: dict[str, str], reduction: dict, scope: str
                  ) -> TableModel:
    paired = report.paired
    if "loss_diff" not in paired.columns:  # a frame of `paired_differences` without directions
        paired = paired.with_columns(loss_diff=pl.col("mean_diff"), loss_ci_low=pl.col("ci_low"),
                                     loss_ci_high=pl.col("ci_high"))
    paired, sampling_columns, sampling_note = with_sampling(paired, report)
    ranked = _ranked(paired, pl.col("loss_diff"))
    level = getattr(report, "paired_ci", report.ci)
    rows = _caveats(_with_labels(ranked, downscalers, models), "model_id", level, paired=True)
    notes = (ci_note(rows.filter(pl.col("ci_few_images"))["n_images"].to_list(), level),
             wilcoxon_note(rows["n_images"].to_list()), sampling_note)
    return TableModel(
        name=paired_name(str(report.baseline or "baseline")), title=PAIRED_TITLE,
        columns=_paired_columns(level) + sampling_columns, rows=rows,
        notes=tuple(n for n in notes if n), banner=smoke_banner(rows["model_id"].to_list()),
        reduction=MappingProxyType(reduction), scope=scope)


def ci_label(level: float) -> str:
    """"95% CI", or the level an interval really has ("98.75% CI")."""
    return f"{level * 100:.4g}% CI"


def _paired_columns(level: float) -> tuple[Column, ...]:
    """`PAIRED_COLUMNS` with the CI header of ``level`` (an adaptive paired rule's is not 95 %)."""
    return tuple(dataclasses.replace(c, header=ci_label(level)) if c.name == "loss_ci_low" else c
                 for c in PAIRED_COLUMNS)


def paired_name(baseline: str) -> str:
    """``paired_vs_<baseline>``: reports against different baselines never replace each other."""
    return "paired_vs_" + re.sub(r"[^A-Za-z0-9._=-]+", "_", baseline).strip("_")


def table_models(report) -> tuple[TableModel, ...]:
    """The IDA-RD table of ``report`` (a `idard.bench.report.reduce.Report`) and, when it
    has paired differences, their table: what every renderer renders."""
    downscalers, models = _labels(report.table, report.paired)
    reduction = {**report.reduction(), **dict(report.suite)}
    out = [_ida_rd_model(report, downscalers, models, reduction, report.scope)]
    if report.paired is not None:
        out.append(_paired_model(report, downscalers, models, reduction, report.scope))
    return tuple(out)


# ------------------------------------------------------------------------ Python API

def _api_report(records, baseline: str | None, n_boot: int, seed: int, include_unconverged: bool):
    """The `Report` of ``records`` (a frame) or of a run directory (a path, URI or
    `RecordStore`): a run is reduced as ``idard-bench report`` reduces it (its suite's keys,
    an adaptive run's K, stop reasons and paired level), by the same function."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.store.records import RecordStore

    if isinstance(records, (str, os.PathLike, RecordStore)):
        # lazy: reading a run directory needs the store and the adaptive decisions
        from idard.bench.report.of_run import report_of_run

        return report_of_run(records, baseline=baseline, n_boot=n_boot, seed=seed,
                             include_unconverged=include_unconverged).report
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.report.reduce import build_report

    return build_report(records, baseline=baseline, n_boot=n_boot, seed=seed, include_unconverged=include_unconverged)


def ida_rd_table(records, *, n_boot: int = 1000, seed: int = 0, include_unconverged: bool = False) -> TableModel:
    """The IDA-RD table of ``records`` (`idard.evaluate`'s frame, or a run directory: its
    path or URI), ranked and labelled as ``idard-bench report`` shows it. ``print()`` it for
    the table; ``.rows`` is the Polars frame (numbers unrounded, plug-in ids beside their labels)."""
    return table_models(_api_report(records, None, n_boot, seed, include_unconverged))[0]


def paired_table(records, baseline: str, *, n_boot: int = 1000, seed: int = 0,
                 include_unconverged: bool = False) -> TableModel:
    """Each downscaler against ``baseline`` on the same images and seeds, as the CLI's
    paired table (positive = loses more information than the baseline); of a run directory,
    at the level its adaptive paired rule decided at, as ``report`` shows it."""
    report = _api_report(records, baseline, n_boot, seed, include_unconverged)
    if report.paired is None:
        raise ValueError(report.paired_error or f"no paired differences against {baseline!r}")
    return table_models(report)[1]
