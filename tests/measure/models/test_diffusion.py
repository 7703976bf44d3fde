"""Diffusion decoders: the residual-shifting chain, the per-seed sampler contract, the
embedded model, and ResShift's published layout and loading."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
import torch

from idard.measure.models import MODELS
from idard.measure.models.base import SRModel
from idard.measure.models.diffusion import (
    RESSHIFT_V1,
    RESSHIFT_V3,
    ResShiftSchedule,
    draw_noise,
    sample_residual_shift,
)
from idard.measure.models.diffusion.checkpoint import DiffusionWeightsError, load_tiny, save_tiny
from idard.measure.models.diffusion.published import load_published
from idard.measure.models.diffusion.swin_unet import REALSR_X4, SwinUNet, SwinUNetConfig, _reference_mask
from idard.measure.models.diffusion.tiny import TinyDenoiser, TinyDenoiserConfig
from idard.measure.models.diffusion.training import TINY_SCHEDULE
from idard.measure.models.diffusion.vqgan import VQ_F4, VQGAN, VQGANConfig
from idard.measure.registry import SpecError

FIXTURE = Path(__file__).parent / "fixtures" / "resshift_official_keys.json"
AUTHORS_OUTPUTS = Path(__file__).parent / "fixtures" / "resshift_authors_outputs.json"
SMALL_UNET = SwinUNetConfig(image_size=16, model_channels=32, attention_resolutions=(16, 8), channel_mult=(1, 2),
                            num_res_blocks=(1, 1), num_head_channels=16, swin_embed_dim=32, window_size=4, lq_size=16)
SMALL_VQ = VQGANConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, n_embed=64)


def _random_tiny(seed: int = 0) -> TinyDenoiser:
    """An untrained embedded denoiser whose zero-initialised layers are made non-zero."""
    torch.manual_seed(seed)
    net = TinyDenoiser(TinyDenoiserConfig(channels=32, blocks=2, embed=16))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def fill_reference_weights(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter, in name order, from one seeded generator: matrices and kernels
    N(0, 1/fan_in), 1-D weights (norm scales) 1 + N(0, 0.2^2), biases N(0, 0.1^2). Nothing
    is left at a constant, so every layer's output varies. The authors' modules (same
    parameter names) get the same values in fixtures/make_resshift_authors_outputs.py."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim >= 2:
                p.copy_(noise / math.sqrt(p[0].numel()))
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(1.0 + 0.2 * noise)
    return module.eval()


def authors_case_inputs() -> dict[str, torch.Tensor]:
    """The inputs of the authors'-outputs fixture: an image for encode, a latent for decode
    (spread like the codebook), an LR image for the chain (a multiple of SMALL_UNET's 16)."""
    gen = torch.Generator().manual_seed(20)
    return {"image": torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1,
            "latent": torch.randn(1, 3, 4, 4, generator=gen) / math.sqrt(3),
            "lr": torch.rand(1, 3, 16, 16, generator=gen)}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resshift") / "tiny.safetensors"
    save_tiny(_random_tiny(), TINY_SCHEDULE, path)
    return path


# -- the chain's arithmetic -------------------------------------------------------------

def test_eta_schedule_runs_geometrically_in_t_to_the_power_from_min_noise_to_etas_end() -> None:
    s = RESSHIFT_V3
    start = min(0.2 / 2.0, 0.2)
    expected = [start * math.exp(math.log(0.99 / start) * (t / 3) ** 0.3) for t in range(4)]
    assert s.sqrt_etas.tolist() == pytest.approx(expected, rel=1e-12)
    assert s.etas[-1] == pytest.approx(0.99 ** 2) and s.posterior_std[0] == 0.0
    assert len(RESSHIFT_V1.sqrt_etas) == 15 and RESSHIFT_V1.sqrt_etas[0] == pytest.approx(0.02)


def test_posterior_step_is_the_gaussian_between_x_t_and_x0() -> None:
    s = RESSHIFT_V3
    x_t, x0, noise = torch.full((1, 1, 1, 1), 1.0), torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    t = 2
    mean = s.etas[t - 1] / s.etas[t]
    std = math.sqrt(2.0**2 * s.etas[t - 1] / s.etas[t] * (s.etas[t] - s.etas[t - 1]))
    assert float(s.step(x_t, x0, t, noise)) == pytest.approx(mean + std, rel=1e-6)
    assert torch.equal(s.step(x_t, x0, 0, noise), x0)  # the last step returns the x0 prediction


def test_a_schedule_outside_its_domain_is_refused() -> None:
    with pytest.raises(ValueError):
        ResShiftSchedule(steps=1)
    with pytest.raises(ValueError):
        ResShiftSchedule(kappa=-1.0)


# -- the sampler contract -----------------------------------------------------------------

class _CountingDenoiser(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.rows = inner, []

    def forward(self, x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return self.inner(x, t, lq)


def test_sample_k_is_the_same_alone_or_in_any_batch_and_calls_are_bounded_by_max_batch() -> None:
    net = _CountingDenoiser(_random_tiny())
    lr = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    seeds = [11, 4, 7]
    together = sample_residual_shift(net, TINY_SCHEDULE, lr, seeds, 4, max_batch=4)
    assert together.shape == (2, 3, 3, 24, 20)
    assert max(net.rows) <= 4 and sum(net.rows) == 6 * TINY_SCHEDULE.steps
    for b in range(2):
        for k, seed in enumerate(seeds):
            alone = sample_residual_shift(net, TINY_SCHEDULE, lr[b : b + 1], [seed], 4)
            torch.testing.assert_close(together[b, k], alone[0, 0], atol=1e-5, rtol=0)
    again = sample_residual_shift(net, TINY_SCHEDULE, lr, seeds, 4, max_batch=64)
    torch.testing.assert_close(together, again, atol=1e-5, rtol=0)
    assert (together[0, 0] - together[0, 1]).abs().mean() > 1e-3  # seeds give different samples


def test_all_noise_of_a_sample_comes_from_its_seed_in_chain_order() -> None:
    prior, steps = draw_noise(5, (3, 4, 4), 4)
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(prior, torch.randn(3, 4, 4, generator=gen))
    assert torch.equal(steps[0], torch.randn(3, 4, 4, generator=gen))  # t = T-1 first
    torch.manual_seed(123)  # the global RNG plays no part
    a = sample_residual_shift(_random_tiny(), TINY_SCHEDULE, torch.full((1, 3, 4, 4), 0.5), [1], 4)
    torch.manual_seed(999)
    b = sample_residual_shift(_random_tiny(), TINY_SCHEDULE, torch.full((1, 3, 4, 4), 0.5), [1], 4)
    assert torch.equal(a, b)


def test_lr_sides_are_padded_to_the_denoisers_multiple_and_the_output_cropped() -> None:
    calls: list[tuple[int, ...]] = []

    def denoiser(x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(lq.shape[-2:]))
        return torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic")

    out = sample_residual_shift(denoiser, TINY_SCHEDULE, torch.rand(1, 3, 5, 7), [0], 4, multiple=8)
    assert calls[0] == (8, 8) and out.shape == (1, 1, 3, 20, 28)


# -- the embedded model ------------------------------------------------------------------

def test_embedded_weights_round_trip_with_their_schedule(tiny_weights: Path) -> None:
    net, schedule = load_tiny(tiny_weights)
    assert schedule == TINY_SCHEDULE and net.config == TinyDenoiserConfig(channels=32, blocks=2, embed=16)
    ref = _random_tiny()
    for (k, v), (k2, v2) in zip(net.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_embedded_plugin_fulfils_the_model_contract(tiny_weights: Path) -> None:
    model = MODELS.create(f"resshift-tiny-4x(weights='{tiny_weights}', max_batch=2)")
    assert isinstance(model, SRModel) and model.scale == 4
    assert "max_batch" not in model.id and len(model.weights_hash) == 64
    lr = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    sr = model.sample(lr, [6, 1, 13])
    assert sr.shape == (2, 3, 3, 32, 32) and torch.isfinite(sr).all()
    torch.testing.assert_close(sr[1, 2], model.sample(lr[1:], [13])[0, 0], atol=1e-5, rtol=0)
    clone = pickle.loads(pickle.dumps(model))  # travels to Ray workers without its network
    assert clone.id == model.id and clone._runtime.loaded is None
    with pytest.raises(ValueError, match="no temperature"):
        model.sample(lr, [0], temperature=0.5)


def test_the_committed_embedded_model_is_stochastic_and_finite() -> None:
    model = MODELS.create("resshift-tiny-4x")
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    sr = model.sample(lr, [0, 1, 2, 3])
    assert torch.isfinite(sr).all()
    assert float(sr[0].std(dim=0).mean()) > 1e-3


def test_a_file_that_is_not_the_embedded_model_is_named_in_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(bad))
    with pytest.raises(DiffusionWeightsError, match="bad.safetensors"):
        load_tiny(bad)


# -- ResShift's published checkpoints ----------------------------------------------------

def test_state_dict_keys_and_shapes_equal_the_authors_networks() -> None:
    """Table made outside the repository from the authors' UNetModelSwin and VQModelTorch
    (all three real-SR 4x configs and bicsr share one denoiser/autoencoder layout)."""
    official = json.loads(FIXTURE.read_text())
    assert official["configs_share_keys"]
    with torch.device("meta"):
        unet, vq = SwinUNet(REALSR_X4), VQGAN(VQ_F4)
    assert {k: list(v.shape) for k, v in unet.state_dict().items()} == official["denoiser"]
    assert {k: list(v.shape) for k, v in vq.state_dict().items()} == official["autoencoder"]
    v3, v1 = official["diffusion"]["v3"], official["diffusion"]["v1v2"]
    assert (v3["steps"], v3["min_noise_level"], v3["kappa"]) == (RESSHIFT_V3.steps, RESSHIFT_V3.min_noise_level, RESSHIFT_V3.kappa)
    assert (v1["steps"], v1["min_noise_level"], v1["kappa"]) == (RESSHIFT_V1.steps, RESSHIFT_V1.min_noise_level, RESSHIFT_V1.kappa)


def test_the_reference_shift_mask_separates_only_the_last_window_rows_tokens() -> None:
    mask = _reference_mask(16, 16, 8, 4)
    assert mask.shape == (4, 64, 64)
    assert not mask[:2].any()  # the first window row: one region
    assert mask[2:].ne(0).any()
    assert not _reference_mask(16, 16, 8, 0).any()


@pytest.fixture(scope="module")
def published_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small Swin-UNet and VQGAN saved as the authors save them (.pth, prefixes, wrapper)."""
    folder = tmp_path_factory.mktemp("published")
    torch.manual_seed(0)
    unet, vq = SwinUNet(SMALL_UNET), VQGAN(SMALL_VQ)
    torch.save({"state_dict": {f"module.{k}": v for k, v in unet.state_dict().items()}}, folder / "den_s4_.pth")
    torch.save(vq.state_dict(), folder / "vq.pth")
    return folder / "den_s4_.pth", folder / "vq.pth"


def test_published_files_load_by_their_keys_and_sample_reproducibly(published_files: tuple[Path, Path]) -> None:
    unet, vq = load_published(*published_files, denoiser_config=SMALL_UNET, autoencoder_config=SMALL_VQ)
    lr = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    sr = sample_residual_shift(unet, RESSHIFT_V3, lr, [3, 4], 4, space=vq, multiple=unet.multiple, max_batch=1)
    assert sr.shape == (1, 2, 3, 40, 48) and torch.isfinite(sr).all()
    together = sample_residual_shift(unet, RESSHIFT_V3, lr, [3, 4], 4, space=vq, multiple=unet.multiple)
    torch.testing.assert_close(sr, together, atol=1e-4, rtol=0)


def test_a_wrong_checkpoint_names_the_file_and_the_mismatching_keys(published_files: tuple[Path, Path]) -> None:
    den, vq = published_files
    with pytest.raises(DiffusionWeightsError, match=r"vq\.pth.*missing keys"):
        load_published(den, vq, denoiser_config=SMALL_UNET)  # the full-size VQGAN is expected
    with pytest.raises(DiffusionWeightsError, match="weights_only"):
        bad = den.with_name("bad.pth")
        bad.write_bytes(b"not a pickle")
        load_published(bad, vq, denoiser_config=SMALL_UNET, autoencoder_config=SMALL_VQ)


def test_resshift_ids_carry_the_chain_and_refuse_a_step_count_the_file_name_contradicts() -> None:
    v3 = MODELS.create("resshift(weights=resshift_realsrx4_s4_v3.pth)")
    v1 = MODELS.create("resshift(weights=resshift_realsrx4_s15_v1.pth, steps=15, min_noise_level=0.04)")
    assert v3.id == "resshift(weights='resshift_realsrx4_s4_v3.pth')"
    assert "steps=15" in v1.id and "min_noise_level=0.04" in v1.id
    with pytest.raises(SpecError, match="15-step"):
        MODELS.create("resshift(weights=resshift_realsrx4_s15_v2.pth)")
    with pytest.raises(DiffusionWeightsError, match="no such weights file"):
        v3.weights_hash


def test_vqgan_attention_in_query_chunks_equals_one_call_and_a_decode_is_unchanged(monkeypatch) -> None:
    """The VQGAN's middle attention runs in query chunks (a 256x256 latent in one call asked
    for 16 GiB per sample): chunks of any size give the one-call result, which is softmax
    attention with scale 1/sqrt(channels)."""
    from torch.nn import functional as F

    from idard.measure.models.diffusion import vqgan

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 100, 16, generator=g) for _ in range(3))  # (B, positions, channels)
    whole = vqgan.chunked_attention(q, k.transpose(1, 2), v.transpose(1, 2), 100)  # (B, channels, positions)
    torch.testing.assert_close(whole.transpose(1, 2), F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=1e-5)
    for chunk in (1, 7, 64, 1000):
        got = vqgan.chunked_attention(q, k.transpose(1, 2), v.transpose(1, 2), chunk)
        torch.testing.assert_close(got, whole, atol=1e-6, rtol=0, msg=f"chunk {chunk}")
    model = fill_reference_weights(VQGAN(VQGANConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, n_embed=16)), 0)
    z = torch.randn(1, 3, 8, 8, generator=g)
    with torch.inference_mode():
        once = model.decode(z)
        monkeypatch.setattr(vqgan, "QUERY_CHUNK", 5)
        chunked = model.decode(z)
    torch.testing.assert_close(chunked, once, atol=1e-5, rtol=0)


# -- against the authors' own modules ------------------------------------------------------

@pytest.fixture(scope="module")
def authors_outputs() -> dict:
    """What the authors' VQModelTorch, UNetModelSwin and p_sample_loop computed on the same
    weights and inputs (fixtures/make_resshift_authors_outputs.py, run on their source)."""
    return json.loads(AUTHORS_OUTPUTS.read_text())


def _small_vq() -> VQGAN:
    return fill_reference_weights(VQGAN(SMALL_VQ), 1)


def test_vqgan_encode_and_decode_give_the_authors_values(authors_outputs: dict) -> None:
    vq, x = _small_vq(), authors_case_inputs()
    with torch.no_grad():
        encoded, decoded = vq.encode(x["image"]), vq.decode(x["latent"])
    expected_encode = torch.tensor(authors_outputs["encode"]).reshape(encoded.shape)
    expected_decode = torch.tensor(authors_outputs["decode"]).reshape(decoded.shape)
    assert float(expected_decode.std()) > 0.1  # outputs that vary, not a flat image
    torch.testing.assert_close(encoded, expected_encode, atol=1e-5, rtol=0)
    torch.testing.assert_close(decoded, expected_decode, atol=1e-5, rtol=0)


def test_a_decode_depends_on_the_latent_only_through_its_nearest_codes() -> None:
    vq = _small_vq()
    latent = authors_case_inputs()["latent"]
    codes = vq.quantize.embedding.weight
    nearest = codes[torch.cdist(latent.permute(0, 2, 3, 1).reshape(-1, 3), codes).argmin(1)]
    snapped = nearest.reshape(1, 4, 4, 3).permute(0, 3, 1, 2)
    moved = latent + 0.2 * (snapped - latent)  # a fifth of the way to each code: same nearest codes
    with torch.no_grad():
        torch.testing.assert_close(vq.decode(moved), vq.decode(latent), atol=1e-5, rtol=0)
        torch.testing.assert_close(vq.decode(snapped), vq.decode(latent), atol=1e-5, rtol=0)


def test_a_resshift_chain_gives_the_authors_sample_for_the_same_seed(authors_outputs: dict) -> None:
    """The whole chain (encode, 4 denoiser steps, noise, decode) against the authors'
    ``p_sample_loop`` with the global RNG seeded as idard seeds its per-sample generator."""
    unet = fill_reference_weights(SwinUNet(SMALL_UNET), 2)
    lr = authors_case_inputs()["lr"]
    sr = sample_residual_shift(unet, RESSHIFT_V3, lr, [authors_outputs["chain_seed"]], 4, space=_small_vq(),
                               multiple=unet.multiple)[:, 0]
    assert list(sr.shape) == authors_outputs["chain_shape"]
    expected = torch.tensor(authors_outputs["chain_every_4th_pixel"]).reshape(sr[..., ::4, ::4].shape)
    assert float(expected.std()) > 0.05
    torch.testing.assert_close(sr[..., ::4, ::4], expected, atol=1e-4, rtol=0)


def test_resshift_precision_is_in_the_id_and_runs_the_networks_in_that_type(published_files) -> None:
    """float32 by default (the authors' inference autocasts to fp16); bfloat16 autocast is
    offered as a parameter, so its records never mix with float32 ones."""
    default = MODELS.create("resshift(weights=resshift_realsrx4_s4_v3.pth)")
    half = MODELS.create("resshift(weights=resshift_realsrx4_s4_v3.pth, precision=bfloat16)")
    assert "precision" not in default.id and "precision='bfloat16'" in half.id
    with pytest.raises(SpecError, match="precision"):
        MODELS.create("resshift(weights=resshift_realsrx4_s4_v3.pth, precision=float8)")
    from idard.measure.models.diffusion.model import autocast

    unet, vq = load_published(*published_files, denoiser_config=SMALL_UNET, autoencoder_config=SMALL_VQ)
    seen: list[torch.dtype] = []
    unet.out.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    runs = {}
    for precision in ("float32", "bfloat16"):
        with autocast(lr.device, precision):
            runs[precision] = sample_residual_shift(unet, RESSHIFT_V3, lr, [5], 4, space=vq, multiple=unet.multiple)
    assert seen == [torch.float32] * 4 + [torch.bfloat16] * 4
    assert runs["bfloat16"].dtype == torch.float32 and torch.isfinite(runs["bfloat16"]).all()
    assert 0 < float((runs["bfloat16"] - runs["float32"]).abs().mean()) < 0.05
