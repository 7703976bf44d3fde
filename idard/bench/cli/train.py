"""Training the embedded models: ``train-srflow`` and ``train-resshift`` remake the
committed weights of ``srflow-tiny-4x`` and ``resshift-tiny-4x``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from idard.bench.cli.shared import app, err_console


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
    # lazy: start-up time (a trainer imports torch)
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
