"""A run's life: ``run`` computes the records a run directory lacks and reduces them,
``status`` says what is done, ``compact`` and ``migrate`` keep a run directory healthy,
``validate-model`` runs the validity card of a would-be decoder."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from idard.bench.cli.report import paired_baseline, print_checks, print_report
from idard.bench.cli.shared import (
    BaselineOption,
    IncludeUnconverged,
    OutOption,
    SuiteOption,
    app,
    console,
    err_console,
    out_or_default,
    suite_or_default,
    user_errors,
)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM end a run the same way: records written so far are kept, one
    line says so, exit 130 (SIGINT) or 143 (SIGTERM)."""
    # lazy: start-up time
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
            # lazy: start-up time
            from idard.bench.store.records import RecordStore

            with contextlib.suppress(Exception):
                err_console.print(f"{RecordStore(out).count()} records are saved in {out}", highlight=False,
                                  markup=False)
        raise


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
    # lazy: start-up time
    from idard.bench.store.lease import RunLease
    from idard.bench.store.records import RecordStore

    with user_errors(), _interruptible():
        if cluster is not None:  # the suite is validated on the head, where its files are
            # lazy: start-up time
            from idard.bench.run.cluster import run_on_cluster
            from idard.bench.run.jobs import default_suite
            from idard.bench.suite.definition import suite_name

            path = suite_path if suite_path is not None else default_suite()
            target = out_or_default(out, suite_name(path))
            # Every option of this run reaches the driver on the head; --workers and --no-gpu
            # also decide whether the job waits for a GPU node first.
            extra = [f"--bootstrap={bootstrap}", f"--flush-records={flush_records}"] + (
                [f"--baseline={baseline}"] if baseline else []) + (
                [f"--cpus-per-worker={cpus_per_worker}"] if cpus_per_worker else []) + (
                ["--include-unconverged"] if include_unconverged else []) + (
                ["--retry-errors"] if retry_errors else []) + (
                ["--recompute-changed"] if recompute_changed else []) + (["--verbose"] if verbose else [])
            raise typer.Exit(run_on_cluster(cluster, path, target, extra, workers=workers, use_gpus=gpu,
                                            console=console))
        # With --out known, the lease comes first: a second run on a busy directory stops
        # in a second, before loading torch and the suite's models.
        lease = RunLease(RecordStore(out)) if out is not None else None
        with lease.hold() if lease is not None else contextlib.nullcontext(), _saved_on_interrupt(out):
            # lazy: start-up time
            from idard.bench.run.jobs import run_suite
            from idard.bench.run.runner import RunOptions

            suite = suite_or_default(suite_path)
            target = out_or_default(out, suite.name)
            options = RunOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                 use_gpus=gpu, flush_records=flush_records, verbose=verbose)
            if suite.reference:  # full-reference suite: no SR model, computed in this process
                # lazy: start-up time
                from idard.bench.run.fullref import run_reference_suite

                summary = run_reference_suite(suite, target, console)
            else:
                summary = run_suite(suite, target, options, console, lease=lease, retry_errors=retry_errors,
                                    recompute_changed=recompute_changed)
            # lazy: start-up time
            from idard.bench.suite.scope import SuiteKeys, idard_made, run_scope

            store = RecordStore(target)
            scope = run_scope(SuiteKeys.of(suite, [ref.name for ref in summary.plan.images]))
            writable = idard_made(store)
            shown = print_report(summary.records, target, paired_baseline(baseline, suite.downscalers), bootstrap,
                                 include_unconverged, scope=scope, left_out=scope.left_out(store.scan()),
                                 write=writable)
            print_checks(target, shown.table, summary.records, write=writable)
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


