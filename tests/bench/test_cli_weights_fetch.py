"""``idard-bench weights fetch NAME`` and the availability column of ``idard-bench list``,
against a zoo entry served from a loopback HTTP server (tests never use the internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.measure import zoo
from idard.measure.weights import ENV_WEIGHTS_DIR
from tests.measure.test_weights_fetch import Site


@pytest.fixture
def served_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, bytes]]:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1")
    root = tmp_path / "site"
    root.mkdir()
    payload = b"published weights" * 1000
    (root / "G.pth").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    entries = (
        zoo.ZooEntry(name="test-known", file="G.pth", family="test", urls=(f"{base}/G.pth",), licence="test",
                     source="loopback", size=len(payload), sha256=hashlib.sha256(payload).hexdigest()),
        zoo.ZooEntry(name="test-unknown", file="U.pth", family="test", urls=(f"{base}/G.pth",), licence="test",
                     source="loopback"),
        zoo.ZooEntry(name="test-wrong", file="W.pth", family="test", urls=(f"{base}/G.pth",), licence="test",
                     source="loopback", sha256="f" * 64),
        zoo.ZooEntry(name="test-nowhere", file="N.pth", family="test", urls=(), licence="test", source="-"),
    )
    monkeypatch.setattr(zoo, "ENTRIES", entries)
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "cache"))
    yield tmp_path / "cache", payload
    server.shutdown()
    server.server_close()


def _statuses(output: str) -> dict[str, str]:
    """name -> status from the rows of the published-weights table."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if "│ test-" in line]
    return {row[0]: row[2] for row in rows}


def test_fetch_downloads_verifies_and_list_then_shows_it_present(served_zoo) -> None:
    cache, payload = served_zoo
    listed = CliRunner().invoke(app, ["list"])
    assert listed.exit_code == 0
    assert _statuses(listed.output) == {"test-known": "fetchable", "test-unknown": "fetchable",
                                        "test-wrong": "fetchable", "test-nowhere": "missing"}
    result = CliRunner().invoke(app, ["weights", "fetch", "test-known"])
    assert result.exit_code == 0, result.output
    assert (cache / "G.pth").read_bytes() == payload and "verified against the published SHA-256" in result.output
    listed = CliRunner().invoke(app, ["list"])
    assert _statuses(listed.output)["test-known"] == "present"


def test_an_unknown_hash_is_printed_recorded_and_said_to_be_unverified(served_zoo) -> None:
    cache, payload = served_zoo
    result = CliRunner().invoke(app, ["weights", "fetch", "U.pth"])
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(payload).hexdigest() in result.output and "NOT verified" in result.output
    assert "U.pth" in (cache / "sha256-recorded.json").read_text()


def test_a_wrong_hash_fails_and_an_unfetchable_name_says_where_to_put_the_file(served_zoo) -> None:
    cache, _ = served_zoo
    wrong = CliRunner().invoke(app, ["weights", "fetch", "test-wrong"])
    assert wrong.exit_code == 1 and "is not the expected ffff" in wrong.output and not (cache / "W.pth").exists()
    nowhere = CliRunner().invoke(app, ["weights", "fetch", "test-nowhere"])
    assert nowhere.exit_code == 1 and f"place N.pth at {cache / 'N.pth'}" in nowhere.output.replace("\n", "")
    unknown = CliRunner().invoke(app, ["weights", "fetch", "SRFlow_DF2K_16X"])
    assert unknown.exit_code == 2 and "no published weights named 'SRFlow_DF2K_16X'" in unknown.output


