"""Specifications of `idard.bench.compact`: few large parts, every record exactly once,
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

from idard.bench import compact as compaction
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
    """A real `python -m idard.bench.compact` process, SIGKILLed at random moments while the
    run keeps adding parts: after every kill the store holds every record exactly once."""
    rng = random.Random(16)
    store = _store_with_parts(tmp_path, 150)
    total, killed = 150 * 20, 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(4):
        files = set(os.listdir(tmp_path / "records"))
        process = subprocess.Popen([sys.executable, "-m", "idard.bench.compact", str(tmp_path), "0.04"], env=env,
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
    done = subprocess.run([sys.executable, "-m", "idard.bench.compact", str(tmp_path)], env=env, check=True,
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
