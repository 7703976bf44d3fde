"""Synthetic downscalers: the paper's validation ladders.

Each adds one controlled degradation to a classic downscale, after it by default or
before it (supplement Table 9), so IDA-RD must rise with the degradation's strength.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import numpy as np

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler, Filter, image_seed, lr_size, resize
from idard.measure.images import RGBImage
from idard.measure.lazy import lazy_import
from idard.measure.registry import SpecError

ndimage = lazy_import("scipy.ndimage")  # imported on first use: listing plug-ins needs no SciPy


@dataclasses.dataclass(frozen=True)
class _Degraded(Downscaler):
    """A classic downscale plus one degradation, applied after it or before it."""

    order: Literal["after", "before"] = dataclasses.field(default="after", metadata={"rank": 1})
    base: Filter = dataclasses.field(default="bicubic", metadata={"rank": 1})

    def degrade(self, pixels: np.ndarray, image: RGBImage) -> np.ndarray:
        raise NotImplementedError

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        if self.order == "before":
            degraded = np.clip(self.degrade(image.pixels, image), 0.0, 1.0).astype(np.float32)
            return resize(degraded, lr_size(image, scale), self.base)
        lr = resize(image.pixels, lr_size(image, scale), self.base)
        return self.degrade(lr, image)


@DOWNSCALERS.register("blur")
@dataclasses.dataclass(frozen=True)
class Blur(_Degraded):
    """Gaussian blur of standard deviation ``sigma`` pixels (reflected borders)."""

    sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.sigma < 0:
            raise SpecError(f"blur: sigma must be >= 0, got {self.sigma}")

    def degrade(self, pixels: np.ndarray, image: RGBImage) -> np.ndarray:
        from scipy import ndimage  # scipy on use: reading a report needs the registry, not scipy (~0.6 s of import)

        return ndimage.gaussian_filter(pixels, sigma=(self.sigma, self.sigma, 0), mode="reflect")


@DOWNSCALERS.register("noise")
@dataclasses.dataclass(frozen=True)
class Noise(_Degraded):
    """Additive Gaussian noise of standard deviation ``sigma`` (in [0, 1] units), clipped."""

    sigma: float = 0.05
    seed: int = 0
    stochastic: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.sigma < 0:
            raise SpecError(f"noise: sigma must be >= 0, got {self.sigma}")

    def degrade(self, pixels: np.ndarray, image: RGBImage) -> np.ndarray:
        rng = image_seed(image.name, self.seed)
        return pixels + rng.normal(0.0, self.sigma, size=pixels.shape).astype(np.float32)


@DOWNSCALERS.register("contrast")
@dataclasses.dataclass(frozen=True)
class Contrast(_Degraded):
    """Contrast change by ``factor`` about the mean grey level (>1 increases, <1 decreases).

    Same definition as ``PIL.ImageEnhance.Contrast`` (ITU-R 601 luma mean), computed in
    float so that it composes with 16-bit inputs.
    """

    factor: float = 1.5

    def __post_init__(self) -> None:
        if self.factor < 0:
            raise SpecError(f"contrast: factor must be >= 0, got {self.factor}")

    def degrade(self, pixels: np.ndarray, image: RGBImage) -> np.ndarray:
        luma = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        mean = np.float32(luma.mean())
        return mean + np.float32(self.factor) * (pixels - mean)


@DOWNSCALERS.register("quantize")
@dataclasses.dataclass(frozen=True)
class Quantize(_Degraded):
    """Uniform quantisation of every channel to ``levels`` grey levels."""

    levels: int = 16

    def __post_init__(self) -> None:
        if self.levels < 2:
            raise SpecError(f"quantize: levels must be >= 2, got {self.levels}")

    def degrade(self, pixels: np.ndarray, image: RGBImage) -> np.ndarray:
        steps = np.float32(self.levels - 1)
        return np.round(np.clip(pixels, 0.0, 1.0) * steps) / steps
