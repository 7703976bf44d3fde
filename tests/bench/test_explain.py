"""A record reproduced by hand: ``explain`` and the single-step commands give a record's value
exactly, because every path converts SR samples to 8 bits the one way records are scored."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from idard.bench.cli import app

from tests.bench.sample_runs import make_run, stored_value

runner = CliRunner()
KEY = ("img001", "blur(sigma=2.0)", 1)  # image, downscaler (its record id), seed


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("explain"), ["bicubic", "blur(sigma=2)"], nudge=("img000", "bicubic", 0))


def _value(output: str) -> float:
    return float(output.strip().splitlines()[-1])


def test_downscale_upscale_distortion_gives_the_record_exactly(run_dir: Path, tmp_path: Path) -> None:
    """The issue's chain gave 0.222277 for a record of 0.222085: upscale wrote rounded PNGs."""
    image, downscaler, seed = KEY
    hr = run_dir.parent / "images" / f"{image}.png"
    steps = [["downscale", str(hr), str(tmp_path / "lr.png"), "--method", downscaler, "--scale", "4"],
             ["upscale", str(tmp_path / "lr.png"), str(tmp_path / "sr.png"), "--seed", str(seed)]]
    for step in steps:
        result = runner.invoke(app, step)
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["distortion", str(hr), str(tmp_path / "sr.png")])
    assert result.exit_code == 0, result.output
    assert _value(result.stdout) == stored_value(run_dir, image, downscaler, seed)


def test_explain_recomputes_one_record_and_writes_its_pixels(run_dir: Path, tmp_path: Path) -> None:
    image, downscaler, seed = KEY
    out = tmp_path / "why"
    result = runner.invoke(app, ["explain", str(run_dir), "--image", image, "--downscaler", "blur(sigma=2)",
                                 "--seed", str(seed), "--out", str(out)])
    assert result.exit_code == 0, result.output
    stored = stored_value(run_dir, image, downscaler, seed)
    row = next(line for line in result.output.splitlines() if line.startswith("lpips-alex"))
    assert row.split() == ["lpips-alex", repr(stored), repr(stored), "yes"]
    assert "SHA-256 is the records' hr_sha256" in result.output and "run's suite.yaml" in result.output
    assert {p.name for p in out.iterdir()} == {"hr.png", "lr.png", "sr.png", "difference.png"}
    assert Image.open(out / "lr.png").size == (12, 12) and Image.open(out / "sr.png").size == (48, 48)
    # the written PNGs are the scored pixels: the distortion command gives the record again
    by_hand = runner.invoke(app, ["distortion", str(out / "hr.png"), str(out / "sr.png")])
    assert _value(by_hand.stdout) == stored


def test_explain_flags_any_difference_from_the_record(run_dir: Path, tmp_path: Path) -> None:
    """A record 1e-4 off (the old grid let 2e-3 pass) is a difference: exit 1, NO."""
    result = runner.invoke(app, ["explain", str(run_dir), "--image", "img000", "--downscaler", "bicubic",
                                 "--seed", "0", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1, result.output
    assert "NO (difference -0.0001)" in result.output


def test_explain_names_what_the_run_holds_when_the_key_is_not_there(run_dir: Path) -> None:
    result = runner.invoke(app, ["explain", str(run_dir), "--image", "img000", "--downscaler", "lanczos",
                                 "--seed", "0"])
    assert result.exit_code == 2
    assert "no record of img000 with downscaler 'lanczos'; the run holds bicubic, blur(sigma=2.0)" in result.output
    result = runner.invoke(app, ["explain", str(run_dir), "--image", "img000", "--downscaler", "bicubic",
                                 "--seed", "7"])
    assert result.exit_code == 2 and "with seed 7" in result.output


def test_explain_never_shows_a_file_that_is_not_the_records(run_dir: Path, tmp_path: Path) -> None:
    """Images read from --images are used only when their SHA-256 is the records'."""
    other = tmp_path / "other"
    shutil.copytree(run_dir.parent / "images", other)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(other / "img001.png")
    image, downscaler, seed = KEY
    result = runner.invoke(app, ["explain", str(run_dir), "--image", image, "--downscaler", downscaler,
                                 "--seed", str(seed), "--images", str(other), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1, result.output
    assert "sources given on the command line" in result.output
    assert "is not the file the records were computed from" in result.output
    assert not (tmp_path / "x").exists()
