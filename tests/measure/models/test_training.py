"""The optimisation loop both embedded models are trained with (idard.measure.models.training)."""

from __future__ import annotations

import math

import torch

from idard.measure.models.training import Schedule, optimise


def test_the_learning_rate_warms_up_linearly_then_decays_to_five_percent() -> None:
    schedule = Schedule(steps=110, lr=1.0, warmup=10, grad_clip=1.0)
    assert [schedule.lr_at(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert math.isclose(schedule.lr_at(10), 1.0) and math.isclose(schedule.lr_at(110), 0.05)
    assert all(schedule.lr_at(s) > schedule.lr_at(s + 1) for s in range(10, 109))


def test_optimise_lowers_the_loss_logs_every_few_steps_and_skips_non_finite_batches() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    x = torch.randn(32, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def loss_at(step: int) -> torch.Tensor:
        loss = ((net(x) - y) ** 2).mean()
        return loss * float("nan") if step == 7 else loss  # one poisoned batch

    lines: list[str] = []
    trained = optimise(net, loss_at, Schedule(steps=60, lr=0.05, warmup=5, grad_clip=10.0, log_every=20),
                       describe=lambda mean: f"mse {mean:.4f}", log=lines.append)
    assert trained.skipped == 1 and all(torch.isfinite(p).all() for p in net.parameters())
    assert [step for step, _ in trained.history] == [20, 40, 60]
    assert trained.history[-1][1] < trained.history[0][1] / 4
    assert lines[0].startswith("step 20/60  mse ") and lines[0].endswith(" s/step")
