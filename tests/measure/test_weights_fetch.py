"""Fetching published weights: progress, resume after a cut connection, hash checks, archives
and object stores. A loopback HTTP server and pyarrow's in-memory filesystem stand in for
the internet, which tests never use."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from idard.measure import weights
from idard.measure.weights import (
    ENV_WEIGHTS_DIR,
    WeightsHashMismatch,
    TransferLimits,
    WeightsNotFound,
    fetch,
    recorded_sha256,
    resolve_weights,
)
from idard.measure.zoo import ZOO, find_entry

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Site:
    """Files served over HTTP on 127.0.0.1, honouring ``Range`` unless told to misbehave.

    ``cut``: files whose next response stops half-way (the connection closes before
    Content-Length bytes). ``on_range[name]``: how a ``Range`` request is answered:
    ``from-zero`` (206 whose body and Content-Range restart at byte 0), ``ignore`` (200 and
    the whole file), ``416`` (Range Not Satisfiable, ``Content-Range: bytes */SIZE``).
    ``trickle[name] = (bytes, seconds)``: send that many bytes, then wait, until done.
    ``no_length``: files sent without Content-Length (the end is the connection's close).
    ``silent``: files whose headers come but no byte of the body.
    ``etags``: send an ETag (a hash of the content) and honour ``If-Range`` with it.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.content_type: dict[str, str] = {}
        self.cut: set[str] = set()
        self.on_range: dict[str, str] = {}
        self.trickle: dict[str, tuple[int, float]] = {}
        self.no_length: set[str] = set()
        self.silent: set[str] = set()
        self.etags = False
        self.ranges: list[str | None] = []
        self.stopped = threading.Event()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                name = self.path.lstrip("/").split("?")[0]
                asked = self.headers.get("Range")
                site.ranges.append(asked)
                if name not in site.files:
                    self.send_error(404)
                    return
                body, start, mode = site.files[name], 0, site.on_range.get(name, "honour")
                etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
                if site.etags and self.headers.get("If-Range") not in (None, etag):
                    asked = None  # the file changed since the part began: send it whole
                if asked and mode == "416":
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if asked and mode in ("honour", "from-zero"):
                    start = int(asked.removeprefix("bytes=").rstrip("-")) if mode == "honour" else 0
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", site.content_type.get(name, "application/octet-stream"))
                if site.etags:
                    self.send_header("ETag", etag)
                if name not in site.no_length:
                    self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self._send(name, body[start:])

            def _send(self, name: str, data: bytes) -> None:
                if name in site.silent:
                    site.stopped.wait(10)
                    return
                if name in site.cut:
                    site.cut.discard(name)
                    data = data[: len(data) // 2]
                    self.close_connection = True
                step, pause = site.trickle.get(name, (len(data) or 1, 0.0))
                try:
                    for i in range(0, len(data), step):
                        if site.stopped.is_set():
                            return
                        self.wfile.write(data[i : i + step])
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:  # the client gave up
                    self.close_connection = True

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
    served.stopped.set()
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


def _files_in(folder: Path) -> list[str]:
    """Every file left in the cache, hidden ``.part`` files included."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _cut_once(site: Site, target: Path) -> int:
    """A first fetch of ``target``'s name that the server cuts half-way; the bytes kept."""
    site.cut.add(target.name)
    with pytest.raises(WeightsNotFound, match="connection closed after .* bytes; run the same command again"):
        fetch(f"{site.base}/{target.name}", target)
    return (target.parent / f".{target.name}.part").stat().st_size


@pytest.mark.parametrize("answer", ["from-zero", "ignore", "416"])
def test_a_resume_the_server_does_not_honour_starts_over_and_records_the_true_hash(
        site: Site, tmp_path: Path, answer: str) -> None:
    """206 restarting at byte 0, 200 with the whole file, or 416 after a cut: appending any
    of them (or taking the half file as whole) once pinned a corrupt file's hash."""
    site.files["G.pth"] = PAYLOAD
    target = tmp_path / "cache" / "G.pth"
    kept = _cut_once(site, target)
    site.on_range["G.pth"] = answer
    out = fetch(f"{site.base}/G.pth", target)
    assert site.ranges[1] == f"bytes={kept}-"  # it did try to resume
    assert out.path.read_bytes() == PAYLOAD and recorded_sha256("G.pth") == hashlib.sha256(PAYLOAD).hexdigest()
    assert _files_in(tmp_path / "cache") == ["G.pth", "sha256-recorded.json"]


def test_a_whole_part_answered_416_with_its_size_is_taken_without_a_new_download(site: Site, tmp_path: Path) -> None:
    site.files["G.pth"] = PAYLOAD
    site.on_range["G.pth"] = "416"
    target = tmp_path / "cache" / "G.pth"
    target.parent.mkdir(parents=True)
    (target.parent / ".G.pth.part").write_bytes(PAYLOAD)  # a run killed between the last byte and the rename
    assert fetch(f"{site.base}/G.pth", target).path.read_bytes() == PAYLOAD
    assert site.ranges == [f"bytes={len(PAYLOAD)}-"]


@pytest.mark.parametrize(("new", "etags"), [(PAYLOAD[::-1], True), (PAYLOAD[::-1] + b"new release", False)],
                         ids=["same-size-if-range", "other-size-content-range"])
def test_a_resume_after_the_file_changed_on_the_server_starts_over(site: Site, tmp_path: Path, new: bytes,
                                                                   etags: bool) -> None:
    """The part's validator (If-Range) and total are kept beside it: another file's bytes
    are not appended to it."""
    site.etags = etags
    site.files["G.pth"] = PAYLOAD
    target = tmp_path / "cache" / "G.pth"
    _cut_once(site, target)
    site.files["G.pth"] = new
    out = fetch(f"{site.base}/G.pth", target)
    assert out.path.read_bytes() == new
    assert _files_in(tmp_path / "cache") == ["G.pth", "sha256-recorded.json"]


def test_a_web_page_served_as_octet_stream_is_refused_and_nothing_kept(site: Site, tmp_path: Path) -> None:
    site.files["uc"] = (b"\n  <!DOCTYPE html>\n<html><head><title>Google Drive - Virus scan warning</title>"
                        + b" " * 5000 + b"</html>")  # Content-Type: application/octet-stream
    with pytest.raises(WeightsNotFound, match="answered with a web page"):
        fetch(f"{site.base}/uc?id=abc", tmp_path / "cache" / "synthesis.pt")
    assert _files_in(tmp_path / "cache") == [] and recorded_sha256("synthesis.pt") is None


def test_a_trickle_is_a_stall_and_its_bytes_are_kept_for_a_resume(site: Site, tmp_path: Path) -> None:
    """1 byte per 5 s never trips a socket timeout: the rate over a window does."""
    site.files["G.pth"] = PAYLOAD
    site.trickle["G.pth"] = (1, 0.05)
    target = tmp_path / "cache" / "G.pth"
    started = time.monotonic()
    with pytest.raises(WeightsNotFound, match=r"stalled \(\d+ bytes in 1 s\).*run the same command again"):
        fetch(f"{site.base}/G.pth", target, limits=TransferLimits(stall_s=1.0, stall_bytes=1024))
    assert time.monotonic() - started < 4
    assert 0 < (target.parent / ".G.pth.part").stat().st_size < 1024 and not target.exists()
    del site.trickle["G.pth"]
    assert fetch(f"{site.base}/G.pth", target).path.read_bytes() == PAYLOAD


def test_a_silent_server_is_a_stall(site: Site, tmp_path: Path) -> None:
    site.files["G.pth"] = PAYLOAD
    site.silent.add("G.pth")
    started = time.monotonic()
    with pytest.raises(WeightsNotFound, match=r"stalled \(0 bytes in 1 s\)"):
        fetch(f"{site.base}/G.pth", tmp_path / "cache" / "G.pth", limits=TransferLimits(stall_s=1.0))
    assert time.monotonic() - started < 4


def test_a_download_past_its_deadline_stops_and_keeps_its_bytes(site: Site, tmp_path: Path) -> None:
    site.files["G.pth"] = PAYLOAD
    site.trickle["G.pth"] = (16384, 0.05)  # about 300 KiB/s: no stall, but 1 MiB takes 3 s
    target = tmp_path / "cache" / "G.pth"
    started = time.monotonic()
    with pytest.raises(WeightsNotFound, match=r"not done after 1 s.*run the same command again"):
        fetch(f"{site.base}/G.pth", target, limits=TransferLimits(deadline_s=1.0, stall_s=1.0, stall_bytes=1024))
    assert time.monotonic() - started < 2.5 and (target.parent / ".G.pth.part").stat().st_size > 0


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "no-content-length"])
def test_a_file_over_the_size_cap_is_refused_and_nothing_kept(site: Site, tmp_path: Path, announced: bool) -> None:
    site.files["G.pth"] = PAYLOAD
    if not announced:
        site.no_length.add("G.pth")
    with pytest.raises(WeightsNotFound, match=r"G\.pth: larger than the 262144-byte cap"):
        fetch(f"{site.base}/G.pth", tmp_path / "cache" / "G.pth", max_size=len(PAYLOAD) // 4)
    assert _files_in(tmp_path / "cache") == []


def test_a_file_of_another_size_than_the_known_one_is_refused_and_nothing_kept(site: Site, tmp_path: Path) -> None:
    site.files["G.pth"] = PAYLOAD[:1000]  # whole as the server says, but not the published file
    with pytest.raises(WeightsNotFound, match=r"G\.pth: the server's file is 1000 bytes, not the known 1048576"):
        fetch(f"{site.base}/G.pth", tmp_path / "cache" / "G.pth", size=len(PAYLOAD))
    site.no_length.add("G.pth")  # the size is checked when no Content-Length says it too
    with pytest.raises(WeightsNotFound, match=r"G\.pth: got 1000 bytes, not the known 1048576"):
        fetch(f"{site.base}/G.pth", tmp_path / "cache" / "G.pth", size=len(PAYLOAD))
    assert _files_in(tmp_path / "cache") == []


def test_an_archive_that_is_not_a_zip_is_one_clear_line_and_nothing_is_left(site: Site, tmp_path: Path) -> None:
    site.files["pretrained_models.zip"] = b"\x00 not a zip archive " * 1000
    cache = tmp_path / "cache"
    with pytest.raises(WeightsNotFound, match=r"pretrained_models\.zip: not a zip archive") as refused:
        fetch(f"{site.base}/pretrained_models.zip", cache / "SRFlow_DF2K_4X.pth",
              member="pretrained_models/SRFlow_DF2K_4X.pth")
    assert "\n" not in str(refused.value) and _files_in(cache) == []


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
    assert all(e.size_cap for e in ZOO.values())  # no download without a bound
    assert ZOO["pulse-gaussian-fit"].size_cap == 4566 and ZOO["SRFlow_DF2K_4X"].download_size is None
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    assert ZOO["SRFlow_DF2K_4X"].availability() == "missing"  # a URL whose host answers 404 is not "fetchable"
    assert ZOO["pulse-gaussian-fit"].availability() == "fetchable"
    (tmp_path / "SRFlow_DF2K_4X.pth").write_bytes(b"x")
    assert ZOO["SRFlow_DF2K_4X"].availability() == "present"
