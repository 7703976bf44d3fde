"""`idard-bench migrate`: rewrites old ids in place, as a writer of records like any other."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.bench.store.lease import LeaseHeld, RunLease
from idard.bench.store.migrate import legacy_ids, migrate
from idard.bench.store import RecordStore
from idard.measure.records import RECORD_SCHEMA


def _legacy_run(tmp_path: Path) -> RecordStore:
    """A run directory of idard 0.1.0: a model id holding an absolute path."""
    model = f"srflow(weights='{tmp_path}/ckpt/SRFlow_DF2K_4X.pth',heat=0.9)"
    rows = [{"image": f"img{i}", "downscaler": "bicubic", "model": model, "metric": "psnr", "seed": 0,
             "value": 1.0, "finite": True} for i in range(4)]
    store = RecordStore(tmp_path / "run")
    store.append(pl.DataFrame(rows, schema={k: RECORD_SCHEMA[k] for k in rows[0]}))
    return store


def test_migrate_holds_the_lease_so_it_never_rewrites_beside_a_run(tmp_path: Path) -> None:
    store = _legacy_run(tmp_path)
    with RunLease(RecordStore(tmp_path / "run")).hold():
        with pytest.raises(LeaseHeld, match="in use by another run"):
            migrate(store)
        result = CliRunner().invoke(app, ["migrate", str(tmp_path / "run")])
        assert result.exit_code == 2 and "in use by another run" in result.output, result.output
    assert legacy_ids(store)  # untouched
    mapping, failed = migrate(store)  # and once the run has ended
    assert len(mapping) == 1 and not failed and not legacy_ids(store)
    assert not (tmp_path / "run" / "lease.json").exists()


def test_migrate_on_a_path_that_is_not_a_run_directory_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["migrate", str(tmp_path / "nowhere")])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "nowhere" in result.output
    assert "nothing to migrate" not in result.output and not (tmp_path / "nowhere").exists()
