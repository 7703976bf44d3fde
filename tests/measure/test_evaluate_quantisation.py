"""The evaluator's numeric decisions, with a decoder whose output the test controls.

* LR images are rounded (not truncated) to 8 bits before the model sees them;
* SR samples are clipped to [0, 1] before they are scored.

(How SR values are brought to 8 bits, rounding or truncation, is specified by the SR
conversion's own tests; the samples here are chosen so that both give the same pixels.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch

from idard.measure.downscalers import DOWNSCALERS
from idard.measure.evaluate import evaluate
from idard.measure.images import RGBImage


@dataclasses.dataclass
class ScriptedDecoder:
    """An SR model whose samples are ``make(lr)``; it keeps every LR batch it was given."""

    make: Callable[[torch.Tensor], torch.Tensor]
    scale: int = 2
    id: str = "scripted"
    weights_hash: str = "0" * 64
    seen: list[torch.Tensor] = dataclasses.field(default_factory=list)

    def to(self, device: torch.device | str) -> ScriptedDecoder:
        return self

    def sample(self, lr: torch.Tensor, seeds: Sequence[int], temperature: float | None = None) -> torch.Tensor:
        self.seen.append(lr.detach().clone())
        sr = self.make(lr)  # (B, 3, H, W)
        return sr[:, None].expand(-1, len(seeds), -1, -1, -1)


def _nearest_up(lr: torch.Tensor, scale: int = 2) -> torch.Tensor:
    return lr.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)


def _psnr(ref: np.ndarray, dist: np.ndarray) -> float:
    mse = np.mean((dist.astype(np.float64) - ref.astype(np.float64)) ** 2)
    return float(10 * np.log10(1.0 / mse))


def _hr(seed: int = 0, size: int = 8) -> RGBImage:
    """HR pixels off the 8-bit grid (as a 16-bit file gives), so an LR image made from
    them falls between grey levels."""
    rng = np.random.default_rng(seed)
    return RGBImage("hr", (rng.integers(0, 65536, (size, size, 3)) / 65535).astype(np.float32), bit_depth=16)


def test_lr_images_are_rounded_to_8_bits_before_the_model_sees_them() -> None:
    hr = _hr()
    levels = DOWNSCALERS.create("box")(hr, 2).astype(np.float64) * 255  # the LR before rounding
    fractions = levels - np.floor(levels)
    assert ((fractions > 0.5) & (fractions < 0.99)).any() and ((fractions < 0.5) & (fractions > 0.01)).any()
    expected_lr = np.round(levels) / 255  # rounding and truncation disagree on many pixels

    decoder = ScriptedDecoder(_nearest_up)
    records = evaluate([hr], ["box"], decoder, seeds=[0, 1], metrics=["psnr"], scale=2, device="cpu")

    (seen,) = decoder.seen
    np.testing.assert_array_equal(seen[0].permute(1, 2, 0).numpy(), expected_lr.astype(np.float32))
    # the SR sample is the rounded LR, enlarged: its PSNR exactly
    expected_sr = np.repeat(np.repeat(expected_lr.astype(np.float32), 2, axis=0), 2, axis=1)
    assert records["value"].to_list() == pytest.approx([_psnr(hr.pixels, expected_sr)] * 2, rel=1e-12, abs=0)
    assert records["finite"].all()


def test_sr_samples_are_clipped_to_the_unit_range_before_scoring() -> None:
    hr = _hr(seed=1)
    rng = np.random.default_rng(2)
    # in range: only 0 and 1 (on the 8-bit grid whichever way it is reached); out of
    # range: -1 and 2, which clipping takes to 0 and 1
    raw = rng.choice(np.array([-1.0, 0.0, 1.0, 2.0], np.float32), size=(8, 8, 3))
    decoder = ScriptedDecoder(lambda lr: torch.from_numpy(raw).permute(2, 0, 1)[None].expand(lr.shape[0], -1, -1, -1))

    records = evaluate([hr], ["bicubic"], decoder, seeds=[5], metrics=["psnr"], scale=2, device="cpu")

    assert (raw < 0).any() and (raw > 1).any()
    assert records["value"].item() == pytest.approx(_psnr(hr.pixels, np.clip(raw, 0, 1)), rel=1e-12, abs=0)
    assert records["value"].item() != pytest.approx(_psnr(hr.pixels, raw), rel=1e-3)
