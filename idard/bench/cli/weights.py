"""What can be measured and with which files: ``list`` shows the registered downscalers,
models, metrics and published weights; ``weights`` checks a suite's weight files and
``weights fetch`` downloads a published model's."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import typer
from rich.markup import escape

from idard.bench.cli.shared import SuiteOption, UsageError, app, console, err_console, suite_or_default, user_errors


@app.command("list")
def list_plugins() -> None:
    """List registered downscalers, SR models and metrics with their parameters."""
    # lazy: start-up time
    from rich.table import Table

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
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
                f"{n}: {t}" + ("" if d is dataclasses.MISSING else f" = {d!r}") for n, t, d in entry.parameters()
            )
            module = entry.cls.__module__
            origin = "" if module == "idard" or module.startswith("idard.") else f" (plug-in from {module})"
            table.add_row(entry.name, params, entry.summary + origin)
        console.print(table)
    _list_published_weights()


def _list_published_weights() -> None:
    """The published weights (idard/measure/zoo.py) and whether each is here."""
    # lazy: start-up time
    from rich.table import Table

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.weights import cache_dir
    from idard.measure.zoo import ENTRIES

    table = Table(title=f"published weights (cache: {cache_dir()}; fetch with `idard-bench weights fetch NAME`)",
                  title_justify="left")
    for column in ("name", "file", "status", "licence", "note"):
        table.add_column(column, style="bold" if column == "name" else None)
    for entry in ENTRIES:
        table.add_row(entry.name, entry.file, entry.availability(), entry.licence, entry.note)
    console.print(table)


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
    # lazy: start-up time
    from rich.table import Table

    if action is not None:
        if action != "fetch" or not name:
            with user_errors():
                raise UsageError("usage: idard-bench weights fetch NAME (or idard-bench weights --suite FILE)")
        _fetch_weights(name)
        return

    # lazy: start-up time
    from idard.measure.models import MODELS, sha256_file
    from idard.measure.weights import ENV_WEIGHTS_DIR, cache_dir, verdict

    with user_errors():
        suite = suite_or_default(suite_path, check_scales=False)  # a missing file is a row of the table, not an error
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
    # lazy: start-up time
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
    # lazy: start-up time
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
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
    # lazy: start-up time
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
