"""The record store: atomic Parquet parts that a crash can never damage."""

from __future__ import annotations

import datetime as dt
import io
import os
import time
from pathlib import Path

import polars as pl
import pytest

from idard.bench.store import STORE_SCHEMA, RecordStore, StoreWriteError, skipped_part_notes, without_duplicates
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


def test_scan_batches_read_every_part_once_in_batches_bounded_by_size(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "run")
    for i in range(7):
        store.append(_records([f"img{i}-{j}" for j in range(1 + 20 * (i == 3))]))  # part 3 is large
    sizes = {p: os.path.getsize(p) for p in store.parts()}
    limit = 2.5 * min(sizes.values())
    batches = [scan.collect() for scan in store.scan_batches(max_mb=limit / 2**20)]
    assert 1 < len(batches) < 7
    together = pl.concat(batches)
    assert together.sort(KEY_COLUMNS).equals(store.scan().collect().sort(KEY_COLUMNS))  # each record once
    part_of = {image: p for p in sizes for image in pl.read_parquet(p)["image"]}
    for batch in batches:  # at most the limit on disk, or one part alone
        parts = {part_of[image] for image in batch["image"]}
        assert sum(sizes[p] for p in parts) <= limit or len(parts) == 1
    assert [s.collect().height for s in RecordStore(tmp_path / "empty").scan_batches()] == [0]


def test_an_empty_store_scans_as_an_empty_frame(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "never-written")
    assert store.scan().collect().is_empty()
    assert store.append(pl.DataFrame(schema=RECORD_SCHEMA)) is None


