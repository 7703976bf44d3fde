"""PULSE: the loss's downscaling operator, the batched latent search, and the model plug-in.

The inversion tests run on the 64x64 face DCGAN of ``gan-face-generate`` (installed by
``make test`` with --no-deps; it is an optional extra, never an idard dependency).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from idard.measure.models import MODELS, Samples
from idard.measure.models.pulse.downsample import bicubic_downsample, keys_cubic
from idard.measure.models.pulse.generators import (
    DCGANFaces,
    GeneratorWeightsError,
    LatentGenerator,
    TorchGenerator,
    dcgan_faces_weights,
    load_tensors,
)
from idard.measure.models.pulse.optimize import (
    PulseSettings,
    geocross,
    initial_state,
    invert,
    one_cycle_then_drop,
)


@pytest.fixture(scope="module")
def dcgan() -> DCGANFaces:
    try:
        path = dcgan_faces_weights()
    except GeneratorWeightsError as exc:
        pytest.skip(f"face DCGAN weights not installed ({exc})")
    return DCGANFaces(path)


@pytest.fixture(scope="module")
def faces(dcgan: DCGANFaces) -> torch.Tensor:
    """Three HR faces drawn from seeds no test inverts from."""
    z = torch.randn(3, 1, 100, generator=torch.Generator().manual_seed(1_000_000))
    with torch.no_grad():
        return dcgan.synthesize(z, [])


# ------------------------------------------------------------------ the loss's downscaler
def test_the_kernel_is_keys_cubic_with_a_minus_half() -> None:
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    expected = torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0])
    assert torch.allclose(keys_cubic(x), expected)


def test_a_constant_image_downscales_to_itself_and_sizes_divide() -> None:
    flat = torch.full((2, 3, 64, 64), 0.3)
    assert torch.allclose(bicubic_downsample(flat, 8), torch.full((2, 3, 8, 8), 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="not a multiple"):
        bicubic_downsample(torch.zeros(1, 3, 60, 60), 8)


def test_the_operator_agrees_with_pil_bicubic_away_from_the_borders() -> None:
    """Same kernel as PIL's antialiased bicubic; only the border handling differs."""
    rng = np.random.default_rng(0)
    pixels = rng.random((64, 64, 3)).astype(np.float32)
    ours = bicubic_downsample(torch.from_numpy(pixels).permute(2, 0, 1)[None], 4)[0].permute(1, 2, 0).numpy()
    pil = np.stack([np.asarray(Image.fromarray(pixels[..., c], mode="F").resize((16, 16), Image.BICUBIC))
                    for c in range(3)], axis=-1)
    assert np.abs(ours[2:-2, 2:-2] - pil[2:-2, 2:-2]).max() < 1e-5


