"""The report's sample grid as a tool for looking: chosen images, downscalers and seeds,
full-resolution crops, one colour bar, a layout that fits a laptop window, tiles whose
values equal their records exactly, and HR files shown only when they are the records'."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from idard.bench.cli import app

from tests.bench.sample_runs import make_run

runner = CliRunner()
DOWNSCALERS = ["bicubic", "nearest", "blur", "blur(sigma=2)"]  # blur's id is "blur", its label blur(sigma=1.0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("grid"), DOWNSCALERS, count=3, samples=3,
                    nudge=("img000", "nearest", 1), broken="bad")  # sorts first among the files


@pytest.fixture(scope="module")
def default_page(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The page as ``report RUN --html --grid-images 3`` writes it."""
    return _page(run_dir, tmp_path_factory.mktemp("page"), "--grid-images", "3")


def _page(run_dir: Path, tmp_path: Path, *args: str) -> str:
    target = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(run_dir), "--html", str(target), "--bootstrap", "100", *args])
    assert result.exit_code == 0, result.output
    return target.read_text()


def _grid(page: str) -> str:
    """The grid section, with HTML entities (&#x27;) read as the text they stand for."""
    return html.unescape(page[page.index("id=sample-grid"):])


def _pixels(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_tiles_equal_their_records_exactly_and_any_difference_is_flagged(run_dir: Path, tmp_path: Path) -> None:
    """One record was stored 1e-4 off (under the old 2e-3 tolerance): only its tile says ≠."""
    grid = _grid(_page(run_dir, tmp_path, "--grid-image", "img000"))
    equal = re.findall(r"[0-9.]+ = record", grid)
    differ = re.findall(r"[0-9.]+ ≠ record [0-9.]+", grid)
    assert len(equal) == len(DOWNSCALERS) * 3 - 1 and len(differ) == 1, (equal, differ)
    assert "1 recomputed value(s) differ from their records" in grid


def test_the_user_chooses_images_downscalers_seeds_and_the_crop(run_dir: Path, tmp_path: Path) -> None:
    grid = _grid(_page(run_dir, tmp_path, "--grid-image", "img002", "--grid-downscaler", "blur(sigma=2)",
                       "--grid-seed", "2", "--grid-crop", "21,9", "--grid-crop-size", "16"))
    assert "<b>img002</b>" in grid and "<b>img000</b>" not in grid and "<b>img001</b>" not in grid
    assert re.findall(r"<div class=sg-l><b>([^<]*)</b></div>", grid) == ["blur(sigma=2.0)"]
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", grid) == ["HR", "LR x4", "SR seed 2", "|SR−HR| seed 2"]
    assert "crop 16x16 HR px at x=20, y=8 (user)" in grid  # snapped to the LR grid
    tiles = dict(re.findall(r"<img src='([^']*)' alt='([^']*)'>", grid)[1:])  # after the overview
    uris = {alt: uri for uri, alt in tiles.items()}
    hr = np.asarray(Image.open(run_dir.parent / "images" / "img002.png").convert("RGB"))
    np.testing.assert_array_equal(_pixels(uris["HR"]), hr[8:24, 20:36])  # full resolution, 1:1
    assert _pixels(uris["LR x4"]).shape == (4, 4, 3) and _pixels(uris["SR seed 2"]).shape == (16, 16, 3)


def test_the_default_crop_is_where_the_samples_differ_most(run_dir: Path, tmp_path: Path) -> None:
    from idard.bench.report.grid import largest_difference_crop

    diff = np.zeros((48, 64))
    diff[24:40, 44:60] = 1.0  # only the window at x=44, y=24 holds all of it
    diff[0:8, 0:8] = 1.5
    assert largest_difference_crop(diff, 16, 4) == (44, 24)
    grid = _grid(_page(run_dir, tmp_path, "--grid-image", "img001", "--grid-crop-size", "16"))
    assert re.search(r"crop 16x16 HR px at x=\d+, y=\d+ \(largest difference\)", grid)


def test_one_colour_bar_and_a_layout_that_fits_a_laptop_window(default_page: str) -> None:
    grid = _grid(default_page)
    assert grid.count("id=sample-grid-colourbar") == 1 and "one scale for every map on this page" in grid
    assert "linear-gradient" in grid and "image-rendering:pixelated" in grid
    # fluid columns: every tile column shrinks with the window, no tile has a fixed width
    templates = re.findall(r"grid-template-columns:([^']*)'", grid)
    assert templates and all(re.fullmatch(r"minmax\(70px,110px\) repeat\(\d+,minmax\(0,1fr\)\)", t) for t in templates)
    assert not re.search(r"<img[^>]* width=", grid) and "max-width:1400px" in grid


def test_the_grid_calls_each_downscaler_what_the_tables_call_it(default_page: str) -> None:
    """``blur`` (the default sigma) next to ``blur(sigma=2.0)``: the tables say
    ``blur(sigma=1.0)``, and so must the grid's rows."""
    table = re.search(r"<table id=ida-rd>(.*?)</table>", default_page, re.S).group(1)
    table_labels = set(re.findall(r"<tr><td[^>]*>([^<]*)</td>", table))
    rows = re.findall(r"<div class=sg-l><b>([^<]*)</b></div>", _grid(default_page))
    assert "blur(sigma=1.0)" in rows and "blur" not in rows, rows
    assert set(rows) <= table_labels, (rows, table_labels)


def test_an_unreadable_image_with_error_records_is_listed_and_the_page_written(default_page: str) -> None:
    grid = _grid(default_page)
    assert re.search(r"<b>bad</b>: \d+ error record\(s\): ImageError: .*cannot decode image", grid)
    assert grid.count("<b>img00") == 3  # the three readable images have their tiles


def test_hr_files_come_only_from_named_sources_and_only_when_they_are_the_records(run_dir: Path,
                                                                               tmp_path: Path) -> None:
    """A received run directory: its suite points at files of the same names that are not
    the images it was computed from. They are never shown; the right files can be named."""
    received = tmp_path / "received"
    shutil.copytree(run_dir, received / "run")
    (received / "images").mkdir()
    for i in range(3):
        Image.fromarray(np.full((48, 48, 3), 40 * i, np.uint8)).save(received / "images" / f"img00{i}.png")
    suite = (received / "run" / "suite.yaml").read_text().replace(str(run_dir.parent / "images"),
                                                                  str(received / "images"))
    (received / "run" / "suite.yaml").write_text(suite)
    grid = _grid(_page(received / "run", tmp_path, "--grid-image", "img001"))
    assert "read from the run's suite.yaml" in grid
    assert "is not the file the records were computed from" in grid
    assert "<img" not in grid.split("id=sample-grid-colourbar")[0] and "SR seed" not in grid
    grid = _grid(_page(received / "run", tmp_path, "--grid-image", "img001", "--images", str(run_dir.parent / "images")))
    assert "sources given on the command line" in grid and grid.count("<figcaption>SR seed 0<") == len(DOWNSCALERS)


def test_each_image_is_recomputed_in_one_batched_unit_and_never_twice(run_dir: Path) -> None:
    from idard.bench.report.reduce import scan_records
    from idard.bench.report.samples import RunSamples

    samples = RunSamples(str(run_dir), scan_records(run_dir))
    ids = ["bicubic", "blur(sigma=2.0)"]
    first = samples.recompute("img001", "srflow-tiny-4x", ids, ["lpips-alex"], [0, 2])
    again = samples.recompute("img001", "srflow-tiny-4x", ids[:1], ["lpips-alex"], [2])
    assert samples._worker.units_done == 1
    assert len(first.sr) == 4 and all(r.equal for r in first.records + again.records)
    np.testing.assert_array_equal(first.sr[("bicubic", 2)], again.sr[("bicubic", 2)])


def test_a_page_built_again_reads_the_samples_it_recomputed_before(run_dir: Path, tmp_path: Path) -> None:
    """The disk cache is keyed by record key and HR file: a second build draws nothing."""
    from idard.bench.report.reduce import scan_records
    from idard.bench.report.samples import RunSamples

    ids, cache = ["bicubic", "nearest"], tmp_path / "cache"
    first = RunSamples(str(run_dir), scan_records(run_dir), cache=cache).recompute(
        "img002", "srflow-tiny-4x", ids, ["lpips-alex"], [0, 1])
    again_samples = RunSamples(str(run_dir), scan_records(run_dir), cache=cache)
    again = again_samples.recompute("img002", "srflow-tiny-4x", ids, ["lpips-alex"], [0, 1])
    assert again_samples._worker is None and len(list(cache.iterdir())) == 4
    assert [r.value for r in again.records] == [r.value for r in first.records] and all(r.equal for r in again.records)
    np.testing.assert_array_equal(again.hr, first.hr)
    for key, pixels in first.sr.items():
        np.testing.assert_array_equal(again.sr[key], pixels)
    np.testing.assert_array_equal(again.lr["nearest"], first.lr["nearest"])


def test_an_edit_to_idards_code_is_a_new_cache_key_even_in_a_dirty_checkout(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The version names a commit (``...-dirty`` for every edit after it); samples drawn by
    code that was edited since must not be shown as today's code's, so the key also holds
    the package's source fingerprint."""
    import idard.provenance as provenance
    from idard.bench.report.samples import SampleCache

    cache, key = SampleCache(tmp_path / "cache"), ("img000", "bicubic", "srflow-tiny-4x", 0)
    lr = np.zeros((4, 4, 3), np.float32)
    cache.save("sha", key, lr, None, {})
    assert cache.load("sha", key) is not None
    monkeypatch.setattr(provenance, "source_fingerprint", lambda: "an-edited-checkout")
    assert cache.load("sha", key) is None


def test_the_source_fingerprint_follows_every_module_of_the_package() -> None:
    import idard
    from idard.provenance import source_fingerprint

    assert len(source_fingerprint()) == 16 and source_fingerprint() == source_fingerprint()
    assert len(list(Path(idard.__file__).parent.rglob("*.py"))) > 50  # the package, not one folder of it