def test_partial_files_of_a_killed_writer_are_ignored_then_removed(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.append(_records(["a"]))
    partial = Path(store.records_dir) / ".part-20260101T000000-dead.parquet.tmp"
    partial.write_bytes(b"PAR1 half a footer")  # what a kill -9 mid-write leaves
    old = time.time() - 3600
    os.utime(partial, (old, old))
    assert store.count() == 2
    assert store.remove_partials() == 1 and not partial.exists()


def test_remove_partials_never_deletes_a_live_writers_temporary_file(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    live = Path(store.records_dir) / ".part-20260101T000000-live.parquet.tmp"
    live.parent.mkdir(parents=True)
    live.write_bytes(b"PAR1 being written")  # a writer between open() and rename()
    assert store.remove_partials() == 0 and live.exists()


@pytest.mark.parametrize("content", [b"", b"garbage, not parquet", "truncated", "other schema"])
def test_an_unreadable_part_is_named_left_out_then_quarantined(tmp_path: Path, content) -> None:
    store = RecordStore(tmp_path)
    store.append(_records(["a"]))
    good = store.parts()[0]
    bad = Path(store.records_dir) / "part-20990101T000000-bad.parquet"
    if content == "truncated":
        content = Path(good).read_bytes()[:-20]
    elif content == "other schema":
        buffer = io.BytesIO()
        pl.DataFrame({"image": ["a"], "score": [1.0]}).write_parquet(buffer)
        content = buffer.getvalue()
    bad.write_bytes(content)

    assert store.parts() == [good] and store.count() == 2  # readers go on without it
    assert [path for path, _ in store.skipped_parts] == [str(bad)]
    assert str(bad) in skipped_part_notes(store)[0]
    moved = store.quarantine()
    assert [Path(p).parent.name for p, _ in moved] == ["quarantine"] and not bad.exists()
    assert Path(moved[0][0]).read_bytes() == content  # set aside, not deleted
    assert store.parts() == [good] and store.skipped_parts == []


def test_readers_count_a_key_held_twice_once(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.append(_records(["a", "b"]))
    store.append(_records(["a"]))  # what two runs on one directory used to leave
    unique, extra = without_duplicates(store.scan())
    assert extra == 2 and unique.collect().height == 4
    assert without_duplicates(store.scan().filter(pl.col("image") == "b"))[1] == 0
    # the store's own batches (tiny here: one part each) find the same copies
    unique, extra = without_duplicates(store.scan(), store)
    assert extra == 2 and unique.collect().height == 4
    assert [s.collect().height for s in store.scan_batches(max_mb=1e-6)] == [4, 2]
    clean = RecordStore(tmp_path / "clean")
    clean.append(_records(["a"]))
    clean.append(_records(["b"]))
    assert without_duplicates(clean.scan(), clean)[1] == 0


def test_a_failed_write_is_one_line_naming_the_file_and_leaves_no_partial(tmp_path: Path) -> None:
    (tmp_path / "records").write_text("a file where the records folder should be")
    store = RecordStore(tmp_path)
    with pytest.raises(StoreWriteError, match=r"records/part-.*\.parquet: cannot write"):
        store.append(_records(["a"]))


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


def test_provenance_columns_hold_who_wrote_when_and_for_which_suite(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    before = dt.datetime.now(dt.timezone.utc)
    store.append(_records(["a"]).with_columns(worker=pl.lit("node-1:42")), suite_hash="abc123")
    after = dt.datetime.now(dt.timezone.utc)
    store.append(_records(["b"]))  # no worker column, no suite hash: filled with null and ""
    frame = store.scan().sort("image", "seed").collect()
    assert frame["worker"].to_list() == ["node-1:42", "node-1:42", None, None]
    assert frame["suite_hash"].to_list() == ["abc123", "abc123", "", ""]
    written = frame["written_at"]
    assert written.null_count() == 0
    assert all(before <= t <= after for t in written[:2]), written.to_list()
    assert written[2] >= written[1]


# ---------------------------------------------------------------- crash safety of a part

class _Crash(Exception):
    """Stands in for a kill -9 at one point of a write."""


def _open_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name a file descriptor")
def test_a_part_is_fsynced_under_a_hidden_name_then_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, str]] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd: int) -> None:
        calls.append(("fsync", _open_path(fd), ""))
        real_fsync(fd)

    def replace(src, dst) -> None:
        calls.append(("rename", str(src), str(dst)))
        real_replace(src, dst)

    def rename(src, dst) -> None:
        calls.append(("rename", str(src), str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    store = RecordStore(tmp_path)
    part = store.append(_records(["a"]))

    renames = [c for c in calls if c[0] == "rename"]
    assert len(renames) == 1 and renames[0][2] == part
    hidden = renames[0][1]
    assert Path(hidden).name.startswith(".") and Path(hidden).parent == Path(part).parent
    synced = [i for i, c in enumerate(calls) if c == ("fsync", hidden, "")]
    assert synced and synced[0] < calls.index(renames[0]), calls  # on disk before it is visible


def test_a_crash_between_write_and_rename_leaves_no_visible_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RecordStore(tmp_path)
    store.append(_records(["a"]))

    def crash(*args) -> None:
        raise _Crash

    monkeypatch.setattr(os, "replace", crash)
    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(_Crash):
        store.append(_records(["b"]))
    monkeypatch.undo()

    assert len(store.parts()) == 1 and store.count() == 2  # only the part written before
    assert sorted(store.scan().collect()["image"].unique()) == ["a"]
    # An exception removes its partial; a SIGKILL would leave it hidden ('.part-*.tmp'),
    # which readers ignore: either way nothing but whole parts is visible.
    leftovers = [p for p in Path(store.records_dir).iterdir() if not p.name.startswith("part-")]
    assert all(p.name.startswith(".") for p in leftovers)
    store.remove_partials()
    store.append(_records(["b"]))
    assert store.count() == 4 and sorted(p.name for p in Path(store.records_dir).iterdir()) == sorted(
        Path(p).name for p in store.parts())


# ---------------------------------------------------------------- a non-local filesystem

def test_records_append_to_and_read_back_from_a_non_local_filesystem() -> None:
    """pyarrow's in-memory ``mock://`` filesystem: the code path of s3:// and gs://
    (pyarrow filesystem, no rename, one write per part), with no network."""
    store = RecordStore("mock://bucket/runs/one")
    assert store.remote
    assert store.scan().collect().is_empty() and store.parts() == []
    store.append(_records(["a"]), suite_hash="abc")
    store.append(_records(["b", "c"]))
    assert len(store.parts()) == 2 and all(p.startswith("runs/one/records/part-") for p in store.parts())
    frame = store.scan().sort("image", "seed").collect()
    assert frame.height == store.count() == 6
    assert frame.select(KEY_COLUMNS).rows() == _records(["a", "b", "c"]).select(KEY_COLUMNS).rows()
    assert frame["value"].to_list() == [0.0, 0.1] * 3
    assert frame["suite_hash"].to_list() == ["abc"] * 2 + [""] * 4
    assert frame["written_at"].null_count() == 0
    assert store.duplicate_keys().is_empty()
    store.append(_records(["a"], range(1)))
    assert store.duplicate_keys().select(KEY_COLUMNS).rows() == [("a", "bicubic", "m", "lpips-alex", 0)]
    assert store.write_text("run.json", "{}\n") == "mock://bucket/runs/one/run.json"  # as the user names it
    assert store.read_text("run.json") == "{}\n"


def test_an_object_store_is_read_in_batches_with_the_sizes_its_listing_gave() -> None:
    """``mock://`` is Arrow's in-memory object store: no rename, one PUT per part. Batches
    take part sizes from the one LIST request, never one request per part."""
    store = RecordStore("mock:///run")
    assert store.remote
    store.append(_records(["a", "b"]))
    store.append(_records(["c"]))
    parts = store.parts()
    assert set(store.part_sizes) == set(parts) and len(parts) == 2
    assert [s.collect().height for s in store.scan_batches(max_mb=1e-6)] == [4, 2]
    assert pl.concat([s.collect() for s in store.scan_batches()]).height == 6
    assert without_duplicates(store.scan(), store)[1] == 0


@pytest.mark.parametrize("column", ["value", "finite"])
def test_a_part_without_a_value_or_finite_column_is_set_aside_and_recomputed(tmp_path: Path, column: str) -> None:
    """Without it its records would count as non-finite for ever and never be recomputed."""
    store = RecordStore(tmp_path)
    store.append(_records(["a"]))
    bad = Path(store.records_dir) / "part-20990101T000000-novalue.parquet"
    _records(["b"]).drop(column).write_parquet(bad)
    assert store.count() == 2
    assert [(p, why) for p, why in store.skipped_parts if p == str(bad) and column in why]
    assert [Path(p).name for p, _ in store.quarantine()] == [bad.name]
