"""Known SRFlow architectures: the three published checkpoints and idard's tiny model.

The official values come from ``code/confs/SRFlow_*.yml`` of github.com/andreas128/SRFlow
(see also the project's reference notes). A checkpoint is matched to one of these by its
state-dict keys and shapes (`idard.measure.models.srflow.checkpoint.detect_config`).
"""

from __future__ import annotations

from idard.measure.models.srflow.network import SRFlowConfig

#: SRFlow_DF2K_4X.pth: DIV2K+Flickr2K, 4x.
DF2K_4X = SRFlowConfig(
    name="DF2K_4X", scale=4, levels=3, steps=16, rrdb_blocks=23, stacked_blocks=(1, 8, 15, 22)
)
#: SRFlow_DF2K_8X.pth: DIV2K+Flickr2K, 8x.
DF2K_8X = SRFlowConfig(
    name="DF2K_8X", scale=8, levels=4, steps=16, rrdb_blocks=23, stacked_blocks=(1, 3, 5, 7)
)
#: SRFlow_CelebA_8X.pth: CelebA faces, 8x (a shallower RRDB).
CelebA_8X = SRFlowConfig(
    name="CelebA_8X", scale=8, levels=4, steps=16, rrdb_blocks=8, stacked_blocks=(1, 3, 5, 7)
)

#: A small 4x SRFlow of the same structure (3 levels, mixing steps, conditional affine
#: couplings, a split after level 1, stacked RRDB blocks) for an embedded default model
#: that can be trained and sampled on a CPU: 1.15 M parameters, about 4.6 MB in float32.
TINY_4X = SRFlowConfig(
    name="TINY_4X",
    scale=4,
    levels=3,
    steps=4,
    rrdb_blocks=4,
    stacked_blocks=(1, 3),
    rrdb_channels=24,
    rrdb_growth=12,
    coupling_hidden=20,
    unused_f_conv=False,
    affine_eps=0.25,  # bounded inverse: finite samples on LR unlike bicubic
    prior_log_scale_bound=3.0,
)

OFFICIAL_CONFIGS: dict[str, SRFlowConfig] = {c.name: c for c in (DF2K_4X, DF2K_8X, CelebA_8X)}
KNOWN_CONFIGS: dict[str, SRFlowConfig] = {**OFFICIAL_CONFIGS, TINY_4X.name: TINY_4X}

# Names as the reference spells them (file stems), accepted as aliases.
_ALIASES = {f"SRFlow_{name}": name for name in OFFICIAL_CONFIGS}


#: The default heat of each checkpoint: where the IDA-RD reference notebook samples it, the
#: notebook's heat (Byronliang8/IDA-RD, SRFlow/code/IDA_RD_SRFlow.ipynb, the ``IDA_RD`` cell,
#: lines 26-32: 1.1 for SRFlow_DF2K_4X, 1.0 for SRFlow_CelebA_8X); SRFlow_DF2K_8X, which the
#: notebook never runs, gets the heat of its own config, 0.9 (andreas128/SRFlow,
#: code/confs/SRFlow_DF2K_8X.yml line 53). The embedded TINY_4X samples at the 4x heat.
DEFAULT_HEAT: dict[str, float] = {"DF2K_4X": 1.1, "CelebA_8X": 1.0, "DF2K_8X": 0.9, "TINY_4X": 1.1}


def reference_heat(config: SRFlowConfig) -> float:
    """The default heat of a checkpoint (`DEFAULT_HEAT`); 1.1 for an architecture not listed."""
    return DEFAULT_HEAT.get(config.name, 1.1)


def get_config(name: str) -> SRFlowConfig:
    """A known config by name (``DF2K_4X``, ``SRFlow_DF2K_4X``, ``TINY_4X``, ...)."""
    key = _ALIASES.get(name, name)
    for known, cfg in KNOWN_CONFIGS.items():
        if known.lower() == key.lower():
            return cfg
    raise KeyError(
        f"unknown SRFlow config {name!r}; known: {', '.join(KNOWN_CONFIGS)} (or 'auto')"
    )
