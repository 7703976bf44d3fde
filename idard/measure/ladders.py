"""The paper's synthetic degradation ladders, the validation of IDA-RD itself.

Supplement Table 9: for each family, IDA-RD must grow with the degradation, so the
Spearman correlation between the parameter and IDA-RD is +1 where a larger parameter
degrades more (blur sigma, noise sigma, contrast increase) and -1 where a smaller one
does (contrast decrease factor, quantisation levels).
"""

from __future__ import annotations

import dataclasses
import math

import polars as pl

from idard.measure.downscalers import DOWNSCALERS
from idard.measure.statistics import spearman_ladder


@dataclasses.dataclass(frozen=True)
class Ladder:
    family: str
    template: str  # downscaler spec with one ``{}`` for the parameter
    parameters: tuple[float, ...]  # in order of increasing degradation
    sign: int  # expected Spearman sign between parameter and IDA-RD

    def specs(self) -> list[str]:
        return [self.template.format(p) for p in self.parameters]

    def ids(self) -> dict[str, float]:
        """Canonical downscaler id -> parameter (how the rungs appear in records)."""
        return {DOWNSCALERS.create(self.template.format(p)).id: p for p in self.parameters}

    def spearman(self, table: pl.DataFrame) -> float:
        """Spearman rho along the rungs; NaN unless every rung has an IDA-RD.

        A rung whose samples all failed has no IDA-RD; dropping it would let two rungs
        "pass" a three-rung ladder, so a missing rung fails the check instead.
        """
        ids = self.ids()
        present = table.filter(pl.col("downscaler").is_in(list(ids)) & pl.col("ida_rd").is_not_null())
        if present["downscaler"].n_unique() < len(ids):
            return math.nan
        return spearman_ladder(table, ids)


PAPER_LADDERS: tuple[Ladder, ...] = (
    Ladder("Gauss. blur", "blur(sigma={})", (1.0, 2.0, 3.0), +1),
    Ladder("Gauss. noise", "noise(sigma={})", (0.05, 0.1, 0.2), +1),
    Ladder("Contrast inc.", "contrast(factor={})", (1.5, 2.0, 2.5), +1),
    Ladder("Contrast dec.", "contrast(factor={})", (0.75, 0.5, 0.25), -1),
    Ladder("Quantization", "quantize(levels={})", (15, 10, 5), -1),
)
