"""LR images made elsewhere (MATLAB, a learned downscaler), read from a folder by HR file stem."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler, lr_size
from idard.measure.images import SUPPORTED_SUFFIXES, ImageError, RGBImage, load_image
from idard.measure.registry import SpecError


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
        expected = lr_size(image, scale)
        if (lr.width, lr.height) != expected:
            raise ImageError(
                f"{path}: LR is {lr.width}x{lr.height}, but the HR image {image.name!r} "
                f"({image.width}x{image.height} after cropping) at scale {scale} needs {expected[0]}x{expected[1]}"
            )
        return lr.pixels
