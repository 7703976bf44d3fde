"""StyleGAN (v1) as PULSE ships it: file layout, safe loading, forward pass, latent prior.

The official ``mapping.pt`` / ``synthesis.pt`` are not available here, so their layout is
written down below from PULSE's ``stylegan.py`` (github.com/adamian98/pulse): the rule the
reference follows per resolution block, plus literal spot checks of keys, shapes and
totals that were read off the reference modules themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from idard.measure.models.pulse.stylegan import (
    FUSED_UPSAMPLE_MIN_RESOLUTION,
    StyleGANConfig,
    StyleGANGenerator,
    StyleGANMapping,
    StyleGANSynthesis,
)

# Small networks with the full structure: 32x32 (8 layers, repeat-then-conv up-sampling
# only) and 128x128 (12 layers; its last block uses the fused transposed conv).
SMALL = StyleGANConfig(resolution=32, latent=32, fmap_base=128, fmap_max=32)
FUSED = StyleGANConfig(resolution=128, latent=16, fmap_base=128, fmap_max=8)

Shapes = dict[str, tuple[int, ...]]


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """These networks are tiny: on a loaded 2-core machine, intra-op threading makes each
    forward pass ~100x slower than one thread, so run this module single-threaded."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- the official FFHQ 1024 layout -------------------------------------------------------

# Feature maps per block in the FFHQ model: min(8192 / 2**(log2(r) - 1), 512).
FFHQ_WIDTHS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def _epilogue(prefix: str, channels: int) -> Shapes:
    """A styled layer: per-channel noise weight and the affine map w -> (scale, shift)."""
    return {
        f"{prefix}.noise.weight": (channels,),
        f"{prefix}.style_mod.lin.weight": (2 * channels, 512),
        f"{prefix}.style_mod.lin.bias": (2 * channels,),
    }


def official_mapping_shapes() -> Shapes:
    shapes: Shapes = {}
    for i in range(8):
        shapes[f"dense{i}.weight"] = (512, 512)
        shapes[f"dense{i}.bias"] = (512,)
    return shapes


def official_synthesis_shapes() -> Shapes:
    shapes: Shapes = {"torgb.weight": (3, 16, 1, 1), "torgb.bias": (3,)}
    c = FFHQ_WIDTHS[4]
    shapes["blocks.4x4.const"] = (1, c, 4, 4)
    shapes["blocks.4x4.bias"] = (c,)
    shapes.update(_epilogue("blocks.4x4.epi1", c))
    shapes["blocks.4x4.conv.weight"] = (c, c, 3, 3)
    shapes["blocks.4x4.conv.bias"] = (c,)
    shapes.update(_epilogue("blocks.4x4.epi2", c))
    previous = c
    for r in (8, 16, 32, 64, 128, 256, 512, 1024):
        c, p = FFHQ_WIDTHS[r], f"blocks.{r}x{r}"
        shapes[f"{p}.conv0_up.weight"] = (c, previous, 3, 3)
        shapes[f"{p}.conv0_up.bias"] = (c,)
        shapes[f"{p}.conv0_up.intermediate.kernel"] = (1, 1, 3, 3)  # the blur, a buffer
        shapes.update(_epilogue(f"{p}.epi1", c))
        shapes[f"{p}.conv1.weight"] = (c, c, 3, 3)
        shapes[f"{p}.conv1.bias"] = (c,)
        shapes.update(_epilogue(f"{p}.epi2", c))
        previous = c
    return shapes


def _shapes(module: torch.nn.Module) -> Shapes:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_mapping_state_dict_is_pulses_mapping_pt() -> None:
    with torch.device("meta"):
        mapping = StyleGANMapping()
    shapes = _shapes(mapping)
    assert shapes == official_mapping_shapes()
    # Spot checks read off the reference G_mapping: 8 dense layers, 16 tensors.
    assert list(shapes)[:2] == ["dense0.weight", "dense0.bias"]
    assert shapes["dense7.weight"] == (512, 512)
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 2_101_248


