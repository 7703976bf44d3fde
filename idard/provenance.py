"""What made a record: the code's version and the versions of the libraries that compute it.

A number in a paper must say which code produced it. The installed package's version
(setuptools-scm's, fixed when it was installed) does not follow later commits, so in a git
checkout the version is the package version plus ``git describe`` (commit, and ``dirty``
when the work tree has uncommitted changes); outside a checkout (an installed wheel, a
Docker image) it is the package version alone. This module imports nothing heavy: the
report process and the driver call it without loading torch.
"""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path

import idard

#: Libraries whose versions can change the numbers (or how they are computed and stored).
LIBRARIES = ("torch", "torchvision", "lpips", "pillow", "numpy", "scipy", "ray", "polars", "pyarrow")


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(root: Path | None = None) -> str:
    """``0.1.0+git.<describe>`` in a git checkout of idard (``-dirty`` with uncommitted
    changes), else the package version. Only the checkout that holds this package counts:
    an installed wheel inside some other repository is not described by that repository."""
    installed = idard.__version__
    package_root = Path(__file__).resolve().parents[1]
    root = root or package_root
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return installed
    described = _git(root, "describe", "--always", "--dirty", "--tags", "--abbrev=12")
    release = installed.split("+")[0]  # setuptools-scm's own +g<sha> would be a second local part
    return f"{release}+git.{described}" if described else installed


@functools.lru_cache(maxsize=1)
def process_code_version() -> str:
    """`code_version` computed once per process: what every record a worker writes carries."""
    return code_version()


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """SHA-256 (16 hex digits) of every ``.py`` file of the installed ``idard`` package,
    by relative path: what a cache of computed results keys on. `code_version` names a
    commit, and edits in a checkout that is already ``-dirty`` do not change it; this does.
    4-6 ms for the package's ~110 modules, once per process, and only where samples are cached."""
    import hashlib

    package = Path(idard.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def library_versions() -> dict[str, str | None]:
    """Installed versions of `LIBRARIES` (None for one that is not installed), read from
    package metadata without importing them."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def lpips_trunks(metrics: list[str]) -> dict[str, dict[str, str]]:
    """For each LPIPS metric of a suite, where its trunk weights came from and their SHA-256."""
    from idard.measure.lpips_weights import resolve_trunk_weights

    out: dict[str, dict[str, str]] = {}
    for metric in metrics:
        if not metric.startswith("lpips-"):
            continue
        net = metric.split("(")[0].removeprefix("lpips-")
        try:
            found = resolve_trunk_weights(net, allow_download=False)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - provenance never stops a run
            out[metric] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[metric] = {"source": found.source, "location": found.location, "sha256": found.sha256}
    return out
