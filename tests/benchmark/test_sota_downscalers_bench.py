"""Smoke test of benchmark/sota_downscalers.py at a tiny size (seconds)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmark" / "sota_downscalers.py"


def test_sota_downscalers_benchmark_runs_at_a_tiny_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("sota_downscalers_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "sota.json"
    argv = ["sota_downscalers.py", "--size", "64", "--repeats", "1", "--scales", "2", "4", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    script.main()
    result = json.loads(out.read_text())
    assert {row["method"] for row in result["results"]} == {"bicubic", "dpid", "perceptual", "l0"}
    assert {row["scale"] for row in result["results"]} == {2, 4}
    assert all(row["seconds"] > 0 and row["seconds_per_megapixel"] > 0 for row in result["results"])
    assert result["megapixels"] == round(64 * 64 / 1e6, 4)
