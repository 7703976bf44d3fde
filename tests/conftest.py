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
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none on this machine (CI has no GPU)")
    skip_slow = pytest.mark.skip(
        reason="slow (minutes on 2 CPU cores): skipped by default and in CI; run with `pytest -m slow` "
        "or IDARD_RUN_SLOW=1"
    )
    run_slow = "slow" in (config.getoption("-m") or "") or os.environ.get("IDARD_RUN_SLOW") == "1"
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
