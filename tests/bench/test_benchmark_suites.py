"""Every committed suite in benchmark/ validates: plug-ins, keys and its checks.

Suites that name what only the user can provide (published checkpoints, the paper's
datasets) say so in a ``requires:`` key; they validate except for those files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from idard.bench.suite.checks import parse_checks
from idard.bench.suite import SuiteError, load_suite
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.models import MODELS
from idard.measure.registry import parse_spec

REPO = Path(__file__).resolve().parents[2]
SUITES = sorted((REPO / "benchmark").glob("*.yaml"))


def _name(spec: Any) -> str:
    return spec["name"] if isinstance(spec, dict) else parse_spec(spec)[0]


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_every_committed_suite_validates(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    if data.get("requires"):
        _validate_without_user_files(path, data)
        assert all(isinstance(r, str) and r for r in data["requires"])
    else:
        suite = load_suite(path)
        assert suite.images and suite.downscalers and suite.models and suite.metrics


def _validate_without_user_files(path: Path, data: dict[str, Any]) -> None:
    """A ``requires:`` suite: it loads, or fails only for a weights file the user must
    provide; its downscalers, model names and checks are valid either way."""
    try:
        load_suite(path)
    except SuiteError as exc:
        assert "no such" in str(exc) and "models[" in str(exc), f"fails for something else than a user file: {exc}"
    for spec in data["downscalers"]:
        DOWNSCALERS.create(spec)
    for spec in data.get("models", []):
        assert _name(spec) in MODELS, f"{path}: unknown model {spec}"
    parse_checks(data.get("checks"), str(path))


def test_the_offline_variants_run_without_user_files() -> None:
    """Every experiment has an offline, quickstart-sized variant next to its full one."""
    names = {p.stem for p in SUITES}
    for full in (n for n in names if n.endswith("-full")):
        assert full.removesuffix("-full") in names, f"{full} has no offline variant"
