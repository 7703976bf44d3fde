"""Per-seed reproducible sampling of a residual-shifting chain, batched and bounded.

The scheduler (`ResShiftSchedule`) is arithmetic; the denoiser is a network; this module
joins them, and is the only place noise is drawn. One sampler serves every denoiser that
fulfils `Denoiser` (the published Swin-UNet in a VQGAN latent space, the embedded pixel-space
network), as diffusers separates schedulers from UNets.

Randomness: sample k of an LR image draws ALL its noise from a CPU ``torch.Generator``
seeded with ``seeds[k]`` alone, in the order the chain consumes it:

1. the prior noise of x_T (the shape of one image's chain state),
2. one noise tensor per step, from t = T-1 down to t = 0 (the last one is drawn and
   multiplied by zero, as the reference's ``p_sample`` does, so that the order of draws
   is the reference's for one image: ``models/gaussian_diffusion.py``, ``p_sample`` and
   ``p_sample_loop_progressive``, about lines 332-472 of github.com/zsyOAOA/ResShift).

So a sample is the same alone or in any batch, on any device (up to floating-point
reassociation in batched kernels), and any record can be recomputed alone. Work that
depends only on the LR image (upsampling, encoding into the latent space) runs once per
image; the (image, seed) rows then go through the chain ``max_batch`` rows at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch.nn import functional as F

from idard.measure.models.diffusion.schedule import ResShiftSchedule


class Denoiser(Protocol):
    """A network predicting x0 from the scaled chain state, the step and the LR image.

    ``x`` (N, C, H, W) is `ResShiftSchedule.scale_input` of x_t, ``t`` (N,) the integer
    step indices, ``lq`` (N, 3, h, w) the LR image in [-1, 1]. Rows are independent.
    """

    def __call__(self, x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor: ...


class Space(Protocol):
    """Where the chain runs: pixels (identity) or an autoencoder's latent space."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> chain state (N, C, H', W')."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Chain state -> (N, 3, H, W), nominally in [-1, 1] (not clamped)."""


class PixelSpace:
    """The chain runs on pixels in [-1, 1]; x0 predictions are clipped to that range, as
    the reference does when it has no autoencoder (``clip_denoised`` in ``sampler.py``)."""

    clip_x0 = True

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


def draw_noise(seed: int, shape: Sequence[int], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prior noise (C, H, W), step noises (steps, C, H, W), t = T-1 first) of one sample."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    prior = torch.randn(tuple(shape), generator=gen, dtype=torch.float32)
    per_step = torch.stack([torch.randn(tuple(shape), generator=gen, dtype=torch.float32) for _ in range(steps)])
    return prior, per_step


def pad_to_multiple(lr: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad bottom/right to a multiple of ``multiple`` (the reference pads LR images
    to the denoiser's ``lq_size``: ``sampler.py`` ``sample_func``, ``padding_offset``)."""
    h, w = lr.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return lr
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(lr, (0, pw, 0, ph), mode=mode)


@torch.no_grad()
def run_chain(
    denoiser: Denoiser,
    schedule: ResShiftSchedule,
    y: torch.Tensor,
    lq: torch.Tensor,
    prior_noise: torch.Tensor,
    step_noise: torch.Tensor,
    clip_x0: bool = False,
) -> torch.Tensor:
    """The reverse chain on N rows: y (N, C, H, W) the encoded upsampled LR, lq its LR,
    noises as `draw_noise` gives them (stacked over rows, step axis second)."""
    x = schedule.prior(y, prior_noise)
    for i, t in enumerate(reversed(range(schedule.steps))):
        ts = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0 = denoiser(schedule.scale_input(x, ts), ts, lq).float()  # the chain stays float32
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        x = schedule.step(x, x0, t, step_noise[:, i])
    return x


@torch.no_grad()
def sample_residual_shift(
    denoiser: Denoiser,
    schedule: ResShiftSchedule,
    lr: torch.Tensor,
    seeds: Sequence[int],
    scale: int,
    space: Space | None = None,
    max_batch: int = 64,
    multiple: int = 1,
) -> torch.Tensor:
    """``len(seeds)`` SR samples of every LR image: (B, K, 3, h*scale, w*scale) in [0, 1].

    ``lr`` is (B, 3, h, w) RGB in [0, 1]. The LR is reflect-padded to ``multiple``,
    upsampled (bicubic, as the reference's ``encode_first_stage``) and encoded once per
    image; at most ``max_batch`` (image, seed) rows go through the denoiser per call.
    The output is neither clamped nor checked: callers detect non-finite samples.
    """
    if lr.ndim != 4 or lr.shape[1] != 3:
        raise ValueError(f"lr must have shape (B, 3, h, w), got {tuple(lr.shape)}")
    space = space or PixelSpace()
    seeds = [int(s) for s in seeds]
    b, _, h, w = lr.shape
    out_h, out_w = h * scale, w * scale
    if not seeds or b == 0:
        return lr.new_empty((b, len(seeds), 3, out_h, out_w))
    lq = pad_to_multiple(lr * 2.0 - 1.0, multiple)
    y = space.encode(F.interpolate(lq, scale_factor=scale, mode="bicubic")).float()  # once per image
    noise = [draw_noise(s, y.shape[1:], schedule.steps) for s in seeds]
    clip = bool(getattr(space, "clip_x0", False))

    rows = [(i, k) for i in range(b) for k in range(len(seeds))]  # image-major
    out: list[torch.Tensor] = []
    for start in range(0, len(rows), max(1, int(max_batch))):
        part = rows[start : start + max(1, int(max_batch))]
        images = torch.tensor([i for i, _ in part], device=lr.device)
        prior = torch.stack([noise[k][0] for _, k in part]).to(device=y.device, dtype=y.dtype)
        steps = torch.stack([noise[k][1] for _, k in part]).to(device=y.device, dtype=y.dtype)
        z = run_chain(denoiser, schedule, y[images], lq[images], prior, steps, clip_x0=clip)
        out.append(space.decode(z)[..., :out_h, :out_w].float())
    sr = torch.cat(out).reshape(b, len(seeds), 3, out_h, out_w)
    return sr * 0.5 + 0.5
