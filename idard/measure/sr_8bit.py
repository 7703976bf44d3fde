"""How an SR sample becomes an 8-bit image before it is scored.

The authors' reference computation (github.com/Byronliang8/IDA-RD,
``SRFlow/code/IDA_RD_SRFlow.ipynb``: the second cell, "Important function definitions",
line 34, ``rgb(t) = (np.clip(t, 0, 1) * 255).astype(np.uint8)``; used in the ``IDA_RD``
cell, lines 29-40, before ``/ 255.`` and LPIPS) converts every SR sample to uint8 by
*truncation*: ``astype(np.uint8)`` drops the fraction. Rounding instead moves about half
the pixels of a sample by 1/255, enough to move the third decimal of LPIPS, so idard
truncates by default to stay comparable with the paper, and offers rounding (what writing
a PNG with most libraries does) as an option.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

#: ``truncate``: the reference's ``np.clip(x, 0, 1) * 255 -> astype(uint8)``;
#: ``round``: to the nearest 8-bit level.
SRTo8Bit = Literal["truncate", "round"]
SR_TO_8BIT: tuple[str, ...] = get_args(SRTo8Bit)


def to_8bit_grid(samples: torch.Tensor, mode: SRTo8Bit = "truncate") -> torch.Tensor:
    """``samples`` (finite, any range) on the 8-bit grid, as float k/255 in [0, 1].

    Computed in float32 like the reference (clip, times 255, then floor or round), so the
    levels are exactly the reference's uint8 values divided by 255.
    """
    if mode not in SR_TO_8BIT:
        raise ValueError(f"sr_to_8bit must be one of {', '.join(SR_TO_8BIT)}, got {mode!r}")
    scaled = samples.to(torch.float32).clamp(0.0, 1.0) * 255.0
    levels = torch.floor(scaled) if mode == "truncate" else torch.round(scaled)
    return levels / 255.0
