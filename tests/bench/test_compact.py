"""Specifications of `idard.bench.store.compact`: few large parts, every record exactly once,
whenever the compaction is killed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from idard.bench.store import compact as compaction
from idard.bench.store import RecordStore

ROOT = Path(__file__).resolve().parents[2]


def _records(first: int, n: int) -> pl.DataFrame:
    """``n`` records with distinct keys (image i, seeds 0..1) and values that identify them."""
    images = [f"img{i:05d}" for i in range(first, first + n // 2) for _ in range(2)]
    return pl.DataFrame({
        "image": images, "downscaler": "bicubic", "model": "m", "metric": "lpips", "seed": [0, 1] * (n // 2),
        "scale": 4, "value": np.arange(first, first + n, dtype=np.float64), "finite": True,
    })


def _store_with_parts(path: Path, parts: int, per_part: int = 20, start: int = 0) -> RecordStore:
    store = RecordStore(path)
    for i in range(parts):
        store.append(_records(start + i * per_part, per_part))
    return store


def _assert_sound(store: RecordStore, expected: int) -> None:
    """Every record exactly once: the count, no duplicate key, the values' sum."""
    frame = store.scan().select("value").collect()
    assert frame.height == expected
    assert store.duplicate_keys().height == 0
    assert frame["value"].sum() == pytest.approx(expected * (expected - 1) / 2)


def test_compaction_rewrites_many_small_parts_into_few_keeping_every_record_and_its_order(tmp_path: Path) -> None:
    store = _store_with_parts(tmp_path, 60)
    before = store.scan().collect()
    result = compaction.compact(store, target_mb=0.05)
    assert result.parts_before == 60 and result.rewritten == 60
    assert 1 <= result.parts_after < 10 and result.parts_after == len(store.parts())
    assert store.scan().collect().equals(before)  # same records, same order, same columns
    assert not list((tmp_path / "records").glob("compaction-*.json"))  # nothing left behind
    assert compaction.compact(store, target_mb=0.05).rewritten <= 1 * result.parts_after  # idempotent-ish


def test_a_parts_listing_never_holds_a_record_twice_at_any_step(tmp_path: Path, monkeypatch) -> None:
    """Kill the compaction after each of its atomic steps in turn: readers see every record
    exactly once at every one of them, and the next compaction finishes the job."""
    steps = 0
    while True:
        run = tmp_path / f"run{steps}"
        store = _store_with_parts(run, 12)
        calls = {"n": 0}
        real_put, real_delete = RecordStore._put, compaction._delete

        def counting(fn):
            def wrapped(*args, **kwargs):
                if calls["n"] == steps:
                    raise KeyboardInterrupt("killed")
                calls["n"] += 1
                return fn(*args, **kwargs)
            return wrapped

        monkeypatch.setattr(RecordStore, "_put", counting(real_put))
        monkeypatch.setattr(compaction, "_delete", counting(real_delete))
        try:
            compaction.compact(store, target_mb=0.02)
            finished = True
        except KeyboardInterrupt:
            finished = False
        monkeypatch.setattr(RecordStore, "_put", real_put)
        monkeypatch.setattr(compaction, "_delete", real_delete)
        _assert_sound(store, 12 * 20)
        compaction.compact(store, target_mb=0.02)
        _assert_sound(store, 12 * 20)
        assert not list((run / "records").glob("compaction-*.json"))
        if finished:
            break
        steps += 1
    assert steps > 6  # manifest, part, deletions and manifest removal of more than one run


