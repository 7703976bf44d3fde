"""DPID: Weber et al. 2016, "Rapid, Detail-Preserving Image Downscaling" (SIGGRAPH Asia).

Each LR pixel is a weighted mean of the HR pixels in its footprint. The weight of an HR
pixel grows with its distance from a smooth guidance colour, so pixels that stand out
(thin lines, highlights) survive the downscale instead of being averaged away:

    w(q) = area(q, p) * (||I(q) - G(p)|| / sqrt(3)) ** lam,    LR(p) = sum w I / sum w

with G the box-averaged image smoothed by a [1 2 1]^T [1 2 1] kernel on the LR grid,
renormalised at the borders. ``lam`` = 0 is a box filter; the authors' default is 1.0.

Followed from the reference code (github.com/mergian/dpid, commit dba8288, read not copied):

* ``matab/dpid.m`` lines 43-82: footprint [p*s, (p+1)*s) clipped to the image; an HR pixel
  cut by the footprint's edge counts with its covered fraction (``f *= 1 - (sx - ix)``,
  ...), so non-integer factors work. Lines 88-111: the 3x3 guidance and its renormalisation
  at the border. Lines 131-153: the weights, ``lambda == 0`` giving weight 1, and the
  guidance colour where all weights vanish (every pixel equal to the guidance).
* The MATLAB file's bounds bug (lines 73 and 142 test ``(iy+1) > sy`` instead of ``> ey``)
  weights rows unequally even at integer factors; we follow the corrected test of the
  authors' CUDA code (``cuda/main.cu`` line 107, ``contribution``).
* 8-bit output: idard rounds, the authors' CUDA tool truncates. ``cuda/main.cu`` stores the
  guidance (line 165, ``make_uchar3`` of float sums) and the output (lines 247 and 250,
  ``(unsigned char)`` casts) by C's float-to-integer conversion, which truncates toward 0;
  ``matab/dpid.m`` writes ``uint8(oImage)`` (line 157), which rounds to nearest. idard keeps
  the guidance and the LR in float, as the MATLAB code does (16-bit inputs are not
  quantised), and the LR becomes 8 bits where every downscaler's does, rounded to nearest
  in `idard.measure.evaluate` as a saved image would be. Truncating DPID alone would darken
  its LR by 0.5/255 per channel on average, a bias no other downscaler carries.

Distances use [0, 1] colours divided by sqrt(3), the same as the reference's 0-255 colours
divided by sqrt(3 * 255^2).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler
from idard.measure.images import RGBImage
from idard.measure.lazy import lazy_import
from idard.measure.registry import SpecError

ndimage = lazy_import("scipy.ndimage")  # imported on first use: listing plug-ins needs no SciPy

_GUIDANCE_KERNEL = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0])


def footprints(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output index: the input indices its footprint touches (n_out, K) and their weights.

    The weight is the covered fraction of the input pixel (dpid.m lines 51-73 with the
    corrected bound); padding entries beyond a footprint's end have weight 0.
    """
    step = n_in / n_out
    start = np.arange(n_out) * step
    end = np.minimum(start + step, n_in)
    first = np.floor(start).astype(np.int64)
    count = np.ceil(end).astype(np.int64) - first
    index = first[:, None] + np.arange(int(count.max()))[None, :]
    weight = np.ones(index.shape)
    weight = np.where(index < start[:, None], weight * (1.0 - (start[:, None] - index)), weight)
    weight = np.where(index + 1 > end[:, None], weight * (1.0 - (index + 1 - end[:, None])), weight)
    weight = np.where(index < (first + count)[:, None], weight, 0.0)
    return np.minimum(index, n_in - 1), weight


def _weighted_sum(patches: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Sum over each footprint of weight x pixel: (oH, Ky, oW, Kx, C), (oH, Ky, oW, Kx) -> (oH, oW, C)."""
    return np.einsum("ykxlc,ykxl->yxc", patches, weight, optimize=True)


def dpid(pixels: np.ndarray, out_height: int, out_width: int, lam: float = 1.0) -> np.ndarray:
    """DPID of (H, W, C) float pixels to (out_height, out_width, C), any (also non-integer) factor."""
    rows, row_w = footprints(pixels.shape[0], out_height)
    cols, col_w = footprints(pixels.shape[1], out_width)
    # (oH, Ky, oW, Kx, C): every footprint's pixels, gathered at once; float32 keeps a large
    # image's copy small, and sums of a few dozen terms lose nothing an 8-bit LR could show.
    patches = pixels[rows[:, :, None, None], cols[None, None, :, :]].astype(np.float32)
    area = (row_w[:, :, None, None] * col_w[None, None, :, :]).astype(np.float32)

    average = _weighted_sum(patches, area) / area.sum(axis=(1, 3))[:, :, None]
    from scipy import ndimage  # scipy on use: reading a report needs the registry, not scipy (~0.6 s of import)

    ones = np.ones(average.shape[:2])
    norm = ndimage.convolve(ones, _GUIDANCE_KERNEL, mode="constant")
    guidance = np.stack(
        [ndimage.convolve(average[:, :, c], _GUIDANCE_KERNEL, mode="constant") for c in range(average.shape[2])],
        axis=2,
    ) / norm[:, :, None]
    guidance = guidance.astype(np.float32)

    if lam == 0:
        weight = area
    else:
        distance = np.linalg.norm(patches - guidance[:, None, :, None, :], axis=-1) / np.sqrt(pixels.shape[2])
        weight = area * distance**lam
    total = weight.sum(axis=(1, 3))
    weighted = _weighted_sum(patches, weight)
    safe = np.where(total > 0, total, 1.0)[:, :, None]
    return np.where(total[:, :, None] > 0, weighted / safe, guidance).astype(np.float32)


@DOWNSCALERS.register("dpid")
@dataclasses.dataclass(frozen=True)
class DPID(Downscaler):
    """Detail-preserving downscaling (Weber et al. 2016); ``lam`` 0 = box filter, 1.0 = paper default."""

    lam: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.lam < float("inf"):
            raise SpecError(f"dpid: lam must be a finite number >= 0, got {self.lam}")

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        return dpid(image.pixels, image.height // scale, image.width // scale, self.lam)
