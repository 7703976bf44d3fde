"""Reproducible SRFlow sampling: per-seed latents, conditioning once per LR image.

The reference draws the latent and every split level's noise from the global RNG, so a
sample depends on everything drawn before it. Here all the noise of one sample comes from
a CPU generator seeded with that sample's seed alone, in a fixed order:

1. the latent ``z`` (shape ``latent_shapes(...)[0]``),
2. then one ``eps`` per split, from the coarsest split to the finest (the order in which
   decoding consumes them),

each drawn standard normal and multiplied by the temperature (heat). So a sample is the
same in any batch, on any device, and recomputable alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from idard.measure.models.srflow.flow_layers import LevelCondition
from idard.measure.models.srflow.network import SRFlowNet


def draw_latents(
    net: SRFlowNet, hr_h: int, hr_w: int, seed: int, heat: float
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The latent and split eps (finest first) of one sample, on the CPU, float32."""
    z_shape, eps_shapes = net.latent_shapes(hr_h, hr_w)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    z = torch.randn(z_shape, generator=gen, dtype=torch.float32) * heat
    coarse_first = [
        torch.randn(shape, generator=gen, dtype=torch.float32) * heat for shape in reversed(eps_shapes)
    ]
    return z, coarse_first[::-1]


def pad_to_even(lr: torch.Tensor) -> torch.Tensor:
    """Reflect-pad bottom/right to even height and width, as the reference test script.

    (A side of one pixel is repeated, which is what NumPy's reflect padding does there.)
    """
    h, w = lr.shape[-2:]
    ph, pw = h % 2, w % 2
    if ph == 0 and pw == 0:
        return lr
    mode = "reflect" if min(h, w) > 1 else "replicate"
    return F.pad(lr, (0, pw, 0, ph), mode=mode)


@torch.no_grad()
def sample_sr(
    net: SRFlowNet,
    lr: torch.Tensor,
    seeds: Sequence[int],
    heat: float,
    samples_per_pass: int | None = None,
) -> torch.Tensor:
    """``len(seeds)`` SR samples of every LR image: (B, K, 3, h*scale, w*scale).

    ``lr`` is (B, 3, h, w) RGB in [0, 1] on the network's device. The RRDB encoder runs
    once on the whole batch; the flow runs on ``samples_per_pass`` seeds at a time (all
    at once by default) with the conditioning repeated per sample. The output is not
    clamped and may hold non-finite values, which callers must detect.
    """
    if lr.ndim != 4 or lr.shape[1] != 3:
        raise ValueError(f"lr must have shape (B, 3, h, w), got {tuple(lr.shape)}")
    scale = net.config.scale
    b, _, h, w = lr.shape
    seeds = [int(s) for s in seeds]
    out_h, out_w = h * scale, w * scale
    if not seeds or b == 0:
        return lr.new_empty((b, len(seeds), 3, out_h, out_w))

    dtype = next(net.parameters()).dtype
    padded = pad_to_even(lr.to(dtype))
    hr_h, hr_w = padded.shape[-2] * scale, padded.shape[-1] * scale
    base = net.condition(padded)  # once per LR image
    step = len(seeds) if not samples_per_pass else max(1, int(samples_per_pass))
    chunks: list[torch.Tensor] = []
    for start in range(0, len(seeds), step):
        part = seeds[start : start + step]
        k = len(part)
        conds = {lv: LevelCondition(c.features, repeats=k) for lv, c in base.items()}
        drawn = [draw_latents(net, hr_h, hr_w, s, heat) for s in part]

        def batch(tensors: list[torch.Tensor]) -> torch.Tensor:
            # Row b*k + i holds seed i for image b, matching the image-major conditioning.
            stacked = torch.stack(tensors).to(device=lr.device, dtype=dtype)
            return stacked.repeat(b, 1, 1, 1)

        z = batch([d[0] for d in drawn])
        eps = [batch([d[1][i] for d in drawn]) for i in range(len(drawn[0][1]))]
        sr, _ = net.decode(z, eps, conds)
        chunks.append(sr[..., :out_h, :out_w].reshape(b, k, 3, out_h, out_w))
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)
