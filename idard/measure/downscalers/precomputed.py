"""LR images made elsewhere (MATLAB, a learned downscaler), read from a folder by HR file stem."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import re
from pathlib import Path
from typing import Any

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

    Identity: the id names the folder by its name and ``content``, the first 12 hex digits
    of a SHA-256 over the LR files it holds (names and bytes; every ``{scale}`` folder), so
    the same LR set has the same id wherever it sits, and a changed set is a new one.
    ``content`` is computed when the id is first asked for; a spec may give it to insist
    on that content (the run then refuses a folder whose files differ).
    """

    folder: str = dataclasses.field(default="", metadata={"path": "folder"})
    label: str = ""
    content: str = dataclasses.field(default="", metadata={"derived": True})

    def __post_init__(self) -> None:
        if not self.folder:
            raise SpecError("precomputed: 'folder' is required, e.g. precomputed(folder='lr/x{scale}')")

    def folders(self) -> list[Path]:
        """The existing folders this spec reads (one per scale for a ``{scale}`` template)."""
        if "{scale}" not in self.folder:
            return [Path(self.folder)] if Path(self.folder).is_dir() else []
        pattern = glob.escape(self.folder).replace(glob.escape("{scale}"), "[0-9]*")
        regex = re.compile(re.escape(self.folder).replace(re.escape("{scale}"), r"\d+") + r"/?")
        return sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_dir() and regex.fullmatch(p))

    def content_hash(self) -> str:
        """SHA-256 (12 hex digits) over the LR files' relative names and bytes."""
        folders = self.folders()
        if not folders:
            raise SpecError(f"precomputed: LR folder {self.folder} does not exist")
        digest = hashlib.sha256()
        for folder in folders:
            for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES):
                digest.update(f"{folder.name}/{path.name}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()[:12]

    def identity_values(self) -> dict[str, Any]:
        if not self.content:
            # Frozen dataclass: the hash is cached in the instance dict, computed once.
            cached = self.__dict__.get("_content")
            if cached is None:
                cached = self.content_hash()
                object.__setattr__(self, "_content", cached)
            return {"content": cached}
        return {}

    def check_content(self) -> None:
        """Refuse a folder whose files are not the ones the spec's ``content`` names."""
        if self.content and self.content_hash() != self.content:
            raise ImageError(f"{self.folder}: precomputed LR files changed (content {self.content_hash()}, "
                             f"the spec says {self.content})")

    def lr_sha256(self, name: str, scale: int) -> str:
        """SHA-256 of the LR file used for HR image ``name``: recorded with its records."""
        return hashlib.sha256(self.path_for(name, scale).read_bytes()).hexdigest()

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
        if not self.__dict__.get("_checked"):
            self.check_content()
            object.__setattr__(self, "_checked", True)
        path = self.path_for(image.name, scale)
        lr = load_image(path)
        expected = lr_size(image, scale)
        if (lr.width, lr.height) != expected:
            raise ImageError(
                f"{path}: LR is {lr.width}x{lr.height}, but the HR image {image.name!r} "
                f"({image.width}x{image.height} after cropping) at scale {scale} needs {expected[0]}x{expected[1]}"
            )
        return lr.pixels
