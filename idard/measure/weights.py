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
import time
import urllib.error
import urllib.request
import zipfile
import zlib
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
    """Fetch ``url`` into ``target`` with every check of `download_resumable` (web page,
    stall, deadline), but into a temporary file of its own: several actors of a node may
    resolve the same URL at once, and a shared ``.part`` would mix their bytes."""
    try:
        with atomic_path(target) as tmp:
            _transfer(_Part(tmp, url, resumable=False), url, target, TransferLimits())
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


@dataclasses.dataclass(frozen=True)
class TransferLimits:
    """When a download is given up (its bytes kept for a resume).

    A socket timeout alone never fires on a server that trickles: 1 byte every 5 s kept a
    fetch hanging past 45 s (and would have for days). So a download is *stalled* when
    fewer than ``stall_bytes`` arrived in ``stall_s`` seconds (a silent server is caught by
    the socket timeout, also ``stall_s``), and given up after ``deadline_s`` whatever its
    rate; the deadline is checked between reads, each of which waits at most ``stall_s``.
    """

    deadline_s: float = 3600.0
    stall_s: float = 30.0
    stall_bytes: int = 30 * 1024  # 1 KiB/s over the window


class _Unusable(WeightsNotFound):
    """What the server sent cannot become the file: the part is removed, not resumed."""


class _Restart(Exception):
    """The server's answer cannot continue the part: drop it and download from byte 0."""


@dataclasses.dataclass
class _Part:
    """The bytes of a download so far, and what they belong to.

    A resumable part (``.NAME.part``) keeps the URL, the file's total size and its
    validator (ETag or Last-Modified) beside it (``.NAME.part.json``), so that a resume
    appends only bytes of the same file: a Content-Range of another total, or a server
    that says the file changed (``If-Range``), starts the download over instead.
    """

    path: Path
    url: str
    resumable: bool = True

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def size(self) -> int:
        return self.path.stat().st_size if self.resumable and self.path.is_file() else 0

    def meta(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.meta_path.read_text())
        return {}

    def begin(self, total: int | None, validator: str | None) -> None:
        """Note what the bytes about to be written from byte 0 belong to."""
        if self.resumable:
            self.meta_path.write_text(json.dumps({"url": self.url, "total": total, "validator": validator}))

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


def download_resumable(url: str, target: Path, progress: Progress | None = None, *, size: int | None = None,
                       max_size: int | None = None, limits: TransferLimits = TransferLimits()) -> Path:
    """Download ``url`` to ``target``, resuming a cut download (HTTP Range).

    The bytes go to ``.NAME.part`` beside the target; a call after a cut, stall or deadline
    asks for the rest (``Range: bytes=N-``) and appends only what the server says continues
    the part (a 206 whose Content-Range starts at N, of the same total). Any other answer (a
    200, a 206 from byte 0, a 416 whose size is not the part's) starts over from byte 0: a
    wrong append once became a corrupt file whose hash was then recorded as the reference.
    ``size`` (known) and ``max_size`` (a cap) bound what is accepted; a web page where a
    file was expected (Google Drive's quota page, whatever its Content-Type) is refused.
    What cannot become the file is removed, the ``.part`` included. ``progress(done,
    total)`` is called as bytes arrive.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _Part(target.parent / f".{target.name}.part", url)
    _transfer(part, url, target, limits, size=size, max_size=max_size, progress=progress)
    os.replace(part.path, target)
    part.meta_path.unlink(missing_ok=True)
    return target


def _transfer(part: _Part, url: str, target: Path, limits: TransferLimits, *, size: int | None = None,
              max_size: int | None = None, progress: Progress | None = None) -> None:
    """Complete ``part`` with the bytes of ``url`` and check it is the whole file."""
    deadline = time.monotonic() + limits.deadline_s
    cap = size if size is not None else max_size
    try:
        try:
            _receive(part, url, target, limits, deadline, size, cap, progress)
        except _Restart:
            part.drop()
            _receive(part, url, target, limits, deadline, size, cap, progress)
        _check_whole(part.path, url, target, size)
    except _Unusable:
        part.drop()
        raise


def _receive(part: _Part, url: str, target: Path, limits: TransferLimits, deadline: float,
             size: int | None, cap: int | None, progress: Progress | None) -> None:
    """One request: the part's missing bytes (or all of them), appended only where they fit."""
    have = part.size()
    meta = part.meta() if have else {}
    if have and meta.get("url", url) != url:
        raise _Restart
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have and meta.get("validator"):
        headers["If-Range"] = meta["validator"]
    try:
        request = urllib.request.Request(url, headers=headers)
        response = urllib.request.urlopen(request, timeout=limits.stall_s)  # noqa: S310 - a URL the user chose
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: whole only if the server's size is the part's
            if _range(exc.headers.get("Content-Range"))[2] == have and meta.get("total", have) == have:
                return
            raise _Restart from None
        raise
    with response:
        if response.headers.get_content_type() == "text/html" and not _html_expected(target):
            raise WeightsNotFound(f"{url}: the server answered with a web page, not the file (a quota or "
                                  f"confirmation page?); download it in a browser and place it at {target}")
        start, total, end = _placement(response, have, meta, url)
        _check_total(url, target, total, size, cap)
        if start == 0:
            part.begin(total, _validator(response.headers))
        with open(part.path, "ab" if start else "wb") as out:
            done = _copy(response, out, start, url, limits, deadline, cap, total, progress)
    expected = total if total is not None else end
    if expected is not None and done < expected:
        raise WeightsNotFound(f"{url}: connection closed after {done} of {expected} bytes; run the same command "
                              "again to resume")


