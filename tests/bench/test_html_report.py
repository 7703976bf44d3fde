"""``report RUN --html``: one self-contained page with the table, plots and the sample grid."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from idard.bench.report.grid import GridOptions
from idard.bench.report.page import write_html_report
from idard.bench.report.reduce import build_report, scan_records
from idard.bench.suite.scope import SUITE_COPY_HEADER
from idard.bench.store import RecordStore
from idard.bench.suite import load_suite
from idard.measure.evaluate import evaluate

from tests.bench.conftest import write_crops

CHROMIUM = "/usr/bin/chromium"
DOWNSCALERS = ["bicubic", "nearest", "blur(sigma=1)", "blur(sigma=2)", "blur(sigma=3)"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run directory: records of the embedded model on two small photo crops."""
    root = tmp_path_factory.mktemp("run")
    write_crops(root / "images", 2, size=48)
    suite_file = root / "suite-src.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": "html-test", "description": "two crops", "images": ["images"], "downscalers": DOWNSCALERS,
        "models": ["srflow-tiny-4x"], "samples": 2,
        "checks": [{"spearman": {"family": "Gauss. blur", "template": "blur(sigma={})", "parameter": [1, 2, 3],
                                 "sign": 1}}, {"ranks_above": {"a": "nearest", "b": "bicubic"}}]}))
    suite = load_suite(suite_file)
    out = root / "run"
    store = RecordStore(out)
    store.write_text("suite.yaml", SUITE_COPY_HEADER + yaml.safe_dump(suite.to_dict(), sort_keys=False))  # as run does
    store.append(evaluate(sorted((root / "images").glob("*.png")), list(suite.downscalers), "srflow-tiny-4x",
                          samples=2))
    return out


@pytest.fixture(scope="module")
def page(run_dir: Path) -> str:
    records = scan_records(run_dir)
    report = build_report(records, baseline="bicubic", n_boot=100)
    path = write_html_report(str(run_dir), report, records, grid=GridOptions(n_images=1, n_samples=2),
                             log=lambda _: None)
    assert path == str(run_dir / "report.html")
    return Path(path).read_text()


def test_the_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r"<img[^>]* src='([^']*)'", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(src|href)=['\"]?(https?:|file:|/)", page)  # nothing fetched from anywhere


def test_the_page_has_the_table_the_plots_and_the_grid(page: str) -> None:
    table = re.search(r"<table id=ida-rd>(.*?)</table>", page).group(1)
    assert table.count("<tr>") == 1 + len(DOWNSCALERS) and "95% CI" in table and "[0." in table
    paired = re.search(r"<table id=paired>(.*?)</table>", page).group(1)
    assert paired.count("<tr>") == len(DOWNSCALERS) and "loses more by" in paired  # all but the baseline
    assert "smoke-test model: not for publication" in page  # srflow-tiny-4x
    assert page.count("<img class=bar") == 1  # one (model, metric, scale) group
    assert page.count("<img class=ladder") == 1  # the suite's one spearman check
    assert "Spearman rho per family (Gauss. blur)" in page
    grid = page[page.index("<div id=sample-grid>"):]
    # one image x (bicubic, nearest, then 2 more) rows of HR, LR, 2 SR and 2 difference maps, after its overview
    assert grid.count("<div class=sg-row") == 4 and grid.count("<img") == 1 + 4 * 6
    assert "<figcaption>SR seed 0</figcaption>" in grid and "<figcaption>|SR−HR| seed 1</figcaption>" in grid


def test_recomputed_samples_match_their_records(page: str) -> None:
    """The grid redraws samples from their seeds: its LPIPS equals the record's, exactly."""
    assert len(re.findall(r"[0-9.]+ = record<", page)) == 4 * 2
    assert "≠" not in page


def test_the_report_command_writes_the_page_where_asked(run_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from idard.bench.cli import app

    target = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), "--html", str(target), "--bootstrap", "100",
                                      "--grid-images", "0"])
    assert result.exit_code == 0, result.output
    assert "paper's signs" in result.output and f"html: {target}" in result.output
    assert "no sample grid asked for" in target.read_text()
    assert (run_dir / "checks.md").is_file() and (run_dir / "checks.json").is_file()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (Debian package chromium): "
                                                        "the page is not rendered in a browser")
def test_chromium_renders_the_page_with_its_plots(run_dir: Path, page: str, tmp_path: Path) -> None:
    """Headless Chromium loads the page offline and paints it: the screenshot is not blank."""
    import numpy as np
    from PIL import Image

    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp()
    try:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1400,2400",
                        (run_dir / "report.html").as_uri()], check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (2400, 1400)
    # plots and sample tiles are coloured: many pixels far from white and from grey text
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    assert colourful.mean() > 0.02
