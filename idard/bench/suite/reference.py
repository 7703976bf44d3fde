"""The pseudo-models of a full-reference suite (``reference:``), by name.

A suite with ``reference:`` runs no SR model: its records carry ``reference-x<scale>``
instead (`idard.bench.run.fullref` computes them). The names live here, with the suite,
because a suite is validated before anything runs and a report tells such records
apart without importing the runner.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Model id prefix of full-reference records: ``reference-x4``.
PREFIX = "reference-x"


def reference_models(scales: Sequence[int]) -> list[str]:
    """The pseudo-model ids of a reference suite: one per scale, since scale is not a key."""
    return [f"{PREFIX}{s}" for s in scales]


def reference_scale(model: str) -> int:
    """The scale of a pseudo-model id: 4 for ``reference-x4``."""
    return int(model.removeprefix(PREFIX))
