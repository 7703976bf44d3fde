"""Plug-ins from other packages: a user's own SR model, downscaler or distortion.

A package declares an entry point in the group ``idard.plugins`` naming a module (or any
object in it) whose import registers its plug-ins, as idard's own modules do::

    [project.entry-points."idard.plugins"]
    my-sr = "my_sr.idard_plugin"      # the module calls @MODELS.register("my-sr") ...

Every registry loads them on its first look-up (`load_installed`), so a suite, the CLI,
``validate-model`` and each Ray worker see the same plug-ins wherever the package is
installed, with no flag to pass and nothing for the suite to import. Entry points are the
packaging standard for this (pytest finds its plug-ins the same way, group ``pytest11``), and
they keep ids free of file paths: ``my-sr(heat=0.9)`` names what the model is.

A plug-in that fails to import is a warning naming its entry point and package, not an
error: one broken package must not stop every run; a suite that names one of its models
then fails with the registry's "unknown SR model" and the warning says why.
"""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import entry_points

#: The entry-point group idard reads.
GROUP = "idard.plugins"


class PluginWarning(UserWarning):
    """An installed plug-in could not be loaded."""


@functools.cache
def load_installed() -> tuple[str, ...]:
    """Import every ``idard.plugins`` entry point once per process; returns the names of
    those loaded (in the order found). Later calls return the first call's result."""
    loaded = []
    for point in entry_points(group=GROUP):
        where = f"{point.name} = {point.value}"
        if point.dist is not None:
            where += f" (package {point.dist.name} {point.dist.version})"
        try:
            point.load()
        except Exception as exc:  # noqa: BLE001 - any error in a third party's import is reported, not raised
            warnings.warn(f"idard plug-in {where} was not loaded: {type(exc).__name__}: {exc}",
                          PluginWarning, stacklevel=2)
            continue
        loaded.append(point.name)
    return tuple(loaded)
