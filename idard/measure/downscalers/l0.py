"""L0-regularised downscaling, after Liu et al., "L0-Regularized Image Downscaling" (TIP 2018).

Only the authors' MATLAB demo interface is public (``L0gDownscaling_sum(Im, 1/scale,
lambda, kappa)``, lambda 2e-2..2e-4, kappa 2..8; its commented defaults are lambda 2e-4,
kappa 2), and the paper's text was not reachable from this machine, so the method is
rebuilt from its published description: an LR image whose upscale reconstructs the HR
image, with an L0 prior on the LR gradients so that salient edges stay sharp and
uniform regions stay flat. The objective solved here is, with H the HR image (all
channels, [0, 1] units), s the scale, U the bicubic (Keys, a = -0.5) x s upscaling
operator and dx, dy forward differences on the LR grid:

    E(L) = ||U L - H||^2 / s^2  +  lam * #{p : sum_c dx L(p)^2 + dy L(p)^2 != 0}

The data term is the reconstruction error per LR pixel (an HR block of s^2 pixels per LR
pixel); the count is Xu et al.'s (2011) L0 gradient measure, joint over channels. The
authors' demo also returns a kernel (``[S, kernel] = L0gDownscaling_sum(...)``), so their
method likely estimates one too; we keep U fixed (bicubic): a fixed-kernel variant.
`objective` counts a gradient as non-zero above 1e-3 (a quarter of an 8-bit level),
since HQS leaves the suppressed ones at about 1e-6 rather than exactly 0.

Solver: half-quadratic splitting as in Xu et al.'s L0 smoothing. With auxiliary
gradients (h, v) and beta growing from 2 lam by kappa up to 1e5, alternate

    (h, v) = (dx L, dy L) where sum_c (dx L^2 + dy L^2) > lam / beta, else 0
    L = argmin ||U L - H||^2 / s^2 + beta (||dx L - h||^2 + ||dy L - v||^2)

The second step is linear with operators that are all circulant on the LR grid (U^T U is
an LR-grid convolution), so one FFT division solves it. Boundaries are periodic, as in
Xu et al., on the image mirrored into a 2H x 2W one (see `mirrored`), so the
image's own borders are reflective rather than wrapped.

Validated (tests/measure/test_downscalers_sota.py): lam -> 0 gives the least-squares
downscale (the LR whose bicubic upscale is nearest the HR; the normal equations hold);
larger lam leaves fewer non-zero gradients; the result's objective is below the
least-squares LR's and bicubic's; and on a 3 x 3 LR, HQS lands within 1.2 % of the exact
global minimum found by enumerating all 512 supports of non-zero gradients (each an
equality-constrained least squares). HQS is a heuristic for this non-convex E: the
objective is not monotone over its iterations (it rises while beta is small, then falls),
and on that tiny image it ends up to 1.2x above the global minimum at lam 10x larger
and up to 4x above at lam 100x larger.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler
from idard.measure.images import RGBImage
from idard.measure.lazy import lazy_import
from idard.measure.registry import SpecError

fft = lazy_import("scipy.fft")  # imported on first use: listing plug-ins needs no SciPy

BETA_MAX = 1e5
#: Gradients below this (a quarter of an 8-bit grey level) count as zero in the objective.
ZERO_GRADIENT = 1e-3


def keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def upscale_response(n_low: int, scale: int) -> np.ndarray:
    """Frequency response on the HR grid (n_low * scale) of the 1-D bicubic upscale filter.

    Upscaling is zero-insertion at HR positions s*i followed by circular convolution with
    g(m) = cubic((m + 0.5 - s/2) / s): pixel centres aligned as in PIL and MATLAB.
    """
    n_high = n_low * scale
    m = np.arange(-2 * scale, 3 * scale)
    taps = keys_cubic((m + 0.5 - scale / 2) / scale)
    kernel = np.zeros(n_high)
    np.add.at(kernel, m % n_high, taps)
    return np.fft.fft(kernel)


class Operators:
    """U, U^T and the LR-grid spectra the HQS steps need, for one LR size (channels first).

    Arrays are (C, h, w) float32 and their real FFTs (C, h, w // 2 + 1): contiguous planes
    in single precision keep the ~30 FFTs of a solve fast, and are precise far below 8 bits.
    """

    def __init__(self, height: int, width: int, scale: int) -> None:
        self.scale, self.shape = scale, (height, width)
        gy, gx = upscale_response(height, scale), upscale_response(width, scale)
        self.g = (gy[:, None] * gx[None, : width * scale // 2 + 1]).astype(np.complex64)
        # U^T U is circulant on the LR grid: its spectrum is the folded |G|^2.
        fold_y = (np.abs(gy) ** 2).reshape(scale, height).sum(axis=0) / scale
        fold_x = (np.abs(gx) ** 2).reshape(scale, width).sum(axis=0) / scale
        self.utu = (fold_y[:, None] * fold_x[None, : width // 2 + 1]).astype(np.float32)
        wy = 2 * np.pi * np.fft.fftfreq(height)[:, None]
        wx = 2 * np.pi * np.fft.rfftfreq(width)[None, :]
        self.grad = (np.abs(np.exp(1j * wx) - 1) ** 2 + np.abs(np.exp(1j * wy) - 1) ** 2).astype(np.float32)

    def up(self, low: np.ndarray) -> np.ndarray:
        s, (h, w) = self.scale, self.shape
        zeros = np.zeros((low.shape[0], h * s, w * s), np.float32)
        zeros[:, ::s, ::s] = low
        from scipy import fft  # scipy on use: reading a report needs the registry, not scipy (~0.6 s of import)

        return fft.irfft2(fft.rfft2(zeros) * self.g, s=(h * s, w * s))

    def up_adjoint(self, high: np.ndarray) -> np.ndarray:
        s, (h, w) = self.scale, self.shape
        from scipy import fft  # scipy on use: reading a report needs the registry, not scipy (~0.6 s of import)

        return fft.irfft2(fft.rfft2(high) * np.conj(self.g), s=(h * s, w * s))[:, ::s, ::s]


def gradients(low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Periodic forward differences of (C, h, w) planes along x and y."""
    return np.roll(low, -1, axis=2) - low, np.roll(low, -1, axis=1) - low


def nonzero_gradients(low: np.ndarray) -> int:
    dx, dy = gradients(low)
    return int(((dx * dx + dy * dy).sum(axis=0) > ZERO_GRADIENT**2).sum())


def objective(low: np.ndarray, high: np.ndarray, scale: int, lam: float) -> float:
    """E(L) on the periodic domain for (C, h, w) LR and (C, H, W) HR planes (module docstring)."""
    ops = Operators(low.shape[1], low.shape[2], scale)
    residual = ops.up(low.astype(np.float32)).astype(np.float64) - high
    return float((residual**2).sum() / scale**2 + lam * nonzero_gradients(low))


def l0_periodic(high: np.ndarray, scale: int, lam: float, kappa: float,
                history: list[float] | None = None) -> np.ndarray:
    """HQS for E on periodic (C, H, W) planes; appends E after each step to ``history``."""
    from scipy import fft  # scipy on use: reading a report needs the registry, not scipy (~0.6 s of import)

    h, w = high.shape[1] // scale, high.shape[2] // scale
    ops = Operators(h, w, scale)
    rhs_data = fft.rfft2(ops.up_adjoint(high.astype(np.float32))) / np.float32(scale**2)
    data_spectrum = ops.utu / np.float32(scale**2)
    low = fft.irfft2(rhs_data / data_spectrum, s=(h, w))  # the least-squares LR
    beta = 2 * lam
    while lam > 0 and beta < BETA_MAX:
        dx, dy = gradients(low)
        keep = (dx * dx + dy * dy).sum(axis=0) > lam / beta
        dx, dy = dx * keep, dy * keep
        divergence = (np.roll(dx, 1, axis=2) - dx) + (np.roll(dy, 1, axis=1) - dy)
        numerator = rhs_data + np.float32(beta) * fft.rfft2(divergence)
        low = fft.irfft2(numerator / (data_spectrum + np.float32(beta) * ops.grad), s=(h, w))
        if history is not None:
            history.append(objective(low, high, scale, lam))
        beta *= kappa
    return low


def mirrored(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) pixels -> (C, 2H, 2W) planes, the image and its mirror images.

    Periodic boundaries on this are reflective boundaries for the data term (the bicubic
    kernel is symmetric about the pixel-centre grid, so the least-squares LR is exactly
    mirror-symmetric); the forward differences of the L0 term are not, so the solution is
    only nearly symmetric, and we return its first quadrant.
    """
    planes = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
    planes = np.concatenate([planes, planes[:, ::-1]], axis=1)
    return np.concatenate([planes, planes[:, :, ::-1]], axis=2)


def l0_downscale(pixels: np.ndarray, scale: int, lam: float = 2e-4, kappa: float = 2.0) -> np.ndarray:
    """L0-regularised downscale of (H, W, C) pixels, reflective boundaries."""
    low = l0_periodic(mirrored(pixels), scale, lam, kappa)
    h, w = pixels.shape[0] // scale, pixels.shape[1] // scale
    return np.ascontiguousarray(low[:, :h, :w].transpose(1, 2, 0), dtype=np.float32)


@DOWNSCALERS.register("l0")
@dataclasses.dataclass(frozen=True)
class L0(Downscaler):
    """L0-regularised downscaling (after Liu et al. 2018); ``lam`` 2e-4 and ``kappa`` 2 as the authors' demo."""

    lam: float = 2e-4
    kappa: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.lam < float("inf"):
            raise SpecError(f"l0: lam must be a finite number >= 0, got {self.lam}")
        if not 1 < self.kappa < float("inf"):
            raise SpecError(f"l0: kappa must be > 1, got {self.kappa}")

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        return l0_downscale(image.pixels, scale, self.lam, self.kappa)
