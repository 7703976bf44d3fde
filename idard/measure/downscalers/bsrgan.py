"""BSRGAN's degradation chain with fixed, explicit parameters (supplement Table 2)."""

from __future__ import annotations

import dataclasses
import io
from typing import ClassVar

import numpy as np
from PIL import Image

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler, image_seed, lr_size, resize
from idard.measure.images import RGBImage, to_uint8
from idard.measure.lazy import lazy_import
from idard.measure.registry import SpecError

ndimage = lazy_import("scipy.ndimage")  # imported on first use: listing plug-ins needs no SciPy


@DOWNSCALERS.register("bsrgan")
@dataclasses.dataclass(frozen=True)
class BSRGAN(Downscaler):
    """BSRGAN-style degradation with explicit parameters (supplement Table 2).

    HR Gaussian blur (``blur`` sigma, HR pixels) -> bicubic downscale -> additive Gaussian
    noise of ``noise`` grey levels on the 0-255 scale (BSRGAN's noise level) -> JPEG at
    ``jpeg`` quality. BSRGAN draws these parameters at random; here they are fixed so a
    degradation is one reproducible downscaler, and the noise is seeded per image.
    """

    noise: float = 0.667
    blur: float = 0.026
    jpeg: int = 48
    seed: int = 0
    stochastic: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.noise < 0 or self.blur < 0:
            raise SpecError("bsrgan: noise and blur must be >= 0")
        if not 1 <= self.jpeg <= 100:
            raise SpecError(f"bsrgan: jpeg quality must be in 1..100, got {self.jpeg}")

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        hr = image.pixels
        if self.blur > 0:
            from scipy import ndimage  # scipy on use: reading a report needs the registry, not scipy (~0.6 s of import)

            hr = ndimage.gaussian_filter(hr, sigma=(self.blur, self.blur, 0), mode="reflect")
        lr = resize(np.clip(hr, 0, 1).astype(np.float32), lr_size(image, scale), "bicubic")
        rng = image_seed(image.name, self.seed)
        lr = lr + rng.normal(0.0, self.noise / 255.0, size=lr.shape).astype(np.float32)
        buffer = io.BytesIO()
        Image.fromarray(to_uint8(lr), "RGB").save(buffer, format="JPEG", quality=self.jpeg)
        buffer.seek(0)
        with Image.open(buffer) as jpg:
            return np.asarray(jpg.convert("RGB"), dtype=np.float32) / np.float32(255.0)
