"""Shared fixtures of the runner tests: small real photographs and suites over them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from idard.measure.datasets import bundled_path

SOURCES = ("coffee", "chelsea", "astronaut", "rocket", "motorcycle_left", "flower")


def write_crops(folder: Path, count: int, size: int = 48) -> list[Path]:
    """``count`` crops of bundled photographs (real image statistics, tiny compute)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        photo = Image.open(bundled_path(SOURCES[i % len(SOURCES)])).convert("RGB")
        offset = 40 + 17 * (i // len(SOURCES))
        path = folder / f"img{i:03d}.png"
        photo.crop((offset, offset, offset + size, offset + size)).save(path)
        paths.append(path)
    return paths


def write_suite(folder: Path, downscalers: list[str], samples: int = 2, images: str = "images") -> Path:
    path = folder / "suite.yaml"
    path.write_text(
        f"name: test\nimages: [{images}]\ndownscalers: {downscalers!r}\n"
        f"models: [srflow-tiny-4x]\nmetrics: [lpips-alex]\nsamples: {samples}\n"
    )
    return path


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    write_crops(tmp_path / "images", 3)
    return tmp_path
