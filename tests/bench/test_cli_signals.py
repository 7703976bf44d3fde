"""A real ``idard-bench run`` process on its own local Ray: what it listens on, how it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from idard.bench.store.lease import LEASE_NAME
from idard.bench.store import RecordStore
from tests.bench.conftest import write_crops, write_suite

ray = pytest.importorskip("ray")  # puts its bundled psutil on the path
psutil = pytest.importorskip("psutil")
REPO = Path(__file__).resolve().parents[2]
LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def _listening(pid: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening socket of ``pid`` and its descendants."""
    root = psutil.Process(pid)
    found = []
    for process in [root, *root.children(recursive=True)]:
        try:
            found += [(c.laddr.ip, c.laddr.port, process.name()) for c in process.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _signal_after_first_part(command: list[str], out: Path, signum: int,
                             before: Callable[[int], None] | None = None) -> tuple[int, str, str]:
    """Start ``command``, send it ``signum`` once a record part is on disk (after ``before(pid)``);
    (exit code, stdout, stderr)."""
    run = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while not RecordStore(out).parts():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        if before is not None:
            before(run.pid)
        run.send_signal(signum)
        stdout, stderr = run.communicate(timeout=180)
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)  # whatever Ray left behind
        except ProcessLookupError:
            pass
    return run.returncode, stdout, stderr


@pytest.mark.slow  # starts a Ray of its own and loads the model: about a minute on 2 cores
def test_a_local_run_listens_on_loopback_only_and_sigterm_ends_it_cleanly(tmp_path: Path) -> None:
    write_crops(tmp_path / "images", 8, size=64)
    suite = write_suite(tmp_path, ["bicubic", "nearest"], samples=2)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "idard.bench.cli", "run", "--suite", str(suite), "--out", str(out),
               "--flush-records", "1", "--bootstrap", "100"]

    def only_loopback(pid: int) -> None:
        sockets = _listening(pid)
        assert sockets, "found no Ray servers to check"
        assert [s for s in sockets if s[0] not in LOOPBACK] == [], "listening beyond loopback"

    returncode, stdout, stderr = _signal_after_first_part(command, out, signal.SIGTERM, only_loopback)
    assert returncode == 143, stdout + stderr
    assert "interrupted by SIGTERM: every record written so far is kept" in stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr and "SIGABRT" not in stderr, stderr
    store = RecordStore(out)
    assert store.count() > 0 and store.duplicate_keys().is_empty() and not store.skipped_parts
    assert not (out / LEASE_NAME).exists()  # released on the way out


@pytest.mark.slow  # two real runs, each starting its own Ray and loading the model: ~30 s on 2 idle cores
def test_ctrl_c_says_how_many_records_are_saved_and_a_rerun_computes_only_the_rest(tmp_path: Path) -> None:
    write_crops(tmp_path / "images", 30, size=32)
    suite = tmp_path / "suite.yaml"
    # 30 images x 3 downscalers, one LR image per model call: 90 units of 1 record each,
    # one part each (--flush-records 1), so the run is still going when the first lands
    suite.write_text("name: ctrl-c\nimages: [images]\ndownscalers: [bicubic, nearest, box]\n"
                     "models: [srflow-tiny-4x]\nmetrics: [psnr]\nsamples: 1\nmax_batch: 1\n")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "idard.bench.cli", "run", "--suite", str(suite), "--out", str(out),
               "--flush-records", "1", "--bootstrap", "100"]
    rc, stdout, stderr = _signal_after_first_part(command, out, signal.SIGINT)
    assert rc == 130, stdout + stderr
    saved = RecordStore(out).count()
    assert 0 < saved < 90, stdout + stderr
    assert f"{saved} records are saved in {out}" in " ".join(stderr.split()), stderr
    assert "interrupted by SIGINT: every record written so far is kept; run the same command again" in stderr
    assert "Traceback" not in stderr, stderr

    again = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{90 - saved} tasks to compute ({saved} of 90 already in the store)" in again.stdout
    assert f"computed {90 - saved} records" in again.stdout
    store = RecordStore(out)
    assert store.count() == 90 and store.duplicate_keys().is_empty()
