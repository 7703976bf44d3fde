"""``idard-bench weights fetch NAME`` and the availability column of ``idard-bench list``,
against a zoo entry served from a loopback HTTP server (tests never use the internet)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.measure import zoo
from idard.measure.weights import ENV_WEIGHTS_DIR


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
