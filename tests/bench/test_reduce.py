"""A run directory's record store reduced to its IDA-RD report (`idard.bench.report.reduce`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from idard.bench.report.reduce import REPORT_KEYS, Report, build_report, scan_records
from idard.bench.store import RecordStore
from idard.measure.statistics import ida_rd_table, paired_differences

KEYS = list(REPORT_KEYS)


def records(n_images: int = 12, n_seeds: int = 4, seed: int = 0) -> pl.DataFrame:
    """Records of two models x three downscalers, SR noise shared by seed, a few failures."""
    rng = np.random.default_rng(seed)
    frames = []
    for model, scale in (("m2", 2), ("m4", 4)):
        difficulty = rng.uniform(0.2, 0.6, n_images)
        noise = rng.normal(0.0, 0.02, (n_images, n_seeds))
        for downscaler, shift in (("bicubic", 0.0), ("nearest", 0.05), ("area", -0.01)):
            value = (difficulty[:, None] + shift + noise + rng.normal(0.0, 0.003, noise.shape)).ravel()
            frames.append(pl.DataFrame({
                "image": np.repeat([f"img{i:03d}" for i in range(n_images)], n_seeds),
                "downscaler": downscaler, "model": model, "metric": "lpips",
                "seed": np.tile(np.arange(n_seeds, dtype=np.int64), n_images), "scale": np.int64(scale),
                "value": value, "finite": True,
            }))
    frame = pl.concat(frames)
    failed = pl.Series(rng.random(frame.height) < 0.02)
    return frame.with_columns(value=pl.when(failed).then(float("nan")).otherwise(pl.col("value")), finite=~failed)


def write_parts(run_dir: Path, frame: pl.DataFrame, rows_per_part: int) -> None:
    """``frame`` appended as the runner does, ``rows_per_part`` records per part."""
    store = RecordStore(run_dir)
    for start in range(0, frame.height, rows_per_part):
        store.append(frame.slice(start, rows_per_part), suite_hash="abc")


FRAME = records()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FRAME in 15 parts, plus what a crashed or busy writer leaves behind."""
    root = tmp_path_factory.mktemp("run")
    write_parts(root, FRAME, rows_per_part=20)
    (root / "records" / ".part-20250101T000000000000-deadbeef.parquet.tmp").write_bytes(b"PAR1 half-written")
    (root / "records" / "notes.txt").write_text("not a part")
    return root


# --------------------------------------------------------------------------- scanning


def test_scan_reads_every_part_and_ignores_temporary_files(run_dir: Path) -> None:
    assert len(list((run_dir / "records").glob("part-*.parquet"))) == 15
    scanned = scan_records(run_dir).collect()
    assert scanned.height == FRAME.height
    assert {"suite_hash", "worker", "written_at"} <= set(scanned.columns)  # the store's columns, all available
    key = ["image", "downscaler", "model", "seed"]
    assert scanned.select(FRAME.columns).sort(key).equals(FRAME.sort(key))


def test_scan_of_a_run_without_records_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        scan_records(tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "records").mkdir(parents=True)
    (empty / "records" / ".part-x.parquet.tmp").write_bytes(b"")  # only a part still being written
    with pytest.raises(FileNotFoundError, match="no records"):
        scan_records(empty)


def test_scan_is_a_snapshot_of_the_parts_present_when_it_was_made(tmp_path: Path) -> None:
    write_parts(tmp_path, FRAME.head(10), rows_per_part=10)
    scan = scan_records(tmp_path)
    write_parts(tmp_path, FRAME.slice(10, 10), rows_per_part=10)  # the driver flushes meanwhile
    assert scan.select(pl.len()).collect().item() == 10
    assert scan_records(tmp_path).select(pl.len()).collect().item() == 20


# --------------------------------------------------------------------------- the report


def test_report_table_is_ida_rd_table_of_the_records(run_dir: Path) -> None:
    report = build_report(scan_records(run_dir), baseline=None, n_boot=200, seed=3)
    assert isinstance(report, Report) and report.paired is None
    expected = ida_rd_table(FRAME, by=KEYS, n_boot=200, seed=3)
    assert report.table.drop("higher_is_better").equals(expected)
    assert report.table.columns[:4] == KEYS and report.table.height == 6  # 3 downscalers x 2 models
    assert report.table["n_samples"].sum() + report.table["n_nonfinite"].sum() == FRAME.height
    assert (report.baseline, report.n_boot, report.seed) == (None, 200, 3)


