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
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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
    """The local file for ``ref`` (a path, a name in the cache, or a URL, downloaded once)."""
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
