"""``idard-bench``: the command line.

Single-step commands (``downscale``, ``upscale``, ``distortion``) check each part of the
measure alone on real files; ``list`` shows what is registered; ``run`` computes an
IDA-RD table. One module per command group, each a thin layer over the rooms below:
`steps`, `weights` (``list``, ``weights``), `run` (``run``, ``status``, ``compact``,
``migrate``, ``validate-model``), `report` (``report``, ``explain``), `subset`, `train`;
`shared` holds the app, the consoles and what several commands take.
"""

from __future__ import annotations

# Importing a command module registers its commands on `app`.
from idard.bench.cli import report, run, steps, subset, train, weights  # noqa: F401
from idard.bench.cli.shared import app, console, err_console, finish, main

__all__ = ["app", "console", "err_console", "main"]

#: The order ``idard-bench --help`` lists the commands in: the measure's single steps,
#: then a run's life (run, report, repair), then the tools around it.
HELP_ORDER = ("downscale", "upscale", "distortion", "list", "run", "report", "explain", "migrate", "compact",
              "status", "weights", "faces", "subset", "train-srflow", "train-resshift", "validate-model")

finish(HELP_ORDER)
