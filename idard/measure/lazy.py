"""Modules imported on first use, so that defining a plug-in costs nothing.

A plug-in is a frozen dataclass of typed parameters; naming, listing, validating and
identifying it (``idard-bench list``, ``status``, suite validation) reads only those
fields. Computing with it needs torch, which takes ~10 s and ~900 MB to import on a
2-core machine. So plug-in modules bind ``torch = lazy_import("torch")`` at the top and
touch it only inside the functions that compute: the first attribute access imports it.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for the module ``name``; the first attribute access imports it.

    Unlike `importlib.util.LazyLoader` it never enters ``sys.modules``: ``import torch``
    elsewhere imports the real module, as usual, and this object only forwards to it (so
    a test's ``monkeypatch.setattr(torch, ...)`` is seen here too).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_module"] = None

    def _load(self) -> types.ModuleType:
        module = self.__dict__["_lazy_module"]
        if module is None:
            module = importlib.import_module(self.__name__)
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        state = "loaded" if self.__dict__["_lazy_module"] is not None else "not yet imported"
        return f"<lazy module {self.__name__!r} ({state})>"


def lazy_import(name: str) -> Any:
    """``name`` (e.g. ``"torch"``, ``"torch.nn.functional"``, ``"scipy.ndimage"``), imported
    when one of its attributes is first used. Typed ``Any`` so call sites read as usual."""
    return LazyModule(name)
