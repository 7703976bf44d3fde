"""Full-reference suites (supplement Table 4): downscaled images scored against camera images."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.bench.report.reduce import scan_records
from idard.bench.suite import SuiteError, load_suite
from idard.measure.images import load_image, to_uint8
from tests.bench.conftest import write_crops

REPO = Path(__file__).resolve().parents[2]


def _camera_sim():
    spec = importlib.util.spec_from_file_location("camera_sim", REPO / "benchmark" / "camera_sim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def pairs(tmp_path: Path) -> Path:
    """Three HR crops, and simulated camera LR images for two of them (one is missing)."""
    hr = write_crops(tmp_path / "hr", 3, size=48)
    (tmp_path / "camera").mkdir()
    sim = _camera_sim()
    for path in hr[:2]:
        lr = sim.camera_lr(load_image(path).pixels, 4, psf=0.5, noise=0.0, seed=0)
        Image.fromarray(to_uint8(lr.astype(np.float32))).save(tmp_path / "camera" / path.name)
    (tmp_path / "suite.yaml").write_text(
        "name: camera\nimages: [hr]\nreference: [camera]\nscales: [4]\n"
        "downscalers: [box, bicubic, nearest]\nmetrics: [psnr, lpips-alex]\n"
        "checks:\n  - ranks_above: {a: nearest, b: box, metric: psnr}\n")
    return tmp_path


def test_a_reference_suite_runs_no_model_and_scores_the_lr_against_the_camera_image(pairs: Path) -> None:
    suite = load_suite(pairs / "suite.yaml")
    assert suite.models == ("reference-x4",) and suite.seeds == (0,)
    result = CliRunner().invoke(app, ["run", "--suite", str(pairs / "suite.yaml"), "--out", str(pairs / "run"),
                                      "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    records = scan_records(pairs / "run").collect()
    assert records.height == 3 * 3 * 2  # images x downscalers x metrics, one "sample" each
    missing = records.filter(pl.col("image") == "img002")
    assert missing["error"].str.contains("no reference image").all()
    psnr = records.filter((pl.col("metric") == "psnr") & pl.col("finite")).group_by("downscaler").agg(pl.col("value").mean())
    by = dict(psnr.iter_rows())
    assert by["box"] > by["nearest"]  # the simulated camera integrates over its pixels, as box does
    assert "nearest lose(s) more than box" in result.output and "-> yes" in result.output
    # every failing image is listed (LPIPS-Alex also fails on the 12x12 LR of img000 and img001)
    assert "3 image(s) have error records" in result.output
    assert "  img002: 6 record(s): ValueError: no reference image" in result.output
    failing = json.loads((pairs / "run" / "run.json").read_text())["failing_images"]
    assert [f["image"] for f in failing] == ["img000", "img001", "img002"]
    again = CliRunner().invoke(app, ["run", "--suite", str(pairs / "suite.yaml"), "--out", str(pairs / "run"),
                                     "--bootstrap", "100"])
    assert "nothing to compute" in again.output


def test_a_reference_of_the_wrong_size_is_an_error_record(pairs: Path) -> None:
    Image.new("RGB", (7, 7)).save(pairs / "camera" / "img000.png")
    CliRunner().invoke(app, ["run", "--suite", str(pairs / "suite.yaml"), "--out", str(pairs / "run"), "--bootstrap", "100"])
    errors = scan_records(pairs / "run").filter(pl.col("image") == "img000").collect()["error"]
    assert errors.str.contains("reference img000 is 7x7 but the x4 LR of img000 is 12x12").all()


@pytest.mark.parametrize(("extra", "says"), [("models: [srflow-tiny-4x]\n", "runs no SR model"),
                                             ("samples: 2\n", "draws no SR samples")])
def test_reference_suites_refuse_what_they_cannot_use(pairs: Path, extra: str, says: str) -> None:
    path = pairs / "suite.yaml"
    path.write_text(path.read_text() + extra)
    with pytest.raises(SuiteError, match=says):
        load_suite(path)


def test_camera_sim_script_writes_references_of_the_lr_size(tmp_path: Path) -> None:
    _camera_sim().main(["--out", str(tmp_path), "--limit", "1"])
    (written,) = list(tmp_path.iterdir())
    assert Image.open(written).size == (128, 128)  # astronaut, 512 / 4