def _placement(response: http.client.HTTPResponse, have: int, meta: dict[str, Any],
               url: str) -> tuple[int, int | None, int | None]:
    """Where the body goes in the file (byte 0 or the part's end), the file's total size
    and the offset the body ends at (None where the server does not say)."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.strip().isdigit() else None
    if response.status != 206:
        return 0, length, length
    first, last, total = _range(response.headers.get("Content-Range"))
    if first is None or last is None or (length is not None and length != last - first + 1):
        if have:
            raise _Restart
        raise _Unusable(f"{url}: the server sent a part (206) with an unusable Content-Range "
                        f"{response.headers.get('Content-Range')!r}; nothing was kept")
    if first == 0:
        return 0, total, last + 1
    if first != have or total is None or meta.get("total", total) != total:
        raise _Restart  # not the continuation of these bytes
    return first, total, last + 1


def _range(header: str | None) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a ``Content-Range: bytes A-B/T`` (``*`` and absent parts None)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None, None
    first, last, total = (int(g) if g and g != "*" else None for g in match.groups())
    return first, last, total


def _validator(headers: Any) -> str | None:
    """What ``If-Range`` may send back: a strong ETag, else Last-Modified (RFC 9110 13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _check_total(url: str, target: Path, total: int | None, size: int | None, cap: int | None) -> None:
    if total is None:
        return
    if size is not None and total != size:
        raise _Unusable(f"{url}: the server's file is {total} bytes, not the known {size} of {target.name}")
    if cap is not None and total > cap:
        raise _Unusable(f"{url}: larger than the {cap}-byte cap for {target.name} (the server says {total} "
                        "bytes); nothing was kept")


def _copy(response: http.client.HTTPResponse, out: Any, done: int, url: str, limits: TransferLimits,
          deadline: float, cap: int | None, total: int | None, progress: Progress | None) -> int:
    """Copy the body as it arrives (``read1``: whatever one read returns, so a trickle is
    seen), giving up on a stall, the deadline or the cap; the file offset reached."""
    window_start, window_bytes = time.monotonic(), 0
    while True:
        try:
            block = response.read1(1 << 16)
        except TimeoutError:
            raise WeightsNotFound(f"{url}: stalled ({window_bytes} bytes in "
                                  f"{time.monotonic() - window_start:.0f} s) after {done} bytes; run the same "
                                  "command again to resume") from None
        except (OSError, http.client.HTTPException):  # the connection was cut: keep what came
            return done
        if not block:
            return done
        if cap is not None and done + len(block) > cap:
            raise _Unusable(f"{url}: larger than the {cap}-byte cap (more than {done + len(block)} bytes came); "
                            "nothing was kept")
        out.write(block)
        done += len(block)
        window_bytes += len(block)
        if progress is not None:
            progress(done, total)
        now = time.monotonic()
        if now > deadline:
            raise WeightsNotFound(f"{url}: not done after {limits.deadline_s:g} s ({done}"
                                  + (f" of {total}" if total else "") + " bytes); run the same command again to resume")
        if now - window_start >= limits.stall_s:
            if window_bytes < limits.stall_bytes:
                raise WeightsNotFound(f"{url}: stalled ({window_bytes} bytes in {now - window_start:.0f} s) after "
                                      f"{done} bytes; run the same command again to resume")
            window_start, window_bytes = now, 0


#: The start of an HTML page (after whitespace, a byte-order mark or comments).
_HTML_START = re.compile(rb"(?:\s|\xef\xbb\xbf|<!--.*?-->)*<(?:!doctype\s+html|html|head|body|title|meta|script)\b",
                         re.IGNORECASE | re.DOTALL)


def _html_expected(target: Path) -> bool:
    return target.name.lower().endswith((".html", ".htm"))


def _check_whole(path: Path, url: str, target: Path, size: int | None) -> None:
    """The complete file is the known size and no web page, whatever its Content-Type said."""
    got = path.stat().st_size
    if size is not None and got != size:
        raise _Unusable(f"{url}: got {got} bytes, not the known {size} of {target.name}; nothing was kept")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not _html_expected(target) and _HTML_START.match(head):
        raise _Unusable(f"{url}: the server answered with a web page, not the file (a quota or confirmation "
                        f"page?); download it in a browser and place it at {target}")


def fetch(url: str, target: Path, *, sha256: str | None = None, member: str = "", size: int | None = None,
          max_size: int | None = None, progress: Progress | None = None,
          limits: TransferLimits = TransferLimits()) -> Fetched:
    """Download a published weights file into ``target`` and check its SHA-256.

    ``member``: the file's path inside the archive (zip) at ``url``; the archive is kept in
    the cache beside it so other members need no second download. ``size`` and
    ``max_size`` bound the download (the archive's, with ``member``), ``limits`` its time
    (`download_resumable`). With a known ``sha256`` a file that differs is deleted and
    refused (`WeightsHashMismatch`); with none, the hash is recorded in the cache
    (``sha256-recorded.json``) and later fetches are checked against it, and the result
    says it was not verified. That first hash is only trusted because every download check
    above passed: a bad first file would refuse every correct one after it.
    """
    from idard.measure.models.base import sha256_file

    if member:
        archive = target.parent / Path(url.split("?", 1)[0]).name
        if not archive.is_file():
            download_resumable(url, archive, progress, size=size, max_size=max_size, limits=limits)
        _extract(archive, member, target, url)
    else:
        download_resumable(url, target, progress, size=size, max_size=max_size, limits=limits)
    digest = sha256_file(target)
    expected = sha256 or recorded_sha256(target.name)
    if expected is None:
        _record_sha256(target.name, digest)
        return Fetched(target, digest, "recorded")
    if digest != expected:
        target.unlink()
        whose = "the expected" if sha256 else (
            f"the one recorded at its first fetch (in {cache_dir() / RECORDED_HASHES}; remove {target.name} there "
            "if that fetch was wrong):")
        raise WeightsHashMismatch(f"{url}: SHA-256 {digest} is not {whose} {expected}; the file was deleted")
    return Fetched(target, digest, "verified")


def _extract(archive: Path, member: str, target: Path, url: str) -> None:
    """Copy ``member`` out of the zip ``archive`` into ``target``. An archive that is no zip
    (or a damaged one) is removed from the cache: kept, it would be opened again, and fail
    again, by every later fetch, since a cached archive is never downloaded again."""
    try:
        with zipfile.ZipFile(archive) as zf, atomic_path(target) as tmp:
            try:
                with zf.open(member) as source, open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out, length=1 << 20)
            except KeyError:
                raise WeightsNotFound(f"{url}: the archive holds no {member}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        archive.unlink(missing_ok=True)
        raise WeightsNotFound(f"{url}: not a zip archive, or a damaged one ({exc}); it was removed from the "
                              "cache") from None