def test_synthesis_state_dict_is_pulses_synthesis_pt() -> None:
    with torch.device("meta"):
        synthesis = StyleGANSynthesis()
    shapes = _shapes(synthesis)
    expected = official_synthesis_shapes()
    assert sorted(set(shapes) - set(expected)) == [] and sorted(set(expected) - set(shapes)) == []
    assert shapes == expected
    # Literal spot checks read off the reference G_synthesis() (100 tensors, including the
    # eight blur kernels, 24,110,843 values); torgb comes first in the reference files.
    assert len(shapes) == 100
    assert list(shapes)[:4] == ["torgb.weight", "torgb.bias", "blocks.4x4.const", "blocks.4x4.bias"]
    assert shapes["blocks.4x4.epi1.style_mod.lin.weight"] == (1024, 512)
    assert shapes["blocks.8x8.conv0_up.intermediate.kernel"] == (1, 1, 3, 3)
    assert shapes["blocks.64x64.conv0_up.weight"] == (256, 512, 3, 3)
    assert shapes["blocks.1024x1024.epi2.style_mod.lin.weight"] == (32, 512)
    assert shapes["torgb.weight"] == (3, 16, 1, 1)
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 24_110_843


def test_ffhq_config_has_18_layers_and_pulses_noise_layout() -> None:
    with torch.device("meta"):
        generator = StyleGANGenerator()
    assert generator.config == StyleGANConfig()
    assert generator.config.num_layers == 18
    # PULSE builds noise i with shape (batch, 1, 2**(i//2 + 2), 2**(i//2 + 2)).
    sides = [4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024]
    assert generator.noise_shapes() == [(1, s, s) for s in sides]
    assert [generator.config.channels(r) for r in FFHQ_WIDTHS] == list(FFHQ_WIDTHS.values())


def test_blur_buffer_holds_the_binomial_filter() -> None:
    kernel = StyleGANSynthesis(SMALL).state_dict()["blocks.8x8.conv0_up.intermediate.kernel"]
    taps = torch.tensor([1.0, 2.0, 1.0])
    assert torch.equal(kernel, (torch.outer(taps, taps) / 16)[None, None])


# -- helpers -----------------------------------------------------------------------------


def _trained_like(config: StyleGANConfig, seed: int = 0) -> StyleGANGenerator:
    """A random generator whose zero-initialised weights (noise, biases) are not zero.

    StyleGAN starts noise weights at zero, which would hide the noise inputs entirely.
    """
    torch.manual_seed(seed)
    generator = StyleGANGenerator(config)
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if not p.any():
                p.copy_(torch.randn_like(p) * (10.0 if name.startswith("mapping.") else 0.3))
    return generator.eval()


