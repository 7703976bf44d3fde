"""The record store: atomic Parquet parts that a crash can never damage."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from idard.bench.store import STORE_SCHEMA, RecordStore
from idard.measure.records import KEY_COLUMNS, RECORD_SCHEMA


def _records(images: list[str], seeds: range = range(2)) -> pl.DataFrame:
    rows = [{"image": i, "downscaler": "bicubic", "model": "m", "metric": "lpips-alex", "seed": s,
             "scale": 4, "value": 0.1 * s, "finite": True} for i in images for s in seeds]
    return pl.DataFrame(rows, schema={k: RECORD_SCHEMA[k] for k in rows[0]})


def test_appended_parts_read_back_with_the_full_schema(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "run")
    store.append(_records(["a"]), suite_hash="abc")
    store.append(_records(["b", "c"]))
    frame = store.scan().collect()
    assert frame.schema == pl.Schema(STORE_SCHEMA)
    assert frame.height == 6 and store.count() == 6
    assert sorted(frame["image"].unique()) == ["a", "b", "c"]
    assert frame.filter(pl.col("image") == "a")["suite_hash"].unique().to_list() == ["abc"]
    assert len(store.parts()) == 2 and store.duplicate_keys().is_empty()


def test_an_empty_store_scans_as_an_empty_frame(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "never-written")
    assert store.scan().collect().is_empty()
    assert store.append(pl.DataFrame(schema=RECORD_SCHEMA)) is None


def test_partial_files_of_a_killed_writer_are_ignored_then_removed(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.append(_records(["a"]))
    partial = Path(store.records_dir) / ".part-20260101T000000-dead.parquet.tmp"
    partial.write_bytes(b"PAR1 half a footer")  # what a kill -9 mid-write leaves
    assert store.count() == 2
    assert store.remove_partials() == 1 and not partial.exists()


def test_duplicate_keys_are_detected(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.append(_records(["a"]))
    store.append(_records(["a"], range(1)))
    dupes = store.duplicate_keys()
    assert dupes.select(KEY_COLUMNS).to_dicts() == [
        {"image": "a", "downscaler": "bicubic", "model": "m", "metric": "lpips-alex", "seed": 0}
    ]


def test_object_store_uris_use_pyarrow_filesystems(tmp_path: Path) -> None:
    store = RecordStore(f"file://{tmp_path}/remote-run")
    assert not store.remote  # file:// is local: still written with rename
    store.append(_records(["a"]))
    assert RecordStore(tmp_path / "remote-run").count() == 2


def test_writing_text_beside_the_records_is_atomic(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    path = store.write_text("run.json", "{}\n")
    assert Path(path).read_text() == "{}\n"
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("column", ["written_at", "worker"])
def test_provenance_is_filled_in(tmp_path: Path, column: str) -> None:
    store = RecordStore(tmp_path)
    store.append(_records(["a"]).with_columns(worker=pl.lit("w1")))
    assert column in store.scan().collect().columns