# ------------------------------------------------------------------ the search
def test_the_learning_rate_cycles_up_and_down_then_drops() -> None:
    factors = [one_cycle_then_drop(s, 100) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[45] == pytest.approx(1.0)
    assert factors[89] == pytest.approx(0.12, abs=0.01) and factors[99] == pytest.approx(0.0109, abs=1e-3)


def test_geocross_is_zero_for_parallel_vectors_and_grows_with_their_angle() -> None:
    same = torch.ones(1, 4, 8)
    apart = torch.cat([torch.ones(1, 2, 8), -torch.ones(1, 2, 8)], dim=1)
    assert geocross(same).item() < 1e-3 < geocross(apart).item()


def test_batched_search_equals_each_sample_alone_with_its_seed(dcgan, faces) -> None:
    """Batching changes nothing: per-sample losses, Adam, projection and first-hit stop.
    10 steps and eps = 0.01 (not the reference's 100 and 0.002): in a tenth of the steps,
    some samples stop early, at different steps, and one never reaches eps."""
    lr = bicubic_downsample(faces[:2], 16).clamp(0, 1)
    rows, seeds = lr.repeat_interleave(2, dim=0), [5, 9] * 2
    first_hit = PulseSettings(stop="first-hit", steps=10, eps=1e-2)
    together = invert(dcgan, rows, seeds, first_hit)
    alone = [invert(dcgan, rows[i : i + 1], [seeds[i]], first_hit) for i in range(len(seeds))]
    assert torch.allclose(together.images, torch.cat([a.images for a in alone]), atol=1e-4)
    assert together.converged.tolist() == [bool(a.converged) for a in alone]
    assert together.steps.tolist() == [int(a.steps) for a in alone]
    assert together.steps.unique().numel() > 1  # samples did stop at different steps
    assert set(together.converged.tolist()) == {True, False}  # and one ran all its steps unconverged


class RecordingGenerator(LatentGenerator):
    """A tiny two-vector generator (a fixed linear map and a sigmoid to 8x8 pixels) that
    keeps every image it makes, so a test can see each step of the search."""

    resolution, layers, dim = 8, 2, 6

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(self.layers * self.dim, 3 * 8 * 8, generator=torch.Generator().manual_seed(7))
        self.made: list[torch.Tensor] = []

    def synthesize(self, latent_in: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        image = torch.sigmoid(latent_in.flatten(1) @ self.weight / 4).view(-1, 3, 8, 8)
        self.made.append(image.detach().clone())
        return image


def _start_image(generator: LatentGenerator, seed: int) -> torch.Tensor:
    """The image PULSE's start for ``seed`` makes: a target it reaches at step 0."""
    latent, noise = initial_state(generator, [seed], "cpu")
    with torch.no_grad():
        image = generator.synthesize(generator.latent_in(latent), noise)
    generator.made.clear()
    return image


def test_the_reference_rule_runs_every_step_and_returns_the_last_image() -> None:
    """PULSE.py (adamian98/pulse) lines 134-179: all steps run; the image returned is the
    last step's; converged means the lowest L2 over the steps is <= eps. Sample 0's target
    is its own start (L2 = 0 at step 0); GEOCROSS then pulls its two vectors together and
    the image leaves the target: still converged, and the drifted image is returned.
    Sample 1's target (another seed's start) is never reached."""
    generator = RecordingGenerator()
    lr = bicubic_downsample(torch.cat([_start_image(generator, 3), _start_image(generator, 4)]), 2)
    settings = PulseSettings(steps=6, eps=1e-7)
    out = invert(generator, lr, [3, 11], settings)

    assert len(generator.made) == 6 and out.steps.tolist() == [6, 6]
    assert torch.equal(out.images, generator.made[-1].clamp(0, 1))
    l2 = torch.stack([(bicubic_downsample(made, 2) - lr).pow(2).mean((1, 2, 3)) for made in generator.made])
    assert l2[0, 0] == 0 and l2[-1, 0] > settings.eps  # reached at step 0, then left
    assert torch.equal(out.l2, l2.min(0).values)
    assert out.converged.tolist() == [True, False] == (l2.min(0).values <= settings.eps).tolist()


def test_first_hit_stops_a_sample_at_the_step_it_reaches_eps_and_returns_that_image() -> None:
    generator = RecordingGenerator()
    lr = bicubic_downsample(torch.cat([_start_image(generator, 3), _start_image(generator, 4)]), 2)
    out = invert(generator, lr, [3, 11], PulseSettings(steps=6, eps=1e-7, stop="first-hit"))
    assert out.steps.tolist() == [1, 6] and out.converged.tolist() == [True, False]
    assert torch.equal(out.images[0], generator.made[0][0])  # step 0's image, the target itself


def test_the_stopping_rule_is_named_in_the_model_id() -> None:
    from idard.measure.registry import SpecError

    assert MODELS.create("pulse").settings.stop == "reference" and MODELS.create("pulse").id == "pulse"
    assert MODELS.create("pulse(stop=first-hit)").id == "pulse(stop='first-hit')"
    with pytest.raises(SpecError, match="'reference', 'first-hit'"):
        MODELS.create("pulse(stop=early)")


def test_each_seed_is_its_own_random_start(dcgan, faces) -> None:
    lr = bicubic_downsample(faces[:1], 16).clamp(0, 1).expand(2, -1, -1, -1)
    settings = PulseSettings(steps=10)  # the reference's stopping rule; its 100 steps add nothing here
    out = invert(dcgan, lr, [1, 2], settings)
    assert (out.images[0] - out.images[1]).abs().max() > 0.05
    assert torch.equal(invert(dcgan, lr[:1], [1], settings).images, invert(dcgan, lr[:1], [1], settings).images)


def test_a_sample_that_never_reaches_eps_is_returned_and_flagged(dcgan, faces) -> None:
    lr = bicubic_downsample(faces[:1], 8).clamp(0, 1)
    out = invert(dcgan, lr, [0], PulseSettings(steps=3, eps=1e-6))
    assert out.converged.tolist() == [False] and out.steps.tolist() == [3]
    assert torch.isfinite(out.images).all() and out.l2.item() > 1e-6


def test_lr_that_does_not_fit_the_generator_is_refused(dcgan) -> None:
    with pytest.raises(ValueError, match="square LR images whose side divides 64"):
        invert(dcgan, torch.zeros(1, 3, 8, 6), [0])


def test_any_torch_generator_can_be_inverted() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(16, 3 * 16 * 16), torch.nn.Tanh(), torch.nn.Unflatten(1, (3, 16, 16)))
    generator = TorchGenerator(module, dim=16, resolution=16)
    with torch.no_grad():
        target = bicubic_downsample(generator.synthesize(torch.randn(1, 1, 16), []), 4)
    out = invert(generator, target, [0], PulseSettings(steps=50, eps=1e-4))
    assert out.images.shape == (1, 3, 16, 16) and out.l2.item() < 5e-3


# ------------------------------------------------------------------ weights
class PickledObject:
    """A class a checkpoint may name: unpickling it would import and run code."""


def test_weights_that_would_run_code_are_refused(tmp_path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"netG_state_dict": PickledObject()}, path)
    with pytest.raises(GeneratorWeightsError, match="pickled.pt: not loadable as plain tensors"):
        load_tensors(path)
    with pytest.raises(GeneratorWeightsError, match="missing.pt: no such weights file"):
        load_tensors(tmp_path / "missing.pt")