@pytest.fixture
def misbehaving_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, Path]]:
    """Zoo entries without a published hash, served by a server that can misbehave."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1")
    site = Site()
    threading.Thread(target=site.server.serve_forever, daemon=True).start()
    entries = (
        zoo.ZooEntry(name="test-unknown", file="U.pth", family="test", urls=(f"{site.base}/U.pth",),
                     licence="test", source="loopback"),
        zoo.ZooEntry(name="test-archive", file="A.pth", family="test", urls=(f"{site.base}/models.zip",),
                     member="models/A.pth", licence="test", source="loopback"),
        zoo.ZooEntry(name="test-capped", file="C.pth", family="test", urls=(f"{site.base}/C.pth",),
                     licence="test", source="loopback", max_size=1000),
    )
    monkeypatch.setattr(zoo, "ENTRIES", entries)
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "cache"))
    yield site, tmp_path / "cache"
    site.stopped.set()
    site.server.shutdown()
    site.server.server_close()


@pytest.mark.parametrize("answer", ["ignore", "from-zero", "416"])
def test_a_resume_the_server_does_not_honour_records_the_whole_files_hash(misbehaving_zoo, answer: str) -> None:
    """A cut, then a resume answered with 200 and the whole file (Range ignored), a 206 from
    byte 0, or a 416: the file and the hash recorded for later fetches are the server's file."""
    site, cache = misbehaving_zoo
    payload = bytes(range(256)) * 1024
    site.files["U.pth"] = payload
    site.cut.add("U.pth")
    site.on_range["U.pth"] = answer
    cut = CliRunner().invoke(app, ["weights", "fetch", "test-unknown"])
    assert cut.exit_code == 1 and "run the same command again to resume" in cut.output
    resumed = CliRunner().invoke(app, ["weights", "fetch", "test-unknown"])
    assert resumed.exit_code == 0, resumed.output
    assert site.ranges[1] is not None  # the second fetch did ask for the rest
    digest = hashlib.sha256(payload).hexdigest()
    assert (cache / "U.pth").read_bytes() == payload and digest in resumed.output
    assert json.loads((cache / "sha256-recorded.json").read_text()) == {"U.pth": digest}
    assert sorted(p.name for p in cache.iterdir()) == ["U.pth", "sha256-recorded.json"]


def test_a_web_page_first_is_not_recorded_so_the_real_file_is_accepted_later(misbehaving_zoo) -> None:
    site, cache = misbehaving_zoo
    site.files["U.pth"] = b"<!doctype html><html><title>Quota exceeded</title></html>"  # as application/octet-stream
    page = CliRunner().invoke(app, ["weights", "fetch", "test-unknown"])
    assert page.exit_code == 1 and "answered with a web page" in page.output
    assert not cache.exists() or list(cache.iterdir()) == []
    site.files["U.pth"] = b"the real weights" * 100
    real = CliRunner().invoke(app, ["weights", "fetch", "test-unknown"])
    assert real.exit_code == 0, real.output
    assert hashlib.sha256(b"the real weights" * 100).hexdigest() in real.output


def test_an_archive_that_is_not_a_zip_is_one_error_line_and_leaves_the_cache_empty(misbehaving_zoo) -> None:
    site, cache = misbehaving_zoo
    site.files["models.zip"] = b"\x00 no zip here " * 1000
    result = CliRunner().invoke(app, ["weights", "fetch", "test-archive"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception  # not a crash
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "models.zip: not a zip archive" in errors[0], result.output
    assert "Traceback" not in result.output
    assert not cache.exists() or list(cache.iterdir()) == []


def test_the_zoo_entrys_size_cap_stops_a_larger_download_and_keeps_nothing(misbehaving_zoo) -> None:
    site, cache = misbehaving_zoo
    site.files["C.pth"] = b"x" * 5000
    site.no_length.add("C.pth")  # no Content-Length to refuse it early: the bytes themselves go past the cap
    result = CliRunner().invoke(app, ["weights", "fetch", "test-capped"])
    assert result.exit_code == 1 and "C.pth: larger than the 1000-byte cap" in result.output.replace("\n", "")
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_changed_file_is_refused_against_the_hash_recorded_at_its_first_fetch_and_says_so(misbehaving_zoo) -> None:
    site, cache = misbehaving_zoo
    site.files["U.pth"] = b"first"
    assert CliRunner().invoke(app, ["weights", "fetch", "test-unknown"]).exit_code == 0
    (cache / "U.pth").unlink()
    site.files["U.pth"] = b"second"
    result = CliRunner().invoke(app, ["weights", "fetch", "test-unknown"])
    assert result.exit_code == 1
    assert "recorded at its first fetch" in result.output and "sha256-recorded.json" in result.output
