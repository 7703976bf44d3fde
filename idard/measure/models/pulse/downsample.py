"""The downscaling operator inside PULSE's loss: a differentiable bicubic on tensors.

PULSE searches for an HR image whose downscaled version matches the LR image within
``eps``; the operator defines what "matches" means, so it must be the reference's: a
separable Keys cubic kernel (a = -0.5) stretched by the factor (4x the factor long),
normalised, with reflection padding and a stride of the factor. PIL's bicubic is the
same kernel but is not differentiable and renormalises at the borders instead of
reflecting, and ``torch.nn.functional.interpolate(antialias=True)`` also renormalises at
the borders; the eps of a run is only comparable with the reference's under its own
operator, so it is written here with one ``conv2d`` per axis.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def keys_cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = -0.5 is the classic "bicubic")."""
    t = x.abs()
    near = (a + 2) * t**3 - (a + 3) * t**2 + 1
    far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


@functools.lru_cache(maxsize=16)
def _taps(factor: int) -> torch.Tensor:
    """The normalised 1-D kernel of length 4*factor, sampled at pixel centres."""
    size = 4 * factor
    positions = (torch.arange(size, dtype=torch.float64) - size // 2 + 0.5) / factor
    taps = keys_cubic(positions)
    return (taps / taps.sum()).to(torch.float32)


def bicubic_downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Downscale (N, C, H, W) by an integer ``factor``; differentiable; H, W multiples of it."""
    if factor == 1:
        return images
    n, c, h, w = images.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not a multiple of the factor {factor}")
    taps = _taps(factor).to(device=images.device, dtype=images.dtype)
    size = taps.numel()
    before = (size - factor) // 2
    after = size - factor - before
    vertical = taps.view(1, 1, size, 1).expand(c, 1, size, 1)
    horizontal = taps.view(1, 1, 1, size).expand(c, 1, 1, size)
    x = F.pad(images, (0, 0, before, after), mode="reflect")
    x = F.conv2d(x, vertical, stride=(factor, 1), groups=c)
    x = F.pad(x, (before, after, 0, 0), mode="reflect")
    return F.conv2d(x, horizontal, stride=(1, factor), groups=c)
