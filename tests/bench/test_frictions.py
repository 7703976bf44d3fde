"""Small frictions met by a new user (issue 10 item 11), each checked where it was met."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.measure.images import load_image
from tests.bench.conftest import write_crops

runner = CliRunner()


def test_downscale_says_when_it_crops_and_distortion_crops_the_reference_to_match(tmp_path: Path) -> None:
    """The README's one-step chain on an image whose sides are not multiples of the scale."""
    hr = tmp_path / "hr.png"
    Image.open(write_crops(tmp_path / "src", 1, size=50)[0]).save(hr)
    down = runner.invoke(app, ["downscale", str(hr), str(tmp_path / "lr.png"), "--scale", "4"])
    assert down.exit_code == 0 and "centre-cropped 50x50 -> 48x48" in down.output
    Image.open(hr).crop((1, 1, 49, 49)).save(tmp_path / "sr.png")  # stands for an SR sample of the crop
    scored = runner.invoke(app, ["distortion", str(hr), str(tmp_path / "sr.png"), "--metric", "psnr"])
    assert scored.exit_code == 0, scored.output
    assert "centre-cropped 50x50 -> 48x48" in scored.output and float(scored.output.splitlines()[-1]) > 90


def test_upscale_says_that_a_file_like_out_becomes_a_folder(tmp_path: Path) -> None:
    lr = tmp_path / "lr.png"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(lr)
    result = runner.invoke(app, ["upscale", str(lr), str(tmp_path / "sr.png"), "--seed", "0", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "is a folder: writing" in result.output and (tmp_path / "sr.png" / "lr_seed1.png").is_file()


def test_progress_lines_in_a_log_keep_the_per_worker_rates() -> None:
    from idard.bench.run.progress import RunProgress

    out = io.StringIO()
    progress = RunProgress(Console(file=out, width=200, force_terminal=False), every=0.0)
    progress.start(10, 0, 1)
    progress.advance(5, "node-a:1")
    assert "[node-a:1: " in out.getvalue()


def test_exif_orientation_is_applied_on_load(tmp_path: Path) -> None:
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :4] = 255  # left half white, stored 8 wide and 4 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(pixels).save(tmp_path / "p.png", exif=exif)
    loaded = load_image(tmp_path / "p.png")
    assert (loaded.width, loaded.height) == (4, 8)


def test_status_warns_when_the_run_directory_does_not_exist(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("images: [bundled:held-out]\ndownscalers: [bicubic]\nmodels: [srflow-tiny-4x]\n")
    result = runner.invoke(app, ["status", "--suite", str(suite), "--out", str(tmp_path / "nowhere")])
    assert result.exit_code == 0 and "run directory" in result.output and "does not exist" in result.output


@pytest.mark.parametrize("command", ["train-srflow", "train-resshift"])
def test_training_never_overwrites_an_existing_file_by_default(tmp_path: Path, command: str) -> None:
    existing = tmp_path / "model.safetensors"
    existing.write_bytes(b"keep me")
    result = runner.invoke(app, [command, "--out", str(existing), "--steps", "1"])
    assert result.exit_code == 2 and "--force" in result.output and existing.read_bytes() == b"keep me"


def test_train_resshift_trains_with_the_options_it_is_given(tmp_path: Path) -> None:
    """The training commands share their options (cli.TrainOut, ...): they still reach the trainer."""
    import json

    out = tmp_path / "tiny.safetensors"
    result = runner.invoke(app, ["train-resshift", "--out", str(out), "--steps", "1", "--seed", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "step 1/1  mse " in result.output and out.is_file()
    settings = json.loads(out.with_suffix(".json").read_text())["settings"]
    assert (settings["steps"], settings["seed"], settings["threads"]) == (1, 3, 1)


def test_help_shows_no_value_placeholder_for_flags() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    line = next(line for line in result.output.splitlines() if "--retry-errors" in line)
    assert "<bool>" not in line and "BOOLEAN" not in line


def test_evaluate_shows_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from idard.measure.evaluate import evaluate

    images = write_crops(tmp_path, 2, size=16)
    evaluate(images, ["bicubic"], "srflow-tiny-4x", samples=1, metrics=["psnr"], progress=True)
    assert "evaluate: 2/2 img001: 1 records" in capsys.readouterr().err
