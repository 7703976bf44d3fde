"""SR samples become 8-bit images as the reference notebook makes them: truncation.

The reference (Byronliang8/IDA-RD, SRFlow/code/IDA_RD_SRFlow.ipynb, ``rgb``) computes
``(np.clip(x, 0, 1) * 255).astype(np.uint8)`` and scores ``uint8 / 255``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from idard.measure.evaluate import evaluate
from idard.measure.images import RGBImage
from idard.measure.sr_8bit import to_8bit_grid


def _reference(x: torch.Tensor) -> np.ndarray:
    """The notebook's conversion, to uint8 and back to [0, 1] as it scores it."""
    as_uint8 = (np.clip(x.numpy(), 0, 1) * 255).astype(np.uint8)
    return torch.tensor(as_uint8).numpy() / np.float32(255.0)


def test_truncation_equals_the_reference_conversion_on_random_tensors() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=gen) * 1.4 - 0.2  # out-of-range values too
    x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 128 / 255, 254.999 / 255])  # exact levels and near misses
    ours = to_8bit_grid(x, "truncate")
    assert np.array_equal(ours.numpy(), _reference(x))
    rounded = to_8bit_grid(x, "round")
    assert np.array_equal(rounded.numpy() * 255, np.round(np.clip(x.numpy(), 0, 1) * 255))
    assert 0.3 < (ours != rounded).float().mean() < 0.7  # rounding moves about half the pixels


def test_an_unknown_conversion_is_refused() -> None:
    with pytest.raises(ValueError, match="truncate, round"):
        to_8bit_grid(torch.zeros(1), "nearest")  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class FixedDecoder:
    """A 2x decoder whose every sample is one fixed image: the test knows each pixel."""

    output: torch.Tensor  # (3, H, W)
    id: str = "fixed"
    scale: int = 2
    weights_hash: str = "0" * 64

    def to(self, device: torch.device | str) -> FixedDecoder:
        return self

    def sample(self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None) -> torch.Tensor:
        return self.output.expand(lr.shape[0], len(seeds), *self.output.shape).clone()


def test_the_evaluator_scores_the_truncated_sample_exactly() -> None:
    gen = torch.Generator().manual_seed(1)
    hr = RGBImage("hr", (torch.rand(8, 8, 3, generator=gen).numpy() * 255).round().astype(np.float32) / 255)
    sr = torch.rand(3, 8, 8, generator=gen) * 1.2 - 0.1
    decoder = FixedDecoder(sr)
    hr_t = torch.from_numpy(hr.pixels).permute(2, 0, 1).double()

    def psnr(levels: np.ndarray) -> float:
        mse = (torch.from_numpy(levels).double() - hr_t).pow(2).mean()
        return float(10 * torch.log10(1.0 / mse))

    truncated = evaluate([hr], ["bicubic"], decoder, samples=1, metrics=["psnr"], device="cpu")
    rounded = evaluate([hr], ["bicubic"], decoder, samples=1, metrics=["psnr"], device="cpu", sr_to_8bit="round")
    assert truncated["value"].item() == pytest.approx(psnr(_reference(sr)), abs=1e-9)
    assert rounded["value"].item() == pytest.approx(
        psnr(np.round(np.clip(sr.numpy(), 0, 1) * 255) / np.float32(255)), abs=1e-9)
    assert truncated["value"].item() != pytest.approx(rounded["value"].item(), abs=1e-6)
