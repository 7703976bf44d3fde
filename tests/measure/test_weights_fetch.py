"""Fetching published weights: progress, resume after a cut connection, hash checks, archives
and object stores. A loopback HTTP server and pyarrow's in-memory filesystem stand in for
the internet, which tests never use."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from idard.measure import weights
from idard.measure.weights import (
    ENV_WEIGHTS_DIR,
    WeightsHashMismatch,
    WeightsNotFound,
    fetch,
    recorded_sha256,
    resolve_weights,
)
from idard.measure.zoo import ZOO, find_entry

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Site:
    """Files served over HTTP on 127.0.0.1 with Range support; ``cut`` names files whose
    first response stops half-way (the connection closes before Content-Length bytes)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.content_type: dict[str, str] = {}
        self.cut: set[str] = set()
        self.ranges: list[str | None] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                name = self.path.lstrip("/").split("?")[0]
                site.ranges.append(self.headers.get("Range"))
                if name not in site.files:
                    self.send_error(404)
                    return
                body, start = site.files[name], 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", site.content_type.get(name, "application/octet-stream"))
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if name in site.cut:
                    site.cut.discard(name)
                    self.wfile.write(body[start : start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1")
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "cache"))
    served = Site()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_a_fetch_reports_progress_and_verifies_a_known_hash(site: Site, tmp_path: Path) -> None:
    site.files["G.pth"] = PAYLOAD
    seen: list[tuple[int, int | None]] = []
    out = fetch(f"{site.base}/G.pth", tmp_path / "cache" / "G.pth", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                progress=lambda done, total: seen.append((done, total)))
    assert out.check == "verified" and out.path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 1


def test_a_cut_connection_is_resumed_with_a_range_request(site: Site, tmp_path: Path) -> None:
    site.files["G.pth"] = PAYLOAD
    site.cut.add("G.pth")
    target = tmp_path / "cache" / "G.pth"
    with pytest.raises(WeightsNotFound, match="connection closed after .* bytes; run the same command again"):
        fetch(f"{site.base}/G.pth", target)
    partial = target.parent / ".G.pth.part"
    kept = partial.stat().st_size
    assert not target.exists() and 0 < kept < len(PAYLOAD)
    out = fetch(f"{site.base}/G.pth", target)
    assert site.ranges == [None, f"bytes={kept}-"]  # the second request asked only for the rest
    assert out.path.read_bytes() == PAYLOAD and not partial.exists()


def test_a_hash_mismatch_is_refused_and_nothing_kept(site: Site, tmp_path: Path) -> None:
    site.files["G.pth"] = PAYLOAD
    target = tmp_path / "cache" / "G.pth"
    with pytest.raises(WeightsHashMismatch, match="is not the expected 00000"):
        fetch(f"{site.base}/G.pth", target, sha256="0" * 64)
    assert not target.exists()


def test_an_unknown_hash_is_recorded_and_later_fetches_are_checked_against_it(site: Site, tmp_path: Path) -> None:
    site.files["G.pth"] = PAYLOAD
    target = tmp_path / "cache" / "G.pth"
    first = fetch(f"{site.base}/G.pth", target)
    assert first.check == "recorded" and recorded_sha256("G.pth") == hashlib.sha256(PAYLOAD).hexdigest()
    target.unlink()
    site.files["G.pth"] = b"other bytes"  # the host now serves something else
    with pytest.raises(WeightsHashMismatch):
        fetch(f"{site.base}/G.pth", target)


def test_a_web_page_instead_of_the_file_is_refused(site: Site, tmp_path: Path) -> None:
    site.files["uc"] = b"<html>Google Drive can't scan this file for viruses</html>"
    site.content_type["uc"] = "text/html; charset=utf-8"
    with pytest.raises(WeightsNotFound, match="answered with a web page"):
        fetch(f"{site.base}/uc?id=abc", tmp_path / "cache" / "synthesis.pt")


def test_a_member_of_an_archive_is_extracted_and_the_archive_kept(site: Site, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("pretrained_models/SRFlow_DF2K_4X.pth", b"four")
        zf.writestr("pretrained_models/SRFlow_DF2K_8X.pth", b"eight")
    site.files["pretrained_models.zip"] = buffer.getvalue()
    cache = tmp_path / "cache"
    out = fetch(f"{site.base}/pretrained_models.zip", cache / "SRFlow_DF2K_8X.pth",
                member="pretrained_models/SRFlow_DF2K_8X.pth")
    assert out.path.read_bytes() == b"eight" and (cache / "pretrained_models.zip").is_file()
    with pytest.raises(WeightsNotFound, match="holds no pretrained_models/X.pth"):
        fetch(f"{site.base}/pretrained_models.zip", cache / "X.pth", member="pretrained_models/X.pth")
    assert site.ranges.count(None) == 1  # the archive was downloaded once


def test_object_store_weights_are_copied_into_the_cache_not_read_as_paths(tmp_path: Path, monkeypatch) -> None:
    import pyarrow.fs

    store = pyarrow.fs._MockFileSystem()
    store.create_dir("bucket/models")
    with store.open_output_stream("bucket/models/SRFlow_DF2K_4X.pth") as out:
        out.write(b"weights in the bucket")
    monkeypatch.setattr(weights, "_object_filesystem", lambda uri: (store, uri.split("://", 1)[1]))
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "cache"))
    path = resolve_weights("s3://bucket/models/SRFlow_DF2K_4X.pth")
    assert path == tmp_path / "cache" / "SRFlow_DF2K_4X.pth" and path.read_bytes() == b"weights in the bucket"
    with pytest.raises(WeightsNotFound, match=r"s3://bucket/absent.pth: cannot read"):
        resolve_weights("s3://bucket/absent.pth")


def test_the_zoo_lists_every_published_file_with_its_source(tmp_path: Path, monkeypatch) -> None:
    assert {"SRFlow_DF2K_4X", "SRFlow_DF2K_8X", "SRFlow_CelebA_8X", "pulse-stylegan-ffhq-mapping",
            "pulse-stylegan-ffhq-synthesis", "pulse-gaussian-fit"} <= set(ZOO)
    assert find_entry("SRFlow_CelebA_8X.pth") is ZOO["SRFlow_CelebA_8X"]
    assert all(e.urls and e.licence and e.source for e in ZOO.values())
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    assert ZOO["SRFlow_DF2K_4X"].availability() == "missing"  # a URL whose host answers 404 is not "fetchable"
    assert ZOO["pulse-gaussian-fit"].availability() == "fetchable"
    (tmp_path / "SRFlow_DF2K_4X.pth").write_bytes(b"x")
    assert ZOO["SRFlow_DF2K_4X"].availability() == "present"
