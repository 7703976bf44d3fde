"""Small commands are fast: ``--help``, ``list``, ``status`` and ``report`` never import
torch or Ray (issue 22, item 8).

torch alone costs ~10 s and ~900 MB to import on the project's 2-core machines; a command
that only lists names, counts records or computes a PSNR must not pay for it. Each command
runs in a fresh interpreter (the way a user runs it) and the modules it loaded are read
from ``sys.modules`` afterwards, as `tests/bench/test_reduce.py` does for ``report``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from idard.bench.store import RecordStore

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "lpips", "torchvision")


def run_cli(arguments: list[str], cwd: Path) -> tuple[int, str, set[str]]:
    """Exit code, output and loaded modules of ``idard-bench ARGUMENTS`` in a fresh interpreter."""
    program = ("import json, sys; from typer.testing import CliRunner; from idard.bench.cli import app; "
               f"result = CliRunner().invoke(app, {arguments!r}); "
               "print(json.dumps([result.exit_code, result.output, sorted(sys.modules)]))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, cwd=cwd,
                          env=env)
    code, output, modules = json.loads(done.stdout.strip().splitlines()[-1])
    return code, output, set(modules)


def quickstart_run(run_dir: Path) -> Path:
    """A run directory of the quickstart suite holding a few synthetic records."""
    frame = pl.DataFrame({
        "image": ["astronaut"] * 4, "downscaler": ["bicubic", "nearest", "blur", "blur(sigma=2.0)"],
        "model": "srflow-tiny-4x", "metric": "lpips-alex", "seed": 0, "scale": 4,
        "value": [0.3, 0.4, 0.35, 0.45], "finite": True, "higher_is_better": False,
    })
    RecordStore(run_dir).append(frame, suite_hash="abc")
    return run_dir


def assert_light(modules: set[str]) -> None:
    loaded = [name for name in HEAVY if name in modules]
    assert not loaded, f"loaded {loaded}"


def test_help_loads_no_torch_nor_ray(tmp_path: Path) -> None:
    code, output, modules = run_cli(["--help"], tmp_path)
    assert code == 0 and "status" in output
    assert_light(modules)


def test_list_shows_every_plugin_without_torch(tmp_path: Path) -> None:
    """Names, parameters and summaries are the plug-ins' dataclasses: listing them needs
    no torch, though computing with most of them does."""
    code, output, modules = run_cli(["list"], tmp_path)
    assert code == 0, output
    for name in ("bicubic", "blur", "dpid", "srflow", "srflow-tiny-4x", "pulse", "resshift", "chain",
                 "realesrgan-x4plus", "lpips-alex", "ms-ssim"):
        assert name in output
    assert "heat: float | None = None" in output  # srflow's parameters, read from its dataclass
    assert_light(modules)


def test_status_of_the_quickstart_run_loads_no_torch(tmp_path: Path) -> None:
    """Validating the quickstart suite builds its plug-ins (srflow-tiny-4x, lpips-alex):
    building one reads no weights and loads no network."""
    run = quickstart_run(tmp_path / "run")
    code, output, modules = run_cli(["status", "--out", str(run)], REPO)
    assert code == 0, output
    assert "4/256 records done" in " ".join(output.split())  # the title may wrap
    assert_light(modules)


def test_report_loads_no_torch_nor_ray(tmp_path: Path) -> None:
    run = quickstart_run(tmp_path / "run")
    code, output, modules = run_cli(["report", str(run), "--baseline", "none", "--bootstrap", "100"], tmp_path)
    assert code == 0, output
    assert_light(modules)
