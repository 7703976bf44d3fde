"""Failure accounting and changed inputs: errors are not non-finite samples, error
records can be retried, a file changed under its key is detected, every run is recorded
with the code and libraries that made it. Runs without Ray (records computed in process
by the worker class, or written as a run would write them)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from idard.bench.run import jobs
from idard.bench.run.plan import ChangedInputError, make_plan
from idard.bench.run.runner import RunOptions
from idard.bench.suite.sources import list_images
from idard.bench.store import RecordStore
from idard.bench.suite import load_suite
from idard.bench.run.worker import Worker
from idard.measure.statistics import ida_rd_table
from idard import __version__
from idard.provenance import code_version
from tests.bench.conftest import write_crops

PSNR_SUITE = "name: acc\nimages: [images]\ndownscalers: [bicubic, nearest]\nmodels: [srflow-tiny-4x]\nmetrics: [psnr]\nsamples: 1\n"


def _console() -> Console:
    return Console(file=io.StringIO(), width=200)


def _compute(suite_path: Path, run: Path, **prepare) -> int:
    """What `run_suite` does, with the worker in process instead of Ray actors."""
    suite = load_suite(suite_path)
    store = RecordStore(run)
    images = list_images(list(suite.images), Path(suite.base_dir))
    jobs._prepare_store(suite, store, images, _console(), retry_errors=prepare.get("retry_errors", False),
                        recompute_changed=prepare.get("recompute_changed", False))
    plan = make_plan(suite, store, images)
    worker = Worker(device="cpu", max_batch=8)
    for unit in plan.units:
        store.append(worker.run(unit, unit.image.read()), suite.digest())
    return plan.todo_tasks


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    write_crops(tmp_path / "images", 2, size=32)
    (tmp_path / "images" / "img002.png").write_bytes(b"not a png")
    (tmp_path / "suite.yaml").write_text(PSNR_SUITE)
    return tmp_path


def test_errors_and_non_finite_samples_are_counted_apart() -> None:
    rows = [
        {"image": "a", "seed": 0, "value": 0.2, "finite": True, "error": None},
        {"image": "a", "seed": 1, "value": float("nan"), "finite": False, "error": "non-finite SR sample (3 NaN/Inf values)"},
        {"image": "b", "seed": 0, "value": float("nan"), "finite": False, "error": "ImageError: b.png: cannot identify"},
        {"image": "b", "seed": 1, "value": float("nan"), "finite": False, "error": "ImageError: b.png: cannot identify"},
    ]
    frame = pl.DataFrame([{**r, "downscaler": "bicubic", "model": "m", "metric": "lpips-alex"} for r in rows])
    row = ida_rd_table(frame, n_boot=0).row(0, named=True)
    assert (row["n_samples"], row["n_nonfinite"], row["n_errors"]) == (1, 1, 2)


def test_status_and_summary_count_errors_once_and_list_every_failing_image(project: Path) -> None:
    (project / "images" / "img003.png").write_bytes(b"")  # a second broken image
    _compute(project / "suite.yaml", project / "run")
    suite = load_suite(project / "suite.yaml")
    _, table = jobs.suite_status(suite, project / "run")
    assert table.filter(pl.col("downscaler") == "bicubic").select("errors", "nonfinite").row(0) == (2, 0)
    failing = jobs.failing_images(RecordStore(project / "run").scan())
    assert [f["image"] for f in failing] == ["img002", "img003"] and all(f["records"] == 2 for f in failing)


def test_retry_errors_recomputes_error_records(project: Path) -> None:
    assert _compute(project / "suite.yaml", project / "run") == 3 * 2
    assert _compute(project / "suite.yaml", project / "run") == 0  # error records count as done
    assert _compute(project / "suite.yaml", project / "run", retry_errors=True) == 2  # still broken: errors again
    assert RecordStore(project / "run").scan().collect().height == 6
    # A broken file replaced by a good one: its error records are computed again by themselves.
    write_crops(project / "fixed", 3, size=32)
    shutil.copy(project / "fixed" / "img002.png", project / "images" / "img002.png")
    assert _compute(project / "suite.yaml", project / "run") == 2
    records = RecordStore(project / "run").scan().collect()
    assert records.height == 6 and records["error"].is_null().all()
    assert RecordStore(project / "run").duplicate_keys().is_empty()


def test_a_changed_image_is_refused_or_recomputed_on_request(project: Path) -> None:
    _compute(project / "suite.yaml", project / "run")
    held = RecordStore(project / "run").scan().filter(pl.col("image") == "img000").collect()
    assert held["hr_sha256"].n_unique() == 1 and len(held["hr_sha256"][0]) == 64
    shutil.copy(project / "images" / "img001.png", project / "images" / "img000.png")  # new content, same key
    with pytest.raises(ChangedInputError, match=r"img000 .*--recompute-changed"):
        _compute(project / "suite.yaml", project / "run")
    assert _compute(project / "suite.yaml", project / "run", recompute_changed=True) == 2
    again = RecordStore(project / "run").scan().filter(pl.col("image") == "img000").collect()
    assert again.height == 2 and again["hr_sha256"][0] != held["hr_sha256"][0]


def test_a_re_run_reads_only_the_files_that_changed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Change detection hashes every HR file once, then trusts the run directory's hash
    cache while a file's fingerprint is unchanged: a resume does not read 50 GB."""
    import os

    from idard.bench.run.plan import HASH_CACHE, changed_images
    from idard.bench.suite.sources import ImageRef

    _compute(project / "suite.yaml", project / "run")
    store = RecordStore(project / "run")
    images = list_images(["images"], project)
    reads: list[str] = []
    real_read = ImageRef.read
    monkeypatch.setattr(ImageRef, "read", lambda ref: reads.append(ref.name) or real_read(ref))

    assert changed_images(store, images) == [] and sorted(reads) == ["img000", "img001", "img002"]
    assert set(json.loads((project / "run" / HASH_CACHE).read_text())) == {ref.location for ref in images}
    reads.clear()
    assert changed_images(store, images) == [] and reads == []  # nothing changed: nothing read

    target = project / "images" / "img000.png"
    shutil.copy(project / "images" / "img001.png", target)  # new content under the same key
    os.utime(target, ns=(1, 1))  # whatever its mtime: it differs from the cached one
    changed = changed_images(store, images)
    assert [ref.name for ref, *_ in changed] == ["img000"] and reads == ["img000"]


