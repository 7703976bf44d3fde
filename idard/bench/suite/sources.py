"""Where HR images come from: bundled photographs, local folders and globs, object stores.

A suite lists image sources as strings:

* ``bundled:held-out`` (the photographs the embedded model never saw), ``bundled:NAME``;
* a local folder (the image files directly in it) or a glob (``faces/**/*.png`` to
  recurse), relative to the suite file;
* a URI that ``pyarrow.fs`` understands (``s3://bucket/faces/``, ``gs://...``,
  ``hdfs://...``, ``file:///...``), a folder or a glob in its last part.

Each image gets a *name*, its ``image`` key in records: the path relative to the source
root without its suffix (``portraits/0001``), so the same file always gets the same key
wherever the source is mounted, and two files with the same stem in different folders
never collide. Bytes are read lazily (`ImageRef.read`) so the driver of a run can stream
a dataset of any size.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
import re
from pathlib import Path, PurePosixPath

from idard.measure.datasets import HELD_OUT, bundled_path
from idard.measure.images import SUPPORTED_SUFFIXES

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_CHARS = set("*?[")


class SourceError(ValueError):
    """An image source that cannot be listed; the message names it."""


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """One HR image: its record key and where to read its bytes."""

    name: str
    location: str  # local path or URI

    def stat(self) -> tuple[int, ...] | None:
        """What a hash cache may trust the file's content by, or None when the file system
        does not say (or the file is gone).

        A local file: (size, mtime_ns, ctime_ns, inode). Size and mtime alone miss a
        same-size rewrite whose mtime was set back (``cp -p``, ``rsync -t``, ``touch -r``)
        or fell in the same mtime tick; every write, rename over or ``utime`` sets the
        ctime to now, and no user can set it back. An object: (size, mtime_ns), all an
        object store says; every PUT is a new object with a new modification time (on S3
        to the second: a same-size PUT within the second of the hashed one is missed).
        """
        try:
            if _URI.match(self.location):
                import pyarrow.fs

                fs, path = pyarrow.fs.FileSystem.from_uri(self.location)
                info = fs.get_file_info(path)
                if info.type != pyarrow.fs.FileType.File or info.size is None or info.mtime_ns is None:
                    return None
                return int(info.size), int(info.mtime_ns)
            st = os.stat(self.location)
            return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino
        except OSError:
            return None

    def read(self) -> bytes:
        if _URI.match(self.location):
            import pyarrow.fs

            fs, path = pyarrow.fs.FileSystem.from_uri(self.location)
            with fs.open_input_stream(path) as stream:
                return stream.read()
        return Path(self.location).read_bytes()


def _is_image(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in SUPPORTED_SUFFIXES


def _key(relative: str) -> str:
    return str(PurePosixPath(relative).with_suffix(""))


def _split_glob(pattern: str) -> tuple[str, str | None]:
    """``a/b/*.png`` -> (``a/b``, ``*.png``); no glob characters -> (pattern, None)."""
    parts = PurePosixPath(pattern).parts
    for i, part in enumerate(parts):
        if _GLOB_CHARS & set(part):
            root = str(PurePosixPath(*parts[:i])) if i else "."
            return root, str(PurePosixPath(*parts[i:]))
    return pattern, None


def _bundled(which: str) -> list[ImageRef]:
    names = HELD_OUT if which == "held-out" else tuple(n.strip() for n in which.split(",") if n.strip())
    return [ImageRef(name, str(bundled_path(name))) for name in names]


#: Why an entry with an image name is not listed (the keys of `Listing.skipped`).
DANGLING = "a dangling or looping symlink"
NOT_A_FILE = "not a regular file (a folder, FIFO, socket or device with an image name)"
SAME_FILE = "the same file as another entry, reached through a symlink (each real file is listed once)"


@dataclasses.dataclass
class Listing:
    """The images of a suite's sources, and the entries with image names left out."""

    refs: list[ImageRef]
    skipped: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)  # why -> (count, example)

    def skip(self, why: str, path: Path) -> None:
        count, example = self.skipped.get(why, (0, str(path)))
        self.skipped[why] = (count + 1, example)


def _local_files(candidates: list[Path], listing: Listing) -> list[Path]:
    """The regular image files among ``candidates``, each real file once (the entry
    nearest the root wins), in path order; the others are counted in ``listing``."""
    files: dict[str, Path] = {}
    for path in sorted(candidates, key=lambda p: (len(p.parts), str(p))):
        if not _is_image(path.name):
            continue
        if path.is_symlink() and not path.exists():
            listing.skip(DANGLING, path)
        elif not path.is_file():
            listing.skip(NOT_A_FILE, path)
        elif (real := os.path.realpath(path)) in files:
            listing.skip(SAME_FILE, path)
        else:
            files[real] = path
    return sorted(files.values())


def _local(source: str, base: Path, listing: Listing) -> list[ImageRef]:
    path = Path(source).expanduser()
    path = path if path.is_absolute() else base / path
    root, pattern = _split_glob(str(path))
    if pattern is None:
        if path.is_file():
            return [ImageRef(path.stem, str(path))]
        if not path.is_dir():
            raise SourceError(f"image source {source!r}: {path} is neither a folder nor an image file")
        files = _local_files(list(path.iterdir()), listing)
        return [ImageRef(_key(p.relative_to(path).as_posix()), str(p)) for p in files]
    if not Path(root).is_dir():
        raise SourceError(f"image source {source!r}: {root} is not a folder")
    files = _local_files([Path(m) for m in glob.glob(str(path), recursive=True)], listing)
    return [ImageRef(_key(p.relative_to(root).as_posix()), str(p)) for p in files]


def _remote(source: str) -> list[ImageRef]:
    import pyarrow.fs

    scheme = source.split("://", 1)[0]
    root_uri, pattern = _split_glob(source.split("://", 1)[1])
    try:
        fs, root = pyarrow.fs.FileSystem.from_uri(f"{scheme}://{root_uri}")
        infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=pattern is not None))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises OSError, ArrowInvalid, ...
        raise SourceError(f"image source {source!r}: cannot list ({type(exc).__name__}: {exc})") from None
    refs = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != pyarrow.fs.FileType.File or not _is_image(info.path):
            continue
        relative = info.path[len(root):].lstrip("/")
        if pattern is not None and not fnmatch.fnmatch(relative, pattern):
            continue
        refs.append(ImageRef(_key(relative), f"{scheme}://{info.path}"))
    return refs


def list_images(sources: list[str], base: Path) -> list[ImageRef]:
    """Every image of every source, in a stable order; raises on empty sources and clashes."""
    return scan_sources(sources, base).refs


def scan_sources(sources: list[str], base: Path) -> Listing:
    """`list_images`, and the entries skipped (dangling symlinks, FIFOs, repeats) with why."""
    listing = Listing([])
    refs = listing.refs
    seen: dict[str, str] = {}
    for source in sources:
        if source.startswith("bundled:"):
            try:
                found = _bundled(source.removeprefix("bundled:"))
            except ValueError as exc:
                raise SourceError(f"image source {source!r}: {exc}") from None
        elif _URI.match(source):
            found = _remote(source)
        else:
            found = _local(source, base, listing)
        if not found:
            raise SourceError(f"image source {source!r} holds no images ({', '.join(SUPPORTED_SUFFIXES)})")
        for ref in found:
            if ref.name in seen:
                raise SourceError(
                    f"two images have the key {ref.name!r}: {seen[ref.name]} and {ref.location}; "
                    "image keys (path without suffix) must be unique in a suite"
                )
            seen[ref.name] = ref.location
        refs += found
    return listing