def test_report_with_a_baseline_has_its_paired_differences(run_dir: Path) -> None:
    report = build_report(scan_records(run_dir), baseline="bicubic", n_boot=200)
    assert report.paired is not None
    expected = paired_differences(FRAME, "bicubic", by=KEYS, n_boot=200)
    assert report.paired.select(expected.columns).equals(expected)
    assert report.paired.select("downscaler", "model").rows() == [("area", "m2"), ("area", "m4"),
                                                                  ("nearest", "m2"), ("nearest", "m4")]
    assert set(report.paired["baseline"]) == {"bicubic"}
    shift = dict(zip(report.paired["downscaler"], report.paired["mean_diff"]))
    assert shift["nearest"] == pytest.approx(0.05, abs=0.005) and shift["area"] == pytest.approx(-0.01, abs=0.005)


def test_an_unknown_baseline_is_refused_by_name_with_the_known_ones(run_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown downscaler 'lanczos'; known: area, bicubic, nearest"):
        build_report(scan_records(run_dir), baseline="lanczos", n_boot=100)


def test_a_small_memory_budget_changes_passes_not_numbers(tmp_path: Path) -> None:
    """Many parts reduced a group at a time (max_rows below one group) give the same report."""
    frame = records(n_images=30, n_seeds=5, seed=1)
    write_parts(tmp_path, frame, rows_per_part=37)  # parts cut across images and downscalers
    whole = build_report(frame, baseline="bicubic", n_boot=150, seed=9)
    for max_rows in (1, 150, 400):
        batched = build_report(scan_records(tmp_path), baseline="bicubic", n_boot=150, seed=9, max_rows=max_rows)
        assert batched.table.equals(whole.table)
        assert batched.paired is not None and whole.paired is not None
        assert batched.paired.equals(whole.paired)


def test_records_without_a_needed_column_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        build_report(FRAME.drop("finite"), baseline=None, n_boot=0)


def _modules_after_a_report(tmp_path: Path, *options: str) -> tuple[str, set[str]]:
    """``idard-bench report`` in a fresh interpreter: its output and the modules it loaded."""
    import json
    import subprocess
    import sys

    write_parts(tmp_path / "run", FRAME.with_columns(higher_is_better=pl.lit(False)), rows_per_part=100)
    arguments = ["report", str(tmp_path / "run"), "--out", str(tmp_path / "tables"), "--bootstrap", "100", *options]
    program = ("import json, sys; from typer.testing import CliRunner; from idard.bench.cli import app; "
               f"result = CliRunner().invoke(app, {arguments!r}); "
               "assert result.exit_code == 0, result.output; "
               "print(json.dumps([result.output, sorted(sys.modules)]))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    output, modules = json.loads(done.stdout.strip().splitlines()[-1])
    return output, set(modules)


def test_reporting_never_loads_torch(tmp_path: Path) -> None:
    """``idard-bench report`` reads records only: loading torch would cost it ~400 MB and
    seconds. It did, through resolving the baseline's spelling in the downscaler registry
    and through the registry's labels (`idard.measure.images` imported torch at the top)."""
    output, modules = _modules_after_a_report(tmp_path)
    assert "nearest" in output and "Paired" in output, output
    assert "torch" not in modules


def test_a_report_without_baseline_never_loads_scipy_stats(tmp_path: Path) -> None:
    """`scipy.stats` (up to 1.5 s to import) serves only the paired table's Wilcoxon
    p-values, so a report without a baseline does not pay for it."""
    output, modules = _modules_after_a_report(tmp_path, "--baseline", "none")
    assert "Paired" not in output, output
    assert "scipy.stats" not in modules


def test_a_report_with_a_baseline_never_loads_scipy_stats(tmp_path: Path) -> None:
    """Its import cost more than reducing a million records (issue 22 item 10): the paired
    table's Wilcoxon p-values are computed without it (`statistics.wilcoxon_p`)."""
    output, modules = _modules_after_a_report(tmp_path)
    assert "Paired" in output, output
    assert "scipy.stats" not in modules