def test_a_same_size_rewrite_with_its_mtime_set_back_is_hashed_again(project: Path) -> None:
    """The cache trusted size and mtime: a file rewritten with the same size and its old
    mtime (``cp -p``, ``rsync -t``, ``touch -r``, a 1 s mtime tick) kept its old hash, the
    changed-input refusal stayed silent and two different images were averaged as one.
    A rewrite changes the file's ctime, which no user can set back."""
    import os

    from idard.bench.run.plan import changed_images

    _compute(project / "suite.yaml", project / "run")
    store = RecordStore(project / "run")
    images = list_images(["images"], project)
    assert changed_images(store, images) == []  # hashed and cached
    target = project / "images" / "img000.png"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # other content, the same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # and its mtime set back
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert [ref.name for ref, *_ in changed_images(store, images)] == ["img000"]


def _git(root: Path, *args: str) -> str:
    command = ["git", "-C", str(root), "-c", "user.email=a@b", "-c", "user.name=a", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def test_code_version_comes_from_git_with_a_dirty_flag(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return _git(tmp_path, *args)

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "one")
    first = code_version(tmp_path)
    assert first.endswith("+git." + git("rev-parse", "--short=12", "HEAD"))
    (tmp_path / "f.py").write_text("x = 1\n")
    git("add", "f.py")
    assert code_version(tmp_path) == first + "-dirty"
    git("commit", "-q", "-m", "two")
    assert code_version(tmp_path) not in (first, first + "-dirty") and "dirty" not in code_version(tmp_path)
    (tmp_path / "nested").mkdir()
    assert code_version(tmp_path / "nested") == __version__  # a folder inside a checkout is not that checkout


def test_a_rerun_after_a_commit_computes_nothing_and_records_the_new_version(project: Path, monkeypatch) -> None:
    """run.json keeps every run's entry, each with the code version it ran."""
    import idard.provenance

    _compute(project / "suite.yaml", project / "run")
    checkout = project / "checkout"  # stands for idard's checkout: a real repository, real commits
    checkout.mkdir()
    _git(checkout, "init", "-q")
    _git(checkout, "commit", "-q", "--allow-empty", "-m", "one")
    real = idard.provenance.code_version
    monkeypatch.setattr(idard.provenance, "code_version", lambda root=None: real(checkout))
    suite = load_suite(project / "suite.yaml")
    seen = []
    for message in ("two", None):
        summary = jobs.run_suite(suite, project / "run", RunOptions(), _console())
        assert summary.result is None  # nothing computed: Ray is not even started
        seen.append(real(checkout))
        if message:
            _git(checkout, "commit", "-q", "--allow-empty", "-m", message)
    meta = json.loads((project / "run" / "run.json").read_text())
    assert [r["code_version"] for r in meta["runs"]] == seen and seen[0] != seen[1]
    assert [r["computed"] for r in meta["runs"]] == [0, 0] and meta["code_version"] == seen[1]
    assert meta["failing_images"][0]["image"] == "img002" and meta["libraries"]["numpy"]
