"""Shared fixtures: the reference data beside the checkout, and device skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """``../shared/reference`` (research-licensed data we verify against but never commit)."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {SHARED_REFERENCE}")
    return SHARED_REFERENCE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests skip without CUDA; ``slow`` ones run in ``make test`` (CI sets
    IDARD_RUN_SLOW=1 through it) and skip in ``make test-fast``; ``long`` ones (full-size
    validations, many minutes, each with a CI-size version that always runs) run only when
    asked for."""
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none on this machine (CI has no GPU)")
    skip_slow = pytest.mark.skip(
        reason="slow (a minute or more on 2 CPU cores): run by `make test` and CI, skipped by `make test-fast`; "
        "run with `pytest -m slow` or IDARD_RUN_SLOW=1"
    )
    skip_long = pytest.mark.skip(
        reason="long (a full-size validation, many minutes on 2 CPU cores; its CI-size version runs everywhere): "
        "run with `pytest -m long` or IDARD_RUN_LONG=1"
    )
    chosen = config.getoption("-m") or ""
    run_slow = "slow" in chosen or os.environ.get("IDARD_RUN_SLOW") == "1"
    run_long = "long" in chosen or os.environ.get("IDARD_RUN_LONG") == "1"
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "long" in item.keywords and not run_long:
            item.add_marker(skip_long)
        elif "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
