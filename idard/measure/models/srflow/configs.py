"""Known SRFlow architectures: the three published checkpoints and idard's tiny model.

The official values come from ``code/confs/SRFlow_*.yml`` of github.com/andreas128/SRFlow
(see also the project's reference notes). A checkpoint is matched to one of these by its
state-dict keys and shapes (`idard.measure.models.srflow.checkpoint.detect_config`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SRFlowConfig:
    """Architecture of an SRFlow network (the reference's YAML names in brackets).

    * ``scale``: upscaling factor, a power of two [scale].
    * ``levels``: flow levels L; the latent lies on a grid ``2**levels`` times coarser
      than the HR image [flow.L].
    * ``steps``: conditional coupling steps K per level [flow.K].
    * ``mixing_steps``: coupling-free ActNorm + 1x1 conv steps after each squeeze
      [flow.additionalFlowNoAffine].
    * ``rrdb_channels``, ``rrdb_blocks``, ``rrdb_growth``: RRDB width nf, depth nb and
      growth channels gc [nf, nb, gc].
    * ``stacked_blocks``: trunk blocks whose outputs join the conditioning
      [flow.stackRRDB.blocks]; conditioning width is ``(len + 1) * rrdb_channels``.
    * ``coupling_hidden``: hidden width of the coupling networks
      [flow.CondAffineSeparatedAndCond.hidden_channels].
    * ``affine_eps``: lower bound added to coupling scales. The reference's 1e-4 lets
      one reverse coupling amplify by up to 10^4; a larger bound keeps the inverse finite
      on conditioning unlike the training data (the embedded TINY_4X uses 0.25).
    * ``prior_log_scale_bound``: if > 0, split priors' log-scales pass through
      ``b * tanh(logs / b)``, for the same reason; 0 (the reference) leaves them free.
    * ``unused_f_conv``: hold the reference's never-used ``flowUpsamplerNet.f``
      convolution; published checkpoints have it, new small models can drop it.

    Splits happen after levels ``1 .. levels - 2`` (the reference's
    ``correct_splits: false`` behaviour, which its checkpoints were trained with).
    """

    name: str
    scale: int
    levels: int
    steps: int
    rrdb_blocks: int
    stacked_blocks: tuple[int, ...]
    rrdb_channels: int = 64
    rrdb_growth: int = 32
    coupling_hidden: int = 64
    mixing_steps: int = 2
    affine_eps: float = 1e-4
    unused_f_conv: bool = True
    prior_log_scale_bound: float = 0.0

    def __post_init__(self) -> None:
        if self.scale < 2 or self.scale & (self.scale - 1):
            raise ValueError(f"SRFlow scale must be a power of two >= 2, got {self.scale}")
        if self.levels < 1 or 2**self.levels > self.scale * 4:
            raise ValueError(
                f"{self.levels} flow levels do not fit scale {self.scale}: the coarsest "
                "level may be at most 4x coarser than the LR image"
            )
        if len(set(self.stacked_blocks)) != len(self.stacked_blocks):
            raise ValueError(f"stacked blocks {self.stacked_blocks} repeat a block")
        object.__setattr__(self, "stacked_blocks", tuple(int(b) for b in self.stacked_blocks))

    @property
    def cond_channels(self) -> int:
        return (len(self.stacked_blocks) + 1) * self.rrdb_channels

    def level_exponent(self, level: int) -> int:
        """Flow level ``level`` (1-based) lies on a grid ``2**exponent`` times the LR's."""
        return int(math.log2(self.scale)) - level

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stacked_blocks"] = list(self.stacked_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SRFlowConfig:
        d = dict(d)
        d["stacked_blocks"] = tuple(d["stacked_blocks"])
        return cls(**d)


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
