"""idard: Image Downscaling Assessment by Rate-Distortion (IDA-RD)."""

from importlib.metadata import PackageNotFoundError, version


def _installed_version() -> str:
    """The version setuptools-scm gave this installation (from the git tags: ``X.Y.Z`` at a
    release tag, ``X.Y.devN+g<sha>`` past it), read from the package metadata; a source
    tree that was never installed says ``0+unknown``. In a checkout, records and
    ``--version`` add the commit itself (`idard.provenance.code_version`)."""
    try:
        return version("idard")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()
