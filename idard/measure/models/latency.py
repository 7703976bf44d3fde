"""``latency``: a stand-in SR model whose cost is a fixed device latency, for scheduling benchmarks.

It exists so that the runner can be measured with many workers on a machine that has
neither the GPUs nor the cores: each call sleeps ``ms`` milliseconds per sample (as a GPU
would keep its host thread waiting) and returns the LR image upsampled by nearest
neighbour, plus nothing random. Its records are real records (the downscalers and the
metric run for real), but its IDA-RD numbers mean nothing: never use it to assess a
downscaler. benchmark/simulated_cluster.py runs it on 1 to 64 simulated GPUs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from idard.measure.lazy import lazy_import
from idard.measure.models.base import MODELS
from idard.measure.registry import Plugin, SpecError

if TYPE_CHECKING:
    import torch
else:  # imported on first use: naming, listing and validating the plug-in needs no torch
    torch = lazy_import("torch")


@MODELS.register("latency")
@dataclasses.dataclass(frozen=True)
class Latency(Plugin):
    """Sleeps ``ms`` per sample, returns the nearest-neighbour upsampled LR (scheduling benchmarks only)."""

    ms: float = 10.0
    scale: int = 4

    def __post_init__(self) -> None:
        if self.ms < 0 or self.scale < 1:
            raise SpecError(f"latency needs ms >= 0 and scale >= 1, got ms={self.ms}, scale={self.scale}")

    @property
    def weights_hash(self) -> str:
        """No weights: the hash of the model's parameters, so records still name what made them."""
        return hashlib.sha256(f"latency:{self.ms}:{self.scale}".encode()).hexdigest()

    def weight_files(self) -> list:
        """It reads no file."""
        return []

    def to(self, device: torch.device | str) -> Latency:
        return self

    def sample(self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None) -> torch.Tensor:
        time.sleep(self.ms / 1000.0 * lr.shape[0] * len(seeds))
        up = torch.nn.functional.interpolate(lr, scale_factor=self.scale, mode="nearest")
        return up[:, None].expand(-1, len(seeds), -1, -1, -1).clone()