def test_a_checkpoint_of_another_network_is_refused_naming_the_file(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"netG_state_dict": {"main.0.weight": torch.zeros(3)}}, path)
    with pytest.raises(GeneratorWeightsError, match="other.pt: not a face DCGAN generator"):
        DCGANFaces(path)


# ------------------------------------------------------------------ the plug-in
def test_the_plugin_samples_k_starts_per_lr_image_and_flags_convergence(dcgan, faces) -> None:
    model = MODELS.create("pulse(scale=16, steps=5)")
    assert model.id == "pulse(scale=16,steps=5)" and model.scale == 16
    lr = bicubic_downsample(faces[:2], 16).clamp(0, 1)
    with torch.inference_mode():  # as the evaluator calls it
        out = model.sample(lr, [0, 1, 2])
    assert isinstance(out, Samples) and out.images.shape == (2, 3, 3, 64, 64) and out.converged.shape == (2, 3)
    batched = MODELS.create("pulse(scale=16, steps=5, batch=2)")
    assert batched.id == model.id  # batch size is not part of the identity: it changes no result
    assert torch.allclose(batched.sample(lr, [0, 1, 2]).images, out.images, atol=1e-4)


def test_eps_zero_runs_every_sample_all_its_steps_with_no_convergence_flag(dcgan, faces) -> None:
    """eps=0 is a goal no sample can reach, so it is no goal: plain images, like any SR model."""
    lr = bicubic_downsample(faces[:1], 16).clamp(0, 1)
    with torch.inference_mode():
        out = MODELS.create("pulse(scale=16, steps=3, eps=0)").sample(lr, [0, 1])
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, 3, 64, 64)


def test_stylegan_needs_both_of_pulses_files() -> None:
    from idard.measure.registry import SpecError

    with pytest.raises(SpecError, match="mapping=PATH and synthesis=PATH"):
        MODELS.create("pulse(generator=stylegan-ffhq, scale=32)")
    with pytest.raises(SpecError, match="dcgan-faces, stylegan-ffhq"):
        MODELS.create("pulse(generator=biggan)")


def test_stylegan_is_inverted_through_pulses_gaussian_fit_with_trainable_noise() -> None:
    """A small StyleGAN of the FFHQ structure: 18 -> 8 style vectors at 32px, the first
    noise maps optimised and kept on their sphere, batched equal to alone."""
    from idard.measure.models.pulse.stylegan import StyleGANConfig, StyleGANGenerator
    from idard.measure.models.pulse.stylegan_inversion import StyleGANInversion

    torch.manual_seed(0)
    stylegan = StyleGANGenerator(StyleGANConfig(resolution=32, latent=32, fmap_base=256, fmap_max=32))
    with torch.no_grad():  # noise strengths start at zero; as trained, they are not
        for name, p in stylegan.named_parameters():
            if name.endswith("noise.weight"):
                p.uniform_(0.1, 0.3)
    mean, std = stylegan.gaussian_fit(n=2000, batch=1000)
    generator = StyleGANInversion(stylegan, mean, std)
    seen: list[list[torch.Tensor]] = []
    synthesize = generator.synthesize
    generator.synthesize = lambda w, noise: seen.append([n.detach().clone() for n in noise]) or synthesize(w, noise)
    assert (generator.layers, generator.dim, generator.resolution) == (8, 32, 32)
    assert [s[-1] for s in generator.noise_shapes()] == [4, 4, 8, 8, 16, 16, 32, 32]
    with torch.no_grad():
        lr = bicubic_downsample(generator.synthesize(generator.latent_in(torch.randn(2, 8, 32)),
                                                     [torch.randn(2, *s) for s in generator.noise_shapes()]), 4)
    settings = PulseSettings(steps=4, eps=0.0)
    seen.clear()
    together = invert(generator, lr, [3, 4], settings)
    # the first 5 noise maps move and stay on their spheres; the rest never change
    radius = [n.flatten(1).norm(dim=1) for n in seen[0]]
    for noise in seen[1:4]:
        for i, (n, n0) in enumerate(zip(noise, seen[0])):
            if i < 5:
                torch.testing.assert_close(n.flatten(1).norm(dim=1), radius[i], atol=1e-4, rtol=1e-5)
                assert not torch.allclose(n, n0), f"trainable noise map {i} never moved"
            else:
                assert torch.equal(n, n0), f"fixed noise map {i} changed"
    alone = torch.cat([invert(generator, lr[i : i + 1], [s], settings).images for i, s in enumerate([3, 4])])
    assert torch.allclose(together.images, alone, atol=1e-4) and together.steps.tolist() == [4, 4]
