"""idard: Image Downscaling Assessment by Rate-Distortion (IDA-RD)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _installed_version() -> str:
    """The version setuptools-scm gave this installation (from the git tags: ``X.Y.Z`` at a
    release tag, ``X.Y.devN+g<sha>`` past it, ``0.0`` built without git), read from the
    package metadata; a source tree that was never installed says ``0+unknown``. In a checkout, records and
    ``--version`` add the commit itself (`idard.provenance.code_version`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("idard")
    except PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> Any:
    # ``__version__`` on first use: reading package metadata scans sys.path (~0.1 s), which
    # every command would pay at start-up, ``--help`` included.
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
