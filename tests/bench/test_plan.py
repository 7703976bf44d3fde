"""Planning: every key of a suite, minus the store, grouped into per-image work units."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from idard.bench.run.plan import StaleRecordsError, make_plan, missing_keys
from idard.bench.suite.sources import ImageRef
from idard.bench.store import RecordStore
from idard.bench.suite import parse_suite
from idard.measure.records import RECORD_SCHEMA
from idard.measure.models import MODELS

IMAGES = [ImageRef("a", "/nowhere/a.png"), ImageRef("b", "/nowhere/b.png")]
TINY = MODELS.create("srflow-tiny-4x")


def _suite(**overrides):
    data = {"images": ["bundled:held-out"], "downscalers": ["bicubic", "nearest"],
            "models": ["srflow-tiny-4x"], "samples": 3, **overrides}
    return parse_suite(data)


def _held(store: RecordStore, keys: list[tuple], weights_hash: str | None = None) -> None:
    rows = [{"image": i, "downscaler": d, "model": m, "metric": "lpips-alex", "seed": s, "scale": 4,
             "value": 0.1, "finite": True, "weights_hash": weights_hash or TINY.weights_hash}
            for i, d, m, s in keys]
    store.append(pl.DataFrame(rows, schema={k: RECORD_SCHEMA[k] for k in rows[0]}))


def test_an_empty_store_plans_every_key_one_unit_per_image(tmp_path: Path) -> None:
    plan = make_plan(_suite(), RecordStore(tmp_path), IMAGES)
    assert plan.total_tasks == 2 * 2 * 1 * 1 * 3 and plan.done_tasks == 0
    assert [u.image.name for u in plan.units] == ["a", "b"]
    unit = plan.units[0]
    assert [(i.downscaler, i.seeds, i.metrics) for i in unit.items] == [
        ("bicubic", (0, 1, 2), ("lpips-alex",)), ("nearest", (0, 1, 2), ("lpips-alex",))]
    assert sum(u.tasks for u in plan.units) == plan.todo_tasks == 12


def test_held_keys_are_subtracted_and_the_rest_grouped(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    _held(store, [("a", "bicubic", "srflow-tiny-4x", s) for s in range(3)] + [("a", "nearest", "srflow-tiny-4x", 0)])
    plan = make_plan(_suite(), store, IMAGES)
    assert plan.done_tasks == 4 and plan.todo_tasks == 8
    unit_a = plan.units[0]
    assert [(i.downscaler, i.seeds) for i in unit_a.items] == [("nearest", (1, 2))]


def test_a_complete_store_plans_nothing(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    _held(store, [(i, d, "srflow-tiny-4x", s) for i in "ab" for d in ("bicubic", "nearest") for s in range(3)])
    plan = make_plan(_suite(), store, IMAGES)
    assert plan.units == [] and plan.done_tasks == plan.total_tasks == 12


def test_a_new_downscaler_or_seed_plans_only_its_keys(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    _held(store, [(i, d, "srflow-tiny-4x", s) for i in "ab" for d in ("bicubic", "nearest") for s in range(3)])
    grown = make_plan(_suite(downscalers=["bicubic", "nearest", "box"], samples=4), store, IMAGES)
    planned = {(u.image.name, i.downscaler, s) for u in grown.units for i in u.items for s in i.seeds}
    assert planned == {(im, "box", s) for im in "ab" for s in range(4)} | {(im, d, 3) for im in "ab" for d in ("bicubic", "nearest")}


def test_a_new_temperature_is_a_new_model_and_reuses_nothing(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    _held(store, [(i, d, "srflow-tiny-4x", s) for i in "ab" for d in ("bicubic", "nearest") for s in range(3)])
    plan = make_plan(_suite(models=["srflow-tiny-4x(heat=0.5)"]), store, IMAGES)
    assert plan.done_tasks == 0 and {u.model for u in plan.units} == {"srflow-tiny-4x(heat=0.5)"}


def test_records_of_other_weights_under_the_same_id_are_refused(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    _held(store, [("a", "bicubic", "srflow-tiny-4x", 0)], weights_hash="0" * 64)
    with pytest.raises(StaleRecordsError, match=r"srflow-tiny-4x made with weights sha256 000000000000.*new --out"):
        make_plan(_suite(), store, IMAGES)


def test_a_new_metric_plans_exactly_that_metrics_keys(tmp_path: Path) -> None:
    """Keys are matched with their metric: lpips-alex records do not make psnr done."""
    store = RecordStore(tmp_path)
    _held(store, [(i, d, "srflow-tiny-4x", s) for i in "ab" for d in ("bicubic", "nearest") for s in range(3)])
    plan = make_plan(_suite(metrics=["lpips-alex", "psnr"]), store, IMAGES)
    assert (plan.total_tasks, plan.done_tasks, plan.todo_tasks) == (24, 12, 12)
    planned = {(u.image.name, i.downscaler, m, s) for u in plan.units for i in u.items for m in i.metrics for s in i.seeds}
    assert planned == {(im, d, "psnr", s) for im in "ab" for d in ("bicubic", "nearest") for s in range(3)}
    assert all(i.metrics == ("psnr",) for u in plan.units for i in u.items)


def test_an_image_of_several_model_calls_is_one_unit_per_batch_and_every_key_planned_once(tmp_path: Path) -> None:
    """3 downscalers x 3 seeds = 9 samples, max_batch 6: the worker's model calls take 2 LR
    images (6 samples) then 1, so each image is planned as those two units."""
    plan = make_plan(_suite(downscalers=["bicubic", "nearest", "box"], max_batch=6), RecordStore(tmp_path), IMAGES)
    assert [(u.image.name, [i.downscaler for i in u.items]) for u in plan.units] == [
        ("a", ["bicubic", "nearest"]), ("a", ["box"]), ("b", ["bicubic", "nearest"]), ("b", ["box"])]
    planned = [(u.image.name, i.downscaler, m, s) for u in plan.units for i in u.items for m in i.metrics for s in i.seeds]
    assert len(planned) == len(set(planned)) == plan.todo_tasks == 2 * 3 * 3
    whole = make_plan(_suite(downscalers=["bicubic", "nearest", "box"]), RecordStore(tmp_path), IMAGES)
    assert [len(u.items) for u in whole.units] == [3, 3]  # 9 samples fit one call of 64


def _anti_join(grid: dict[str, pl.Series], held: pl.DataFrame) -> pl.DataFrame:
    """The plain definition: every combination of the axes, minus the held keys."""
    axes = list(grid.values())
    keys = axes[0].to_frame()
    for axis in axes[1:]:
        keys = keys.join(axis.to_frame(), how="cross")
    return keys.join(held, on=[a.name for a in axes], how="anti")


@pytest.mark.parametrize("seed", range(5))
def test_missing_keys_is_the_anti_join_of_the_grid_in_grid_order(seed: int) -> None:
    """Held keys may repeat, lie outside the grid (another suite's downscaler, a seed the
    suite dropped) or be null; only the grid's own keys are subtracted, in order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = {"image": pl.Series("image", ["c", "a", "b"]), "downscaler": pl.Series("downscaler", ["x", "y"]),
            "model": pl.Series("model", ["m"]), "metric": pl.Series("metric", ["lpips", "psnr"]),
            "seed": pl.Series("seed", [7, 0, 3], pl.Int64)}
    pools = {"image": ["a", "b", "c", "z", None], "downscaler": ["x", "y", "w"], "model": ["m", "n"],
             "metric": ["lpips", "psnr"], "seed": [0, 3, 7, 9]}
    n = int(rng.integers(0, 60))
    held = pl.DataFrame({k: [pool[i] for i in rng.integers(0, len(pool), n)] for k, pool in pools.items()},
                        schema={"image": pl.String, "downscaler": pl.String, "model": pl.String,
                                "metric": pl.String, "seed": pl.Int64})
    got = missing_keys(grid, held.lazy())
    assert got.rows() == _anti_join(grid, held).rows()  # the same keys in the same (grid) order
    assert got.schema == _anti_join(grid, held).schema


def test_missing_keys_of_an_empty_grid_or_store() -> None:
    grid = {"image": pl.Series("image", [], pl.String), "seed": pl.Series("seed", [0, 1], pl.Int64)}
    assert missing_keys(grid, pl.LazyFrame(schema={"image": pl.String, "seed": pl.Int64})).height == 0
    grid["image"] = pl.Series("image", ["a"])
    assert missing_keys(grid, pl.LazyFrame(schema={"image": pl.String, "seed": pl.Int64})).rows() == [("a", 0), ("a", 1)]
