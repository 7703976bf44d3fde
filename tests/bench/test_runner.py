"""The runner on a real local Ray instance: complete, exactly-once, incremental."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from idard.bench.run.jobs import run_suite, suite_status
from idard.bench.run.runner import RunOptions
from idard.bench.store import RecordStore
from idard.bench.suite import load_suite
from idard.measure.records import KEY_COLUMNS
from tests.bench.conftest import write_crops, write_suite

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # ours alone
    yield
    ray.shutdown()


def _console() -> Console:
    return Console(file=io.StringIO(), width=200)


def _run(suite_path: Path, out: Path):
    return run_suite(load_suite(suite_path), out, RunOptions(), _console())


def test_a_run_computes_every_key_once_with_errors_as_records(photo_dir: Path) -> None:
    (photo_dir / "images" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    suite = write_suite(photo_dir, ["bicubic", "nearest"])
    summary = _run(suite, photo_dir / "run")
    records = RecordStore(photo_dir / "run").scan().collect()
    assert records.height == 4 * 2 * 2 == summary.result.computed_tasks
    assert records.select(KEY_COLUMNS).is_unique().all()
    broken = records.filter(pl.col("image") == "zz_corrupt")
    assert broken.height == 4 and broken["error"].str.contains("zz_corrupt.png").all()
    good = records.filter(pl.col("image") != "zz_corrupt")
    assert good["finite"].all() and good["value"].is_between(0, 1).all()
    assert good["worker"].is_not_null().all() and good["suite_hash"].is_not_null().all()


BASE = ["bicubic", "blur(sigma=2)"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory, local_ray) -> Path:
    """One run (3 crops, bicubic and a parametrised blur, K = 2) that the tests below read,
    or copy before they change it: each run starts a worker and loads its models."""
    root = tmp_path_factory.mktemp("base")
    write_crops(root / "images", 3)
    _run(write_suite(root, BASE), root / "run")
    return root


def _copy(base: Path, to: Path) -> Path:
    shutil.copytree(base, to / "project")
    return to / "project"


def test_a_second_run_does_no_model_work(base_run: Path, tmp_path: Path) -> None:
    project = _copy(base_run, tmp_path)
    parts = RecordStore(project / "run").parts()
    again = _run(project / "suite.yaml", project / "run")
    assert again.result is None and again.plan.done_tasks == again.plan.total_tasks == 12
    assert RecordStore(project / "run").parts() == parts


def test_adding_a_downscaler_computes_only_its_keys(base_run: Path, tmp_path: Path) -> None:
    project = _copy(base_run, tmp_path)
    grown = _run(write_suite(project, [*BASE, "box"]), project / "run")
    assert grown.result.computed_tasks == 3 * 2
    records = RecordStore(project / "run").scan().collect()
    assert records.height == 18 and records.select(KEY_COLUMNS).is_unique().all()
    _, status = suite_status(load_suite(project / "suite.yaml"), project / "run")
    assert status["missing"].to_list() == [0, 0, 0]


def test_records_equal_the_in_process_evaluation(base_run: Path) -> None:
    """Distribution changes where records are computed, never their values."""
    from idard.measure.evaluate import evaluate

    ray_records = RecordStore(base_run / "run").scan().collect().sort(KEY_COLUMNS)
    local = evaluate(sorted((base_run / "images").glob("*.png")), BASE, "srflow-tiny-4x",
                     samples=2, device="cpu").sort(KEY_COLUMNS)
    assert ray_records.height == 3 * 2 * 2
    assert ray_records.select(KEY_COLUMNS).equals(local.select(KEY_COLUMNS))
    assert (ray_records["value"] - local["value"]).abs().max() < 1e-5


def test_a_warm_pool_serves_several_plans_and_outlives_them(photo_dir: Path) -> None:
    """Workers started once (`start_workers`) compute two suites' plans with their models
    loaded once, and are left running for the caller, who owns them."""
    from idard.bench.run.plan import make_plan
    from idard.bench.run.progress import RunProgress
    from idard.bench.run.runner import execute, start_workers

    options = RunOptions(workers=1)
    first = make_plan(load_suite(write_suite(photo_dir, ["bicubic"], samples=1)), RecordStore(photo_dir / "a"))
    pool = start_workers(first, options)
    try:
        one = execute(first, RecordStore(photo_dir / "a"), options, RunProgress(_console()), actors=pool)
        second = make_plan(load_suite(write_suite(photo_dir, ["nearest"], samples=1)), RecordStore(photo_dir / "b"))
        two = execute(second, RecordStore(photo_dir / "b"), options, RunProgress(_console()), actors=pool)
        info = ray.get(pool[0].info.remote(), timeout=60)  # still up: execute did not kill it
    finally:
        for actor in pool:
            ray.kill(actor, no_restart=True)
    assert one.computed_tasks == two.computed_tasks == 3
    assert one.workers[0]["worker"] == two.workers[0]["worker"] == info["worker"]
    assert info["models"] == ["srflow-tiny-4x"]  # loaded by the first plan, reused by the second
    assert RecordStore(photo_dir / "b").scan().collect()["downscaler"].unique().to_list() == ["nearest"]


def test_progress_in_a_log_moves_per_batch_with_per_worker_rates_and_writes_each_key_once(photo_dir: Path) -> None:
    """max_batch 2 with 2 seeds: one LR image per model call, so each image (4 records) is
    two units of 2 records, and the log moves every 2 records, not every image."""
    from idard.bench.run.plan import make_plan
    from idard.bench.run.progress import RunProgress
    from idard.bench.run.runner import execute

    suite_path = write_suite(photo_dir, ["bicubic", "nearest"])
    suite_path.write_text(suite_path.read_text() + "max_batch: 2\n")
    store = RecordStore(photo_dir / "run")
    plan = make_plan(load_suite(suite_path), store)
    assert len(plan.units) == 3 * 2 and {u.tasks for u in plan.units} == {2}
    log = io.StringIO()
    result = execute(plan, store, RunOptions(), RunProgress(Console(file=log, width=200, force_terminal=False), every=0.0))
    lines = [line for line in log.getvalue().splitlines() if " records  " in line]
    assert [line.split("/")[0] for line in lines] == ["2", "4", "6", "8", "10", "12"]
    assert all("/s]" in line and ": " in line.split("[")[-1] for line in lines)  # per-worker rates, as text
    records = store.scan().collect()
    assert result.computed_tasks == records.height == 12 and records.select(KEY_COLUMNS).is_unique().all()


def test_workers_asked_for_but_never_up_are_named_once_while_the_run_goes_on(tmp_path: Path) -> None:
    """3 workers of 2 cores on this 2-core Ray: one fits, two wait (an autoscaler would add
    nodes for them). The run finishes on the one, and says so once, not only 'on 3 workers'."""
    write_crops(tmp_path / "images", 4)
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: waiting\nimages: [images]\ndownscalers: [bicubic]\nmodels: ['latency(ms=400)']\n"
                     "metrics: [psnr]\nsamples: 2\n")
    console = _console()
    options = RunOptions(workers=3, cpus_per_worker=2, waiting_note_s=0.5)
    summary = run_suite(load_suite(suite), tmp_path / "run", options, console)
    said = console.file.getvalue()
    assert summary.result.computed_tasks == 8 and len(summary.result.workers) == 1, said
    assert "on 3 workers" in said
    assert said.count("2 of 3 workers are still waiting for resources") == 1, said
