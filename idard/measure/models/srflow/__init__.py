"""SRFlow (Lugmayr et al., ECCV 2020), reimplemented to load the published checkpoints.

* `SRFlowNet` / `SRFlowConfig` (``network``): the RRDB encoder and conditional flow, both
  directions, and the NLL training objective.
* ``configs``: DF2K_4X, DF2K_8X, CelebA_8X (published) and TINY_4X (embedded default).
* ``sampling``: per-seed reproducible sampling with conditioning computed once per image.
* ``checkpoint``: safe loading, architecture detection, `save_weights`.
* ``model``: the registered ``srflow`` plug-in (`SRFlow`).
"""

from idard.measure.models.srflow.checkpoint import (
    SRFlowWeightsError,
    build_network,
    detect_config,
    load_network,
    read_state_dict,
    save_weights,
)
from idard.measure.models.srflow.configs import (
    DF2K_4X,
    DF2K_8X,
    KNOWN_CONFIGS,
    OFFICIAL_CONFIGS,
    TINY_4X,
    CelebA_8X,
    get_config,
)
from idard.measure.models.srflow.model import SRFlow
from idard.measure.models.srflow.network import FlowEncoding, SRFlowConfig, SRFlowNet
from idard.measure.models.srflow.sampling import draw_latents, sample_sr

__all__ = [
    "DF2K_4X",
    "DF2K_8X",
    "KNOWN_CONFIGS",
    "OFFICIAL_CONFIGS",
    "TINY_4X",
    "CelebA_8X",
    "FlowEncoding",
    "SRFlow",
    "SRFlowConfig",
    "SRFlowNet",
    "SRFlowWeightsError",
    "build_network",
    "detect_config",
    "draw_latents",
    "get_config",
    "load_network",
    "read_state_dict",
    "sample_sr",
    "save_weights",
]
