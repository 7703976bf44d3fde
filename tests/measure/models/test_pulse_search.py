"""PULSE's search, piece by piece and to exact values: GEOCROSS, the spherical projection
of latents and noise maps, and the optimiser's steps.

A small generator records what the search hands it at every step, so the test sees the
latent and noise maps themselves, not only the image they end in. Every search here runs
a fixed number of steps with ``eps=0`` (a goal no sample reaches), so what is checked
does not depend on when a search stops.
"""

from __future__ import annotations

import math

import pytest
import torch

from idard.measure.models.pulse.downsample import bicubic_downsample
from idard.measure.models.pulse.generators import LatentGenerator
from idard.measure.models.pulse.optimize import PulseSettings, geocross, initial_state, invert, one_cycle_then_drop


class RecordingGenerator(LatentGenerator):
    """3 style vectors of 4 values and two noise maps, all of which change the image; it
    keeps a copy of the latent and noise maps of every call."""

    resolution, layers, dim = 8, 3, 4

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("weight", torch.randn(self.layers * self.dim, 3 * 8 * 8, generator=gen) * 0.3)
        self.latents: list[torch.Tensor] = []
        self.noises: list[list[torch.Tensor]] = []

    def noise_shapes(self) -> list[tuple[int, ...]]:
        return [(1, 4, 4), (1, 8, 8)]

    def latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        self.latents.append(latent.detach().clone())
        return latent

    def synthesize(self, latent_in: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        self.noises.append([n.detach().clone() for n in noise])
        x = (latent_in.flatten(1) @ self.weight).view(-1, 3, 8, 8)
        x = x + 0.5 * noise[0].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) + 0.3 * noise[1]
        return torch.sigmoid(x)


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Per vector (latent) or per map (noise): the norm over everything after dim 1."""
    return t.pow(2).sum(tuple(range(2, t.ndim))).sqrt()


def _target() -> torch.Tensor:
    return torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(7))


# ------------------------------------------------------------------ GEOCROSS

def test_geocross_is_per_sample_with_the_references_dim_over_8_scaling() -> None:
    """Sample 0: two vectors at right angles; sample 1: opposite vectors. GEOCROSS is the
    mean over the 2x2 pairs of angle^2, times dim / 8: pi^2/32 and pi^2/8 at dim 2."""
    latent_in = torch.tensor([[[3.0, 0.0], [0.0, 3.0]], [[3.0, 0.0], [-3.0, 0.0]]], dtype=torch.float64)
    values = geocross(latent_in)
    assert values.shape == (2,)
    # (the reference's 1e-9 under each square root moves the opposite pair off pi by 1e-5)
    torch.testing.assert_close(values, torch.tensor([math.pi**2 / 32, math.pi**2 / 8], dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(geocross(latent_in[1:]), values[1:])  # alone as in a batch
    assert geocross(torch.ones(1, 5, 7, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-8)


# ------------------------------------------------------------------ the search's steps

def _reference_search(generator: RecordingGenerator, target: torch.Tensor, seeds: list[int],
                      settings: PulseSettings, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """PULSE's loop written out (Menon et al. 2020; reference PULSE.py): per sample
    ``l2_weight * L2 + geocross_weight * GEOCROSS``, Adam on the sum, then every latent
    vector and trainable noise map scaled back to its initial norm."""
    latent, noise = initial_state(generator, seeds, "cpu")
    params = [latent.requires_grad_(True), *(n.requires_grad_(True) for n in noise)]
    radii = [_norms(p.detach()) for p in params]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    for step in range(steps):
        optimizer.param_groups[0]["lr"] = settings.lr * one_cycle_then_drop(step, settings.steps)
        optimizer.zero_grad()
        image = RecordingGenerator.synthesize(generator, latent, noise)
        l2 = (bicubic_downsample(image, 4) - target).pow(2).mean((1, 2, 3))
        (settings.l2_weight * l2 + settings.geocross_weight * geocross(latent)).sum().backward()
        optimizer.step()
        with torch.no_grad():
            for p, r in zip(params, radii):
                p.mul_((r / _norms(p)).view(*r.shape, *[1] * (p.ndim - 2)))
    return latent.detach(), [n.detach() for n in noise]


def test_each_step_moves_latent_and_noise_exactly_as_adam_then_projection_does() -> None:
    settings = PulseSettings(steps=3, eps=0.0)
    generator = RecordingGenerator()
    invert(generator, _target(), [4, 9], settings)

    start_latent, start_noise = initial_state(generator, [4, 9], "cpu")
    torch.testing.assert_close(generator.latents[0], start_latent, atol=0, rtol=0)
    for step in (1, 2):
        latent, noise = _reference_search(RecordingGenerator(), _target(), [4, 9], settings, step)
        torch.testing.assert_close(generator.latents[step], latent, atol=1e-6, rtol=0)
        for seen, expected in zip(generator.noises[step], noise):
            torch.testing.assert_close(seen, expected, atol=1e-6, rtol=0)
    # and the steps really moved everything (not a search that stands still)
    assert (generator.latents[2] - start_latent).abs().max() > 1e-2
    assert all((n - s).abs().max() > 1e-2 for n, s in zip(generator.noises[2], start_noise))


def test_latent_vectors_and_trainable_noise_maps_stay_on_their_spheres() -> None:
    settings = PulseSettings(steps=4, eps=0.0, trainable_noise=1)  # noise map 1 stays fixed
    generator = RecordingGenerator()
    invert(generator, _target(), [1, 2], settings)

    latent0, (trained0, fixed0) = generator.latents[0], generator.noises[0]
    for latent, (trained, fixed) in zip(generator.latents[1:], generator.noises[1:]):
        torch.testing.assert_close(_norms(latent), _norms(latent0), atol=1e-5, rtol=0)
        torch.testing.assert_close(_norms(trained), _norms(trained0), atol=1e-5, rtol=0)
        assert not torch.allclose(latent, latent0) and not torch.allclose(trained, trained0)
        assert torch.equal(fixed, fixed0)


def test_a_batch_of_samples_searches_as_each_sample_alone() -> None:
    settings = PulseSettings(steps=3, eps=0.0)
    together, alone = RecordingGenerator(), RecordingGenerator()
    target = _target()
    invert(together, target, [4, 9], settings)
    invert(alone, target[1:], [9], settings)
    torch.testing.assert_close(together.latents[-1][1:], alone.latents[-1], atol=1e-6, rtol=0)
