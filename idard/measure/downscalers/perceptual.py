"""Perceptual downscaling: Öztireli & Gross 2015, "Perceptually Based Downscaling of Images".

The LR image D maximises the mean SSIM between every sqrt(np) x sqrt(np) patch of D and
the HR region it covers. SSIM of an HR region against an LR patch (each LR pixel standing
for its s x s HR block) needs only the block means L and the block second moments L2 of
the HR image, so per patch the optimum is closed-form: keep the HR mean, rescale the
patch's deviations by the HR-to-LR standard-deviation ratio. Every LR pixel lies in np
overlapping patches, and D averages their solutions. The paper's Algorithm 1 (read as
quoted line by line in public ports; the paper's PDF was not reachable from here):

    L  = box_s(H)  sampled every s      L2 = box_s(H^2) sampled every s     (block moments)
    M  = valid(L)                       local means over the patches
    Sl = valid(L^2) - M^2               variance of the LR patch
    Sh = valid(L2)  - M^2               variance of the HR region
    R  = sqrt(Sh / Sl), 0 where Sl < eps
    D  = (full(M) + full(R) * L - full(R * M)) / full(1)

``valid`` averages over the patches that lie wholly inside the LR image (one value per
patch); ``full`` sums, at each LR pixel, the values of every patch that contains it, which
brings the LR size back. Public Python ports use same-size filters for both and so mix up
patch and pixel indices; this module keeps the two apart. Each RGB channel is solved on
its own. The per-patch optimum R = sqrt(Sh/Sl) maximises SSIM without its stabilising
constants (with them, flat patches would want a smaller R). Defaults: np = 2 x 2
(``patch=2``), the patch size the ports citing the paper give as recommended, and
eps = 1e-6, their threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler
from idard.measure.images import RGBImage
from idard.measure.registry import SpecError


def block_mean(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Mean of every non-overlapping scale x scale block of (H, W, C) pixels."""
    h, w, c = pixels.shape
    return pixels.reshape(h // scale, scale, w // scale, scale, c).mean(axis=(1, 3))


def _valid(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over every k x k window wholly inside x: one value per patch, (h-k+1, w-k+1)."""
    h, w = x.shape[:2]
    return sum(x[i : h - k + 1 + i, j : w - k + 1 + j] for i in range(k) for j in range(k)) / (k * k)


def _full(x: np.ndarray, k: int) -> np.ndarray:
    """Per-patch values summed back onto the pixels each patch covers: (h+k-1, w+k-1), the adjoint of _valid."""
    return _valid(np.pad(x, ((k - 1, k - 1), (k - 1, k - 1), (0, 0))), k)


def perceptual(pixels: np.ndarray, scale: int, patch: int = 2, eps: float = 1e-6) -> np.ndarray:
    """SSIM-optimal downscale of (H, W, C) pixels whose sides are multiples of ``scale``."""
    hr = pixels.astype(np.float64)
    low = block_mean(hr, scale)
    low2 = block_mean(hr * hr, scale)
    k = min(patch, *low.shape[:2])  # an LR image smaller than a patch is one patch
    mean = _valid(low, k)
    var_low = _valid(low * low, k) - mean * mean
    var_high = _valid(low2, k) - mean * mean
    ratio = np.where(var_low < eps, 0.0, np.sqrt(np.maximum(var_high, 0.0) / np.maximum(var_low, eps)))
    count = _full(np.ones_like(mean), k)
    out = (_full(mean, k) + _full(ratio, k) * low - _full(ratio * mean, k)) / count
    return out.astype(np.float32)


@DOWNSCALERS.register("perceptual")
@dataclasses.dataclass(frozen=True)
class Perceptual(Downscaler):
    """SSIM-optimal downscaling (Öztireli & Gross 2015); ``patch`` = sqrt(np), 2 in the paper."""

    patch: int = 2
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.patch < 1:
            raise SpecError(f"perceptual: patch must be >= 1, got {self.patch}")
        if not self.eps > 0:
            raise SpecError(f"perceptual: eps must be > 0, got {self.eps}")

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        return perceptual(image.pixels, scale, self.patch, self.eps)
