"""``idard-bench``: the command line.

Single-step commands (``downscale``, ``upscale``, ``distortion``) check each part of the
measure alone on real files; ``list`` shows what is registered; ``run`` computes an
IDA-RD table.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="idard-bench",
    help="IDA-RD: how much information does an image downscaler destroy?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _no_flag_metavar() -> None:
    """Boolean flags take no value, so ``--help`` must not show one (this Typer prints
    ``<bool>`` beside every flag, ``--help`` included): flags show no type."""
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_idard", False):
        return

    def display_type_rich(self, *args, **kwargs):
        return None if self.is_flag else original(self, *args, **kwargs)

    display_type_rich._idard = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich


_no_flag_metavar()
# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; give them room.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected input errors into a one-line message and exit code 2, no traceback."""
    from idard.bench.lease import LeaseHeld, LeaseLost
    from idard.bench.store import StoreWriteError
    from idard.measure.errors import LPIPSWeightsInvalid, LPIPSWeightsUnavailable

    try:
        yield
    except (UsageError, FileNotFoundError, ValueError,  # ValueError: ImageError, SpecError, bad values
            LPIPSWeightsInvalid, LPIPSWeightsUnavailable, LeaseHeld, LeaseLost, StoreWriteError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _outputs(inputs: list[Path], out: Path, suffix: str = ".png") -> list[Path]:
    if len(inputs) == 1 and out.suffix:
        return [out]
    return [out / f"{p.stem}{suffix}" for p in inputs]


def _inputs(path: Path) -> list[Path]:
    from idard.measure.images import find_images

    if path.is_dir():
        found = find_images(path)
        if not found:
            raise UsageError(f"{path}: folder holds no images")
        return found
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    return [path]


@app.command()
def downscale(
    src: Annotated[Path, typer.Argument(help="HR image file or folder of images.")],
    out: Annotated[Path, typer.Argument(help="Output file (single input) or folder.")],
    method: Annotated[str, typer.Option("--method", "-m", help="Downscaler spec, e.g. bicubic or 'blur(sigma=2)'.")] = "bicubic",
    scale: Annotated[int, typer.Option("--scale", "-s", min=1, help="Downscaling factor.")] = 4,
) -> None:
    """Downscale HR images (centre-cropped to a multiple of the scale) and save 8-bit PNGs."""
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.images import crop_to_multiple, load_image, save_image

    with user_errors():
        downscaler = DOWNSCALERS.create(method)
        inputs = _inputs(src)
        for path, target in zip(inputs, _outputs(inputs, out)):
            loaded = load_image(path)
            hr = crop_to_multiple(loaded, scale)
            cropped = "" if (hr.width, hr.height) == (loaded.width, loaded.height) else (
                f"; centre-cropped {loaded.width}x{loaded.height} -> {hr.width}x{hr.height}, a multiple of {scale}")
            save_image(target, downscaler(hr, scale))
            console.print(f"{path} -> {target} ({downscaler.id}, x{scale}{cropped})", highlight=False, markup=False)


@app.command()
def upscale(
    src: Annotated[Path, typer.Argument(help="LR image file or folder of images.")],
    out: Annotated[Path, typer.Argument(help="Output file (single input and seed) or folder.")],
    model: Annotated[str, typer.Option("--model", help="SR model spec.")] = "srflow-tiny-4x",
    seed: Annotated[list[int], typer.Option("--seed", help="Sample seed; repeat for several samples.")] = [0],  # noqa: B006
    heat: Annotated[float | None, typer.Option("--heat", help="Sampling temperature (overrides the model spec).")] = None,
    device: Annotated[str | None, typer.Option(help="torch device; default cuda if available.")] = None,
) -> None:
    """Draw SR samples of LR images; one PNG per (image, seed), converted to 8 bits as records are scored."""
    import torch

    from idard.measure.images import load_image, save_image, to_pixels, to_tensor
    from idard.measure.models import MODELS
    from idard.measure.sr_8bit import to_8bit_grid

    with user_errors():
        sr_model = MODELS.create(model, **({"heat": heat} if heat is not None else {}))
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        sr_model.to(dev)
        inputs = _inputs(src)
        single = len(inputs) == 1 and len(seed) == 1 and out.suffix
        if out.suffix and not single:
            err_console.print(f"note: {len(inputs)} image(s) x {len(seed)} seed(s) give several samples, so {out} is "
                              f"a folder: writing {out}/<image>_seed<k>.png", highlight=False, markup=False)
        failed = 0
        for path in inputs:
            lr = load_image(path)
            with torch.inference_mode():
                samples = sr_model.sample(to_tensor(lr.pixels, dev), seed)[0]
            for k, s in enumerate(seed):
                target = out if single else out / f"{path.stem}_seed{s}.png"
                if not torch.isfinite(samples[k]).all():
                    err_console.print(f"{path} seed {s}: non-finite SR sample, not saved", highlight=False)
                    failed += 1
                    continue
                # the one 8-bit conversion records are scored with (truncation, as the reference)
                save_image(target, to_pixels(to_8bit_grid(samples[k])))
                console.print(f"{path} -> {target} ({sr_model.id}, seed {s})", highlight=False)
        if failed:
            raise typer.Exit(1)


@app.command()
def distortion(
    ref: Annotated[Path, typer.Argument(help="Reference (HR) image.")],
    dist: Annotated[Path, typer.Argument(help="Distorted (SR) image of the same size.")],
    metric: Annotated[str, typer.Option("--metric", help="lpips-alex, lpips-vgg, psnr, ssim or ms-ssim.")] = "lpips-alex",
) -> None:
    """Print the distortion between two images (a reference that downscale would crop is cropped alike)."""
    from idard.measure.distortions import DISTORTIONS
    from idard.measure.images import crop_to_multiple, load_image, to_tensor

    with user_errors():
        scorer = DISTORTIONS.create(metric)
        a, b = load_image(ref), load_image(dist)
        scale = _crop_scale((a.width, a.height), (b.width, b.height))
        if scale is not None:
            # An SR sample of an HR image that `downscale` cropped to a multiple of the
            # scale: the reference gets the same centre crop, so the one-step chain works.
            err_console.print(f"note: {ref} centre-cropped {a.width}x{a.height} -> {b.width}x{b.height} (a multiple "
                              f"of {scale}, as downscale crops) to match {dist}", highlight=False, markup=False)
            a = crop_to_multiple(a, scale)
        if a.pixels.shape != b.pixels.shape:
            raise UsageError(f"{dist}: size {b.width}x{b.height} differs from {ref} ({a.width}x{a.height}) "
                             "and is not its crop to a multiple of a scale")
        value = float(scorer(to_tensor(a.pixels), to_tensor(b.pixels))[0])
        print(repr(value))  # every digit: a record's value is compared exactly, not to 6 decimals


def _crop_scale(reference: tuple[int, int], other: tuple[int, int]) -> int | None:
    """The smallest scale whose crop to a multiple turns ``reference`` (w, h) into ``other``."""
    if reference == other:
        return None
    for scale in range(2, 65):
        if all(side - side % scale == target for side, target in zip(reference, other)):
            return scale
    return None


@app.command("list")
def list_plugins() -> None:
    """List registered downscalers, SR models and metrics with their parameters."""
    from rich.table import Table

    from idard.measure.distortions import DISTORTIONS
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.models import MODELS

    for registry in (DOWNSCALERS, MODELS, DISTORTIONS):
        table = Table(title=f"{registry.kind}s", title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("parameters")
        table.add_column("description")
        for entry in registry:
            params = ", ".join(
                f"{n}: {t}" + ("" if d is _missing() else f" = {d!r}") for n, t, d in entry.parameters()
            )
            table.add_row(entry.name, params, entry.summary)
        console.print(table)
    _list_published_weights()


def _list_published_weights() -> None:
    """The published weights (idard/measure/zoo.py) and whether each is here."""
    from rich.table import Table

    from idard.measure.weights import cache_dir
    from idard.measure.zoo import ENTRIES

    table = Table(title=f"published weights (cache: {cache_dir()}; fetch with `idard-bench weights fetch NAME`)",
                  title_justify="left")
    for column in ("name", "file", "status", "licence", "note"):
        table.add_column(column, style="bold" if column == "name" else None)
    for entry in ENTRIES:
        table.add_row(entry.name, entry.file, entry.availability(), entry.licence, entry.note)
    console.print(table)


def _missing() -> object:
    import dataclasses

    return dataclasses.MISSING


def _suite(path: Path | None, *, check_scales: bool = True):
    from idard.bench.jobs import default_suite
    from idard.bench.suite import load_suite

    return load_suite(path if path is not None else default_suite(), check_scales=check_scales)


def _out(out: str | None, name: str) -> str:
    from idard.bench.suite import run_dir_name

    return out if out is not None else str(Path("runs") / run_dir_name(name))


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM end a run the same way: records written so far are kept, one
    line says so, exit 130 (SIGINT) or 143 (SIGTERM)."""
    import signal

    from idard.measure.errors import RayUnavailable, RunInterrupted, WorkersLost

    def terminate(signum: int, frame: object) -> None:  # until Ray starts (the runner takes over)
        raise RunInterrupted()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except (WorkersLost, RayUnavailable) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        name = "SIGTERM" if isinstance(exc, RunInterrupted) else "SIGINT"
        err_console.print(f"interrupted by {name}: every record written so far is kept; run the same command "
                          "again to compute the rest", highlight=False, soft_wrap=True)
        raise typer.Exit(143 if name == "SIGTERM" else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _saved_on_interrupt(out: str | None) -> Iterator[None]:
    """On Ctrl-C or SIGTERM, say how many records the run directory holds before the
    interrupt is reported (`_interruptible`): nothing saved is computed again."""
    try:
        yield
    except KeyboardInterrupt:
        if out is not None:
            from idard.bench.store import RecordStore

            with contextlib.suppress(Exception):
                err_console.print(f"{RecordStore(out).count()} records are saved in {out}", highlight=False,
                                  markup=False)
        raise


BaselineOption = Annotated[str | None, typer.Option(
    help="Downscaler for paired differences, in any spelling (blur, blur(sigma=1)); 'none' for no paired "
         "table (default: bicubic if present).")]
IncludeUnconverged = Annotated[bool, typer.Option(
    "--include-unconverged",
    help="Put samples that missed their model's goal (PULSE's eps) in the means; by default they "
         "are left out, as the reference PULSE drops them. Counted either way.")]
SuiteOption = Annotated[Path | None, typer.Option("--suite", help="Suite YAML (default: benchmark/quickstart.yaml).")]
OutOption = Annotated[str | None, typer.Option("--out", help="Run directory or object-store URI (default: runs/<suite name>).")]


@app.command()
def run(
    suite_path: SuiteOption = None,
    out: OutOption = None,
    address: Annotated[str | None, typer.Option(help="Existing Ray cluster: auto, HOST:PORT or ray://HOST:10001.")] = None,
    cluster: Annotated[Path | None, typer.Option(help="Ray cluster-launcher YAML: bring it up and run the suite there.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Number of model actors (default: one per GPU, else per node).")] = None,
    cpus_per_worker: Annotated[int | None, typer.Option(min=1, help="CPU workers: cores (torch threads) per actor.")] = None,
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="Use GPUs when the cluster has them.")] = True,
    bootstrap: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for the 95% CI.")] = 1000,
    baseline: BaselineOption = None,
    flush_records: Annotated[int, typer.Option(min=1, help="Records per Parquet part: fewer lose less to a crash.")] = 2000,
    include_unconverged: IncludeUnconverged = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Compute error records again (e.g. a broken image was replaced).")] = False,
    recompute_changed: Annotated[bool, typer.Option("--recompute-changed", help="Replace the records of images whose file changed (refused otherwise).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Ray's logs.")] = False,
) -> None:
    """Run a benchmark suite: compute the records the run directory lacks, then the IDA-RD table.

    Incremental and resumable: records already in the run directory are never recomputed,
    so an interrupted run continues where it stopped and a grown suite computes only its
    new keys.
    """
    from idard.bench.lease import RunLease
    from idard.bench.store import RecordStore

    with user_errors(), _interruptible():
        if cluster is not None:  # the suite is validated on the head, where its files are
            from idard.bench.cluster import run_on_cluster
            from idard.bench.jobs import default_suite
            from idard.bench.suite import suite_name

            path = suite_path if suite_path is not None else default_suite()
            target = _out(out, suite_name(path))
            extra = [f"--bootstrap={bootstrap}"] + ([f"--baseline={baseline}"] if baseline else []) + (
                ["--include-unconverged"] if include_unconverged else []) + (
                ["--retry-errors"] if retry_errors else []) + (["--recompute-changed"] if recompute_changed else [])
            raise typer.Exit(run_on_cluster(cluster, path, target, extra, console=console))
        # With --out known, the lease comes first: a second run on a busy directory stops
        # in a second, before loading torch and the suite's models.
        lease = RunLease(RecordStore(out)) if out is not None else None
        with lease.hold() if lease is not None else contextlib.nullcontext(), _saved_on_interrupt(out):
            from idard.bench.jobs import run_suite
            from idard.bench.runner import RunOptions

            suite = _suite(suite_path)
            target = _out(out, suite.name)
            options = RunOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                 use_gpus=gpu, flush_records=flush_records, verbose=verbose)
            if suite.reference:  # full-reference suite: no SR model, computed in this process
                from idard.bench.fullref import run_reference_suite

                summary = run_reference_suite(suite, target, console)
            else:
                summary = run_suite(suite, target, options, console, lease=lease, retry_errors=retry_errors,
                                    recompute_changed=recompute_changed)
            from idard.bench.report.scope import SuiteKeys, idard_made, run_scope

            store = RecordStore(target)
            scope = run_scope(SuiteKeys.of(suite, [ref.name for ref in summary.plan.images]))
            writable = idard_made(store)
            shown = _print_report(summary.records, target, _baseline(baseline, suite.downscalers), bootstrap,
                                  include_unconverged, scope=scope, left_out=scope.left_out(store.scan()),
                                  write=writable)
            _print_checks(target, shown.table, summary.records, write=writable)
            _print_failing(summary.failing, target)
        if summary.result is not None:
            r = summary.result
            console.print(f"computed {r.computed_tasks} records in {r.seconds:.0f} s "
                          f"({r.computed_tasks / max(r.seconds, 1e-9):.1f}/s) on {len(r.workers)} worker(s)"
                          + (f"; {r.failed_units} image(s) failed on every attempt" if r.failed_units else ""),
                          highlight=False)


#: Failing images listed in the terminal; run.json lists all of them.
_FAILING_SHOWN = 20


def _print_failing(failing: list[dict], out: str) -> None:
    """Every image with error records (the first `_FAILING_SHOWN`; all in run.json)."""
    if not failing:
        return
    console.print(f"{len(failing)} image(s) have error records (re-run with --retry-errors once fixed):",
                  highlight=False)
    for row in failing[:_FAILING_SHOWN]:
        console.print(f"  {row['image']}: {row['records']} record(s): {row['error']}", highlight=False, markup=False)
    if len(failing) > _FAILING_SHOWN:
        console.print(f"  ... and {len(failing) - _FAILING_SHOWN} more: all in {out}/run.json", highlight=False)


def _baseline(option: str | None, downscalers) -> str | None:
    """``--baseline``: ``none`` turns paired differences off; the default is bicubic when present."""
    if option is not None:
        return None if option.strip().lower() == "none" else option
    return "bicubic" if "bicubic" in downscalers else None


def _print_report(records, out: str, baseline: str | None, bootstrap: int, include_unconverged: bool, *,
                  scope, formats: tuple[str, ...] | None = None, suite: dict | None = None, store=None,
                  left_out: int = 0, write: bool = True):
    """Reduce records to the IDA-RD table (and paired differences); print and write them.
    The table is always written, whatever happens to the paired comparison, unless
    ``write`` is False (``out`` is a folder idard did not make: its files may be the
    user's). ``scope`` (`idard.bench.report.scope.Scope`) says which keys ``records``
    are, ``left_out`` how many others the run directory holds. ``store``: the record
    store ``records`` are of, when they are (for a cheaper duplicate test)."""
    from idard.bench.report import DEFAULT_FORMATS, rich_table, table_models, write_reports
    from idard.bench.report.reduce import build_report
    from idard.bench.store import without_duplicates

    records, extra = without_duplicates(records, store)
    if extra:
        err_console.print(f"warning: {out} holds {extra} extra cop{'y' if extra == 1 else 'ies'} of record keys "
                          "(two runs wrote into it at once?); each key is counted once", highlight=False)
    if scope.keys is not None:
        suite = {"suite": scope.keys.suite, "suite_hash": scope.keys.suite_hash}
    report = build_report(records, baseline=baseline, n_boot=bootstrap, include_unconverged=include_unconverged,
                          scope=scope.describe(left_out), suite=suite)
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


def _print_checks(run_dir: str, table, records, out: str | None = None, write: bool = True) -> None:
    """The suite's own checks (its ``checks:``, from the run's suite copy) next to the
    table; ``checks.*`` are written where the tables went (``out``, default the run dir),
    unless ``write`` is False."""
    from idard.bench.checks import checks_of_run, evaluate_checks, report_checks, summary_lines

    checks, name = checks_of_run(run_dir)
    if write:
        _, lines, written = report_checks(checks, table, records, out or run_dir, name)
    else:
        lines, written = (summary_lines(evaluate_checks(checks, table, records)) if checks else []), []
    for line in lines:
        console.print(escape(line), highlight=False)  # labels hold [metric] restrictions, not markup
    if written:
        console.print(f"checks: {', '.join(written)}", highlight=False)


def _scope(store, suite_path: Path | None, all_records: bool):
    """The keys ``report`` reduces: ``--all-records``, ``--suite FILE``'s, else the run's suite's."""
    from idard.bench.report.scope import Scope, SuiteKeys, default_scope

    if all_records and suite_path is not None:
        raise UsageError("--all-records and --suite exclude each other: one says which keys to reduce")
    if all_records:
        return Scope(None, "--all-records")
    if suite_path is not None:
        from idard.bench.sources import list_images
        from idard.bench.suite import load_suite

        suite = load_suite(suite_path)
        images = [ref.name for ref in list_images(list(suite.images), Path(suite.base_dir))]
        return Scope(SuiteKeys.of(suite, images), f"--suite {suite_path}")
    return default_scope(store)


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
    import json

    import polars as pl

    from idard.bench.report import parse_formats
    from idard.bench.report.reduce import scan_records
    from idard.bench.report.scope import idard_made
    from idard.bench.store import RecordStore, skipped_part_notes

    with user_errors():
        if html_path is not None and not html:
            raise UsageError(f"{html_path}: a second argument is the HTML page's path and needs --html")
        chosen = parse_formats(formats)
        store = RecordStore(run_dir)
        everything = scan_records(store)  # FileNotFoundError naming the directory when empty
        for line in skipped_part_notes(store):
            err_console.print(line, highlight=False, soft_wrap=True)
        scope = _scope(store, suite_path, all_records)
        records = scope.records(everything)
        if baseline is None:
            has_bicubic = records.filter(pl.col("downscaler") == "bicubic").head(1).collect().height > 0
            baseline = "bicubic" if has_bicubic else None
        elif baseline.strip().lower() == "none":
            baseline = None
        try:
            last = json.loads(store.read_text("run.json") or "{}")
        except json.JSONDecodeError:
            last = {}
        suite = {k: last[k] for k in ("suite", "suite_hash") if k in last} if isinstance(last, dict) else {}
        writable = out is not None or idard_made(store)
        shown = _print_report(records, out or run_dir, baseline, bootstrap, include_unconverged, formats=chosen,
                              scope=scope, suite=suite, store=store,
                              left_out=scope.left_out(everything), write=writable)
        _print_checks(run_dir, shown.table, records, out, write=writable)
        if html:
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
    from idard.bench.report.explain import explain as explain_record, explanation_lines
    from idard.bench.report.reduce import scan_records

    with user_errors():
        done = explain_record(run_dir, scan_records(run_dir), image, downscaler, seed, model=model, metrics=metric,
                              images=images, out=out, device=device)
    for line in explanation_lines(done):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if not done.all_equal:
        raise typer.Exit(1)


@app.command()
def migrate(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or URI) written before ids became path-free.")],
) -> None:
    """Rewrite record ids written with absolute paths (before commit 8803331) to today's path-free ids."""
    from idard.bench.migrate import migrate as rewrite
    from idard.bench.store import RecordStore

    with user_errors():
        mapping, failed = rewrite(RecordStore(run_dir))
        for old, new in mapping.items():
            console.print(f"{old} -> {new}", highlight=False, markup=False)
        for old, why in failed.items():
            err_console.print(f"left as is: {old}: {why}", highlight=False, markup=False)
        console.print(f"{len(mapping)} id(s) rewritten in {run_dir}" if mapping or failed
                      else f"{run_dir}: nothing to migrate", highlight=False)
        if failed:
            raise typer.Exit(1)


@app.command()
def compact(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or object-store URI) holding records/.")],
    target_mb: Annotated[float, typer.Option(min=0.001, help="Size a compacted part aims at.")] = 32.0,
) -> None:
    """Rewrite a run's many small record parts as few large ones (safe to interrupt)."""
    from idard.bench.compact import compact as compact_store
    from idard.bench.lease import RunLease
    from idard.bench.store import RecordStore

    with user_errors():
        store = RecordStore(run_dir)
        with RunLease(store, command="compact").hold():  # never beside a run writing the same directory
            result = compact_store(store, target_mb=target_mb)
        for path, why in result.set_aside:
            err_console.print(f"moved {path} to quarantine: {why}", highlight=False, markup=False, soft_wrap=True)
        console.print(f"{result.parts_before} parts -> {result.parts_after}: {result.rewritten} rewritten as "
                      f"{result.written} ({result.records} records) in {result.seconds:.1f} s"
                      + (f"; finished {result.recovered} interrupted compaction(s)" if result.recovered else ""),
                      highlight=False)


