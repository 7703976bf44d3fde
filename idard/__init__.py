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

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "evaluate": "idard.measure.evaluate",
    "ida_rd_table": "idard.bench.report.model",
    "paired_table": "idard.bench.report.model",
    "TableModel": "idard.bench.report.model",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'idard' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
