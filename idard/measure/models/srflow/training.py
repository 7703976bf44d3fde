"""Training the embedded smoke-test SRFlow model on photographs bundled in packages.

No SRFlow checkpoint can be downloaded on an offline machine, yet the default benchmark
must run there. So idard ships a small 4x SRFlow (config ``TINY_4X``) trained by this
module on the training split of `idard.measure.datasets` (never on the held-out
photographs the default benchmark evaluates). It is a model for smoke runs and tests,
not for publication numbers.

Training follows SRFlow's objective: maximum likelihood of HR patches given their LR
(negative log-likelihood in bits per dimension, uniform dequantisation), with LR patches
made by bicubic downscaling as in the paper. A flow trained on bicubic LR sees
out-of-distribution conditioning for every other downscaler; with SRFlow's own inverse
(affine scales floored at 1e-4) the first version of this model overflowed to Inf/NaN on
every noise(sigma=0.2) sample, even at heat 0. ``TINY_4X`` therefore bounds its inverse
(affine scales >= 0.25, tanh-bounded prior scales), which keeps every sample finite.
``blind=True`` (``--blind``) also degrades half the LR patches (blur, noise, contrast,
quantisation), as blind SR models are trained; it was tried and not kept, because such a
decoder learns to undo nearest's aliasing and then ranks nearest above bicubic, unlike
the paper's decoders (model card, "Why bicubic only").
Everything random comes from one seed, so ``idard-bench train-srflow`` reproduces the
committed weights up to floating-point non-determinism across thread counts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from idard.measure.datasets import HELD_OUT, TRAINING, load_bundled
from idard.measure.downscalers import DOWNSCALERS, resize
from idard.measure.images import RGBImage, quantize_8bit
from idard.measure.models.srflow.checkpoint import save_weights
from idard.measure.models.srflow.configs import TINY_4X
from idard.measure.models.srflow.network import SRFlowConfig, SRFlowNet
from idard.measure.models.training import Schedule, optimise


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """Hyper-parameters; the defaults made the committed ``srflow-tiny-4x`` weights."""

    steps: int = 2500
    batch: int = 16
    patch: int = 64  # HR patch side; LR patches are patch / 4
    lr: float = 5e-4
    warmup: int = 100
    grad_clip: float = 50.0
    pyramid: tuple[float, ...] = (1.0, 0.75, 0.5)  # photo rescales, for more texture scales
    seed: int = 0
    threads: int = 2
    blind: bool = False  # True: half the LR patches degraded (blur, noise, contrast, quantisation)


def _pyramid(settings: TrainingSettings) -> list[np.ndarray]:
    """Every training photograph at every pyramid scale, as float RGB on the 8-bit grid."""
    out = []
    for name in TRAINING:
        pixels = load_bundled(name).pixels
        h, w = pixels.shape[:2]
        for factor in settings.pyramid:
            size = (max(settings.patch, round(w * factor)), max(settings.patch, round(h * factor)))
            out.append(pixels if factor == 1.0 else quantize_8bit(resize(pixels, size, "bicubic")))
    return out


def _blind_downscaler(rng: np.random.Generator) -> str:
    """A random downscaler spec: bicubic, half the time followed by one degradation.

    Parameter ranges cover and exceed the paper's ladders (supplement Table 9), so every
    rung is inside the training distribution rather than at its edge. The base filter is
    always bicubic, as for the paper's SRFlow: a decoder trained on nearest-neighbour LR
    learns to undo its aliasing and no longer ranks it below bicubic (measured: a model
    trained on six base filters scored nearest 0.488 against bicubic 0.497).
    """
    kind = rng.integers(8)
    if kind == 0:
        return f"blur(sigma={rng.uniform(0.3, 3.5):.3f})"
    if kind == 1:
        return f"noise(sigma={rng.uniform(0.01, 0.25):.3f}, seed={int(rng.integers(2**31))})"
    if kind == 2:
        return f"contrast(factor={rng.uniform(0.15, 3.0):.3f})"
    if kind == 3:
        return f"quantize(levels={int(rng.integers(3, 33))})"
    return "bicubic"


def _random_pair(
    images: list[np.ndarray], rng: np.random.Generator, patch: int, scale: int, blind: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One random HR crop (flipped/rotated) and its 8-bit LR, as evaluation makes it.

    The LR is bicubic, or with ``blind`` made by `_blind_downscaler`.
    """
    image = images[rng.integers(len(images))]
    h, w = image.shape[:2]
    top, left = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
    hr = image[top : top + patch, left : left + patch]
    hr = np.rot90(hr, k=int(rng.integers(4)))
    if rng.integers(2):
        hr = hr[:, ::-1]
    hr = np.ascontiguousarray(hr)
    if blind:
        downscaler = DOWNSCALERS.create(_blind_downscaler(rng))
        return hr, quantize_8bit(downscaler(RGBImage(name="patch", pixels=hr, bit_depth=8), scale))
    lr = quantize_8bit(resize(hr, (patch // scale, patch // scale), "bicubic"))
    return hr, lr


def _batch(images: list[np.ndarray], rng: np.random.Generator, settings: TrainingSettings, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [_random_pair(images, rng, settings.patch, scale, settings.blind) for _ in range(settings.batch)]
    hr = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2).copy())
    lr = torch.from_numpy(np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2).copy())
    return hr, lr


def held_out_nll(net: SRFlowNet, patch: int = 64, per_image: int = 8, seed: int = 1) -> float:
    """Mean NLL (bits/dim) on fixed crops of the held-out photographs (evaluation only)."""
    rng = np.random.default_rng(seed)
    images = [load_bundled(name).pixels for name in HELD_OUT]
    pairs = [_random_pair([img], rng, patch, net.config.scale) for img in images for _ in range(per_image)]
    hr = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2).copy())
    lr = torch.from_numpy(np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2).copy())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return float(net.nll_bits_per_dim(hr, lr, generator=gen).mean())


