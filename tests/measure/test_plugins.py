"""Plug-ins from other installed packages (entry-point group ``idard.plugins``): a user's
own SR model is named in suites and validated like a built-in one.

The "installed package" here is what pip writes: a module and a ``.dist-info`` folder
with ``METADATA`` and ``entry_points.txt`` on ``sys.path`` (here, ``PYTHONPATH`` of a
fresh process: the registries load plug-ins once per process, as each Ray worker does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.bench.conftest import write_crops

REPO = Path(__file__).resolve().parents[2]

#: A decoder made to collapse, as a user would ship it: nearest-neighbour upsampling plus
#: noise that is always seed 0's, whatever seed is asked for.
PLUGIN = '''
import dataclasses, hashlib

import torch

from idard.measure.models import MODELS
from idard.measure.registry import Plugin


@MODELS.register("collapsed-noise")
@dataclasses.dataclass(frozen=True)
class CollapsedNoise(Plugin):
    """Nearest-neighbour x scale plus seed 0's noise for every seed (a decoder made to collapse)."""

    sigma: float = 0.05
    scale: int = 4

    @property
    def weights_hash(self):
        return hashlib.sha256(f"collapsed-noise:{self.sigma}".encode()).hexdigest()

    def weight_files(self):
        return []

    def to(self, device):
        return self

    def sample(self, lr, seeds, temperature=None):
        up = torch.nn.functional.interpolate(lr, scale_factor=self.scale, mode="nearest")
        noise = torch.randn(up.shape, generator=torch.Generator().manual_seed(0)) * self.sigma
        return (up + noise).clamp(0, 1)[:, None].expand(-1, len(seeds), -1, -1, -1).clone()
'''


def _install(site: Path, name: str, module: str, source: str) -> None:
    """A package ``name`` whose entry point ``idard.plugins`` names ``module``, as pip lays it out."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[idard.plugins]\n{name} = {module}\n")


def _python(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_an_installed_packages_model_is_registered_by_name(tmp_path: Path) -> None:
    _install(tmp_path / "site", "my-sr", "my_sr_plugin", PLUGIN)
    done = _python(tmp_path / "site", """
        from idard.measure.models import MODELS
        model = MODELS.create("collapsed-noise(sigma=0.1)")
        print(model.id, "collapsed-noise" in MODELS.names())
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["collapsed-noise(sigma=0.1)", "True"]
    listed = subprocess.run([sys.executable, "-m", "idard.bench.cli", "list"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)]),
                                 "COLUMNS": "250"}, cwd=tmp_path, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "(plug-in from my_sr_plugin)" in listed.stdout  # where a model came from, beside idard's own


def test_a_broken_plugin_is_one_warning_naming_it_and_the_rest_works(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install(site, "broken-sr", "broken_sr_plugin", "raise ImportError('needs libfoo 2')\n")
    done = _python(site, """
        from idard.measure.models import MODELS
        print(MODELS.create("srflow-tiny-4x").id)
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "srflow-tiny-4x"
    assert ("idard plug-in broken-sr = broken_sr_plugin (package broken-sr 0.1) was not loaded: "
            "ImportError: needs libfoo 2") in done.stderr


def test_without_plugins_nothing_is_loaded() -> None:
    from idard.measure.plugins import load_installed

    assert load_installed() == ()  # this test environment installs none: the registries are idard's own


@pytest.mark.slow  # a fresh process that starts Ray and computes a small card (~40 s on 2 cores)
def test_validate_model_runs_on_a_plugin_model_made_to_collapse_and_calls_it_invalid(tmp_path: Path) -> None:
    """End to end through the CLI and Ray's workers (which load the plug-in themselves)."""
    site = tmp_path / "site"
    _install(site, "my-sr", "my_sr_plugin", PLUGIN)
    write_crops(tmp_path / "images", 2, size=64)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "idard.bench.cli", "validate-model", "collapsed-noise",
                           "--images", str(tmp_path / "images"), "--samples", "2", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # 1: a card that says invalid
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["model"] == "collapsed-noise" and card["verdict"] == "invalid"
    assert card["reason"].startswith("stochasticity: samples collapse"), card["reason"]
