"""Smoke test of ``benchmark/chaos_kill.py`` at a tiny size: one kill, then a run to the end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _chaos_module():
    spec = importlib.util.spec_from_file_location("chaos_kill", REPO / "benchmark" / "chaos_kill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # two driver starts and one local Ray: about half a minute on an idle 2-core machine
def test_one_kill_then_a_full_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    chaos = _chaos_module()
    result = chaos.chaos(kills=1, images=2, size=32, samples=1, max_delay=3.0, seed=0, work=tmp_path)
    assert result["final_exit_code"] == 0
    assert result["expected_keys"] == 2 * 3 * 1
    assert (result["lost"], result["duplicate_keys"], result["unreadable_parts"]) == (0, 0, 0)
    assert not result["lease_left"]


def test_the_store_check_counts_lost_and_doubled_keys(tmp_path: Path) -> None:
    """What the chaos loop reports, on a store built by hand (no Ray): seconds."""
    import polars as pl

    from idard.bench.store import RecordStore
    from idard.measure.records import RECORD_SCHEMA

    chaos = _chaos_module()
    rows = [{"image": f"img{i:03d}", "downscaler": "bicubic", "model": "srflow-tiny-4x", "metric": "lpips-alex",
             "seed": 0, "scale": 4, "value": 0.1, "finite": True} for i in range(3)]
    frame = pl.DataFrame(rows, schema={k: RECORD_SCHEMA[k] for k in rows[0]})
    RecordStore(tmp_path).append(frame)
    RecordStore(tmp_path).append(frame.head(1))
    state = chaos.store_state(tmp_path, expected_keys=4)
    assert (state["lost"], state["duplicate_keys"], state["records"]) == (1, 1, 4)
