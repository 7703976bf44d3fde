"""What every ``idard-bench`` command shares: the Typer app, the consoles, how input
errors are printed, the options several commands take, and ``main``.

Command modules (`idard.bench.cli.steps`, ``.run``, ``.report``...) register on `app`;
`idard.bench.cli` imports them all and then calls `finish` once, so ``--help`` lists the
commands in one order whatever module each lives in.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import typer.main
from rich.console import Console
from rich.markup import escape
from typer.core import TyperOption

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
    # lazy: start-up time
    from idard.bench.store.lease import LeaseHeld, LeaseLost
    from idard.bench.store.records import StoreWriteError
    from idard.measure.errors import LPIPSWeightsInvalid, LPIPSWeightsUnavailable

    try:
        yield
    except (UsageError, FileNotFoundError, ValueError,  # ValueError: ImageError, SpecError, bad values
            LPIPSWeightsInvalid, LPIPSWeightsUnavailable, LeaseHeld, LeaseLost, StoreWriteError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def suite_or_default(path: Path | None, *, check_scales: bool = True):
    """``--suite``'s suite, or the quickstart's when none is given."""
    # lazy: start-up time
    from idard.bench.run.jobs import default_suite
    from idard.bench.suite.definition import load_suite

    return load_suite(path if path is not None else default_suite(), check_scales=check_scales)


def out_or_default(out: str | None, name: str) -> str:
    """``--out``, or ``runs/<suite name>`` when none is given."""
    # lazy: start-up time
    from idard.bench.suite.definition import run_dir_name

    return out if out is not None else str(Path("runs") / run_dir_name(name))


BaselineOption = Annotated[str | None, typer.Option(
    help="Downscaler for paired differences, in any spelling (blur, blur(sigma=1)); 'none' for no paired "
         "table (default: bicubic if present).")]
IncludeUnconverged = Annotated[bool, typer.Option(
    "--include-unconverged",
    help="Put samples that missed their model's goal (PULSE's eps) in the means; by default they "
         "are left out, as the reference PULSE drops them. Counted either way.")]
SuiteOption = Annotated[Path | None, typer.Option("--suite", help="Suite YAML (default: benchmark/quickstart.yaml).")]
OutOption = Annotated[str | None, typer.Option("--out", help="Run directory or object-store URI (default: runs/<suite name>).")]


def version_callback(value: bool) -> None:
    if value:
        # lazy: start-up time
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


def command_name(info: typer.models.CommandInfo) -> str:
    """The name a registered command is typed as (Typer's own spelling of a function name)."""
    return info.name or typer.main.get_command_name(info.callback.__name__)


def finish(order: tuple[str, ...]) -> None:
    """Once every command module has registered its commands: list them in ``order`` (a
    command not named there comes last) and reflow every help text for terminals. Run
    after all registrations, so no command is left with its docstring's line breaks."""
    app.registered_commands.sort(key=lambda info: order.index(name) if (name := command_name(info)) in order
                                 else len(order))
    for info in app.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.help = _terminal_help(doc)


def main() -> None:
    app(prog_name="idard-bench")
