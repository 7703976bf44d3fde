"""Record identity: keys name what was computed, never where the files sat.

The move test of issue 10: records computed for a suite are reused, all of them, after the
suite, its images, its precomputed LR set, its run directory and the weights cache have
all moved to other folders. Records are computed for real by the worker class a Ray actor
runs (in process here, so the test takes seconds).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from idard.bench.run.plan import make_plan
from idard.bench.store import RecordStore
from idard.bench.suite import load_suite
from idard.bench.run.worker import Worker
from idard.measure.models.embedded import TINY_4X_WEIGHTS
from tests.bench.conftest import write_crops


def _project(root: Path) -> Path:
    """A suite with an image folder, a precomputed LR set and weights found by name."""
    hr = write_crops(root / "hr", 2, size=32)
    (root / "lr_x4").mkdir()
    for path in hr:
        Image.open(path).resize((8, 8), Image.Resampling.BOX).save(root / "lr_x4" / path.name)
    suite = root / "suite.yaml"
    suite.write_text(
        "name: moved\nimages: [hr]\n"
        "downscalers: [bicubic, 'blur(sigma=2)', 'precomputed(folder=lr_x4)']\n"
        "models: ['srflow(weights=tiny.safetensors, config=TINY_4X, heat=0.7)']\n"
        "metrics: [psnr]\nsamples: 1\n"
    )
    return suite


def _compute(suite_path: Path, run: Path) -> int:
    """Compute every missing record with the worker; returns how many were computed."""
    suite = load_suite(suite_path)
    store = RecordStore(run)
    plan = make_plan(suite, store)
    worker = Worker(device="cpu", max_batch=8)
    for unit in plan.units:
        store.append(worker.run(unit, unit.image.read()), suite.digest())
    return plan.todo_tasks


def test_moving_suite_run_dir_and_weights_recomputes_nothing(tmp_path: Path, monkeypatch) -> None:
    first, second = tmp_path / "laptop" / "project", tmp_path / "cluster" / "elsewhere"
    monkeypatch.setenv("IDARD_WEIGHTS_DIR", str(tmp_path / "weights-a"))
    (tmp_path / "weights-a").mkdir()
    shutil.copy(TINY_4X_WEIGHTS, tmp_path / "weights-a" / "tiny.safetensors")
    first.mkdir(parents=True)
    suite = _project(first)
    assert _compute(suite, first / "run") == 2 * 3
    records = RecordStore(first / "run").scan().collect()
    assert records["error"].is_null().all()
    for column in ("downscaler", "model"):
        assert not records[column].str.contains(str(tmp_path)).any(), records[column].unique().to_list()

    shutil.move(first.parent, second.parent)  # suite, images, LR set and run dir together
    shutil.move(tmp_path / "weights-a", tmp_path / "weights-b")
    monkeypatch.setenv("IDARD_WEIGHTS_DIR", str(tmp_path / "weights-b"))
    moved = second.parent / "project"
    plan = make_plan(load_suite(moved / "suite.yaml"), RecordStore(moved / "run"))
    assert plan.units == [] and plan.done_tasks == plan.total_tasks == 6
    assert load_suite(moved / "suite.yaml").digest() == records["suite_hash"][0]


def test_one_bad_downscaler_never_fails_the_others_of_its_image(tmp_path: Path, monkeypatch) -> None:
    """A spec that cannot be built on the worker fails its own records only."""
    monkeypatch.setenv("IDARD_WEIGHTS_DIR", str(tmp_path))
    shutil.copy(TINY_4X_WEIGHTS, tmp_path / "tiny.safetensors")
    suite_path = _project(tmp_path)
    suite = load_suite(suite_path)
    plan = make_plan(suite, RecordStore(tmp_path / "run"))
    unit = plan.units[0]
    broken = tuple((i, "blur(sigma=-1)" if i == "blur(sigma=2.0)" else s) for i, s in unit.specs)
    import dataclasses

    monkey = dataclasses.replace(unit, specs=broken)
    frame = Worker(device="cpu").run(monkey, unit.image.read())
    by = {d: e for d, e in frame.select("downscaler", "error").iter_rows()}
    assert by["blur(sigma=2.0)"] is not None and "sigma must be >= 0" in by["blur(sigma=2.0)"]
    assert by["bicubic"] is None and np.isfinite(frame.filter(frame["downscaler"] == "bicubic")["value"][0])
    assert len(by) == 3


def test_evaluate_refuses_two_images_with_one_key(tmp_path: Path) -> None:
    from idard.measure.evaluate import evaluate

    a, b = write_crops(tmp_path / "a", 1), write_crops(tmp_path / "b", 1)
    with pytest.raises(ValueError, match=r"two images have the key 'img000'"):
        evaluate([a[0], b[0]], ["bicubic"], "srflow-tiny-4x", samples=1, metrics=["psnr"])


def test_run_directories_with_old_path_ids_are_noticed_and_migrated(tmp_path: Path) -> None:
    """idard 0.1.0 wrote absolute paths into ids: a run says so, `migrate` rewrites them."""
    import polars as pl

    from idard.bench.store.migrate import legacy_notice, migrate
    from idard.measure.records import RECORD_SCHEMA

    (tmp_path / "lr_x4").mkdir()
    (tmp_path / "lr_x4" / "a.png").write_bytes(b"lr")
    old_model = f"srflow(weights='{tmp_path}/ckpt/SRFlow_DF2K_4X.pth',heat=0.9)"
    old_lr = f"precomputed(folder='{tmp_path}/lr_x4')"
    rows = [{"image": "a", "downscaler": d, "model": old_model, "metric": "psnr", "seed": 0, "value": 1.0,
             "finite": True} for d in ("bicubic", old_lr)]
    store = RecordStore(tmp_path / "run")
    store.append(pl.DataFrame(rows, schema={k: RECORD_SCHEMA[k] for k in rows[0]}))
    assert "idard-bench migrate" in legacy_notice(store)
    mapping, failed = migrate(store)
    assert failed == {} and mapping[old_model] == "srflow(weights='SRFlow_DF2K_4X.pth',heat=0.9)"
    assert mapping[old_lr].startswith("precomputed(folder='lr_x4',content=")
    records = store.scan().collect()
    assert sorted(records["downscaler"]) == sorted(["bicubic", mapping[old_lr]]) and legacy_notice(store) is None
    assert records.height == 2 and len(store.parts()) == 1
