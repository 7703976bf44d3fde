"""Photographs that ship inside installed packages, so the default run needs no download.

scikit-image and scikit-learn carry a few real photographs in their wheels. They are
split once, here, into a training set for the embedded smoke-test SR model and a held-out
set that the default benchmark evaluates on and that training never sees. Grey textures
are training-only. Licences are those stated in the packages' own docstrings (see the
model card in ``idard/weights``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from idard.measure.images import ImageError, RGBImage, load_image

#: name -> (package, file inside the package's data folder)
_FILES: dict[str, tuple[str, str]] = {
    # held-out photographs: evaluation only
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    # training photographs and textures
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "retina": ("skimage", "data/retina.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "camera": ("skimage", "data/camera.png"),
    "moon": ("skimage", "data/moon.png"),
    "brick": ("skimage", "data/brick.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "coins": ("skimage", "data/coins.png"),
}

HELD_OUT: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "china")
TRAINING: tuple[str, ...] = tuple(name for name in _FILES if name not in HELD_OUT)


def bundled_path(name: str) -> Path:
    """Location of a bundled photograph inside its installed package."""
    if name not in _FILES:
        raise ImageError(f"unknown bundled image {name!r}; available: {', '.join(sorted(_FILES))}")
    package, relative = _FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImageError(f"bundled image {name!r} needs the {package!r} package installed")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise ImageError(f"bundled image {name!r}: {path} is missing from the installed {package!r}")
    return path


def load_bundled(name: str) -> RGBImage:
    return load_image(bundled_path(name), name=name)


def held_out_paths() -> list[Path]:
    return [bundled_path(name) for name in HELD_OUT]


def training_paths() -> list[Path]:
    return [bundled_path(name) for name in TRAINING]
