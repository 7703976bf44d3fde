"""``idard-bench run`` and ``status`` from the command line, on a real local Ray."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.bench.suite import load_suite
from idard.measure.records import KEY_COLUMNS
from tests.bench.conftest import write_crops, write_suite

ray = pytest.importorskip("ray")
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # ours alone
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, local_ray):
    """``run`` on 3 crops and a broken image, bicubic and nearest: read by the tests below
    (each run starts a worker and loads its models)."""
    root = tmp_path_factory.mktemp("cli")
    write_crops(root / "images", 3)
    (root / "images" / "broken.png").write_bytes(b"not a png")
    suite = write_suite(root, ["bicubic", "nearest"])
    result = runner.invoke(app, ["run", "--suite", str(suite), "--out", str(root / "run"), "--bootstrap", "100"])
    return root, result


def test_run_writes_the_run_directory_and_prints_the_table(first_run, tmp_path: Path) -> None:
    shutil.copytree(first_run[0], tmp_path / "project")  # the re-run below writes run.json
    suite, out, result = tmp_path / "project" / "suite.yaml", tmp_path / "project" / "run", first_run[1]
    assert result.exit_code == 0, result.output

    records = pl.read_parquet(out / "records" / "*.parquet")
    assert records.height == 4 * 2 * 2 and records.select(KEY_COLUMNS).is_unique().all()
    assert records.filter(pl.col("image") == "broken")["error"].str.contains("broken.png").all()
    table = pl.read_parquet(out / "ida_rd.parquet")
    assert sorted(table["downscaler"]) == ["bicubic", "nearest"] and table["n_images"].to_list() == [3, 3]
    assert {"suite.yaml", "run.json", "ida_rd.md", "ida_rd.csv", "paired_vs_bicubic.md"} <= {p.name for p in out.iterdir()}
    paired = pl.read_parquet(out / "paired_vs_bicubic.parquet")
    assert paired["downscaler"].to_list() == ["nearest"] and paired["baseline"].to_list() == ["bicubic"]
    assert paired["n_pairs"].to_list() == [3 * 2]
    assert "IDA-RD" in result.output and "broken.png" in result.output
    assert "16 tasks to compute (0 of 16 already in the store)" in result.output
    assert "1 image(s) have error records" in result.output and "broken: 4 record(s)" in result.output

    import json

    meta = json.loads((out / "run.json").read_text())
    assert [w["models"] for w in meta["workers"]] == [["srflow-tiny-4x"]] * len(meta["workers"])  # loaded models
    assert meta["libraries"]["torch"] and meta["libraries"]["lpips"] and meta["libraries"]["ray"]
    assert len(meta["lpips_trunks"]["lpips-alex"]["sha256"]) == 64
    assert meta["failing_images"] == [{"image": "broken", "records": 4, "error": records.filter(
        pl.col("image") == "broken")["error"].sort()[0]}]
    again = runner.invoke(app, ["run", "--suite", str(suite), "--out", str(out), "--bootstrap", "100"])
    history = json.loads((out / "run.json").read_text())["runs"]
    assert [r["computed"] for r in history] == [16, 0]  # a no-op re-run keeps the first run's entry
    assert again.exit_code == 0 and "Reduction" not in again.output


def test_status_lists_done_and_missing_per_downscaler(photo_dir: Path) -> None:
    out = photo_dir / "run"
    runner.invoke(app, ["run", "--suite", str(write_suite(photo_dir, ["bicubic"])), "--out", str(out), "--bootstrap", "100"])
    result = runner.invoke(app, ["status", "--suite", str(write_suite(photo_dir, ["bicubic", "box"])), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "6/12 records done" in result.output
    box_row = next(line for line in result.output.splitlines() if " box " in line)
    assert [c.strip() for c in box_row.split("│")[3:5]] == ["0", "6"]  # done, missing


def test_bad_suites_exit_2_naming_file_and_key_before_any_work(photo_dir: Path) -> None:
    suite = write_suite(photo_dir, ["bicubic", "sharpen(amount=2)"])
    result = runner.invoke(app, ["run", "--suite", str(suite), "--out", str(photo_dir / "run")])
    assert result.exit_code == 2
    assert str(suite) in result.output and "'downscalers[1]'" in result.output and "unknown downscaler 'sharpen'" in result.output
    assert not (photo_dir / "run").exists()


def test_a_missing_suite_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--suite", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml: no such suite file" in result.output


def test_report_rebuilds_the_tables_from_the_records_alone(first_run, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(first_run[0] / "run", out)
    assert first_run[1].exit_code == 0, first_run[1].output
    first = pl.read_parquet(out / "ida_rd.parquet")
    for name in ("ida_rd.md", "ida_rd.csv", "ida_rd.parquet"):
        (out / name).unlink()
    result = runner.invoke(app, ["report", str(out), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    again = pl.read_parquet(out / "ida_rd.parquet")
    assert again.select("downscaler", "ida_rd", "ci_low", "ci_high").equals(first.select("downscaler", "ida_rd", "ci_low", "ci_high"))
    assert "IDA-RD" in result.output


def test_report_on_a_directory_without_records_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no records" in result.output


def test_a_run_into_the_suites_own_folder_keeps_the_users_suite_file(photo_dir: Path) -> None:
    """``--out`` the suite's folder once rewrote the user's suite.yaml (comments lost), and
    the copy could not be loaded again."""
    suite = write_suite(photo_dir, ["bicubic"], samples=1)
    original = "# my comments\n" + suite.read_text()
    suite.write_text(original)
    result = runner.invoke(app, ["run", "--suite", str(suite), "--out", str(photo_dir), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert suite.read_text() == original
    copy = load_suite(photo_dir / "suite.run.yaml")
    assert copy.downscalers == ("bicubic",) and copy.images == (str(photo_dir / "images"),)
