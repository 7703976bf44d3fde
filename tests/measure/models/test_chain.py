"""``chain(models=(...))``: SR models in series, as the reference's 32x (SRFlow 8x, 8 bits,
SRFlow 4x at heat 0.1). Tested offline with the embedded 4x model twice (a 16x chain)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from idard.measure.models import MODELS
from idard.measure.models.chain import stage_seed
from idard.measure.registry import SpecError
from idard.measure.sr_8bit import to_8bit_grid

SPEC = "chain(models=('srflow-tiny-4x', 'srflow-tiny-4x(heat=0.1)'))"


@pytest.fixture(scope="module")
def lr() -> torch.Tensor:
    return torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(0))


def test_a_chain_has_its_own_id_scale_and_combined_weights_hash() -> None:
    chain = MODELS.create(SPEC)
    assert chain.id == "chain(models=('srflow-tiny-4x','srflow-tiny-4x(heat=0.1)'))"
    assert MODELS.create({"name": "chain", "models": ["srflow-tiny-4x", "srflow-tiny-4x(heat=0.10)"]}).id == chain.id
    assert chain.scale == 16
    tiny = MODELS.create("srflow-tiny-4x").weights_hash
    assert chain.weights_hash == hashlib.sha256(f"{tiny},{tiny}".encode()).hexdigest() != tiny
    with pytest.raises(SpecError, match="at least two models"):
        MODELS.create("chain(models=('srflow-tiny-4x',))")
    with pytest.raises(SpecError, match=r"chain models\[1\]: unknown SR model 'srflow-huge'"):
        MODELS.create("chain(models=('srflow-tiny-4x', 'srflow-huge'))")


def test_a_chained_sample_is_stage_one_then_8_bits_then_stage_two_each_with_its_own_seed(lr) -> None:
    first, second = MODELS.create("srflow-tiny-4x"), MODELS.create("srflow-tiny-4x(heat=0.1)")
    out = MODELS.create(SPEC).sample(lr[:1], [7])
    middle = to_8bit_grid(first.sample(lr[:1], [stage_seed(7, 0)])[:, 0], "truncate")
    expected = second.sample(middle, [stage_seed(7, 1)])
    assert out.shape == (1, 1, 3, 32, 32) and torch.allclose(out, expected, atol=1e-5)
    assert stage_seed(7, 0) != stage_seed(7, 1)


def test_batched_equals_alone(lr) -> None:
    """Each (image, seed) sample is the same whatever else is in the call, up to float
    reassociation in batched kernels (about 1e-6), which the 8-bit step between stages can
    turn into a one-level (1/255) change of an intermediate pixel lying on a level boundary:
    a few pixels of the result move by a few thousandths, the rest by under 1e-4."""
    chain = MODELS.create(SPEC)
    together = chain.sample(lr, [0, 1])
    assert together.shape == (2, 2, 3, 32, 32)
    for b in range(2):
        for k, seed in enumerate([0, 1]):
            diff = (together[b, k] - chain.sample(lr[b : b + 1], [seed])[0, 0]).abs()
            assert diff.max() < 2 / 255 and diff.mean() < 1e-4 and (diff > 1e-4).float().mean() < 0.05
    assert (together[0, 0] - together[0, 1]).abs().max() > 1e-3  # seeds differ


def test_a_non_finite_intermediate_stays_non_finite() -> None:
    """The reference cast NaN to uint8 silently; a chain hands it on for the evaluator to flag."""
    chain = MODELS.create("chain(models=('srflow-tiny-4x(heat=1e39)', 'srflow-tiny-4x'))")
    out = chain.sample(torch.full((1, 3, 2, 2), 0.5), [0])
    assert not torch.isfinite(out).all()
