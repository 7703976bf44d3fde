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


#: The heat the IDA-RD reference samples at, by scale: its notebook (Byronliang8/IDA-RD,
#: SRFlow/code/IDA_RD_SRFlow.ipynb, the ``IDA_RD`` cell, lines 26-32) picks the heat from
#: the HR/LR size ratio: 1.1 at 4x (SRFlow_DF2K_4X), 1.0 at 8x (SRFlow_CelebA_8X). The
#: notebook never runs SRFlow_DF2K_8X; it gets the 8x heat, 1.0, by the same rule
#: (SRFlow's own confs/*.yml use 0.9 for all three; pass ``heat=0.9`` for that).
REFERENCE_HEAT_BY_SCALE: dict[int, float] = {4: 1.1, 8: 1.0}


def reference_heat(config: SRFlowConfig) -> float:
    """The default heat of a checkpoint: the reference's for its scale (1.1 otherwise)."""
    return REFERENCE_HEAT_BY_SCALE.get(config.scale, 1.1)


def get_config(name: str) -> SRFlowConfig:
    """A known config by name (``DF2K_4X``, ``SRFlow_DF2K_4X``, ``TINY_4X``, ...)."""
    key = _ALIASES.get(name, name)
    for known, cfg in KNOWN_CONFIGS.items():
        if known.lower() == key.lower():
            return cfg
    raise KeyError(
        f"unknown SRFlow config {name!r}; known: {', '.join(KNOWN_CONFIGS)} (or 'auto')"
    )
