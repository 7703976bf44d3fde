"""The optimisation loop the embedded models (``srflow-tiny-4x``, ``resshift-tiny-4x``) are trained with.

Both trainers draw their own batches and compute their own objective; what they share is
here, once: Adam with a linear warm-up then a cosine decay to 5 % of the learning rate,
gradient-norm clipping, a bad (non-finite) batch skipped rather than let it poison the
weights, and a mean loss logged and kept every ``log_every`` steps (the history written
into each model's ``.json`` report).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long and how fast to optimise."""

    steps: int
    lr: float
    warmup: int
    grad_clip: float
    log_every: int = 50

    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``warmup`` steps, then cosine decay to 5 % of ``lr``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclasses.dataclass
class Trained:
    """What the loop did: (step, mean loss) every ``log_every`` steps, time, skipped steps."""

    history: list[tuple[int, float]]
    seconds: float
    skipped: int


def optimise(net: torch.nn.Module, loss_at: Callable[[int], torch.Tensor], schedule: Schedule,
             describe: Callable[[float], str], log: Callable[[str], None] = print) -> Trained:
    """Train ``net`` in place on ``loss_at(step)`` (a scalar: the step's batch loss).

    ``loss_at`` draws its own batch, so all randomness stays in the caller's seeded
    generators, in the order the caller draws it. ``describe`` turns a mean loss into the
    log's words (``"nll 3.1 bits/dim"``).
    """
    opt = torch.optim.Adam(net.parameters(), lr=schedule.lr)
    history: list[tuple[int, float]] = []
    window: list[float] = []
    skipped = 0
    started = time.perf_counter()
    for step in range(schedule.steps):
        for group in opt.param_groups:
            group["lr"] = schedule.lr_at(step)
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            skipped += 1  # a rare bad batch must not poison the weights
            continue
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), schedule.grad_clip)
        opt.step()
        window.append(loss.item())
        if (step + 1) % schedule.log_every == 0 or step + 1 == schedule.steps:
            mean = sum(window) / len(window)
            history.append((step + 1, mean))
            window.clear()
            elapsed = time.perf_counter() - started
            log(f"step {step + 1}/{schedule.steps}  {describe(mean)}  {elapsed / (step + 1):.3f} s/step")
    return Trained(history, time.perf_counter() - started, skipped)
