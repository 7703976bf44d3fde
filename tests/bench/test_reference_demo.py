"""Smoke test of benchmark/reference_demo.py: without the images nothing runs; without the
published weights the LR check still runs and the exit status says the SR part did not; and
it runs end to end at a tiny size with the embedded model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

from idard.measure.weights import ENV_WEIGHTS_DIR

SCRIPT = Path(__file__).resolve().parents[2] / "benchmark" / "reference_demo.py"


def _script():
    spec = importlib.util.spec_from_file_location("reference_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _images(root: Path, with_lr: bool = False) -> Path:
    """A 64-px stand-in for 0898 and, optionally, its three LR images made as the reference
    made them (``PIL.Image.resize`` to a quarter of the side)."""
    (root / "ori_image").mkdir(parents=True)
    rng = np.random.default_rng(0)
    coarse = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    hr = Image.fromarray(coarse).resize((64, 64), Image.Resampling.BICUBIC)
    hr.save(root / "ori_image" / "0898.png")
    if with_lr:
        for name, method in (("BICUBIC", Image.Resampling.BICUBIC), ("BILINEAR", Image.Resampling.BILINEAR),
                             ("NEAREST", Image.Resampling.NEAREST)):
            (root / "lr_image" / f"{name}_256").mkdir(parents=True)
            hr.resize((16, 16), method).save(root / "lr_image" / f"{name}_256" / "0898.png")
    return root


def test_without_the_images_nothing_runs_and_the_status_says_so(tmp_path: Path, capsys) -> None:
    demo = _script()
    status = demo.main(["--images", str(tmp_path / "nowhere")])
    assert status == demo.EXIT_NO_IMAGES and status != 0
    assert "nothing ran" in capsys.readouterr().out


def test_without_the_weights_the_lr_check_still_runs_and_the_status_says_the_sr_part_did_not(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "empty-cache"))
    demo = _script()
    images = _images(tmp_path / "imgs", with_lr=True)
    status = demo.main(["--images", str(images), "--out", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert status == demo.EXIT_SR_SKIPPED and status not in (0, 1, demo.EXIT_NO_IMAGES)
    for name in ("BICUBIC_256", "BILINEAR_256", "NEAREST_256"):
        assert f"bit-exact with lr_image/{name}/0898.png" in out
    assert "SR part not run: the published weights are absent" in out and "SRFlow_DF2K_4X.pth" in out
    assert not (tmp_path / "r.json").exists()

    lr = images / "lr_image" / "NEAREST_256" / "0898.png"
    pixels = np.asarray(Image.open(lr)).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(lr)
    assert demo.main(["--images", str(images), "--out", str(tmp_path / "r.json")]) == 1
    assert "nearest DIFFERS from lr_image/NEAREST_256/0898.png" in capsys.readouterr().out


def test_it_runs_the_suite_at_a_tiny_size(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.json"
    assert _script().main(["--images", str(_images(tmp_path / "imgs")), "--model", "srflow-tiny-4x",
                           "--crop", "32", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["idard"]) == {"bicubic", "bilinear", "nearest"} and len(result["seeds"]) == 5
    assert all(np.isfinite(v) for v in result["idard"].values()) and "nearest" in capsys.readouterr().out