def _inputs(
    generator: StyleGANGenerator, batch: int = 2, seed: int = 1
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    config = generator.config
    w = torch.randn(batch, config.num_layers, config.latent, generator=gen)
    noise = [torch.randn(batch, *shape, generator=gen) for shape in generator.noise_shapes()]
    return w, noise


def _save(generator: StyleGANGenerator, directory: Path) -> tuple[Path, Path]:
    mapping, synthesis = directory / "mapping.pt", directory / "synthesis.pt"
    torch.save(generator.mapping.state_dict(), mapping)
    torch.save(generator.synthesis.state_dict(), synthesis)
    return mapping, synthesis


# -- from_files --------------------------------------------------------------------------


@pytest.mark.parametrize("config", [SMALL, FUSED], ids=["32", "128"])
def test_from_files_round_trip_gives_identical_outputs(
    config: StyleGANConfig, tmp_path: Path
) -> None:
    original = _trained_like(config)
    mapping_file, synthesis_file = _save(original, tmp_path)

    loaded = StyleGANGenerator.from_files(mapping_file, synthesis_file)

    assert loaded.config == config  # architecture inferred from the files
    for a, b in zip(original.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert a[0] == b[0] and torch.equal(a[1], b[1])
    w, noise = _inputs(original)
    with torch.no_grad():
        assert torch.equal(loaded.synthesize(w, noise), original.synthesize(w, noise))
        z = torch.randn(3, config.latent)
        assert torch.equal(loaded.mapping(z), original.mapping(z))


def test_from_files_accepts_an_explicit_config_and_refuses_a_different_one(tmp_path: Path) -> None:
    mapping_file, synthesis_file = _save(_trained_like(SMALL), tmp_path)
    assert StyleGANGenerator.from_files(mapping_file, synthesis_file, config=SMALL).config == SMALL
    with pytest.raises(ValueError, match="mapping.pt"):
        StyleGANGenerator.from_files(
            mapping_file, synthesis_file, config=dataclasses.replace(SMALL, latent=64)
        )


def _corrupt(tmp_path: Path, which: str, edit: str) -> tuple[Path, Path]:
    generator = _trained_like(SMALL)
    mapping_sd = generator.mapping.state_dict()
    synthesis_sd = generator.synthesis.state_dict()
    if edit == "unexpected":
        (mapping_sd if which == "mapping" else synthesis_sd)["extra.weight"] = torch.zeros(3)
    elif edit == "shape":
        if which == "mapping":
            mapping_sd["dense3.weight"] = torch.zeros(32, 31)
        else:
            synthesis_sd["blocks.16x16.conv1.weight"] = torch.zeros(16, 16, 1, 1)
    elif edit == "missing":
        if which == "mapping":
            del mapping_sd["dense5.bias"]
        else:
            del synthesis_sd["blocks.8x8.conv0_up.intermediate.kernel"]
    mapping_file, synthesis_file = tmp_path / "my_mapping.pt", tmp_path / "my_synthesis.pt"
    torch.save(mapping_sd, mapping_file)
    torch.save(synthesis_sd, synthesis_file)
    return mapping_file, synthesis_file


@pytest.mark.parametrize("which", ["mapping", "synthesis"])
@pytest.mark.parametrize("edit", ["unexpected", "shape", "missing"])
def test_mismatched_file_raises_value_error_naming_the_file_and_key(
    which: str, edit: str, tmp_path: Path
) -> None:
    mapping_file, synthesis_file = _corrupt(tmp_path, which, edit)
    key = {
        ("mapping", "unexpected"): "extra.weight",
        ("synthesis", "unexpected"): "extra.weight",
        ("mapping", "shape"): "dense3.weight",
        ("synthesis", "shape"): "blocks.16x16.conv1.weight",
        ("mapping", "missing"): "dense5.bias",
        ("synthesis", "missing"): "blocks.8x8.conv0_up.intermediate.kernel",
    }[which, edit]
    with pytest.raises(ValueError) as info:
        StyleGANGenerator.from_files(mapping_file, synthesis_file)
    message = str(info.value)
    bad, good = mapping_file, synthesis_file
    if which == "synthesis":
        bad, good = good, bad
    assert str(bad) in message and str(good) not in message
    assert key in message


_UNPICKLED: list[str] = []


def _record_unpickling() -> dict[str, torch.Tensor]:
    _UNPICKLED.append("code ran")
    return {}


class _Payload:
    """Pickles as a call to `_record_unpickling`: full unpickling would run code."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_record_unpickling, ())


@pytest.mark.parametrize("which", ["mapping", "synthesis"])
def test_pickled_objects_are_refused_without_running_code(which: str, tmp_path: Path) -> None:
    mapping_file, synthesis_file = _save(_trained_like(SMALL), tmp_path)
    target = mapping_file if which == "mapping" else synthesis_file
    torch.save(_Payload(), target)
    with pytest.raises(ValueError, match="plain state dict") as info:
        StyleGANGenerator.from_files(mapping_file, synthesis_file)
    assert str(target) in str(info.value)
    assert _UNPICKLED == []


@pytest.mark.parametrize(
    "content",
    [torch.zeros(3), {"dense0.weight": torch.zeros(2), "note": "hi"}],
    ids=["tensor", "str-value"],
)
def test_non_state_dict_files_are_refused(content: object, tmp_path: Path) -> None:
    mapping_file, synthesis_file = _save(_trained_like(SMALL), tmp_path)
    torch.save(content, mapping_file)  # loads under weights_only, but is not {str: Tensor}
    with pytest.raises(ValueError, match="plain state dict") as info:
        StyleGANGenerator.from_files(mapping_file, synthesis_file)
    assert str(mapping_file) in str(info.value)


def test_unreadable_files_are_refused_but_missing_files_raise_os_errors(tmp_path: Path) -> None:
    mapping_file, synthesis_file = _save(_trained_like(SMALL), tmp_path)
    synthesis_file.write_text("not a torch file")
    with pytest.raises(ValueError, match="plain state dict") as info:
        StyleGANGenerator.from_files(mapping_file, synthesis_file)
    assert str(synthesis_file) in str(info.value)
    with pytest.raises(FileNotFoundError):
        StyleGANGenerator.from_files(tmp_path / "absent.pt", synthesis_file)


# -- forward pass ------------------------------------------------------------------------


@pytest.mark.parametrize("config", [SMALL, FUSED], ids=["32", "128"])
def test_synthesis_forward_shapes_finite_and_deterministic(config: StyleGANConfig) -> None:
    generator = _trained_like(config)
    w, noise = _inputs(generator, batch=2)
    with torch.no_grad():
        image = generator.synthesize(w, noise)
        again = generator.synthesize(w, noise)
    r = config.resolution
    assert image.shape == (2, 3, r, r)
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    assert torch.equal(image, again)
    # Samples are independent (instance norm is per sample): sample 1 alone is the same.
    with torch.no_grad():
        alone = generator.synthesize(w[1:], [n[1:] for n in noise])
    torch.testing.assert_close(alone, image[1:], rtol=1e-4, atol=1e-4)


def test_noise_and_each_layers_w_change_the_output() -> None:
    generator = _trained_like(SMALL)
    w, noise = _inputs(generator, batch=1)
    with torch.no_grad():
        base = generator.synthesize(w, noise)
        for i in (0, len(noise) - 1):
            other = list(noise)
            other[i] = torch.randn_like(noise[i])
            assert not torch.allclose(generator.synthesize(w, other), base)
        for i in (0, SMALL.num_layers - 1):
            w2 = w.clone()
            w2[:, i] += 1.0
            assert not torch.allclose(generator.synthesize(w2, noise), base)


def test_untrained_generator_ignores_noise_like_stylegan_at_init() -> None:
    torch.manual_seed(0)
    generator = StyleGANGenerator(SMALL)  # noise weights start at zero, as in StyleGAN
    w, noise = _inputs(generator, batch=1)
    with torch.no_grad():
        zeros = [torch.zeros_like(n) for n in noise]
        assert torch.equal(generator.synthesize(w, noise), generator.synthesize(w, zeros))


@pytest.mark.parametrize("config", [SMALL, FUSED], ids=["32", "128"])
def test_upsampling_conv_orientation_switches_at_128(config: StyleGANConfig) -> None:
    """Below output 128 the up-sampling conv is 2x pixel repetition + 3x3 conv; from 128 up
    it runs as the official code's transposed conv, which equals repetition + conv with the
    kernel rotated 180 degrees. The FFHQ weights are only right in these orientations."""
    import torch.nn.functional as F

    assert FUSED_UPSAMPLE_MIN_RESOLUTION == 128
    r = config.resolution
    up = _trained_like(config).synthesis.blocks[f"{r}x{r}"].conv0_up
    x = torch.randn(1, up.weight.shape[1], r // 2, r // 2)
    weight = up.weight * up.weight_scale
    if r >= 128:
        weight = weight.flip(-2, -1)
    repeated = x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    manual = F.conv2d(repeated, weight, padding=1)
    manual = up.intermediate(manual) + up.bias.view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(up(x), manual, rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_rejected() -> None:
    generator = StyleGANGenerator(SMALL)
    w, noise = _inputs(generator, batch=1)
    with pytest.raises(ValueError, match="w must have shape"):
        generator.synthesize(w[:, :-1], noise)
    with pytest.raises(ValueError, match="noise tensors"):
        generator.synthesize(w, noise[:-1])


def test_forward_broadcasts_mapped_w_to_every_layer() -> None:
    generator = _trained_like(SMALL)
    z = torch.randn(2, SMALL.latent)
    _, noise = _inputs(generator, batch=2)
    with torch.no_grad():
        w = generator.mapping(z).unsqueeze(1).expand(-1, SMALL.num_layers, -1)
        assert torch.equal(generator(z, noise), generator.synthesize(w, noise))


def test_mapping_pixel_normalises_z() -> None:
    generator = _trained_like(SMALL)
    z = torch.randn(4, SMALL.latent)
    with torch.no_grad():
        torch.testing.assert_close(generator.mapping(7.0 * z), generator.mapping(z))


# -- PULSE's latent prior ----------------------------------------------------------------


def test_gaussian_fit_is_deterministic_and_matches_its_definition() -> None:
    generator = _trained_like(SMALL)
    mean, std = generator.gaussian_fit(n=300, seed=5, batch=64)
    assert mean.shape == std.shape == (SMALL.latent,)
    assert mean.dtype == std.dtype == torch.float32

    again = generator.gaussian_fit(n=300, seed=5, batch=64)
    assert torch.equal(again[0], mean) and torch.equal(again[1], std)
    other = generator.gaussian_fit(n=300, seed=6, batch=64)
    assert not torch.equal(other[0], mean)

    # Definition: z ~ N(0, I) from torch.Generator().manual_seed(seed), mapped, passed
    # through LeakyReLU(5) (which undoes the final LeakyReLU(0.2)); mean and unbiased std.
    z = torch.randn(300, SMALL.latent, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = torch.nn.LeakyReLU(negative_slope=5)(generator.mapping(z))
    torch.testing.assert_close(mean, y.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std, y.std(0), rtol=1e-5, atol=1e-5)
    # ... independent of the batch size the draws are made in.
    one_batch = generator.gaussian_fit(n=300, seed=5, batch=300)
    torch.testing.assert_close(one_batch[0], mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one_batch[1], std, rtol=1e-5, atol=1e-6)
