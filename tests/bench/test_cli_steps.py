"""The single-step commands: downscale, upscale, distortion, list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.measure.models.srflow import TINY_4X, SRFlowNet, save_weights

runner = CliRunner()
RNG = np.random.default_rng(0)


@pytest.fixture()
def hr(tmp_path: Path) -> Path:
    path = tmp_path / "hr.png"
    Image.fromarray(RNG.integers(0, 256, (34, 42, 3), dtype=np.uint8)).save(path)
    return path


def test_downscale_writes_the_pil_result_of_the_centre_crop(tmp_path: Path, hr: Path) -> None:
    result = runner.invoke(app, ["downscale", str(hr), str(tmp_path / "lr.png"), "--method", "bicubic", "--scale", "4"])
    assert result.exit_code == 0, result.output
    crop = Image.open(hr).crop((1, 1, 41, 33))
    expected = np.asarray(crop.resize((10, 8), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "lr.png")), expected)


def test_downscale_a_folder_with_a_parameterised_method(tmp_path: Path, hr: Path) -> None:
    result = runner.invoke(app, ["downscale", str(hr.parent), str(tmp_path / "out"), "--method", "blur(sigma=2)", "--scale", "2"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "hr.png").size == (21, 17)


def test_upscale_is_reproducible_per_seed(tmp_path: Path) -> None:
    weights = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    save_weights(SRFlowNet(TINY_4X).eval(), weights)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(tmp_path / "lr.png")
    model = f"srflow(weights='{weights}')"
    for out in ("a", "b"):
        result = runner.invoke(app, ["upscale", str(tmp_path / "lr.png"), str(tmp_path / out), "--model", model,
                                     "--seed", "3", "--seed", "4", "--heat", "0.7"])
        assert result.exit_code == 0, result.output
    a3, b3 = (np.asarray(Image.open(tmp_path / d / "lr_seed3.png")) for d in ("a", "b"))
    assert a3.shape == (32, 40, 3)
    np.testing.assert_array_equal(a3, b3)

    # each file is the sample of its seed at the asked heat, as the model API draws it,
    # converted to 8 bits as records are scored (truncation, idard.measure.sr_8bit)
    from idard.measure.images import load_image, to_tensor
    from idard.measure.models import MODELS

    def drawn(heat: float | None, seed: int) -> np.ndarray:
        sr_model = MODELS.create(model, **({"heat": heat} if heat is not None else {}))
        sample = sr_model.sample(to_tensor(load_image(tmp_path / "lr.png").pixels), [seed])[0, 0]
        return np.floor(np.clip(sample.permute(1, 2, 0).numpy(), 0, 1) * np.float32(255)).astype(np.uint8)

    a4 = np.asarray(Image.open(tmp_path / "a" / "lr_seed4.png"))
    np.testing.assert_array_equal(a3, drawn(0.7, 3))
    np.testing.assert_array_equal(a4, drawn(0.7, 4))
    assert np.abs(a3.astype(int) - a4).max() > 8  # seeds differ
    assert np.abs(a3.astype(int) - drawn(None, 3)).max() > 8  # the heat mattered


def test_distortion_prints_the_official_lpips_value(shared_reference: Path) -> None:
    pairs = shared_reference / "lpips-calibration"
    result = runner.invoke(app, ["distortion", str(pairs / "ref" / "I03.png"), str(pairs / "dist" / "I03.png")])
    assert result.exit_code == 0, result.output
    assert float(result.stdout.strip()) == pytest.approx(0.7237, abs=1e-3)


def test_distortion_refuses_images_of_different_sizes(tmp_path: Path, hr: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    result = runner.invoke(app, ["distortion", str(hr), str(tmp_path / "small.png"), "--metric", "psnr"])
    assert result.exit_code == 2
    assert "small.png: size 10x10 differs" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["downscale", "missing.png", "out.png"], "missing.png: no such file"),
        (["downscale", "{hr}", "out.png", "--method", "sharpen"], "unknown downscaler 'sharpen'"),
        (["distortion", "{hr}", "{hr}", "--metric", "lpips-squeeze"], "unknown distortion 'lpips-squeeze'"),
        (["upscale", "{hr}", "out", "--model", "srflow(weights='nowhere.pth')"], "nowhere.pth"),
    ],
)
def test_bad_input_exits_2_with_a_message_naming_it(hr: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [a.format(hr=hr) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_list_shows_every_registry_with_parameters() -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("bicubic", "blur", "sigma", "srflow", "heat", "srflow-tiny-4x", "lpips-alex", "ms-ssim"):
        assert name in result.output


def test_weights_lists_each_models_files_and_fails_on_a_missing_one(tmp_path) -> None:
    from typer.testing import CliRunner

    from idard.bench.cli import app

    ok = CliRunner().invoke(app, ["weights"])
    assert ok.exit_code == 0 and "srflow-tiny-4x.safetensors" in ok.output and "verified" in ok.output
    suite = tmp_path / "s.yaml"
    suite.write_text("images: [bundled:held-out]\ndownscalers: [bicubic]\nmodels: [srflow-tiny-4x, 'pulse(generator=stylegan-ffhq, mapping=m.pt, synthesis=s.pt, scale=32)']\n")
    missing = CliRunner().invoke(app, ["weights", "--suite", str(suite)])
    assert missing.exit_code == 1 and "MISSING" in missing.output and "no such weights file" in missing.output
    assert "/m.pt" in missing.output  # resolved against the suite's folder, as weights= is


def test_report_puts_unconverged_samples_in_the_mean_only_when_asked(tmp_path: Path) -> None:
    """PULSE's unconverged samples: left out by default (as the reference drops them), in
    the mean with --include-unconverged; the table's header says which."""
    import polars as pl

    from idard.bench.store import RecordStore

    RecordStore(tmp_path).append(pl.DataFrame({
        "image": ["a", "a", "b", "b"], "downscaler": ["nearest"] * 4, "model": ["pulse"] * 4,
        "metric": ["lpips-alex"] * 4, "seed": [0, 1, 0, 1], "scale": [8] * 4,
        "value": [0.1, 0.5, 0.3, 0.3], "finite": [True] * 4, "converged": [True, False, True, True],
    }))
    default = runner.invoke(app, ["report", str(tmp_path), "--bootstrap", "100"])
    assert default.exit_code == 0, default.output
    left_out = pl.read_parquet(tmp_path / "ida_rd.parquet").row(0, named=True)
    assert left_out["ida_rd"] == pytest.approx(0.2) and left_out["n_unconverged"] == 1
    assert "unconverged (left out)" in (tmp_path / "ida_rd.md").read_text()
    assert "1 unconverged samples are left out" in default.output
    included = runner.invoke(app, ["report", str(tmp_path), "--bootstrap", "100", "--include-unconverged"])
    assert included.exit_code == 0, included.output
    assert pl.read_parquet(tmp_path / "ida_rd.parquet").row(0, named=True)["ida_rd"] == pytest.approx(0.3)
    assert "unconverged (in mean)" in (tmp_path / "ida_rd.md").read_text()