def train(
    out: Path,
    settings: TrainingSettings = TrainingSettings(),
    config: SRFlowConfig = TINY_4X,
    log: Callable[[str], None] = print,
) -> dict:
    """Train from scratch and write ``out`` (safetensors) plus ``out.with_suffix('.json')``."""
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    images = _pyramid(settings)
    net = SRFlowNet(config)
    net.train()
    hr0, lr0 = _batch(images, rng, settings, config.scale)
    net.data_dependent_init(hr0, lr0)
    gen = torch.Generator().manual_seed(settings.seed)

    def loss_at(step: int) -> torch.Tensor:
        hr, lr = _batch(images, rng, settings, config.scale)
        return net.nll_bits_per_dim(hr, lr, generator=gen).mean()

    trained = optimise(net, loss_at, Schedule(settings.steps, settings.lr, settings.warmup, settings.grad_clip),
                       describe=lambda mean: f"nll {mean:.4f} bits/dim", log=log)
    history, skipped = trained.history, trained.skipped
    net.eval()
    seconds = trained.seconds
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(net, out)
    report = {
        "config": dataclasses.asdict(config),
        "settings": dataclasses.asdict(settings),
        "training_images": list(TRAINING),
        "held_out_images": list(HELD_OUT),
        "training_seconds": round(seconds, 1),
        "final_train_nll_bits_per_dim": history[-1][1] if history else float("nan"),
        "held_out_nll_bits_per_dim": held_out_nll(net),
        "skipped_nonfinite_steps": skipped,
        "parameters": sum(p.numel() for p in net.parameters()),
        "torch": torch.__version__,
        "history": history,
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {seconds / 60:.1f} min; "
        f"held-out NLL {report['held_out_nll_bits_per_dim']:.4f} bits/dim")
    return report