@app.command()
def status(suite_path: SuiteOption = None, out: OutOption = None) -> None:
    """What is done and what is missing for a suite in a run directory."""
    from rich.table import Table

    from idard.bench.jobs import plan_notes, suite_status

    with user_errors():
        suite = _suite(suite_path)
        target = _out(out, suite.name)
        if "://" not in target and not Path(target).is_dir():
            err_console.print(f"warning: run directory {target} does not exist: nothing is done yet "
                              "(pass --out RUN_DIR if the run is elsewhere)", highlight=False, markup=False)
        plan, table = suite_status(suite, target)
        _tell_status_problems(target)
        for line in plan_notes(plan):
            err_console.print(line, highlight=False, soft_wrap=True)
        shown = Table(title=f"{suite.name} in {target}: {plan.done_tasks}/{plan.total_tasks} records done",
                      title_justify="left")
        for column in ("model", "downscaler", "done", "missing", "errors", "nonfinite"):
            shown.add_column(column, justify="left" if column in ("model", "downscaler") else "right")
        from idard.measure.downscalers import DOWNSCALERS

        labels = DOWNSCALERS.labels(table["downscaler"].to_list())  # blur(sigma=1.0) beside blur(sigma=2.0)
        for row in table.select("model", "downscaler", "done", "missing", "errors", "nonfinite").iter_rows():
            shown.add_row(row[0], labels.get(row[1], row[1]), *map(str, row[2:]))
        console.print(shown)


