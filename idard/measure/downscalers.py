"""Downscalers: the encoders whose information loss IDA-RD measures.

Each is a registered plug-in, called as ``downscaler(image, scale) -> LR pixels`` on an
HR image whose sides are multiples of ``scale`` (see `images.crop_to_multiple`). The
result is float32 RGB in [0, 1] of size (H/scale, W/scale).

* Classic filters resample with Pillow, so an 8-bit image gives exactly the pixels of
  ``PIL.Image.resize`` (the paper's LR images are PIL outputs). Images off the 8-bit grid
  (16-bit files, or HR already degraded in float) are resampled per channel in Pillow's
  32-bit float mode with the same filter, so no precision is thrown away before the
  model sees it.
* Synthetic downscalers (the paper's validation ladders) add one controlled degradation
  to a classic downscale, after it by default or before it (supplement Table 9).
* ``bsrgan`` applies BSRGAN's degradation chain with fixed, explicit parameters
  (supplement Table 2), seeded per image so that it is reproducible.
* ``precomputed`` reads LR images made elsewhere (MATLAB, a learned downscaler) from a
  folder, matched to HR images by file stem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from idard.measure.images import (
    SUPPORTED_SUFFIXES,
    ImageError,
    RGBImage,
    is_8bit_grid,
    load_image,
    to_uint8,
)
from idard.measure.registry import Plugin, Registry, SpecError

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


def _lr_size(image: RGBImage, scale: int) -> tuple[int, int]:
    return image.width // scale, image.height // scale


def image_seed(name: str, seed: int) -> np.random.Generator:
    """A generator that depends on the image name and a user seed, not on run order."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


# --------------------------------------------------------------------------- classic


@dataclasses.dataclass(frozen=True)
class _Classic(Downscaler):
    method: ClassVar[str] = "bicubic"

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        return resize(image.pixels, _lr_size(image, scale), self.method)


def _register_classic(name: str) -> None:
    cls = dataclasses.dataclass(frozen=True)(
        type(name.capitalize(), (_Classic,), {
            "method": name,
            "__doc__": f"Pillow {name} resampling (bit-exact to PIL.Image.resize on 8-bit images).",
            "__module__": __name__,
        })
    )
    DOWNSCALERS.register(name)(cls)
    globals()[cls.__name__] = cls


for _name in _PIL_FILTERS:
    _register_classic(_name)


# --------------------------------------------------------------------------- synthetic


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
            return resize(degraded, _lr_size(image, scale), self.base)
        lr = resize(image.pixels, _lr_size(image, scale), self.base)
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
            hr = ndimage.gaussian_filter(hr, sigma=(self.blur, self.blur, 0), mode="reflect")
        lr = resize(np.clip(hr, 0, 1).astype(np.float32), _lr_size(image, scale), "bicubic")
        rng = image_seed(image.name, self.seed)
        lr = lr + rng.normal(0.0, self.noise / 255.0, size=lr.shape).astype(np.float32)
        buffer = io.BytesIO()
        Image.fromarray(to_uint8(lr), "RGB").save(buffer, format="JPEG", quality=self.jpeg)
        buffer.seek(0)
        with Image.open(buffer) as jpg:
            return np.asarray(jpg.convert("RGB"), dtype=np.float32) / np.float32(255.0)


# --------------------------------------------------------------------------- external


@DOWNSCALERS.register("precomputed")
@dataclasses.dataclass(frozen=True)
class Precomputed(Downscaler):
    """LR images made by any external downscaler, read from ``folder`` by HR file stem.

    ``folder`` may contain ``{scale}``, filled with the scale factor, so one spec serves
    several scales (e.g. ``lr/x{scale}``). ``label`` names the method in tables.
    """

    folder: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if not self.folder:
            raise SpecError("precomputed: 'folder' is required, e.g. precomputed(folder='lr/x{scale}')")

    def path_for(self, name: str, scale: int) -> Path:
        folder = Path(self.folder.format(scale=scale))
        if not folder.is_dir():
            raise ImageError(f"{folder}: precomputed LR folder does not exist")
        matches = [folder / f"{name}{suffix}" for suffix in SUPPORTED_SUFFIXES]
        found = [p for p in matches if p.is_file()]
        found += [p for p in folder.glob(f"{name}.*") if p.suffix.lower() in SUPPORTED_SUFFIXES and p not in found]
        unique = sorted(set(found))
        if not unique:
            raise ImageError(f"{folder}: no LR image for HR image {name!r} (looked for {name}.png, .jpg, ...)")
        if len(unique) > 1:
            raise ImageError(f"{folder}: several LR images for {name!r}: {', '.join(p.name for p in unique)}")
        return unique[0]

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        path = self.path_for(image.name, scale)
        lr = load_image(path)
        expected = _lr_size(image, scale)
        if (lr.width, lr.height) != expected:
            raise ImageError(
                f"{path}: LR is {lr.width}x{lr.height}, but the HR image {image.name!r} "
                f"({image.width}x{image.height} after cropping) at scale {scale} needs {expected[0]}x{expected[1]}"
            )
        return lr.pixels
