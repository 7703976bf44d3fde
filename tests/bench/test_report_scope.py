"""Which keys a report reduces, and where it may write: ``run`` and ``report`` give one table
for one run directory, ``run.json``'s summary survives a no-op re-run, and the suite's own
folder keeps the user's files. Runs without Ray: records are computed in process by the
worker class, and the ``run`` commands below have nothing left to compute."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from typer.testing import CliRunner

from idard.bench.run import jobs
from idard.bench.cli import app
from idard.bench.run.plan import make_plan
from idard.bench.run.runner import RunOptions
from idard.bench.suite.sources import list_images
from idard.bench.store import RecordStore
from idard.bench.suite import load_suite
from idard.bench.run.worker import Worker
from tests.bench.conftest import write_crops

runner = CliRunner()
SUITE = "name: scope\nimages: [images]\ndownscalers: [bicubic, nearest]\nmodels: [srflow-tiny-4x]\nmetrics: [psnr]\n"


def _compute(suite_path: Path, run: Path) -> None:
    """What `run_suite` computes, with the worker in process instead of Ray actors."""
    suite = load_suite(suite_path)
    store = RecordStore(run)
    plan = make_plan(suite, store, list_images(list(suite.images), Path(suite.base_dir)))
    worker = Worker(device="cpu", max_batch=8)
    for unit in plan.units:
        store.append(worker.run(unit, unit.image.read()), suite.digest())


@pytest.fixture()
def grown_run(tmp_path: Path) -> Path:
    """A run directory that outlived its suite: 3 images x 3 seeds were computed, then one
    image was deleted and the suite now draws 2 samples."""
    write_crops(tmp_path / "images", 3, size=32)
    (tmp_path / "suite.yaml").write_text(SUITE + "samples: 3\n")
    _compute(tmp_path / "suite.yaml", tmp_path / "run")
    (tmp_path / "images" / "img002.png").unlink()
    (tmp_path / "suite.yaml").write_text(SUITE + "samples: 2\n")
    return tmp_path


def test_run_and_report_give_one_table_for_one_run_directory(grown_run: Path) -> None:
    run = grown_run / "run"
    ran = runner.invoke(app, ["run", "--suite", str(grown_run / "suite.yaml"), "--out", str(run), "--bootstrap", "100"])
    assert ran.exit_code == 0, ran.output
    assert "nothing to compute" in ran.output
    by_run = pl.read_csv(run / "ida_rd.csv")
    assert by_run["n_images"].to_list() == [2, 2] and by_run["n_samples"].to_list() == [4, 4]
    by_run_md = (run / "ida_rd.md").read_text()
    (run / "ida_rd.csv").unlink()

    reported = runner.invoke(app, ["report", str(run), "--bootstrap", "100"])
    assert reported.exit_code == 0, reported.output
    assert pl.read_csv(run / "ida_rd.csv").equals(by_run)  # the same keys, the same numbers
    heading = "keys: the keys of suite 'scope' (2 images x 2 downscalers x 1 model x 1 metric x 2 seeds"
    md = (run / "ida_rd.md").read_text()
    assert heading in by_run_md and md == by_run_md  # the same heading too
    assert heading in md and "10 other records in the run directory left out (--all-records" in md

    everything = runner.invoke(app, ["report", str(run), "--bootstrap", "100", "--all-records", "--out",
                                     str(grown_run / "all")])
    assert everything.exit_code == 0, everything.output
    assert pl.read_csv(grown_run / "all" / "ida_rd.csv")["n_samples"].to_list() == [9, 9]
    assert "keys: every record of the run directory (--all-records)" in (grown_run / "all" / "ida_rd.md").read_text()

    (grown_run / "old.yaml").write_text(SUITE.replace("name: scope", "name: old") + "samples: 3\n")
    shutil.copy(grown_run / "images" / "img001.png", grown_run / "images" / "img002.png")  # back, for its listing
    older = runner.invoke(app, ["report", str(run), "--bootstrap", "100", "--suite", str(grown_run / "old.yaml"),
                                "--out", str(grown_run / "old")])
    assert older.exit_code == 0, older.output
    assert pl.read_csv(grown_run / "old" / "ida_rd.csv")["n_samples"].to_list() == [9, 9]


def test_a_no_op_rerun_keeps_the_summary_of_the_run_that_computed(grown_run: Path) -> None:
    """The README says run.json's summary is never overwritten by a no-op re-run."""
    store = RecordStore(grown_run / "run")
    first = {"suite": "scope", "computed": 18, "code_version": "first", "runs": [{"computed": 18}]}
    store.write_text("run.json", json.dumps(first))
    suite = load_suite(grown_run / "suite.yaml")
    summary = jobs.run_suite(suite, grown_run / "run", RunOptions(), Console(file=io.StringIO()))
    assert summary.result is None  # nothing computed, Ray never started
    meta = json.loads((grown_run / "run" / "run.json").read_text())
    assert meta["computed"] == 18 and meta["code_version"] == "first"
    assert [r["computed"] for r in meta["runs"]] == [18, 0]


def test_the_suites_own_folder_keeps_the_users_tables(tmp_path: Path) -> None:
    """``--out`` at the suite's folder: its ida_rd.md, paired_* and report.html are the user's."""
    write_crops(tmp_path / "images", 2, size=32)
    (tmp_path / "suite.yaml").write_text(SUITE + "samples: 1\n")
    _compute(tmp_path / "suite.yaml", tmp_path)
    mine = {name: f"my own {name}\n" for name in ("ida_rd.md", "paired_vs_bicubic.md", "report.html")}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    ran = runner.invoke(app, ["run", "--suite", str(tmp_path / "suite.yaml"), "--out", str(tmp_path),
                              "--bootstrap", "100"])
    assert ran.exit_code == 0, ran.output
    reported = runner.invoke(app, ["report", str(tmp_path), "--bootstrap", "100", "--html", "--grid-images", "0"])
    assert reported.exit_code == 0, reported.output
    assert {name: (tmp_path / name).read_text() for name in mine} == mine
    assert not (tmp_path / "ida_rd.csv").exists()
    for result in (ran, reported):
        assert "tables not written" in result.output and "suite.yaml idard did not write" in result.output
        assert "bicubic" in result.output  # the table is still printed
    assert "html not written" in reported.output
    elsewhere = runner.invoke(app, ["report", str(tmp_path), "--bootstrap", "100", "--out", str(tmp_path / "t")])
    assert elsewhere.exit_code == 0 and (tmp_path / "t" / "ida_rd.md").is_file()