def test_killed_compaction_processes_never_lose_or_duplicate_a_record(tmp_path: Path) -> None:
    """A real `python -m idard.bench.store.compact` process, SIGKILLed at random moments while the
    run keeps adding parts: after every kill the store holds every record exactly once."""
    rng = random.Random(16)
    store = _store_with_parts(tmp_path, 150)
    total, killed = 150 * 20, 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(4):
        files = set(os.listdir(tmp_path / "records"))
        process = subprocess.Popen([sys.executable, "-m", "idard.bench.store.compact", str(tmp_path), "0.04"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while set(os.listdir(tmp_path / "records")) == files and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.1))  # once it has begun, at a random point of it
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait()
        _assert_sound(store, total)
        for i in range(20):  # the run goes on writing parts
            store.append(_records(total + i * 20, 20))
        total += 20 * 20
        _assert_sound(store, total)
    assert killed >= 2
    done = subprocess.run([sys.executable, "-m", "idard.bench.store.compact", str(tmp_path)], env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    assert json.loads(done.stdout)["parts_after"] == 1
    _assert_sound(store, total)


def test_a_run_compacts_its_store_once_it_holds_many_parts(tmp_path: Path) -> None:
    store = _store_with_parts(tmp_path, 12)
    assert compaction.compact_if_many(store, threshold=20) is None
    assert len(store.parts()) == 12
    result = compaction.compact_if_many(store, threshold=10)
    assert result is not None and result.parts_after == 1
    _assert_sound(store, 240)


# ---------------------------------------------------------------- manifests are checked, never trusted

def _cli(*args: str):
    from typer.testing import CliRunner

    from idard.bench.cli import app

    return CliRunner().invoke(app, list(args))


def test_a_manifest_naming_a_file_outside_records_deletes_nothing_and_is_set_aside(tmp_path: Path) -> None:
    run = tmp_path / "a" / "b" / "run"
    store = _store_with_parts(run, 4, per_part=4)
    victim = tmp_path / "a" / "victim.txt"  # records/../../../victim.txt
    victim.write_text("not the run's")
    part = Path(store.parts()[0]).name
    (run / "records" / "compaction-evil.json").write_text(
        json.dumps({"part": part, "replaces": ["../../../victim.txt"], "rows": 4}))
    result = _cli("compact", str(run), "--target-mb", "0.001")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "not the run's"
    assert (run / "records" / "quarantine" / "compaction-evil.json").exists()
    lines = [line for line in result.output.splitlines() if "compaction-evil.json" in line]
    assert len(lines) == 1 and "victim.txt" in lines[0], result.output
    _assert_sound(store, 16)


def test_a_manifest_that_disagrees_with_the_parts_it_names_hides_and_deletes_nothing(tmp_path: Path) -> None:
    store = _store_with_parts(tmp_path, 4, per_part=4)
    first, second, third, _ = (Path(p).name for p in store.parts())
    (tmp_path / "records" / "compaction-wrong.json").write_text(
        json.dumps({"part": first, "replaces": [second, third], "rows": 4}))
    _assert_sound(store, 16)  # readers see all 16 records...
    assert [Path(p).name for p, _ in store.skipped_parts] == ["compaction-wrong.json"]  # ...and name it
    report = _cli("report", str(tmp_path), "--baseline", "none", "--bootstrap", "100", "--out", str(tmp_path / "t"))
    assert report.exit_code == 0 and "compaction-wrong.json" in report.output, report.output
    compaction.compact(store, target_mb=0.05)
    _assert_sound(store, 16)  # compaction deleted none of them
    assert (tmp_path / "records" / "quarantine" / "compaction-wrong.json").exists()


def test_a_manifest_whose_part_lacks_the_keys_it_replaces_is_not_acted_on(tmp_path: Path) -> None:
    """Row counts agree, keys do not: only reading the keys tells, before any deletion."""
    store = _store_with_parts(tmp_path, 3, per_part=4)
    first, second, _ = (Path(p).name for p in store.parts())
    (tmp_path / "records" / "compaction-same-size.json").write_text(
        json.dumps({"part": first, "replaces": [second], "rows": 4}))
    result = compaction.compact(store, target_mb=0.05)
    assert [Path(p).name for p, _ in result.set_aside] == ["compaction-same-size.json"]
    _assert_sound(store, 12)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"part": 3}', ""])
def test_a_manifest_that_is_not_one_is_named_in_one_line_and_set_aside(tmp_path: Path, content: str) -> None:
    store = _store_with_parts(tmp_path, 3, per_part=4)
    bad = tmp_path / "records" / "compaction-bad.json"
    bad.write_text(content)
    report = _cli("report", str(tmp_path), "--baseline", "none", "--bootstrap", "100", "--out", str(tmp_path / "t"))
    assert report.exit_code == 0, report.output
    assert "Traceback" not in report.output
    assert len([line for line in report.output.splitlines() if str(bad) in line]) == 1, report.output
    result = compaction.compact(store, target_mb=0.05)
    assert [Path(p).name for p, _ in result.set_aside] == ["compaction-bad.json"] and not bad.exists()
    _assert_sound(store, 12)


def test_compaction_from_the_command_line_holds_the_lease(tmp_path: Path) -> None:
    from idard.bench.store.lease import RunLease

    store = _store_with_parts(tmp_path, 12)
    with RunLease(RecordStore(tmp_path)).hold():
        done = subprocess.run([sys.executable, "-m", "idard.bench.store.compact", str(tmp_path), "0.05"],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert done.returncode != 0 and "in use by another run" in done.stderr, done.stderr
    assert len(store.parts()) == 12
