"""Invertible layers of SRFlow's conditional flow (Glow-style, Kingma & Dhariwal 2018).

Every layer maps ``(x, logdet) -> (y, logdet')`` in the normal direction (HR towards the
latent, accumulating log|det J| per batch element) and back with ``reverse``. Couplings
and the split prior take a `LevelCondition`: the RRDB conditioning of their flow level,
held once per LR image and repeated over the samples drawn for it.

Attribute names of parameterised modules (``actnorm``, ``invconv``, ``affine``,
``fAffine``, ``fFeatures``, ``conv``, ``logs``) are the published checkpoints' names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor | None = None, log_std: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-example log density of a diagonal Gaussian (standard normal when no mean)."""
    if mean is None or log_std is None:
        ll = -0.5 * (x**2 + LOG_2PI)
    else:
        ll = -0.5 * (log_std * 2.0 + (x - mean) ** 2 / torch.exp(log_std * 2.0) + LOG_2PI)
    return ll.sum(dim=(1, 2, 3))


def _pixels(x: torch.Tensor) -> int:
    return int(x.shape[2] * x.shape[3])


def _interleaved_halves(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Even and odd channels: the published nets read (shift, scale) / (mean, log-std) so."""
    return h[:, 0::2], h[:, 1::2]


@dataclass
class LevelCondition:
    """Conditioning of one flow level: features per LR image, repeated for the samples.

    ``features`` has one row per LR image; the flow runs on ``repeats`` samples per image
    (rows ordered image-major). Work that depends only on the features (RRDB itself, the
    couplings' feature branch and their conditioning convolutions) runs on the
    un-repeated rows and is repeated after, which makes extra samples cheap.
    """

    features: torch.Tensor
    repeats: int = 1

    def repeat(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.repeats == 1 else t.repeat_interleave(self.repeats, dim=0)


class ActNorm(nn.Module):
    """Per-channel affine normalisation ``(x + bias) * exp(logs)``.

    Glow initialises it from the first training batch so that activations start with
    zero mean and unit variance; call `request_data_init` (or the network's
    ``data_dependent_init``) to do that on the next forward pass. Loaded weights are
    never re-initialised implicitly.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self._init_pending = False

    def request_data_init(self) -> None:
        self._init_pending = True

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
        self.bias.copy_(-mean)
        self.logs.copy_(torch.log(1.0 / (std + 1e-6)))
        self._init_pending = False

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The forward map alone (for activations inside coupling networks)."""
        if self._init_pending:
            self._init_from(x)
        return (x + self.bias) * torch.exp(self.logs)

    def forward(self, x: torch.Tensor, logdet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.normalize(x)
        return y, logdet + self.logs.sum() * _pixels(x)

    def reverse(self, y: torch.Tensor, logdet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = y * torch.exp(-self.logs) - self.bias
        return x, logdet - self.logs.sum() * _pixels(y)


class InvertibleConv1x1(nn.Module):
    """Learned channel mixing by an invertible matrix (Glow), initialised orthogonal."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        weight = torch.empty(channels, channels)
        if weight.device.type != "meta":
            weight = torch.linalg.qr(torch.randn(channels, channels))[0]
        self.weight = nn.Parameter(weight)

    def _dlogdet(self, x: torch.Tensor) -> torch.Tensor:
        return torch.slogdet(self.weight)[1] * _pixels(x)

    def forward(self, x: torch.Tensor, logdet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.weight.shape[0]
        return F.conv2d(x, self.weight.view(c, c, 1, 1)), logdet + self._dlogdet(x)

    def reverse(self, y: torch.Tensor, logdet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.weight.shape[0]
        # Inverting in double precision keeps the round trip exact to float32 accuracy.
        inverse = torch.linalg.inv(self.weight.double()).to(self.weight.dtype)
        return F.conv2d(y, inverse.view(c, c, 1, 1)), logdet - self._dlogdet(y)


class ConvActNorm(nn.Conv2d):
    """Bias-free 'same' convolution followed by an ActNorm (Glow's hidden layers)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3) -> None:
        super().__init__(cin, cout, kernel_size, stride=1, padding=kernel_size // 2, bias=False)
        if self.weight.device.type != "meta":
            nn.init.normal_(self.weight, mean=0.0, std=0.05)
        self.actnorm = ActNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actnorm.normalize(super().forward(x))


class ZeroConv(nn.Conv2d):
    """3x3 convolution starting at zero, with a learned output scale ``exp(3 * logs)``.

    Zero initialisation makes every coupling and split prior start as a fixed map, so an
    untrained flow is well conditioned.
    """

    LOGSCALE_FACTOR = 3.0

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)
        self.logs = nn.Parameter(torch.zeros(cout, 1, 1))
        if self.weight.device.type != "meta":
            with torch.no_grad():
                self.weight.zero_()
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * torch.exp(self.logs * self.LOGSCALE_FACTOR)


def _coupling_net(cin: int, cout: int, hidden: int) -> nn.Sequential:
    """conv3x3-ReLU-conv1x1-ReLU-zeroconv3x3; indices 0, 2, 4 hold the parameters."""
    return nn.Sequential(
        ConvActNorm(cin, hidden, 3),
        nn.ReLU(),
        ConvActNorm(hidden, hidden, 1),
        nn.ReLU(),
        ZeroConv(hidden, cout),
    )


class ConditionalAffineCoupling(nn.Module):
    """SRFlow's conditional affine coupling ("CondAffineSeparatedAndCond").

    Two affine maps in sequence: one on all channels whose scale and shift come from the
    conditioning alone (``fFeatures``), then a classic coupling on the second half of the
    channels whose scale and shift come from the first half and the conditioning
    (``fAffine``). Scales are ``sigmoid(h + 2) + eps``, bounded away from zero so the
    inverse stays finite.
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.channels = channels
        self.n_keep = channels // 2
        self.n_change = channels - self.n_keep
        self.eps = eps
        self.fAffine = _coupling_net(self.n_keep + cond_channels, 2 * self.n_change, hidden)
        self.fFeatures = _coupling_net(cond_channels, 2 * channels, hidden)

    def _scale_shift(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = _interleaved_halves(h)
        return torch.sigmoid(raw + 2.0) + self.eps, shift

    def _from_features(self, cond: LevelCondition) -> tuple[torch.Tensor, torch.Tensor]:
        # Depends on the LR image only: computed per image, then repeated per sample.
        scale, shift = self._scale_shift(self.fFeatures(cond.features))
        return cond.repeat(scale), cond.repeat(shift)

    def _from_half(self, z1: torch.Tensor, cond: LevelCondition) -> tuple[torch.Tensor, torch.Tensor]:
        # fAffine's first convolution reads cat([z1, features]); being linear, it splits
        # into a per-sample part on z1 and a per-image part on the features, so the wide
        # feature convolution runs once per LR image instead of once per sample.
        first = self.fAffine[0]
        assert isinstance(first, ConvActNorm)
        w = first.weight
        pad = first.padding
        h = F.conv2d(z1, w[:, : self.n_keep], padding=pad)
        h = h + cond.repeat(F.conv2d(cond.features, w[:, self.n_keep :], padding=pad))
        h = first.actnorm.normalize(h)
        for layer in list(self.fAffine)[1:]:
            h = layer(h)
        return self._scale_shift(h)

    @staticmethod
    def _log_scale_sum(scale: torch.Tensor) -> torch.Tensor:
        return torch.log(scale).sum(dim=(1, 2, 3))

    def forward(
        self, x: torch.Tensor, logdet: torch.Tensor, cond: LevelCondition
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self._from_features(cond)
        x = (x + shift) * scale
        logdet = logdet + self._log_scale_sum(scale)
        x1, x2 = x[:, : self.n_keep], x[:, self.n_keep :]
        scale, shift = self._from_half(x1, cond)
        x2 = (x2 + shift) * scale
        logdet = logdet + self._log_scale_sum(scale)
        return torch.cat([x1, x2], dim=1), logdet

    def reverse(
        self, y: torch.Tensor, logdet: torch.Tensor, cond: LevelCondition
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y1, y2 = y[:, : self.n_keep], y[:, self.n_keep :]
        scale, shift = self._from_half(y1, cond)
        y2 = y2 / scale - shift
        logdet = logdet - self._log_scale_sum(scale)
        y = torch.cat([y1, y2], dim=1)
        scale, shift = self._from_features(cond)
        y = y / scale - shift
        return y, logdet - self._log_scale_sum(scale)


class FlowStep(nn.Module):
    """ActNorm, invertible 1x1 convolution, and (optionally) a conditional coupling.

    Steps without a coupling are the "additionalFlowNoAffine" steps SRFlow puts right
    after each squeeze to mix the freshly stacked channels before any coupling sees them.
    """

    def __init__(self, channels: int, coupling: ConditionalAffineCoupling | None) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvertibleConv1x1(channels)
        self.affine = coupling

    def forward(
        self, x: torch.Tensor, logdet: torch.Tensor, cond: LevelCondition
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, logdet = self.actnorm(x, logdet)
        x, logdet = self.invconv(x, logdet)
        if self.affine is not None:
            x, logdet = self.affine(x, logdet, cond)
        return x, logdet

    def reverse(
        self, y: torch.Tensor, logdet: torch.Tensor, cond: LevelCondition
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.affine is not None:
            y, logdet = self.affine.reverse(y, logdet, cond)
        y, logdet = self.invconv.reverse(y, logdet)
        return self.actnorm.reverse(y, logdet)


class Squeeze(nn.Module):
    """Space-to-depth by 2: (C, H, W) -> (4C, H/2, W/2), volume preserving."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"squeeze needs even height and width, got {h}x{w}")
        x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * 4, h // 2, w // 2)

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        y = y.view(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(b, c, h * 2, w * 2)


class Split(nn.Module):
    """Factor out half of the channels under a learned Gaussian prior given the rest.

    Normal direction: keep the first ``n_pass`` channels, turn the others into standard
    normal ``eps`` under ``N(mean(z1), exp(logs(z1)))`` and add that log density to
    ``logdet`` (the reference's convention). Reverse: ``z2 = mean + exp(logs) * eps``,
    where sampling supplies ``eps`` (already scaled by the temperature).
    """

    def __init__(self, channels: int, log_scale_bound: float = 0.0) -> None:
        super().__init__()
        self.n_consume = int(round(channels * 0.5))
        self.n_pass = channels - self.n_consume
        self.conv = ZeroConv(self.n_pass, 2 * self.n_consume)
        self.log_scale_bound = log_scale_bound

    def _prior(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logs = _interleaved_halves(self.conv(z1))
        if self.log_scale_bound > 0:
            logs = self.log_scale_bound * torch.tanh(logs / self.log_scale_bound)
        return mean, logs

    def forward(
        self, x: torch.Tensor, logdet: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z1, z2 = x[:, : self.n_pass], x[:, self.n_pass :]
        mean, logs = self._prior(z1)
        eps = (z2 - mean) / torch.exp(logs)
        return z1, logdet + gaussian_log_prob(z2, mean, logs), eps

    def reverse(
        self, z1: torch.Tensor, logdet: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logs = self._prior(z1)
        z2 = mean + torch.exp(logs) * eps
        return torch.cat([z1, z2], dim=1), logdet - gaussian_log_prob(z2, mean, logs)
