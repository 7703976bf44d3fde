"""The registered ``chain`` SR model: SR models in series, for scales no single one has.

The IDA-RD reference computes its 32x numbers with two SRFlow models in series
(Byronliang8/IDA-RD, ``SRFlow/code/IDA_RD_SRFlow.ipynb``, the ``IDA_RD`` cell, lines
35-38): SRFlow_CelebA_8X at heat 1.0, its sample converted to an 8-bit image (``rgb``:
clip, times 255, ``astype(uint8)``), then SRFlow_DF2K_4X at heat 0.1. As a suite entry::

    - name: chain
      models: ["srflow(weights=SRFlow_CelebA_8X.pth, heat=1.0)", "srflow(weights=SRFlow_DF2K_4X.pth, heat=0.1)"]

Each stage is a registered model spec (its own parameters, heat included; stage specs
take weights as given or by bare name in the weights cache, never relative to the
suite). Between stages a sample is converted to 8 bits (``between``: ``truncate`` as the
reference, ``round``, or ``float`` to pass it on unconverted).

A chained sample is one sample: it depends only on the LR image and its seed. Stage ``i``
of the sample with seed ``s`` draws with its own seed derived from ``(s, i)``
(`stage_seed`), so stages never share noise, even when the same model is used twice.
Stage 1 is batched over all LR images and seeds; each later stage over the LR images,
once per seed (each intermediate image has its own seed).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from idard.measure.lazy import lazy_import
from idard.measure.models.base import MODELS, Samples, SRModel
from idard.measure.registry import Plugin, SpecError

if TYPE_CHECKING:
    import torch

    from idard.measure import sr_8bit
else:  # imported on first use: naming, listing and validating the plug-in needs no torch
    torch = lazy_import("torch")
    sr_8bit = lazy_import("idard.measure.sr_8bit")


def stage_seed(seed: int, stage: int) -> int:
    """The seed stage ``stage`` draws with for the chained sample of seed ``seed``: a
    function of both alone (NumPy's SeedSequence hash), so samples stay recomputable alone."""
    return int(np.random.SeedSequence([int(seed), int(stage)]).generate_state(1, np.uint32)[0])


@MODELS.register("chain")
@dataclasses.dataclass(frozen=True)
class Chain(Plugin):
    """SR models in series (e.g. the reference's 32x: SRFlow 8x, then SRFlow 4x at heat 0.1).

    ``models``: two or more SR model specs, applied in order; ``between``: how a stage's
    sample becomes the next stage's LR (``truncate`` to 8 bits as the reference, ``round``,
    or ``float``).
    """

    models: tuple[str, ...]
    between: Literal["truncate", "round", "float"] = "truncate"

    def __post_init__(self) -> None:
        if len(self.models) < 2:
            raise SpecError(f"chain needs at least two models, got {len(self.models)}")
        stages = []
        for i, spec in enumerate(self.models):
            if not isinstance(spec, str):
                raise SpecError(f"chain models[{i}] must be a model spec string, got {spec!r}")
            try:
                stages.append(MODELS.create(spec))
            except SpecError as exc:
                raise SpecError(f"chain models[{i}]: {exc}") from None
        # The stages' canonical ids, so two specs of the same chain get the same id.
        object.__setattr__(self, "models", tuple(stage.id for stage in stages))
        object.__setattr__(self, "_stages", tuple(stages))

    @property
    def stages(self) -> tuple[SRModel, ...]:
        return self._stages  # type: ignore[attr-defined]

    @property
    def scale(self) -> int:
        return int(np.prod([stage.scale for stage in self.stages]))

    @property
    def weights_hash(self) -> str:
        """SHA-256 over the stages' weights hashes in order: other weights, another hash."""
        return hashlib.sha256(",".join(stage.weights_hash for stage in self.stages).encode()).hexdigest()

    def weight_files(self) -> list[Path]:
        """Every stage's files, in order (for ``idard-bench weights``)."""
        return [path for stage in self.stages for path in getattr(stage, "weight_files", list)()]

    def to(self, device: torch.device | str) -> Chain:
        for stage in self.stages:
            stage.to(device)
        return self

    def sample(self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None) -> torch.Tensor | Samples:
        """(B, K, 3, h*scale, w*scale); ``temperature`` has no meaning here (each stage's
        spec holds its own). Non-finite intermediate samples stay non-finite to the end."""
        b, k = lr.shape[0], len(seeds)
        current, converged = _split(self.stages[0].sample(lr, [stage_seed(s, 0) for s in seeds]))
        for i, stage in enumerate(self.stages[1:], start=1):
            finite = torch.isfinite(current).flatten(2).all(dim=2)  # (B, K)
            inputs = current if self.between == "float" else sr_8bit.to_8bit_grid(current, self.between)
            parts = []
            for j, seed in enumerate(seeds):
                out, flags = _split(stage.sample(inputs[:, j], [stage_seed(seed, i)]))
                parts.append(out[:, 0])
                if flags is not None:
                    converged = _and(converged, flags[:, 0], j, b, k)
            current = torch.stack(parts, dim=1)
            current[~finite] = float("nan")
        return current if converged is None else Samples(images=current, converged=converged)


def _split(out: torch.Tensor | Samples) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (out.images, out.converged) if isinstance(out, Samples) else (out, None)


def _and(converged: torch.Tensor | None, flags: torch.Tensor, j: int, b: int, k: int) -> torch.Tensor:
    """A chained sample converged when every stage that can fail reached its goal."""
    out = torch.ones((b, k), dtype=torch.bool, device=flags.device) if converged is None else converged.clone()
    out[:, j] &= flags.to(torch.bool)
    return out
