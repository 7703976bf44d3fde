"""Where model weights come from, and how they are checked.

A suite names weights by a path, a bare file name or a URL. A path that exists is used
as is. One that does not is looked up by name in the weights cache
(``$IDARD_WEIGHTS_DIR``, default ``~/.cache/idard/weights``), so one suite works on a
laptop and on cluster nodes that keep the files elsewhere. A URL is downloaded once
into the cache (only on a machine that can reach it; offline, place the file there).
Files are identified by SHA-256, which every record carries, and read without running
code (safetensors, or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ENV_WEIGHTS_DIR = "IDARD_WEIGHTS_DIR"
_URL = re.compile(r"^https?://")


class WeightsNotFound(FileNotFoundError):
    """A weights file found nowhere; the message lists every place looked at."""


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_WEIGHTS_DIR) or Path.home() / ".cache" / "idard" / "weights").expanduser()


def candidates(ref: str) -> list[Path]:
    """The places ``ref`` is looked for, in order."""
    if _URL.match(ref):
        return [cache_dir() / Path(ref.split("?", 1)[0]).name]
    path = Path(ref).expanduser()
    return [path, cache_dir() / (path.name if path.is_absolute() else path)]


def resolve_weights(ref: str) -> Path:
    """The local file for ``ref`` (a path, a name in the cache, or a URL or object-store
    URI, downloaded once)."""
    if is_object_store_uri(ref):
        return fetch_object(ref)
    for path in candidates(ref):
        if path.is_file():
            return path
    if _URL.match(ref):
        return _download(ref, candidates(ref)[0])
    raise WeightsNotFound(f"{ref}: no such weights file (looked at {', '.join(map(str, candidates(ref)))}; "
                          f"place it there or set ${ENV_WEIGHTS_DIR})")


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it when the block succeeds.

    Cache files are shared by every actor on a node: a reader must see a whole file or
    none, and a failed or killed writer must leave nothing that looks like one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _download(url: str, target: Path) -> Path:
    """Fetch ``url`` into ``target`` atomically (a partial download is never left behind)."""
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a URL the user gave
            shutil.copyfileobj(response, out)
    except Exception as exc:  # noqa: BLE001
        raise WeightsNotFound(f"{url}: download failed ({type(exc).__name__}: {exc}); offline, place the "
                              f"file at {target}") from None
    return target


#: SHA-256 of weight files whose content idard knows, by file name: a file of that name
#: with another hash is reported as a mismatch by ``idard-bench weights``.
KNOWN_SHA256 = {
    "srflow-tiny-4x.safetensors": "20248c5f3327021a0859c33e7a7f487d2d3432a9203efb96577e903c758887ea",
    "resshift-tiny-4x.safetensors": "563e164938a3dd00046ee70b6f286b95a0522a822772704802eb55b9dac3fdea",
    "weights.tar": "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",  # gan-face-generate 1.1.1
}


def verdict(path: Path, sha256: str) -> str:
    """``verified``, ``MISMATCH (expected ...)`` or ``unknown`` (no published hash)."""
    expected = KNOWN_SHA256.get(path.name)
    if expected is None:
        return "unknown"
    return "verified" if expected == sha256 else f"MISMATCH (expected {expected[:12]}…)"


# ------------------------------------------------------------------ fetching published weights
#: Object-store URIs (read with pyarrow.fs, as the record store does), never local paths.
_OBJECT_STORE = re.compile(r"^(s3|gs|gcs|hdfs|abfs|abfss|mock)://")
RECORDED_HASHES = "sha256-recorded.json"


class WeightsHashMismatch(ValueError):
    """A downloaded file whose SHA-256 is not the published one; it is not kept."""


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A fetched file, its SHA-256, and ``verified`` (matched a known hash) or ``recorded``
    (no hash was known: this one was written to the cache's record, unverified)."""

    path: Path
    sha256: str
    check: str


def is_object_store_uri(ref: str) -> bool:
    return bool(_OBJECT_STORE.match(ref))


def _object_filesystem(uri: str) -> tuple[Any, str]:
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def _object_version(filesystem: Any, path: str) -> dict[str, Any] | None:
    """What identifies the object's current content without reading it (size and
    modification time, as make and rsync judge files); None when the store cannot say."""
    import pyarrow.fs

    try:
        info = filesystem.get_file_info(path)
    except OSError:
        return None
    if info.type != pyarrow.fs.FileType.File:
        return None
    return {"size": info.size, "mtime_ns": info.mtime_ns}


