"""idard: Image Downscaling Assessment by Rate-Distortion (IDA-RD).

The public face, in the manner of pyiqa: ``from idard import evaluate, ida_rd_table``.

* `evaluate` (`idard.measure.evaluate.evaluate`): per-sample records of images x
  downscalers x seeds for one SR model, as a Polars frame.
* `ida_rd_table` and `paired_table` (`idard.bench.report.model`): those records reduced
  to the tables ``idard-bench report`` shows (`TableModel`: ranked, labelled, with their
  caveats); ``print()`` one for the table, ``.rows`` for the data.

They are imported on first use (module ``__getattr__``), so ``import idard`` stays light:
it loads neither torch nor Polars until one of them is asked for.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any


@functools.cache
def _installed_version() -> str:
    """The version setuptools-scm gave this installation (from the git tags: ``X.Y.Z`` at a
    release tag, ``X.Y.devN+g<sha>`` past it, ``0.0`` built without git), read from the
    package metadata; a source tree that was never installed says ``0+unknown``. In a
    checkout, records and ``--version`` add the commit itself (`idard.provenance.code_version`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("idard")
    except PackageNotFoundError:
        return "0+unknown"


#: public name -> the module that defines it
_PUBLIC = {
    "evaluate": "idard.measure.evaluate",
    "ida_rd_table": "idard.bench.report.model",
    "paired_table": "idard.bench.report.model",
    "TableModel": "idard.bench.report.model",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # On first use: reading package metadata scans sys.path (~0.1 s), which every
        # command would pay at start-up, ``--help`` included.
        return _installed_version()
    if name not in _PUBLIC:
        raise AttributeError(f"module 'idard' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC, "__version__"})
