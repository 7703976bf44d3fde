"""The evaluation API: one record per (image, downscaler, model, metric, seed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from idard.measure.evaluate import evaluate
from idard.measure.records import KEY_COLUMNS, RECORD_SCHEMA
from idard.measure.images import RGBImage
from idard.measure.models.srflow import TINY_4X, SRFlowNet, save_weights


@pytest.fixture(scope="module")
def untrained_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SRFlow network at the tiny config, untrained (fast, deterministic)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(SRFlowNet(TINY_4X).eval(), path)
    return path


def _photo(name: str, size: tuple[int, int] = (36, 34), seed: int = 0) -> RGBImage:
    rng = np.random.default_rng(seed)
    coarse = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
    pixels = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC), np.float32) / 255
    return RGBImage(name, pixels)


def test_one_record_per_key_with_the_record_schema(untrained_weights: Path) -> None:
    model = f"srflow(weights='{untrained_weights}')"
    records = evaluate([_photo("a"), _photo("b", seed=1)], ["bicubic", "nearest"], model,
                       samples=3, metrics=["lpips-alex", "psnr"])
    assert records.schema == pl.Schema(RECORD_SCHEMA)
    assert records.height == 2 * 2 * 2 * 3
    assert records.select(KEY_COLUMNS).is_duplicated().sum() == 0
    assert records["finite"].all() and records["error"].is_null().all()
    assert set(records["model"]) == {"srflow(weights='tiny.safetensors')"}  # weights by name, never by path
    assert records["weights_hash"].str.len_chars().unique().to_list() == [64]
    assert records["scale"].unique().to_list() == [4]


def test_a_record_is_the_same_whatever_batch_computed_it(untrained_weights: Path) -> None:
    model = f"srflow(weights='{untrained_weights}', heat=0.8)"
    image = _photo("a")
    together = evaluate([image], ["bicubic", "box"], model, seeds=[5, 0, 12, 3])
    alone = evaluate([image], ["box"], model, seeds=[12], max_batch=1)
    value = together.filter((pl.col("seed") == 12) & (pl.col("downscaler") == "box"))["value"].item()
    assert alone["value"].item() == pytest.approx(value, abs=1e-5)


def test_an_unreadable_image_becomes_error_records_and_the_rest_completes(tmp_path: Path, untrained_weights: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = tmp_path / "good.png"
    Image.fromarray((_photo("good").pixels * 255).astype(np.uint8)).save(good)
    records = evaluate([bad, good], ["bicubic"], f"srflow(weights='{untrained_weights}')", samples=2)
    broken = records.filter(pl.col("image") == "broken")
    assert broken.height == 2 and not broken["finite"].any()
    assert broken["error"].str.contains("broken.png").all()
    assert records.filter(pl.col("image") == "good")["finite"].all()


def test_non_finite_samples_are_recorded_never_scored(untrained_weights: Path) -> None:
    # An absurd temperature overflows the latents: every sample is non-finite.
    records = evaluate([_photo("a")], ["bicubic"], f"srflow(weights='{untrained_weights}', heat=1e39)", samples=2)
    assert not records["finite"].any()
    assert records["value"].is_nan().all()
    assert records["error"].str.contains("non-finite SR sample").all()


def test_images_too_small_for_the_scale_are_error_records(untrained_weights: Path) -> None:
    records = evaluate([RGBImage("tiny", np.zeros((3, 3, 3), np.float32))], ["bicubic"],
                       f"srflow(weights='{untrained_weights}')", samples=1)
    assert records["error"].item().startswith("ImageError") and "smaller than the scale factor 4" in records["error"].item()


def test_a_scale_the_model_cannot_decode_is_refused(untrained_weights: Path) -> None:
    with pytest.raises(ValueError, match="upscales x4, but the scale asked for is x8"):
        evaluate([_photo("a")], ["bicubic"], f"srflow(weights='{untrained_weights}')", scale=8)


def test_requests_compute_exactly_the_keys_asked_for(untrained_weights: Path) -> None:
    """A resumed run asks for some seeds and metrics only; values match a full run's."""
    from idard.measure.distortions import DISTORTIONS
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.evaluate import ImageEvaluator, Request
    from idard.measure.models import MODELS

    model = MODELS.create(f"srflow(weights='{untrained_weights}')")
    psnr, ssim = DISTORTIONS.create("psnr"), DISTORTIONS.create("ssim")
    evaluator = ImageEvaluator(downscalers=(), model=model, metrics=(), seeds=(), scale=4)
    image = _photo("a")
    rows = evaluator(image, [Request(DOWNSCALERS.create("box"), (3,), (psnr, ssim)),
                             Request(DOWNSCALERS.create("nearest"), (0, 14), (psnr,))])
    got = {(r["downscaler"], r["metric"], r["seed"]): r["value"] for r in rows}
    assert set(got) == {("box", "psnr", 3), ("box", "ssim", 3), ("nearest", "psnr", 0), ("nearest", "psnr", 14)}
    full = evaluate([image], ["box", "nearest"], model, seeds=[14, 3, 0, 8], metrics=["psnr", "ssim"])
    for (downscaler, metric, seed), value in got.items():
        expected = full.filter((pl.col("downscaler") == downscaler) & (pl.col("metric") == metric)
                               & (pl.col("seed") == seed))["value"].item()
        assert value == pytest.approx(expected, abs=1e-4)
