"""SRFlow (Lugmayr et al., ECCV 2020), reimplemented to load the published checkpoints.

* `SRFlowNet` / `SRFlowConfig` (``network``): the RRDB encoder and conditional flow, both
  directions, and the NLL training objective.
* ``configs``: DF2K_4X, DF2K_8X, CelebA_8X (published) and TINY_4X (embedded default).
* ``sampling``: per-seed reproducible sampling with conditioning computed once per image.
* ``checkpoint``: safe loading, architecture detection, `save_weights`.
* ``model``: the registered ``srflow`` plug-in (`SRFlow`).

Names are imported from their module on first use (PEP 562), so that importing the
``srflow`` plug-in (``model``) to name or list it does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SRFlowWeightsError": "checkpoint",
    "build_network": "checkpoint",
    "detect_config": "checkpoint",
    "load_network": "checkpoint",
    "read_state_dict": "checkpoint",
    "save_weights": "checkpoint",
    "DF2K_4X": "configs",
    "DF2K_8X": "configs",
    "KNOWN_CONFIGS": "configs",
    "OFFICIAL_CONFIGS": "configs",
    "TINY_4X": "configs",
    "CelebA_8X": "configs",
    "get_config": "configs",
    "SRFlowConfig": "configs",
    "SRFlow": "model",
    "FlowEncoding": "network",
    "SRFlowNet": "network",
    "draw_latents": "sampling",
    "sample_sr": "sampling",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