def fetch_object(uri: str, target: Path | None = None) -> Path:
    """Copy an object-store file (``s3://bucket/SRFlow_DF2K_4X.pth``) into the cache by its
    name; what every node of a cluster does with a weights URI.

    The copy is made again when the object changed (another size or modification time
    than the copy's, kept in ``.NAME.source.json``) or came from another URI: a stale copy
    would be hashed and run as if it were the object, and the run's check that weights
    never change under one name would compare the stale copy with itself. When the store
    cannot be asked, an existing copy is used as is (offline nodes keep working).
    """
    filesystem, path = _object_filesystem(uri)
    target = target or cache_dir() / Path(path).name
    source_note = target.with_name(f".{target.name}.source.json")
    version = _object_version(filesystem, path)
    wanted = {"uri": uri, **version} if version is not None else None
    if target.is_file():
        try:
            copied = json.loads(source_note.read_text())
        except (OSError, ValueError):
            copied = None
        if wanted is None or copied == wanted:
            return target
    try:
        with atomic_path(target) as tmp, filesystem.open_input_stream(path) as source, open(tmp, "wb") as out:
            shutil.copyfileobj(source, out, length=1 << 20)
    except Exception as exc:  # noqa: BLE001
        raise WeightsNotFound(f"{uri}: cannot read ({type(exc).__name__}: {exc})") from None
    if wanted is not None:
        with atomic_path(source_note) as tmp:
            tmp.write_text(json.dumps(wanted) + "\n")
    return target


def recorded_sha256(file_name: str) -> str | None:
    """The hash recorded when ``file_name`` was first fetched with no published hash."""
    record = cache_dir() / RECORDED_HASHES
    if not record.is_file():
        return None
    return json.loads(record.read_text()).get(file_name)


def _record_sha256(file_name: str, sha256: str) -> None:
    record = cache_dir() / RECORDED_HASHES
    known = json.loads(record.read_text()) if record.is_file() else {}
    known[file_name] = sha256
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")


Progress = Callable[[int, "int | None"], None]


def download_resumable(url: str, target: Path, progress: Progress | None = None, timeout: float = 60) -> Path:
    """Download ``url`` to ``target``, resuming a cut download (HTTP Range).

    The bytes go to ``.NAME.part`` beside the target; a second call after a cut connection
    asks the server for the rest (``Range: bytes=N-``) and starts over only when the
    server ignores the range. A web page where a file was expected (Google Drive's quota
    or confirmation page) is refused. ``progress(done, total)`` is called as bytes arrive.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.parent / f".{target.name}.part"
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - a URL the user chose
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part is whole
            os.replace(part, target)
            return target
        raise
    with response:
        if response.headers.get_content_type() == "text/html" and not target.name.endswith((".html", ".htm")):
            raise WeightsNotFound(f"{url}: the server answered with a web page, not the file (a quota or "
                                  f"confirmation page?); download it in a browser and place it at {target}")
        resumed = have and response.status == 206
        done = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        cut = False
        with open(part, "ab" if resumed else "wb") as out:
            while not cut:
                try:
                    block = response.read(1 << 20)
                except http.client.IncompleteRead as exc:  # the connection was cut: keep what came
                    block, cut = exc.partial, True
                except OSError:
                    block, cut = b"", True
                if not block:
                    break
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        if cut or (total is not None and done < total):
            raise WeightsNotFound(f"{url}: connection closed after {done}" + (f" of {total}" if total else "")
                                  + " bytes; run the same command again to resume")
    os.replace(part, target)
    return target


def fetch(url: str, target: Path, *, sha256: str | None = None, member: str = "",
          progress: Progress | None = None) -> Fetched:
    """Download a published weights file into ``target`` and check its SHA-256.

    ``member``: the file's path inside the archive (zip) at ``url``; the archive is kept in
    the cache beside it so other members need no second download. With a known ``sha256``
    a file that differs is deleted and refused (`WeightsHashMismatch`); with none, the
    hash is recorded in the cache (``sha256-recorded.json``) and later fetches are checked
    against it, and the result says it was not verified.
    """
    from idard.measure.models.base import sha256_file

    if member:
        archive = target.parent / Path(url.split("?", 1)[0]).name
        if not archive.is_file():
            download_resumable(url, archive, progress)
        with zipfile.ZipFile(archive) as zf, atomic_path(target) as tmp:
            try:
                with zf.open(member) as source, open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out, length=1 << 20)
            except KeyError:
                raise WeightsNotFound(f"{url}: the archive holds no {member}") from None
    else:
        download_resumable(url, target, progress)
    digest = sha256_file(target)
    expected = sha256 or recorded_sha256(target.name)
    if expected is None:
        _record_sha256(target.name, digest)
        return Fetched(target, digest, "recorded")
    if digest != expected:
        target.unlink()
        raise WeightsHashMismatch(f"{url}: SHA-256 {digest} is not the expected {expected}; the file was deleted")
    return Fetched(target, digest, "verified")