@app.command()
def migrate(
    run_dir: Annotated[str, typer.Argument(help="Run directory (or URI) written before ids became path-free.")],
) -> None:
    """Rewrite record ids written with absolute paths (before commit 8803331) to today's path-free ids."""
    # lazy: start-up time
    from idard.bench.store.migrate import migrate as rewrite
    from idard.bench.store.records import RecordStore

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
    # lazy: start-up time
    from idard.bench.store.compact import compact as compact_store
    from idard.bench.store.lease import RunLease
    from idard.bench.store.records import RecordStore

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
    # lazy: start-up time
    from rich.table import Table

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.run.jobs import plan_notes, suite_status

    with user_errors():
        suite = suite_or_default(suite_path)
        target = out_or_default(out, suite.name)
        if "://" not in target and not Path(target).is_dir():
            err_console.print(f"warning: run directory {target} does not exist: nothing is done yet "
                              "(pass --out RUN_DIR if the run is elsewhere)", highlight=False, markup=False)
        plan, table = suite_status(suite, target)
        _tell_status_problems(target)
        for line in plan_notes(plan):
            err_console.print(line, highlight=False, soft_wrap=True)
        columns = ["model", "downscaler", "done", "missing", "errors", "nonfinite"]
        if "sampling" in table.columns:  # an adaptive suite: each pair's K is decided by its looks
            from idard.measure.stopping import describe  # lazy: start-up time

            columns.append("sampling")
            title = (f"{suite.name} in {target}: {int(table['done'].sum())} records done, "
                     f"{int(table['missing'].sum())} missing at most; {describe(suite.sampling)}")
        else:
            title = f"{suite.name} in {target}: {plan.done_tasks}/{plan.total_tasks} records done"
        shown = Table(title=title, title_justify="left")
        for column in columns:
            shown.add_column(column, justify="left" if column in ("model", "downscaler", "sampling") else "right")
        # lazy: start-up time
        from idard.measure.downscalers import DOWNSCALERS

        labels = DOWNSCALERS.labels(table["downscaler"].to_list())  # blur(sigma=1.0) beside blur(sigma=2.0)
        for row in table.select(columns).iter_rows():
            shown.add_row(row[0], labels.get(row[1], row[1]), *map(str, row[2:]))
        console.print(shown)


def _tell_status_problems(target: str) -> None:
    """Unreadable parts and keys held twice, said before the table that leaves them out."""
    # lazy: start-up time
    from idard.bench.store.records import RecordStore, skipped_part_notes

    store = RecordStore(target)
    dupes = store.duplicate_keys()
    for line in skipped_part_notes(store):
        err_console.print(line, highlight=False, soft_wrap=True)
    if dupes.height:
        err_console.print(f"warning: {target} holds {dupes.height} record key(s) more than once (two runs wrote "
                          "into it at once?); each is counted once below", highlight=False)


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
    # lazy: start-up time
    from idard.bench.store.lease import RunLease
    from idard.bench.store.records import RecordStore

    with user_errors(), _interruptible():
        # lazy: start-up time
        from idard.bench.run.runner import RunOptions
        from idard.bench.run.validity import Size, default_out
        from idard.bench.run.validity import validate_model as make_card
        from idard.bench.report.validity import render_markdown

        target = out if out is not None else default_out(spec)
        lease = RunLease(RecordStore(target))
        with lease.hold(), _saved_on_interrupt(target):
            options = RunOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                 use_gpus=gpu, verbose=verbose)
            size = Size(samples=samples, crop=crop, images=tuple(images or ()), max_batch=max_batch)
            card = make_card(spec, target, size, options, console, markdown=render_markdown, lease=lease)
        for criterion in card["criteria"]:
            console.print(f"{criterion['name']}: {criterion['status']}: {criterion['reason']}", highlight=False,
                          markup=False)
        console.print(f"verdict: {card['verdict']}: {card['reason']}", highlight=False, markup=False)
        console.print(f"card: {target}/card.md, {target}/card.json", highlight=False, markup=False)
    raise typer.Exit(VALIDITY_EXIT[card["verdict"]])
