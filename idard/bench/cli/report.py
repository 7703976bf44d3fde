"""Reading a run directory: ``report`` reduces its records to the IDA-RD table (and an
HTML page), ``explain`` recomputes one record. `print_report` and `print_checks` are
also how ``run`` shows its table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from idard.bench.cli.shared import BaselineOption, IncludeUnconverged, UsageError, app, console, err_console, user_errors


def paired_baseline(option: str | None, downscalers) -> str | None:
    """``--baseline``: ``none`` turns paired differences off; the default is bicubic when present."""
    if option is not None:
        return None if option.strip().lower() == "none" else option
    return "bicubic" if "bicubic" in downscalers else None


def print_report(records, out: str, baseline: str | None, bootstrap: int, include_unconverged: bool, *,
                 scope, formats: tuple[str, ...] | None = None, suite: dict | None = None, store=None,
                 left_out: int = 0, write: bool = True):
    """Reduce records to the IDA-RD table (and paired differences); print and write them.
    The table is always written, whatever happens to the paired comparison, unless
    ``write`` is False (``out`` is a folder idard did not make: its files may be the
    user's). ``scope`` (`idard.bench.suite.scope.Scope`) says which keys ``records``
    are, ``left_out`` how many others the run directory holds. ``store``: the record
    store ``records`` are of, when they are (for a cheaper duplicate test)."""
    # lazy: start-up time
    from idard.bench.report import DEFAULT_FORMATS, rich_table, table_models, write_reports
    from idard.bench.report.of_run import report_run
    from idard.bench.store import RecordStore

    done = report_run(records, store or RecordStore(out), baseline=baseline, n_boot=bootstrap,
                      include_unconverged=include_unconverged, scope=scope, left_out=left_out, suite=suite)
    if done.duplicates:
        extra = done.duplicates
        err_console.print(f"warning: {out} holds {extra} extra cop{'y' if extra == 1 else 'ies'} of record keys "
                          "(two runs wrote into it at once?); each key is counted once", highlight=False)
    report = done.report
    models = table_models(report)
    for model in models:
        console.print(rich_table(model))
    if report.paired_error:
        err_console.print(report.paired_error, highlight=False, markup=False)
    if write:
        written = write_reports(models, out, formats=formats or DEFAULT_FORMATS)
        console.print(f"tables: {', '.join(written)}", highlight=False)
    else:
        console.print(_not_written("tables", out, "idard-bench report RUN --out FOLDER"), highlight=False)
    return report


def _not_written(what: str, folder: str, how: str) -> str:
    return (f"{what} not written: {folder} holds a suite.yaml idard did not write (the suite's own folder?), "
            f"so its ida_rd.md, paired_* and report.html may be yours; {how} writes them elsewhere")


def print_checks(run_dir: str, table, records, out: str | None = None, write: bool = True) -> None:
    """The suite's own checks (its ``checks:``, from the run's suite copy) next to the
    table; ``checks.*`` are written where the tables went (``out``, default the run dir),
    unless ``write`` is False."""
    # lazy: start-up time
    from idard.bench.suite.checks import checks_of_run, evaluate_checks, report_checks, summary_lines

    checks, name = checks_of_run(run_dir)
    if write:
        _, lines, written = report_checks(checks, table, records, out or run_dir, name)
    else:
        lines, written = (summary_lines(evaluate_checks(checks, table, records)) if checks else []), []
    for line in lines:
        console.print(escape(line), highlight=False)  # labels hold [metric] restrictions, not markup
    if written:
        console.print(f"checks: {', '.join(written)}", highlight=False)


ImagesOption = Annotated[list[str] | None, typer.Option(
    "--images", help="Image source(s) to read HR files from (folder, glob, URI, bundled:...), instead of the run's "
                     "suite.yaml; repeat for several. A file is used only if its SHA-256 is the records' hr_sha256.")]


def _grid_crop(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--grid-crop {text!r}: expected X,Y (HR pixels, e.g. 128,64)") from None
    return x, y


@app.command()
def report(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or object-store URI) holding records/.")],
    baseline: BaselineOption = None,
    bootstrap: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for the 95% CI.")] = 1000,
    include_unconverged: IncludeUnconverged = False,
    out: Annotated[str | None, typer.Option("--out", help="Folder (or URI) for the tables (default: the run directory).")] = None,
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: md, csv, parquet, json.")] = "md,csv,parquet",
    all_records: Annotated[bool, typer.Option(
        "--all-records", help="Reduce every record of the run directory, not only the keys of its suite "
                              "(records of deleted images, of seeds a suite no longer draws...).")] = False,
    suite_path: Annotated[Path | None, typer.Option(
        "--suite", help="Reduce the keys of this suite (default: the run's own suite, as its last run recorded).",
        show_default=False)] = None,
    html_path: Annotated[Path | None, typer.Argument(
        help="With --html: where to write the page (default RUN/report.html).", show_default=False)] = None,
    html: Annotated[bool, typer.Option(
        "--html", help="Also write one self-contained HTML page (table, plots, sample grid): report RUN --html "
                       "[PATH]. The sample grid recomputes a few samples from their seeds (needs the model).")] = False,
    grid_images: Annotated[int, typer.Option(min=0, help="--html: images in the HR/LR/SR sample grid.")] = 2,
    grid_samples: Annotated[int, typer.Option(min=1, help="--html: SR samples per LR image in the grid.")] = 3,
    grid_image: Annotated[list[str] | None, typer.Option(help="--html: show this image (key); repeat for several.")] = None,
    grid_downscaler: Annotated[list[str] | None, typer.Option(help="--html: show this downscaler; repeat for several.")] = None,
    grid_seed: Annotated[list[int] | None, typer.Option(help="--html: show this seed; repeat for several.")] = None,
    grid_crop: Annotated[str | None, typer.Option(help="--html: crop's top-left X,Y in HR pixels (default: where "
                                                       "the samples differ most).")] = None,
    grid_crop_size: Annotated[int, typer.Option(min=4, help="--html: crop side in HR pixels.")] = 64,
    images: ImagesOption = None,
) -> None:
    """Reduce a run directory's records to the IDA-RD table (downscaler x model x scale).

    By default the keys of the run's suite are reduced, as ``run`` reduces them; the
    table's heading says which keys it reduced.
    """
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.report import parse_formats
    from idard.bench.report.of_run import default_baseline, read_run
    from idard.bench.suite.scope import idard_made

    with user_errors():
        if html_path is not None and not html:
            raise UsageError(f"{html_path}: a second argument is the HTML page's path and needs --html")
        chosen = parse_formats(formats)
        run = read_run(run_dir, suite_path=suite_path, all_records=all_records)  # FileNotFoundError when empty
        for line in run.notes:
            err_console.print(line, highlight=False, soft_wrap=True)
        store, records = run.store, run.records
        if baseline is None:
            baseline = default_baseline(records)
        elif baseline.strip().lower() == "none":
            baseline = None
        writable = out is not None or idard_made(store)
        shown = print_report(records, out or run_dir, baseline, bootstrap, include_unconverged, formats=chosen,
                             scope=run.scope, suite=run.suite, store=store, left_out=run.left_out, write=writable)
        print_checks(run_dir, shown.table, records, out, write=writable)
        if html:
            # lazy: start-up time
            from idard.bench.report.grid import GridOptions
            from idard.bench.report.page import write_html_report

            page = html_path if html_path is not None or out is None else Path(out) / "report.html"
            if page is None and not writable:
                console.print(_not_written("html", run_dir, "report RUN --html PAGE.html"), highlight=False)
                return
            grid = GridOptions(images=tuple(grid_image or ()), downscalers=tuple(grid_downscaler or ()),
                               seeds=tuple(grid_seed or ()), n_images=grid_images, n_samples=grid_samples,
                               crop=_grid_crop(grid_crop), crop_size=grid_crop_size, sources=tuple(images or ()))
            path = write_html_report(run_dir, shown, records, page, grid=grid,
                                     log=lambda line: console.print(line, highlight=False))
            console.print(f"html: {path}", highlight=False)


@app.command()
def explain(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or object-store URI) holding records/.")],
    image: Annotated[str, typer.Option("--image", help="The record's image key (e.g. img000 or portraits/0001).")],
    downscaler: Annotated[str, typer.Option("--downscaler", help="The record's downscaler (any spelling).")],
    seed: Annotated[int, typer.Option("--seed", help="The record's sample seed.")],
    model: Annotated[str | None, typer.Option("--model", help="The record's model (needed when the run has several).")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Metric(s) to recompute (default: all held).")] = None,
    images: ImagesOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for hr/lr/sr/difference PNGs (default: ./explain-<key>).")] = None,
    device: Annotated[str | None, typer.Option(help="torch device; default cuda if available.")] = None,
) -> None:
    """Recompute one record as the run's worker did; write its HR, LR, SR and difference PNGs
    and print the recomputed and stored values side by side (exit 1 if any differs)."""
    # lazy: start-up time
    from idard.bench.report.explain import explain as explain_record, explanation_lines
    from idard.bench.report.reduce import scan_records

    with user_errors():
        done = explain_record(run_dir, scan_records(run_dir), image, downscaler, seed, model=model, metrics=metric,
                              images=images, out=out, device=device)
    for line in explanation_lines(done):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if not done.all_equal:
        raise typer.Exit(1)
