"""The RRDB encoder that turns an LR image into SRFlow's conditioning features.

SRFlow conditions every flow level on features of an ESRGAN-style RRDB network (Wang et
al. 2018) run on the LR image: the trunk output, upsampled copies of it for the finer flow
levels, a bilinear half-size copy for the coarsest level, and, concatenated to each of
those, the outputs of a few chosen trunk blocks ("stacked blocks") resized to the same
grid. All of this depends on the LR image only, so `idard` computes it once per LR image
and reuses it for every sample.

Attribute names of parameterised modules (``conv_first``, ``RRDB_trunk``, ``RDB1``,
``upconv1``, ...) are the published checkpoints' state-dict names and must not change.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_SLOPE = 0.2  # LeakyReLU slope of ESRGAN


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual (ESRGAN's RDB)."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(nf, gc)
        self.conv2 = _conv3x3(nf + gc, gc)
        self.conv3 = _conv3x3(nf + 2 * gc, gc)
        self.conv4 = _conv3x3(nf + 3 * gc, gc)
        self.conv5 = _conv3x3(nf + 4 * gc, nf)
        # Small residual branches keep a deep untrained trunk close to the identity, as
        # ESRGAN (and SRFlow's RRDB pre-training) initialise them.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            if conv.weight.device.type != "meta":
                nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
                with torch.no_grad():
                    conv.weight.mul_(0.1)
                    conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, dim=1)), _SLOPE))
        return self.conv5(torch.cat(feats, dim=1)) * 0.2 + x


class ResidualInResidualBlock(nn.Module):
    """Three residual dense blocks inside one more scaled residual (ESRGAN's RRDB)."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBEncoder(nn.Module):
    """RRDB network used as SRFlow's LR encoder.

    ``forward(lr)`` returns the conditioning tensor of every requested resolution, keyed
    by its exponent ``j``: the tensor lies on a grid of ``2**j`` times the LR size and has
    ``(len(stacked_blocks) + 1) * nf`` channels: the RRDB feature at that resolution
    followed by the stacked block outputs (nearest-neighbour resized to it).

    The ESRGAN output head (``HRconv``, ``conv_last`` and upsampling layers beyond what the
    flow needs) is kept so that checkpoints load and `super_resolve` can pre-train the
    encoder with an L1 loss, as SRFlow's authors did; conditioning never runs it.
    """

    def __init__(
        self,
        nf: int,
        nb: int,
        gc: int,
        scale: int,
        stacked_blocks: tuple[int, ...],
        exponents: tuple[int, ...],
        in_nc: int = 3,
        out_nc: int = 3,
    ) -> None:
        super().__init__()
        if any(not 0 <= b < nb for b in stacked_blocks):
            raise ValueError(f"stacked blocks {stacked_blocks} must lie in [0, {nb})")
        self.stacked_blocks = tuple(stacked_blocks)
        self.exponents = tuple(sorted(set(exponents), reverse=True))
        self.n_upsamplings = scale.bit_length() - 1  # log2(scale) for the SR head
        if max(self.exponents) > self.n_upsamplings:
            raise ValueError(f"exponents {exponents} exceed log2(scale={scale})")

        self.conv_first = _conv3x3(in_nc, nf)
        self.RRDB_trunk = nn.Sequential(*(ResidualInResidualBlock(nf, gc) for _ in range(nb)))
        self.trunk_conv = _conv3x3(nf, nf)
        # The published networks always hold upconv1 and upconv2, plus one more per
        # doubling beyond 4x.
        for i in range(1, max(2, self.n_upsamplings) + 1):
            self.add_module(f"upconv{i}", _conv3x3(nf, nf))
        self.HRconv = _conv3x3(nf, nf)
        self.conv_last = _conv3x3(nf, out_nc)

    def _upconv(self, i: int) -> nn.Conv2d:
        module = getattr(self, f"upconv{i}")
        assert isinstance(module, nn.Conv2d)
        return module

    def trunk(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """LR-grid trunk feature and the channel-concatenated stacked block outputs."""
        fea = self.conv_first(lr)
        kept: dict[int, torch.Tensor] = {}
        for idx, block in enumerate(self.RRDB_trunk):
            fea = block(fea)
            if idx in self.stacked_blocks:
                kept[idx] = fea
        lr_fea = fea + self.trunk_conv(fea)
        # Concatenated in the configured order (the checkpoints were trained so).
        stacked = torch.cat([kept[b] for b in self.stacked_blocks], dim=1) if kept else None
        return lr_fea, stacked

    def forward(self, lr: torch.Tensor) -> dict[int, torch.Tensor]:
        lr_fea, stacked = self.trunk(lr)
        by_exp: dict[int, torch.Tensor] = {0: lr_fea}
        fea = lr_fea
        for i in range(1, max(self.exponents) + 1):
            # The reference applies an in-place LeakyReLU to each upsampled feature before
            # storing it, so the conditioning sees the activated values.
            fea = F.leaky_relu(self._upconv(i)(F.interpolate(fea, scale_factor=2, mode="nearest")), _SLOPE)
            by_exp[i] = fea
        for j in self.exponents:
            if j < 0:
                by_exp[j] = F.interpolate(
                    lr_fea, scale_factor=2.0**j, mode="bilinear", align_corners=False,
                    recompute_scale_factor=True,
                )
        out: dict[int, torch.Tensor] = {}
        for j in self.exponents:
            base = by_exp[j]
            if stacked is not None:
                resized = F.interpolate(stacked, size=base.shape[-2:], mode="nearest")
                base = torch.cat([base, resized], dim=1)
            out[j] = base
        return out

    def super_resolve(self, lr: torch.Tensor) -> torch.Tensor:
        """The plain (deterministic) ESRGAN output, for L1 pre-training of the encoder."""
        fea, _ = self.trunk(lr)
        for i in range(1, self.n_upsamplings + 1):
            fea = F.leaky_relu(self._upconv(i)(F.interpolate(fea, scale_factor=2, mode="nearest")), _SLOPE)
        return self.conv_last(F.leaky_relu(self.HRconv(fea), _SLOPE))
