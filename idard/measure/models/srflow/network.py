"""SRFlow (Lugmayr et al., ECCV 2020): an RRDB encoder plus a conditional normalizing flow.

The flow maps an HR image ``x`` to a latent, given the LR image ``y``: it has ``L``
levels, each a squeeze (halving the grid), a few channel-mixing steps, ``K`` conditional
coupling steps and, on the finer levels, a split that factors half of the channels out
under a learned prior. Its normal direction gives the exact likelihood ``p(x | y)`` used
for training (`SRFlowNet.nll_bits_per_dim`); its reverse turns Gaussian noise into SR
samples (`SRFlowNet.decode`, and `idard.measure.models.srflow.sampling`).

The module tree reproduces the published networks' state-dict keys exactly (``RRDB.*``
and ``flowUpsamplerNet.*``, including the unused ``flowUpsamplerNet.f``), so the released
SRFlow checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

# SRFlowConfig is plain data and lives with the configs (naming a model needs no torch).
from idard.measure.models.srflow.configs import SRFlowConfig
from idard.measure.models.srflow.flow_layers import (
    ActNorm,
    ConditionalAffineCoupling,
    FlowStep,
    LevelCondition,
    Split,
    Squeeze,
    gaussian_log_prob,
)
from idard.measure.models.srflow.rrdb import RRDBEncoder


class FlowEncoding(NamedTuple):
    """Normal-direction result: final latent, per-split eps (finest level first), log-det."""

    z: torch.Tensor
    eps: list[torch.Tensor]
    logdet: torch.Tensor


class ConditionalFlow(nn.Module):
    """The invertible part of SRFlow (the reference's ``FlowUpsamplerNet``).

    ``layers`` is one flat list in the reference's order (squeeze, mixing steps, coupling
    steps, optional split; level after level) because checkpoint keys are numbered by
    position in it.
    """

    def __init__(self, config: SRFlowConfig, in_channels: int = 3) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList()
        self.layer_levels: list[int] = []
        channels = in_channels
        self.split_channels: list[int] = []  # channels each split factors out, finest first
        for level in range(1, config.levels + 1):
            self._append(Squeeze(), level)
            channels *= 4
            for _ in range(config.mixing_steps):
                self._append(FlowStep(channels, None), level)
            for _ in range(config.steps):
                coupling = ConditionalAffineCoupling(
                    channels, config.cond_channels, config.coupling_hidden, config.affine_eps
                )
                self._append(FlowStep(channels, coupling), level)
            if level < config.levels - 1:
                split = Split(channels, config.prior_log_scale_bound)
                self._append(split, level)
                self.split_channels.append(split.n_consume)
                channels = split.n_pass
        self.latent_channels = channels
        if config.unused_f_conv:
            # Present in every published checkpoint but never used by the flow.
            self.f = nn.Sequential(nn.Conv2d(config.cond_channels, 96, kernel_size=3, padding=1))

    def _append(self, layer: nn.Module, level: int) -> None:
        self.layers.append(layer)
        self.layer_levels.append(level)

    def encode(
        self, x: torch.Tensor, conds: dict[int, LevelCondition], logdet: torch.Tensor
    ) -> FlowEncoding:
        eps: list[torch.Tensor] = []
        for layer, level in zip(self.layers, self.layer_levels):
            if isinstance(layer, Squeeze):
                x = layer(x)
            elif isinstance(layer, FlowStep):
                x, logdet = layer(x, logdet, conds[level])
            else:
                assert isinstance(layer, Split)
                x, logdet, e = layer(x, logdet)
                eps.append(e)
        return FlowEncoding(x, eps, logdet)

    def decode(
        self,
        z: torch.Tensor,
        eps: list[torch.Tensor],
        conds: dict[int, LevelCondition],
        logdet: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(eps) != len(self.split_channels):
            raise ValueError(f"need {len(self.split_channels)} split eps tensors, got {len(eps)}")
        pending = list(eps)
        x = z
        for layer, level in zip(reversed(self.layers), reversed(self.layer_levels)):
            if isinstance(layer, Squeeze):
                x = layer.reverse(x)
            elif isinstance(layer, FlowStep):
                x, logdet = layer.reverse(x, logdet, conds[level])
            else:
                assert isinstance(layer, Split)
                x, logdet = layer.reverse(x, logdet, pending.pop())
        return x, logdet


class SRFlowNet(nn.Module):
    """RRDB encoder (``RRDB``) plus conditional flow (``flowUpsamplerNet``).

    Build an untrained network with ``SRFlowNet(TINY_4X)`` (configs in
    `idard.measure.models.srflow.configs`); train it by minimising
    ``net.nll_bits_per_dim(hr, lr).mean()`` after one ``net.data_dependent_init(hr, lr)``
    on a first batch.
    """

    def __init__(self, config: SRFlowConfig) -> None:
        super().__init__()
        self.config = config
        exponents = tuple(config.level_exponent(lv) for lv in range(1, config.levels + 1))
        self.RRDB = RRDBEncoder(
            nf=config.rrdb_channels,
            nb=config.rrdb_blocks,
            gc=config.rrdb_growth,
            scale=config.scale,
            stacked_blocks=config.stacked_blocks,
            exponents=exponents,
        )
        self.flowUpsamplerNet = ConditionalFlow(config)

    # -- shapes -------------------------------------------------------------------------
    def latent_shapes(self, hr_h: int, hr_w: int) -> tuple[tuple[int, int, int], list[tuple[int, int, int]]]:
        """(C, H, W) of the latent z and of each split's eps (finest level first)."""
        flow = self.flowUpsamplerNet
        levels = self.config.levels
        if hr_h % 2**levels or hr_w % 2**levels:
            raise ValueError(f"HR size {hr_h}x{hr_w} must be a multiple of {2**levels}")
        eps_shapes = [
            (c, hr_h >> lv, hr_w >> lv) for lv, c in enumerate(flow.split_channels, start=1)
        ]
        return (flow.latent_channels, hr_h >> levels, hr_w >> levels), eps_shapes

    # -- conditioning -------------------------------------------------------------------
    def condition(self, lr: torch.Tensor, repeats: int = 1) -> dict[int, LevelCondition]:
        """Conditioning of every flow level for a batch of LR images (one RRDB pass)."""
        by_exp = self.RRDB(lr)
        return {
            lv: LevelCondition(by_exp[self.config.level_exponent(lv)], repeats)
            for lv in range(1, self.config.levels + 1)
        }

    # -- directions ---------------------------------------------------------------------
    def encode(
        self,
        hr: torch.Tensor,
        lr: torch.Tensor | None = None,
        conds: dict[int, LevelCondition] | None = None,
    ) -> FlowEncoding:
        """Normal direction: HR (given LR or its conditioning) -> latent, eps, log-det.

        ``logdet`` includes the split priors' log densities (the reference's convention),
        so ``log p(hr | lr) = logdet + log N(z; 0, I)``.
        """
        if conds is None:
            if lr is None:
                raise ValueError("encode needs lr or precomputed conditioning")
            conds = self.condition(lr)
        logdet = hr.new_zeros(hr.shape[0])
        return self.flowUpsamplerNet.encode(hr, conds, logdet)

    def decode(
        self,
        z: torch.Tensor,
        eps: list[torch.Tensor],
        conds: dict[int, LevelCondition],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse direction: latent and split eps (finest first) -> HR, log-det.

        ``z`` and ``eps`` hold ``repeats`` rows per LR image of ``conds`` (image-major).
        The temperature is whatever scale ``z`` and ``eps`` were drawn with.
        """
        logdet = z.new_zeros(z.shape[0])
        return self.flowUpsamplerNet.decode(z, eps, conds, logdet)

    def forward(self, hr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """Per-example negative log-likelihood in bits per dimension (for training)."""
        return self.nll_bits_per_dim(hr, lr)

    # -- training -----------------------------------------------------------------------
    def nll_bits_per_dim(
        self,
        hr: torch.Tensor,
        lr: torch.Tensor,
        quant: int | None = 32,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Negative log-likelihood of ``hr`` given ``lr``, bits per dimension, shape (B,).

        ``hr`` and ``lr`` are RGB in [0, 1]. With ``quant`` set, ``hr`` is dequantised with
        uniform noise of one bin width ``1/quant`` and the density is turned into the
        probability of that bin (``- D log quant``), as in the reference's training
        (its configs use ``quant: 32``). The reference normalises by H*W pixels; this
        normalises by D = C*H*W dimensions, a constant factor that changes nothing but
        the reported scale. ``generator`` makes the dequantisation noise reproducible.
        """
        x = hr
        dims = hr.shape[1] * hr.shape[2] * hr.shape[3]
        if quant:
            if generator is None:
                noise = torch.rand_like(hr)
            else:  # a CPU generator works for any device
                noise = torch.rand(hr.shape, generator=generator, dtype=hr.dtype).to(hr.device)
            x = hr + (noise - 0.5) / quant
        enc = self.encode(x, lr)
        log_p = enc.logdet + gaussian_log_prob(enc.z)
        if quant:
            log_p = log_p - dims * math.log(quant)
        return -log_p / (dims * math.log(2.0))

    @torch.no_grad()
    def data_dependent_init(self, hr: torch.Tensor, lr: torch.Tensor) -> None:
        """Initialise every flow ActNorm from a batch (Glow's data-dependent init).

        Run once on the first training batch of an untrained network, before the first
        optimiser step; never needed for loaded checkpoints.
        """
        for module in self.flowUpsamplerNet.modules():
            if isinstance(module, ActNorm):
                module.request_data_init()
        self.encode(hr, lr)
