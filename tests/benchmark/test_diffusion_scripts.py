"""Seconds-long smoke runs of the diffusion benchmark scripts at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, str(REPO / "benchmark" / script), *args], check=True, env=env, cwd=REPO,
                   timeout=600, capture_output=True)


def test_diffusion_batch_times_batched_and_one_by_one_and_the_published_layout(tmp_path: Path) -> None:
    out = tmp_path / "batch.json"
    _run("diffusion_batch.py", "--size", "32", "--batches", "1,2", "--repeats", "1", "--small-published",
         "--lr-size", "16", "--published-batches", "1", "--out", str(out))
    result = json.loads(out.read_text())
    assert [r["batch"] for r in result["embedded"]["rows"]] == [1, 2]
    assert all(r["batched_samples_per_s"] > 0 and r["speedup"] > 0 for r in result["embedded"]["rows"])
    assert result["published"]["rows"][0]["samples_per_s"] > 0


def test_diffusion_stochasticity_reports_a_per_pixel_spread(tmp_path: Path) -> None:
    _run("diffusion_stochasticity.py", "--samples", "2", "--crop", "32", "--out", str(tmp_path))
    result = json.loads((tmp_path / "stochasticity_resshift-tiny-4x.json").read_text())
    assert set(result["images"]) == {"astronaut", "chelsea", "coffee", "china"}
    assert result["mean_pixel_std"] > 0
