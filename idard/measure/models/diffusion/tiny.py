"""The embedded pixel-space denoiser of ``resshift-tiny-4x``.

ResShift's published denoiser is a 119 M-parameter Swin-UNet running in a VQGAN latent
space; neither trains in under an hour on two CPU cores. The embedded model keeps
ResShift's chain and x0 prediction (``schedule``, ``sampler``) and replaces the network
by a small residual CNN that works at LR resolution: the chain state (HR pixels) is
folded into LR-sized channels by pixel-unshuffle, concatenated with the LR image, passed
through residual blocks modulated by the step embedding (FiLM), and unfolded by
pixel-shuffle. It predicts x0 as a correction of the bicubic upsampling of the LR, so
that an untrained block changes nothing and training only has to learn detail.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from idard.measure.models.diffusion.layers import timestep_embedding


@dataclasses.dataclass(frozen=True)
class TinyDenoiserConfig:
    scale: int = 4
    channels: int = 32
    blocks: int = 6
    embed: int = 32

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TinyDenoiserConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise KeyError(f"unknown tiny denoiser config keys {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in data.items()})


class _Block(nn.Module):
    """conv-SiLU-conv with the step embedding as a per-channel scale and shift."""

    def __init__(self, channels: int, embed: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(embed, 2 * channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        r = F.silu(self.conv1(h)) * (1 + scale) + shift
        return h + self.conv2(F.silu(r))


class TinyDenoiser(nn.Module):
    """x0 prediction from (scaled x_t, step, LR); see the module docstring."""

    multiple = 1  # LR sides the network accepts: any

    def __init__(self, config: TinyDenoiserConfig = TinyDenoiserConfig()) -> None:
        super().__init__()
        self.config = config
        c, s = config.channels, config.scale
        self.time = nn.Sequential(nn.Linear(config.embed, config.embed), nn.SiLU(), nn.Linear(config.embed, config.embed))
        self.head = nn.Conv2d(3 * s * s + 3, c, 3, padding=1)
        self.body = nn.ModuleList(_Block(c, config.embed) for _ in range(config.blocks))
        self.tail = nn.Conv2d(c, 3 * s * s, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        s = self.config.scale
        emb = self.time(timestep_embedding(t, self.config.embed))
        h = self.head(torch.cat([F.pixel_unshuffle(x, s), lq], dim=1))
        for block in self.body:
            h = block(h, emb)
        detail = F.pixel_shuffle(self.tail(F.silu(h)), s)
        return F.interpolate(lq, scale_factor=s, mode="bicubic") + detail