def _tell_status_problems(target: str) -> None:
    """Unreadable parts and keys held twice, said before the table that leaves them out."""
    from idard.bench.store import RecordStore, skipped_part_notes

    store = RecordStore(target)
    dupes = store.duplicate_keys()
    for line in skipped_part_notes(store):
        err_console.print(line, highlight=False, soft_wrap=True)
    if dupes.height:
        err_console.print(f"warning: {target} holds {dupes.height} record key(s) more than once (two runs wrote "
                          "into it at once?); each is counted once below", highlight=False)


@app.command()
def weights(
    action: Annotated[str | None, typer.Argument(help="'fetch' to download a published model's weights into the cache.")] = None,
    name: Annotated[str | None, typer.Argument(help="With fetch: a published weights name (see `idard-bench list`).")] = None,
    suite_path: SuiteOption = None,
) -> None:
    """The weight files each model of a suite reads: where they were found, SHA-256, check.

    Files are looked for as given, then by name in the weights cache ($IDARD_WEIGHTS_DIR,
    default ~/.cache/idard/weights); URLs are downloaded there once. Exits 1 when a file
    is missing or its hash differs from the one idard knows for it.
    ``weights fetch NAME`` downloads a published model's file (idard/measure/zoo.py) into
    the cache, with progress, resume and a hash check.
    """
    from rich.table import Table

    if action is not None:
        if action != "fetch" or not name:
            with user_errors():
                raise UsageError("usage: idard-bench weights fetch NAME (or idard-bench weights --suite FILE)")
        _fetch_weights(name)
        return

    from idard.measure.models import MODELS, sha256_file
    from idard.measure.weights import ENV_WEIGHTS_DIR, cache_dir, verdict

    with user_errors():
        suite = _suite(suite_path, check_scales=False)  # a missing file is a row of the table, not an error
        if suite.reference:
            console.print(f"suite {suite.name!r} compares downscaled images with reference images: no model, "
                          "no weights", highlight=False)
            return
        console.print(f"weights cache: {cache_dir()} (${ENV_WEIGHTS_DIR})", highlight=False)
        shown = Table(title=f"weights of suite {suite.name!r}", title_justify="left")
        for column in ("model", "file", "SHA-256", "check"):
            shown.add_column(column)
        failed = False
        for model_id in suite.models:
            model = None
            try:
                model = MODELS.create(suite.spec(model_id))
                files = model.weight_files()
            except (FileNotFoundError, ValueError) as exc:
                shown.add_row(model_id, escape(str(exc) + _zoo_hint(model)), "—", "MISSING")
                failed = True
                continue
            for path in files:
                digest = sha256_file(path)
                check = verdict(path, digest)
                failed |= check.startswith("MISMATCH")
                shown.add_row(model_id, str(path), digest, check)
        console.print(shown)
        if failed:
            raise typer.Exit(1)


