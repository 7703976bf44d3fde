"""Training the embedded diffusion model ``resshift-tiny-4x`` on bundled photographs.

The same data recipe as ``srflow-tiny-4x`` (`idard.measure.models.srflow.training`):
random HR crops (rotated, flipped) of the training photographs at three scales, their LR
made by Pillow bicubic and rounded to 8 bits exactly as idard makes LR images; the
held-out photographs are read only after training, to report the held-out loss.

Objective: ResShift's (``training_losses`` in ``models/gaussian_diffusion.py`` of
github.com/zsyOAOA/ResShift): draw a step t uniformly, diffuse x0 to x_t with the
residual-shifting kernel, and regress the denoiser's x0 prediction on x0 with the mean
squared error (pixels in [-1, 1]). Everything random comes from one seed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from idard.measure.datasets import HELD_OUT, TRAINING, load_bundled
from idard.measure.models.diffusion.checkpoint import save_tiny
from idard.measure.models.diffusion.schedule import ResShiftSchedule
from idard.measure.models.diffusion.tiny import TinyDenoiser, TinyDenoiserConfig
from idard.measure.models.srflow.training import _pyramid, _random_pair
from idard.measure.models.training import Schedule, optimise

#: The embedded model's chain: ResShift v3's (4 steps, kappa 2, min noise 0.2, power 0.3),
#: with the pixel-space input scaling the reference uses without an autoencoder.
TINY_SCHEDULE = ResShiftSchedule(steps=4, kappa=2.0, min_noise_level=0.2, etas_end=0.99, power=0.3,
                                 normalize="pixel")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """Hyper-parameters; the defaults made the committed ``resshift-tiny-4x`` weights."""

    steps: int = 500
    batch: int = 16
    patch: int = 64  # HR patch side; LR patches are patch / 4
    lr: float = 1e-3
    warmup: int = 100
    grad_clip: float = 1.0
    pyramid: tuple[float, ...] = (1.0, 0.75, 0.5)
    seed: int = 0
    threads: int = 1  # measured: 1 thread is 3-10x faster than 2 on a shared, loaded machine
    blind: bool = False  # the srflow recipe's option; bicubic-only LR by default


def _to_tensors(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """HR and LR crops as tensors in [-1, 1]."""
    hr = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2).copy()).float()
    lr = torch.from_numpy(np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2).copy()).float()
    return hr * 2 - 1, lr * 2 - 1


def diffusion_loss(
    net: TinyDenoiser, schedule: ResShiftSchedule, hr: torch.Tensor, lq: torch.Tensor,
    t: torch.Tensor, noise: torch.Tensor,
) -> torch.Tensor:
    """Per-row MSE of the x0 prediction at steps ``t`` (ResShift's ``training_losses``)."""
    y = F.interpolate(lq, scale_factor=net.config.scale, mode="bicubic")
    x_t = schedule.q_sample(hr, y, t, noise)
    pred = net(schedule.scale_input(x_t, t), t, lq)
    return ((pred - hr) ** 2).flatten(1).mean(dim=1)


def held_out_loss(net: TinyDenoiser, schedule: ResShiftSchedule, patch: int = 64, per_image: int = 8,
                  seed: int = 1) -> dict[str, float]:
    """Mean x0 MSE on fixed crops of the held-out photographs, per step and overall,
    and the same for the bicubic upsampling (what the denoiser must beat)."""
    rng = np.random.default_rng(seed)
    pairs = [_random_pair([load_bundled(n).pixels], rng, patch, net.config.scale)
             for n in HELD_OUT for _ in range(per_image)]
    hr, lq = _to_tensors(pairs)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    with torch.no_grad():
        for t in range(schedule.steps):
            ts = torch.full((hr.shape[0],), t, dtype=torch.long)
            noise = torch.randn(hr.shape, generator=gen)
            out[f"mse_t{t}"] = float(diffusion_loss(net, schedule, hr, lq, ts, noise).mean())
        y = F.interpolate(lq, scale_factor=net.config.scale, mode="bicubic")
        out["mse_bicubic"] = float(((y - hr) ** 2).mean())
    out["mse"] = sum(out[f"mse_t{t}"] for t in range(schedule.steps)) / schedule.steps
    return out


def train(
    out: Path,
    settings: TrainingSettings = TrainingSettings(),
    config: TinyDenoiserConfig = TinyDenoiserConfig(),
    schedule: ResShiftSchedule = TINY_SCHEDULE,
    log: Callable[[str], None] = print,
) -> dict:
    """Train from scratch and write ``out`` (safetensors) plus ``out.with_suffix('.json')``."""
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    images = _pyramid(settings)  # training photographs only (datasets.TRAINING)
    net = TinyDenoiser(config)
    net.train()
    gen = torch.Generator().manual_seed(settings.seed)

    def loss_at(step: int) -> torch.Tensor:
        pairs = [_random_pair(images, rng, settings.patch, config.scale, settings.blind) for _ in range(settings.batch)]
        hr, lq = _to_tensors(pairs)
        t = torch.randint(0, schedule.steps, (settings.batch,), generator=gen)
        noise = torch.randn(hr.shape, generator=gen)
        return diffusion_loss(net, schedule, hr, lq, t, noise).mean()

    trained = optimise(net, loss_at, Schedule(settings.steps, settings.lr, settings.warmup, settings.grad_clip),
                       describe=lambda mean: f"mse {mean:.5f}", log=log)
    history = trained.history
    net.eval()
    seconds = trained.seconds
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_tiny(net, schedule, out)
    held = held_out_loss(net, schedule)
    report = {
        "denoiser": config.to_dict(),
        "schedule": dataclasses.asdict(schedule),
        "settings": dataclasses.asdict(settings),
        "training_images": list(TRAINING),
        "held_out_images": list(HELD_OUT),
        "training_seconds": round(seconds, 1),
        "final_train_mse": history[-1][1] if history else float("nan"),
        "held_out": held,
        "parameters": sum(p.numel() for p in net.parameters()),
        "torch": torch.__version__,
        "history": history,
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {seconds / 60:.1f} min; held-out x0 MSE "
        f"{held['mse']:.5f} (bicubic {held['mse_bicubic']:.5f})")
    return report
