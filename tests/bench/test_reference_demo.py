"""Smoke test of benchmark/reference_demo.py: it skips with a reason without the image or
the published weights, and runs end to end at a tiny size with the embedded model."""

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


def _images(root: Path) -> Path:
    (root / "ori_image").mkdir(parents=True)
    rng = np.random.default_rng(0)
    coarse = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(coarse).resize((64, 64), Image.Resampling.BICUBIC).save(root / "ori_image" / "0898.png")
    return root


def test_it_skips_saying_what_is_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "empty-cache"))
    demo = _script()
    assert demo.main(["--images", str(tmp_path / "nowhere")]) == 0
    assert "reference demo skipped: " in capsys.readouterr().out
    assert demo.main(["--images", str(_images(tmp_path / "imgs")), "--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "skipped: the published weights are absent" in out and "SRFlow_DF2K_4X.pth" in out
    assert not (tmp_path / "r.json").exists()


def test_it_runs_the_suite_at_a_tiny_size(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.json"
    assert _script().main(["--images", str(_images(tmp_path / "imgs")), "--model", "srflow-tiny-4x",
                           "--crop", "32", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["idard"]) == {"bicubic", "bilinear", "nearest"} and len(result["seeds"]) == 5
    assert all(np.isfinite(v) for v in result["idard"].values()) and "nearest" in capsys.readouterr().out
