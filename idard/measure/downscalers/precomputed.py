"""LR images made elsewhere (MATLAB, a learned downscaler), read from a folder by HR file stem.

The folder is a local path or an object-store URI (``s3://bucket/lr_x4``, ``gs://...``),
listed and read through ``pyarrow.fs`` as the run's image sources and record store are,
so an LR set can sit beside the HR images wherever every node of a cluster reaches them.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler, lr_size
from idard.measure.images import SUPPORTED_SUFFIXES, ImageError, RGBImage, decode_image
from idard.measure.registry import SpecError

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _is_uri(folder: str) -> bool:
    return bool(_URI.match(folder))


def _is_lr_file(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in SUPPORTED_SUFFIXES


def _filesystem(uri: str) -> tuple[Any, str]:
    """pyarrow's filesystem for ``uri`` and the path in it; errors name the URI."""
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        raise ImageError(f"{uri}: cannot open ({type(exc).__name__}: {exc})") from None


def _remote_files(uri: str, recursive: bool = False) -> list[str]:
    """URIs of the files under ``uri`` (none when the folder does not exist: an object store
    has a folder only while it holds objects)."""
    import pyarrow.fs

    filesystem, root = _filesystem(uri)
    scheme = uri.split("://", 1)[0]
    try:
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(root.rstrip("/"), recursive=recursive,
                                                                  allow_not_found=True))
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{uri}: cannot list ({type(exc).__name__}: {exc})") from None
    return sorted(f"{scheme}://{i.path}" for i in infos if i.type == pyarrow.fs.FileType.File)


def list_lr_files(folder: str) -> list[str]:
    """Names of the LR image files directly in ``folder`` (local path or URI), sorted."""
    if _is_uri(folder):
        return [PurePosixPath(f).name for f in _remote_files(folder) if _is_lr_file(f)]
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and _is_lr_file(p.name))


def read_file(location: str) -> bytes:
    """The bytes of a local file or an object; errors name it."""
    if not _is_uri(location):
        try:
            return Path(location).read_bytes()
        except OSError as exc:
            raise ImageError(f"{location}: cannot read ({exc.strerror or exc})") from None
    filesystem, path = _filesystem(location)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{location}: cannot read ({type(exc).__name__}: {exc})") from None


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if _is_uri(folder) else str(Path(folder) / name)


def _folder_name(folder: str) -> str:
    return PurePosixPath(folder.split("://", 1)[-1].rstrip("/")).name if _is_uri(folder) else Path(folder).name


def _is_folder(folder: str) -> bool:
    return bool(_remote_files(folder)) if _is_uri(folder) else Path(folder).is_dir()


def _scale_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template.rstrip("/")).replace(re.escape("{scale}"), r"\d+"))


def _remote_scale_folders(template: str) -> list[str]:
    """The folders of an object store that a ``{scale}`` template names: those holding a
    file, under the template's fixed part, listed in one recursive listing."""
    fixed = template[:template.index("{scale}")].rsplit("/", 1)[0]
    regex = _scale_regex(template)
    parents = {f.rsplit("/", 1)[0] for f in _remote_files(fixed, recursive=True)}
    return sorted(p for p in parents if regex.fullmatch(p))


def _local_scale_folders(template: str) -> list[str]:
    pattern = glob.escape(template).replace(glob.escape("{scale}"), "[0-9]*")
    regex = re.compile(re.escape(template).replace(re.escape("{scale}"), r"\d+") + r"/?")
    return sorted(p for p in glob.glob(pattern) if Path(p).is_dir() and regex.fullmatch(p))


@DOWNSCALERS.register("precomputed")
@dataclasses.dataclass(frozen=True)
class Precomputed(Downscaler):
    """LR images made by any external downscaler, read from ``folder`` by HR file stem.

    ``folder`` is a local folder or an object-store URI (``s3://bucket/lr_x4``); it may
    contain ``{scale}``, filled with the scale factor, so one spec serves several scales
    (e.g. ``lr/x{scale}``). ``label`` names the method in tables.

    Identity: the id names the folder by its name and ``content``, the first 12 hex digits
    of a SHA-256 over the LR files it holds (names and bytes; every ``{scale}`` folder), so
    the same LR set has the same id wherever it sits (on disk or on S3), and a changed set
    is a new one. ``content`` is computed when the id is first asked for; a spec may give
    it to insist on that content (the run then refuses a folder whose files differ).
    """

    folder: str = dataclasses.field(default="", metadata={"path": "folder"})
    label: str = ""
    content: str = dataclasses.field(default="", metadata={"derived": True})

    def __post_init__(self) -> None:
        if not self.folder:
            raise SpecError("precomputed: 'folder' is required, e.g. precomputed(folder='lr/x{scale}')")

    def folders(self) -> list[str]:
        """The existing folders this spec reads (one per scale for a ``{scale}`` template)."""
        if "{scale}" not in self.folder:
            return [self.folder] if _is_folder(self.folder) else []
        if _is_uri(self.folder):
            return _remote_scale_folders(self.folder)
        return _local_scale_folders(self.folder)

    def content_hash(self) -> str:
        """SHA-256 (12 hex digits) over the LR files' relative names and bytes."""
        folders = self.folders()
        if not folders:
            raise SpecError(f"precomputed: LR folder {self.folder} does not exist")
        digest = hashlib.sha256()
        for folder in folders:
            for name in list_lr_files(folder):
                digest.update(f"{_folder_name(folder)}/{name}\0".encode())
                digest.update(hashlib.sha256(read_file(_join(folder, name))).digest())
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
        return hashlib.sha256(read_file(self.path_for(name, scale))).hexdigest()

    def path_for(self, name: str, scale: int) -> str:
        """Where the LR file of HR image ``name`` is (a local path or a URI)."""
        folder = self.folder.format(scale=scale)
        if not _is_folder(folder):
            raise ImageError(f"{folder}: precomputed LR folder does not exist")
        sub, _, stem = name.rpartition("/")  # an image key may name a subfolder (portraits/0001)
        where = _join(folder, sub) if sub else folder
        found = [f for f in (list_lr_files(where) if _is_folder(where) else []) if PurePosixPath(f).stem == stem]
        if not found:
            raise ImageError(f"{folder}: no LR image for HR image {name!r} (looked for {name}.png, .jpg, ...)")
        if len(found) > 1:
            raise ImageError(f"{folder}: several LR images for {name!r}: {', '.join(found)}")
        return _join(where, found[0])

    def downscale(self, image: RGBImage, scale: int) -> np.ndarray:
        if not self.__dict__.get("_checked"):
            self.check_content()
            object.__setattr__(self, "_checked", True)
        location = self.path_for(image.name, scale)
        lr = decode_image(read_file(location), name=image.name, source=location)
        expected = lr_size(image, scale)
        if (lr.width, lr.height) != expected:
            raise ImageError(
                f"{location}: LR is {lr.width}x{lr.height}, but the HR image {image.name!r} "
                f"({image.width}x{image.height} after cropping) at scale {scale} needs {expected[0]}x{expected[1]}"
            )
        return lr.pixels
