"""The downscaler contract, its registry and the resampling every family builds on.

A downscaler is a registered plug-in, called as ``downscaler(image, scale) -> LR pixels``
on an HR image whose sides are multiples of ``scale`` (see `images.crop_to_multiple`).
The result is float32 RGB in [0, 1] of size (H/scale, W/scale). `Downscaler.__call__`
checks that contract once for every family, so a new method only implements `downscale`.

Classic filters resample with Pillow, so an 8-bit image gives exactly the pixels of
``PIL.Image.resize`` (the paper's LR images are PIL outputs). Images off the 8-bit grid
(16-bit files, or HR already degraded in float) are resampled per channel in Pillow's
32-bit float mode with the same filter, so no precision is thrown away before the model
sees it.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

import numpy as np
from PIL import Image

from idard.measure.images import ImageError, RGBImage, is_8bit_grid, to_uint8
from idard.measure.registry import Plugin, Registry

DOWNSCALERS: Registry["Downscaler"] = Registry("downscaler")

Filter = Literal["bicubic", "bilinear", "nearest", "lanczos", "box", "hamming"]

_PIL_FILTERS: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


class Downscaler(Plugin):
    """Base of all downscalers; subclasses implement `downscale`."""

    #: Whether the output depends on randomness (then it is seeded per image).
    stochastic: ClassVar[bool] = False

    def __call__(self, image: RGBImage, scale: int) -> np.ndarray:
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        if image.height % scale or image.width % scale:
            raise ImageError(
                f"{image.source or image.name}: {image.width}x{image.height} is not a multiple "
                f"of scale {scale}; crop it first (images.crop_to_multiple)"
            )
        out = self.downscale(image, scale)
        expected = (image.height // scale, image.width // scale, 3)
        if out.shape != expected:
            raise ImageError(
                f"{self.id} made an LR of shape {out.shape} for {image.name}, expected {expected}"
            )
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        raise NotImplementedError


def resize(pixels: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Resize (H, W, 3) float pixels to ``size`` = (width, height) with Pillow's filter."""
    resample = _PIL_FILTERS[method]
    if is_8bit_grid(pixels):
        out = Image.fromarray(to_uint8(pixels), "RGB").resize(size, resample)
        return np.asarray(out, dtype=np.float32) / np.float32(255.0)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(pixels[:, :, c], dtype=np.float32), "F").resize(size, resample))
        for c in range(3)
    ]
    return np.stack(channels, axis=2).astype(np.float32)


def lr_size(image: RGBImage, scale: int) -> tuple[int, int]:
    return image.width // scale, image.height // scale


def image_seed(name: str, seed: int) -> np.random.Generator:
    """A generator that depends on the image name and a user seed, not on run order."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])
