"""The embedded default model: a small SRFlow shipped inside the package.

``srflow-tiny-4x`` is SRFlow at the ``TINY_4X`` configuration, trained by
``idard-bench train-srflow`` on photographs bundled in scikit-image and scikit-learn (see
``idard/weights/MODEL_CARD.md``). It exists so that the default benchmark and the tests
run on a machine that cannot download the published checkpoints. It is a smoke-test
model: its IDA-RD numbers are not comparable with the paper's and must not be published.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from idard.measure.models.base import MODELS
from idard.measure.models.srflow.model import SRFlow

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
TINY_4X_WEIGHTS = WEIGHTS_DIR / "srflow-tiny-4x.safetensors"


@MODELS.register("srflow-tiny-4x")
@dataclasses.dataclass(frozen=True)
class SRFlowTiny4x(SRFlow):
    """Embedded 4x SRFlow for smoke runs (small, trained on bundled photos; not for publication)."""

    weights: str = dataclasses.field(default=str(TINY_4X_WEIGHTS), metadata={"path": "file"})
    config: str = "TINY_4X"
    heat: float = 0.7
