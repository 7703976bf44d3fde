"""Shared fixtures: the reference data beside the checkout, and device skips."""

from __future__ import annotations

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
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none on this machine (CI has no GPU)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
