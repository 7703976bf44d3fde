"""Downscalers: bit-exact classic filters, the paper's synthetic ladders, external LR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from idard.measure.downscalers import DOWNSCALERS
from idard.measure.images import ImageError, RGBImage, load_image, save_image
from idard.measure.registry import SpecError

CLASSIC = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _photo(h: int = 64, w: int = 48, seed: int = 0, name: str = "photo") -> RGBImage:
    """A smooth random image on the 8-bit grid (a stand-in for a photograph)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    smooth = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC))
    return RGBImage(name, smooth.astype(np.float32) / 255)


@pytest.mark.parametrize("method", sorted(CLASSIC))  # every filter, not those hypothesis happens to draw
@settings(max_examples=8, deadline=None)
@given(
    scale=st.integers(2, 5),
    lr_h=st.integers(1, 9),
    lr_w=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_classic_downscalers_are_bit_exact_to_pil(method: str, scale: int, lr_h: int, lr_w: int, seed: int) -> None:
    array = np.random.default_rng(seed).integers(0, 256, size=(lr_h * scale, lr_w * scale, 3), dtype=np.uint8)
    image = RGBImage("random", array.astype(np.float32) / 255)
    ours = DOWNSCALERS.create(method)(image, scale)
    pil = np.asarray(Image.fromarray(array).resize((lr_w, lr_h), CLASSIC[method]))
    np.testing.assert_array_equal(np.round(ours * 255).astype(np.uint8), pil)


@pytest.mark.parametrize("method", ["BICUBIC", "BILINEAR", "NEAREST"])
def test_reproduces_the_papers_reference_lr_images(shared_reference: Path, method: str) -> None:
    root = shared_reference / "ida-rd-testing-images"
    for lr_path in sorted((root / "lr_image").glob(f"{method}_*/*.png")):
        size = int(lr_path.parent.name.split("_")[1])
        hr = load_image(root / "ori_image" / lr_path.name)
        ours = DOWNSCALERS.create(method.lower())(hr, hr.width // size)
        np.testing.assert_array_equal(ours, load_image(lr_path).pixels, err_msg=str(lr_path))


def test_non_8bit_images_are_resampled_in_float_not_truncated() -> None:
    image = RGBImage("deep", (np.arange(8 * 8 * 3).reshape(8, 8, 3) / 1000.0 + 1e-5).astype(np.float32), bit_depth=16)
    lr = DOWNSCALERS.create("box")(image, 2)
    expected = image.pixels.reshape(4, 2, 4, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(lr, expected, atol=1e-6)


def test_canonical_ids_are_stable_names_with_non_default_parameters() -> None:
    assert DOWNSCALERS.create("bicubic").id == "bicubic"
    assert DOWNSCALERS.create("blur(sigma=2)").id == "blur(sigma=2.0)"
    assert DOWNSCALERS.create({"name": "blur", "sigma": 2.0}).id == "blur(sigma=2.0)"
    assert DOWNSCALERS.create("blur(sigma=2, order='before')").id == "blur(sigma=2.0,order='before')"
    assert DOWNSCALERS.create("quantize(levels=5)").id == "quantize(levels=5)"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("sharpen", "unknown downscaler 'sharpen'"),
        ("blur(sgima=2)", "no parameter 'sgima'; allowed: .*sigma"),
        ("blur(sigma='x')", "expected a number"),
        ("blur(order='during')", "not one of 'after', 'before'"),
        ("quantize(levels=1)", "levels must be >= 2"),
        ("blur(sigma=__import__('os'))", "must be a literal"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        DOWNSCALERS.create(spec)


def _lpips_free_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize(
    "ladder",
    [
        ["blur(sigma=1)", "blur(sigma=2)", "blur(sigma=3)"],
        ["noise(sigma=0.05)", "noise(sigma=0.1)", "noise(sigma=0.2)"],
        ["contrast(factor=1.5)", "contrast(factor=2.0)", "contrast(factor=2.5)"],
        ["contrast(factor=0.75)", "contrast(factor=0.5)", "contrast(factor=0.25)"],
        ["quantize(levels=15)", "quantize(levels=10)", "quantize(levels=5)"],
    ],
)
@pytest.mark.parametrize("order", ["after", "before"])
def test_synthetic_ladders_degrade_monotonically(ladder: list[str], order: str) -> None:
    image = _photo(64, 64)
    clean = DOWNSCALERS.create("bicubic")(image, 4)
    distances = [
        _lpips_free_distance(DOWNSCALERS.create(spec, order=order)(image, 4), clean) for spec in ladder
    ]
    assert distances == sorted(distances) and distances[0] > 0


def test_noise_is_seeded_per_image_not_per_call() -> None:
    noise = DOWNSCALERS.create("noise(sigma=0.1)")
    a, b = _photo(name="a"), _photo(name="b")
    np.testing.assert_array_equal(noise(a, 4), noise(a, 4))
    assert not np.array_equal(noise(a, 4) - DOWNSCALERS.create("bicubic")(a, 4), noise(b, 4) - DOWNSCALERS.create("bicubic")(b, 4))
    assert not np.array_equal(noise(a, 4), DOWNSCALERS.create("noise(sigma=0.1, seed=1)")(a, 4))


def test_bsrgan_degradation_is_blur_bicubic_seeded_noise_then_jpeg() -> None:
    """The chain, rebuilt step by step with scipy and PIL, gives the same pixels."""
    from io import BytesIO

    from scipy import ndimage

    from idard.measure.downscalers.base import image_seed

    image = _photo(64, 64)
    spec = DOWNSCALERS.create("bsrgan(noise=0.824, blur=1.233, jpeg=75)")
    lr = spec(image, 4)
    np.testing.assert_array_equal(lr, spec(image, 4))
    assert lr.shape == (16, 16, 3)

    blurred = ndimage.gaussian_filter(image.pixels, sigma=(1.233, 1.233, 0), mode="reflect")
    channels = [Image.fromarray(np.ascontiguousarray(blurred[..., c]), "F").resize((16, 16), Image.Resampling.BICUBIC)
                for c in range(3)]
    small = np.stack([np.asarray(c) for c in channels], axis=2)
    noisy = small + image_seed(image.name, 0).normal(0.0, 0.824 / 255.0, size=small.shape).astype(np.float32)
    buffer = BytesIO()
    Image.fromarray(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=75)
    expected = np.asarray(Image.open(buffer), dtype=np.float32) / 255
    np.testing.assert_array_equal(lr, expected)
    # each step matters: without the blur, or at another quality, the pixels differ
    for other in ("bsrgan(noise=0.824, blur=0, jpeg=75)", "bsrgan(noise=0.824, blur=1.233, jpeg=90)",
                  "bsrgan(noise=0, blur=1.233, jpeg=75)"):
        assert np.abs(DOWNSCALERS.create(other)(image, 4) - lr).max() >= 1 / 255, other


@pytest.mark.parametrize("factor", [0.5, 1.5])
def test_contrast_scales_about_the_luma_mean_as_pil_image_enhance_does(factor: float) -> None:
    """ITU-R 601 luma mean (0.299 R + 0.587 G + 0.114 B), as ``PIL.ImageEnhance.Contrast``;
    on a blue image the plain channel mean would sit far from it."""
    from PIL import ImageEnhance

    rng = np.random.default_rng(3)
    pixels = np.round(_photo(32, 32).pixels * np.array([0.15, 0.15, 0.85], np.float32) * 255 + rng.integers(0, 40, (32, 32, 3))) / 255
    image = RGBImage("blue", np.clip(pixels, 0, 1).astype(np.float32))
    ours = DOWNSCALERS.create(f"contrast(factor={factor})")(image, 1)  # scale 1: the degradation alone

    luma_mean = float((image.pixels.astype(np.float64) @ [0.299, 0.587, 0.114]).mean())
    channel_mean = float(image.pixels.mean())
    assert abs(luma_mean - channel_mean) > 0.05  # the two definitions are far apart here
    formula = np.clip(luma_mean + factor * (image.pixels.astype(np.float64) - luma_mean), 0, 1)
    np.testing.assert_allclose(ours, formula, atol=1e-6)
    # PIL rounds the mean grey to an integer and the result to 8 bits: within a grey level or so
    pil = np.asarray(ImageEnhance.Contrast(Image.fromarray(np.round(image.pixels * 255).astype(np.uint8))).enhance(factor))
    assert np.abs(ours * 255 - pil).max() <= 1 + abs(1 - factor)


def test_precomputed_reads_lr_by_stem_and_checks_its_size(tmp_path: Path) -> None:
    image = _photo(32, 48, name="scene")
    lr = DOWNSCALERS.create("bilinear")(image, 4)
    save_image(tmp_path / "x4" / "scene.png", lr)
    spec = DOWNSCALERS.create(f"precomputed(folder='{tmp_path}/x{{scale}}', label='matlab')")
    np.testing.assert_allclose(spec(image, 4), lr, atol=1e-7)
    with pytest.raises(ImageError, match="no LR image for HR image 'other'"):
        spec(_photo(32, 48, name="other"), 4)
    save_image(tmp_path / "x2" / "scene.png", lr)
    with pytest.raises(ImageError, match="scene.png: LR is 12x8.*needs 24x16"):
        spec(image, 2)


def test_hr_must_be_cropped_to_a_multiple_first() -> None:
    with pytest.raises(ImageError, match="not a multiple of scale 4"):
        DOWNSCALERS.create("bicubic")(_photo(30, 32), 4)
