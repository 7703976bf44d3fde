"""Classic resampling filters: Pillow's, bit-exact to ``PIL.Image.resize`` on 8-bit images."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from idard.measure.downscalers.base import _PIL_FILTERS, DOWNSCALERS, Downscaler, lr_size, resize
from idard.measure.images import RGBImage


@dataclasses.dataclass(frozen=True)
class _Classic(Downscaler):
    method: ClassVar[str] = "bicubic"

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        return resize(image.pixels, lr_size(image, scale), self.method)


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
