"""Image sources: bundled photos, folders, globs and URIs, each image with a stable key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from idard.bench.suite.sources import DANGLING, NOT_A_FILE, SAME_FILE, SourceError, list_images, scan_sources


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_folder_lists_its_images_sorted_with_stems_as_keys(tmp_path: Path) -> None:
    _touch(tmp_path / "b.png"), _touch(tmp_path / "a.JPG"), _touch(tmp_path / "notes.txt")
    _touch(tmp_path / "sub" / "c.png")  # folders are not recursed into; globs do that
    refs = list_images(["."], tmp_path)
    assert [r.name for r in refs] == ["a", "b"]
    assert refs[1].read() == b"x"


def test_a_recursive_glob_keys_images_by_relative_path(tmp_path: Path) -> None:
    _touch(tmp_path / "faces" / "x" / "0001.png"), _touch(tmp_path / "faces" / "y" / "0001.png")
    refs = list_images(["faces/**/*.png"], tmp_path)
    assert [r.name for r in refs] == ["x/0001", "y/0001"]  # relative to the glob's fixed prefix


def test_the_same_key_from_two_sources_is_an_error_naming_both(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "img.png"), _touch(tmp_path / "b" / "img.jpg")
    with pytest.raises(SourceError, match=r"'img'.*a/img.png.*b/img.jpg"):
        list_images(["a", "b"], tmp_path)


def test_empty_or_missing_sources_are_errors_naming_them(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="'nowhere'"):
        list_images(["nowhere"], tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="'empty' holds no images"):
        list_images(["empty"], tmp_path)


def test_bundled_held_out_photographs() -> None:
    refs = list_images(["bundled:held-out"], Path("."))
    assert [r.name for r in refs] == ["astronaut", "chelsea", "coffee", "china"]
    assert refs[0].read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_uris_are_listed_and_read_through_pyarrow_filesystems(tmp_path: Path) -> None:
    _touch(tmp_path / "set" / "one.png", b"png bytes"), _touch(tmp_path / "set" / "deep" / "two.png")
    refs = list_images([f"file://{tmp_path}/set/"], Path("."))
    assert [r.name for r in refs] == ["one"]
    assert refs[0].location.startswith("file://") and refs[0].read() == b"png bytes"
    globbed = list_images([f"file://{tmp_path}/set/**.png"], Path("."))
    assert [r.name for r in globbed] == ["deep/two", "one"]


def test_a_symlink_loop_lists_each_real_file_once_and_skips_are_counted(tmp_path: Path) -> None:
    _touch(tmp_path / "set" / "a.png"), _touch(tmp_path / "set" / "sub" / "b.png")
    (tmp_path / "set" / "sub" / "loop").symlink_to(tmp_path / "set")  # set/sub/loop/sub/loop/...
    (tmp_path / "set" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "set" / "folder.png").mkdir()
    os.mkfifo(tmp_path / "set" / "pipe.png")
    listing = scan_sources(["set/**/*.png"], tmp_path)
    assert [r.name for r in listing.refs] == ["a", "sub/b"]  # once each, at their shortest path
    counts = {why: count for why, (count, _) in listing.skipped.items()}
    assert counts[DANGLING] >= 1 and counts[NOT_A_FILE] >= 2 and counts[SAME_FILE] >= 2
    assert [r.name for r in scan_sources(["set"], tmp_path).refs] == ["a"]


def test_unknown_bundled_names_and_globs_matching_nothing_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"'bundled:nope'.*unknown bundled image 'nope'"):
        list_images(["bundled:nope"], tmp_path)
    with pytest.raises(SourceError, match=r"'\*\*/\*.png' holds no images"):
        list_images(["**/*.png"], tmp_path)
    with pytest.raises(SourceError, match=r"'missing/\*.png'.*is not a folder"):
        list_images(["missing/*.png"], tmp_path)
