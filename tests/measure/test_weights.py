"""Finding weight files: as given, then by name in the weights cache; URLs cached once."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from idard.measure.weights import ENV_WEIGHTS_DIR, WeightsNotFound, resolve_weights, verdict


def test_a_path_that_exists_is_used_as_given(tmp_path: Path) -> None:
    path = tmp_path / "G.pt"
    path.write_bytes(b"x")
    assert resolve_weights(str(path)) == path


def test_a_missing_file_is_found_by_name_in_the_cache(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    (cache / "ckpt").mkdir(parents=True)
    (cache / "ckpt" / "SRFlow_DF2K_4X.pth").write_bytes(b"x")
    (cache / "mapping.pt").write_bytes(b"x")
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(cache))
    assert resolve_weights("ckpt/SRFlow_DF2K_4X.pth") == cache / "ckpt" / "SRFlow_DF2K_4X.pth"
    assert resolve_weights("/suite/dir/mapping.pt") == cache / "mapping.pt"  # a suite made it absolute


def test_a_file_found_nowhere_names_every_place_looked_at(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "cache"))
    with pytest.raises(WeightsNotFound, match=r"synthesis\.pt: no such weights file \(looked at .*cache/synthesis\.pt"):
        resolve_weights("/nowhere/synthesis.pt")


def test_a_url_already_in_the_cache_is_not_downloaded_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    (tmp_path / "SRFlow_DF2K_8X.pth").write_bytes(b"x")
    assert resolve_weights("https://example.invalid/models/SRFlow_DF2K_8X.pth?dl=1") == tmp_path / "SRFlow_DF2K_8X.pth"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on the loopback interface serving a folder (no network needed)."""
    for name in ("no_proxy", "NO_PROXY"):  # a machine's HTTP proxy must not see loopback URLs
        monkeypatch.setenv(name, "127.0.0.1")
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_a_url_is_downloaded_into_the_cache_once(served, tmp_path: Path, monkeypatch) -> None:
    base, root = served
    (root / "mapping.pt").write_bytes(b"mapping weights")
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(cache))
    assert resolve_weights(f"{base}/mapping.pt").read_bytes() == b"mapping weights"
    (root / "mapping.pt").unlink()  # a second resolve must not need the server
    assert resolve_weights(f"{base}/mapping.pt") == cache / "mapping.pt"


def test_a_failed_download_names_the_url_and_leaves_nothing_behind(served, tmp_path: Path, monkeypatch) -> None:
    base, _ = served
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(cache))
    with pytest.raises(WeightsNotFound, match=r"absent\.pt: download failed \(HTTPError.*place the file at"):
        resolve_weights(f"{base}/absent.pt")
    assert list(cache.iterdir()) == []


def test_a_url_that_answers_with_a_web_page_is_refused_whatever_its_content_type(served, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """The page comes as application/octet-stream (a ``.pt`` name); its first bytes give it away."""
    base, root = served
    (root / "mapping.pt").write_bytes(b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(cache))
    with pytest.raises(WeightsNotFound, match=r"mapping\.pt: download failed .*answered with a web page"):
        resolve_weights(f"{base}/mapping.pt")
    assert list(cache.iterdir()) == []


def test_known_files_are_verified_by_hash() -> None:
    name = Path("srflow-tiny-4x.safetensors")
    assert verdict(name, "20248c5f3327021a0859c33e7a7f487d2d3432a9203efb96577e903c758887ea") == "verified"
    assert verdict(name, "0" * 64).startswith("MISMATCH")
    assert verdict(Path("my.pth"), "0" * 64) == "unknown"