def _zoo_hint(model: object) -> str:
    """Where a model's missing files come from, when idard/measure/zoo.py lists them."""
    import dataclasses

    from idard.measure.registry import location_name
    from idard.measure.zoo import find_entry

    hints = []
    for field in dataclasses.fields(model) if dataclasses.is_dataclass(model) else ():
        value = getattr(model, field.name)
        if field.metadata.get("path") and isinstance(value, str) and value:
            try:
                entry = find_entry(location_name(value))
            except KeyError:
                continue
            hints.append(f"published weights: idard-bench weights fetch {entry.name} ({entry.note or entry.source})")
    return "; " + "; ".join(hints) if hints else ""


def _fetch_weights(name: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from idard.measure.weights import WeightsHashMismatch, WeightsNotFound, fetch
    from idard.measure.zoo import find_entry

    with user_errors():
        try:
            entry = find_entry(name)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
    if entry.cached.is_file():
        console.print(f"{entry.file} is already in the cache: {entry.cached}", highlight=False)
    console.print(f"{entry.name}: {entry.file} from {entry.source}; licence {entry.licence}", highlight=False)
    errors = []
    for url in entry.urls if not entry.cached.is_file() else ():
        console.print(f"downloading {url}" + (f" ({entry.member})" if entry.member else ""), highlight=False)
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=console, transient=not sys.stdout.isatty()) as bar:
            task = bar.add_task(entry.file, total=entry.download_size)
            try:
                # the published hash only: fetch checks a recorded one itself, and says which it was
                fetch(url, entry.cached, sha256=entry.sha256, member=entry.member, size=entry.download_size,
                      max_size=entry.size_cap,
                      progress=lambda done, total: bar.update(task, completed=done, total=total))
                break
            except (WeightsNotFound, OSError) as exc:
                errors.append(str(exc))
            except WeightsHashMismatch as exc:
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
    else:
        if not entry.cached.is_file():
            for error in errors:
                err_console.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
            err_console.print(f"{entry.name} not fetched ({entry.note or 'no URL answered'}); place "
                              f"{entry.file} at {entry.cached}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
    from idard.measure.models import sha256_file

    digest = sha256_file(entry.cached)
    expected = entry.expected_sha256()
    if entry.sha256 and digest == entry.sha256:
        check = "verified against the published SHA-256"
    elif expected and digest == expected:
        check = "NOT verified: no hash is published; recorded in the cache (sha256-recorded.json) at its first fetch, and later fetches are checked against it"
    elif expected:
        err_console.print(f"[bold red]error:[/] {entry.cached}: SHA-256 {digest} is not the expected {expected}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    else:
        check = "NOT verified: no hash is published"
    console.print(f"{entry.cached}\nSHA-256 {digest} ({check})", highlight=False)


@app.command()
def faces(
    out: Annotated[Path, typer.Argument(help="Folder to write the PNG faces to (created).")],
    count: Annotated[int, typer.Option(min=1, help="Number of faces.")] = 16,
    seed_start: Annotated[int, typer.Option(min=0, help="First latent seed (held out from PULSE's starts).")] = 1_000_000,
    weights: Annotated[str | None, typer.Option(help="The DCGAN's weights.tar (default: the installed gan-face-generate).")] = None,
) -> None:
    """Write 64x64 faces made by the offline face DCGAN: HR images for the offline PULSE suite.

    A stand-in for a folder of aligned face photographs, for machines with no dataset: the
    faces come from the generator PULSE then inverts, from seeds its starts never use.
    """
    from PIL import Image

    from idard.measure.images import to_uint8
    from idard.measure.models.pulse.generators import DCGANFaces, dcgan_faces_weights, generate_faces

    with user_errors():
        images = generate_faces(DCGANFaces(dcgan_faces_weights(weights)), range(seed_start, seed_start + count))
        out.mkdir(parents=True, exist_ok=True)
        for seed, image in zip(range(seed_start, seed_start + count), images):
            Image.fromarray(to_uint8(image.permute(1, 2, 0).numpy())).save(out / f"face-{seed}.png")
        console.print(f"wrote {count} faces (seeds {seed_start}-{seed_start + count - 1}) to {out}", highlight=False)


@app.command()
def subset(
    labels: Annotated[Path, typer.Argument(help="CSV with one row per image: image name, age, gender, ethnicity.")],
    size: Annotated[int, typer.Option(min=1, help="Number of images in the subset.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the draw (same labels and seed, same subset).")] = 0,
    out: Annotated[Path, typer.Option(help="CSV of the chosen images and their groups.")] = Path("subset.csv"),
    images: Annotated[Path | None, typer.Option(help="Folder holding the labelled images: copy the chosen ones...")] = None,
    copy_to: Annotated[Path | None, typer.Option(help="...into this folder (an image source for a suite).")] = None,
    image_column: Annotated[str, typer.Option(help="Column of the image name.")] = "image",
    age_column: Annotated[str, typer.Option(help="Column of the age (years, or minor/youth/middle/senior).")] = "age",
    gender_column: Annotated[str, typer.Option(help="Column of the gender (male/female, man/woman).")] = "gender",
    ethnicity_column: Annotated[str, typer.Option(help="Column of the ethnicity (asian/white/black; others are left out).")] = "ethnicity",
) -> None:
    """Draw an age-, gender- and ethnicity-balanced subset (supplement Sec. 4, Table 8).

    4 age groups x 3 ethnicities x 2 genders = 24 groups filled as evenly as the labels
    allow; prints the paper's Table 8 row with the joint entropy (ideal log2 24 = 4.585 bits).
    """
    from idard.bench.subset import IDEAL_ENTROPY, Columns, Statistics, copy_images, draw_subset, read_labels, write_subset

    with user_errors():
        if (images is None) != (copy_to is None):
            raise UsageError("--images and --copy-to go together: where the labelled images are, and where to copy the subset")
        labelled, dropped = read_labels(labels, Columns(image_column, age_column, gender_column, ethnicity_column))
        chosen = draw_subset(labelled, size, seed)
        stats = Statistics.of(chosen)
        write_subset(chosen, out)
        console.print(f"{len(labelled)} labelled images usable" + (
            "; left out: " + ", ".join(f"{n} ({reason})" for reason, n in dropped.items()) if dropped else ""),
            highlight=False)
        console.print(stats.table8_row(), highlight=False, end="")
        console.print(f"joint entropy {stats.entropy:.4f} bits (fully balanced: {IDEAL_ENTROPY:.4f}); "
                      f"{sum(v > 0 for v in stats.groups.values())} of 24 groups present; subset: {out}",
                      highlight=False)
        if images is not None and copy_to is not None:
            console.print(f"copied {copy_images(chosen, images, copy_to)} images to {copy_to}", highlight=False)


#: Options the training commands share (each command keeps its own defaults and seed help).
TrainOut = Annotated[Path, typer.Option(help="Where to write the safetensors weights (a .json report goes beside it).")]
TrainSteps = Annotated[int, typer.Option(min=1, help="Optimiser steps.")]
TrainThreads = Annotated[int, typer.Option(min=1, help="torch CPU threads.")]
TrainForce = Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists (the shipped model included).")]


def _refuse_overwrite(out: Path, force: bool) -> None:
    """A training command never replaces an existing file (by default, the shipped model's)
    without --force: minutes of training are cheap to redo, committed weights are not."""
    if out.exists() and not force:
        err_console.print(f"error: {out} exists (the default is the shipped model's file): pass --out NEW.safetensors, "
                          "or --force to overwrite it", highlight=False, markup=False)
        raise typer.Exit(2)


def _train(trainer: str, out: Path, **settings: object) -> None:
    """Run ``idard.measure.models.<trainer>.training.train`` with its settings, logging to stdout."""
    import importlib

    training = importlib.import_module(f"idard.measure.models.{trainer}.training")
    training.train(out, training.TrainingSettings(**settings), log=lambda line: print(line, flush=True))


@app.command("train-srflow")
def train_srflow(
    out: TrainOut = Path("idard/weights/srflow-tiny-4x.safetensors"),
    steps: TrainSteps = 2500,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, crops and dequantisation noise.")] = 0,
    threads: TrainThreads = 2,
    blind: Annotated[bool, typer.Option("--blind/--bicubic-only", help="LR bicubic plus random degradations, or bicubic only (default, as the committed model).")] = False,
    force: TrainForce = False,
) -> None:
    """Train the embedded smoke-test SRFlow (TINY_4X, 4x) on photographs bundled in packages.

    This is the command that made the committed weights of ``srflow-tiny-4x``; it never
    replaces an existing file (the shipped model is the default OUT) without --force.
    """
    _refuse_overwrite(out, force)
    _train("srflow", out, steps=steps, seed=seed, threads=threads, blind=blind)


@app.command("train-resshift")
def train_resshift(
    out: TrainOut = Path("idard/weights/resshift-tiny-4x.safetensors"),
    steps: TrainSteps = 500,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, crops, steps and noise.")] = 0,
    threads: TrainThreads = 1,
    force: TrainForce = False,
) -> None:
    """Train the embedded diffusion model (ResShift chain, small pixel-space denoiser, 4x)
    on photographs bundled in packages.

    This is the command that made the committed weights of ``resshift-tiny-4x``; it never
    replaces an existing file (the shipped model is the default OUT) without --force.
    """
    _refuse_overwrite(out, force)
    _train("diffusion", out, steps=steps, seed=seed, threads=threads)


def version_callback(value: bool) -> None:
    if value:
        from idard.provenance import code_version

        print(f"idard {code_version()}")  # in a checkout: the commit, as records say it
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")] = False,
) -> None:
    """IDA-RD: how much information does an image downscaler destroy?"""


def _terminal_help(doc: str) -> str:
    """A docstring as ``--help`` shows it: paragraphs joined into single lines that the
    terminal wraps (the source's own line breaks left ragged half-lines at 80 columns),
    and reST ``literals`` shown as `literals`."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    text = "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)
    return text.replace("``", "`")


def _help_for_terminals() -> None:
    for info in app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.help = _terminal_help(doc)


_help_for_terminals()


def main() -> None:
    app(prog_name="idard-bench")


#: validate-model's exit status per verdict: a CI job can gate on it.
VALIDITY_EXIT = {"valid": 0, "invalid": 1, "inconclusive": 3}


@app.command("validate-model")
def validate_model(
    spec: Annotated[str, typer.Argument(help="SR model spec, e.g. srflow-tiny-4x or 'srflow(weights=SRFlow_DF2K_4X.pth)'.")],
    out: Annotated[str | None, typer.Option("--out", help="Run directory or URI (default: runs/validity-<model id>).")] = None,
    images: Annotated[list[str] | None, typer.Option(
        "--images", help="Held-out image source (folder, glob, URI, bundled:NAME); repeat for several. "
                         "Default: the bundled held-out photos.")] = None,
    samples: Annotated[int, typer.Option(min=2, help="K, seeds per LR image.")] = 4,
    crop: Annotated[int, typer.Option(min=0, help="Centre crop side of the bundled photos (0: whole photos).")] = 256,
    max_batch: Annotated[int, typer.Option(min=1, help="SR samples per model call.")] = 64,
    workers: Annotated[int | None, typer.Option(min=1, help="Number of model actors (default: one per GPU, else per node).")] = None,
    cpus_per_worker: Annotated[int | None, typer.Option(min=1, help="CPU workers: cores (torch threads) per actor.")] = None,
    address: Annotated[str | None, typer.Option(help="Existing Ray cluster: auto, HOST:PORT or ray://HOST:10001.")] = None,
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="Use GPUs when the cluster has them.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Ray's logs.")] = False,
) -> None:
    """May this SR model be IDA-RD's decoder? Its validity card: stochasticity, the paper's
    ladders, stability, and a verdict (exit 0 valid, 1 invalid, 3 inconclusive).

    The records are a normal run (resumable: the same command continues), written with
    card.md and card.json into the run directory.
    """
    from idard.bench.lease import RunLease
    from idard.bench.store import RecordStore

    with user_errors(), _interruptible():
        from idard.bench.runner import RunOptions
        from idard.bench.validity import Size, default_out
        from idard.bench.validity import validate_model as make_card

        target = out if out is not None else default_out(spec)
        lease = RunLease(RecordStore(target))
        with lease.hold(), _saved_on_interrupt(target):
            options = RunOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                 use_gpus=gpu, verbose=verbose)
            size = Size(samples=samples, crop=crop, images=tuple(images or ()), max_batch=max_batch)
            card = make_card(spec, target, size, options, console, lease=lease)
        for criterion in card["criteria"]:
            console.print(f"{criterion['name']}: {criterion['status']}: {criterion['reason']}", highlight=False,
                          markup=False)
        console.print(f"verdict: {card['verdict']}: {card['reason']}", highlight=False, markup=False)
        console.print(f"card: {target}/card.md, {target}/card.json", highlight=False, markup=False)
    raise typer.Exit(VALIDITY_EXIT[card["verdict"]])


if __name__ == "__main__":
    sys.exit(main())
