"""The HTML report in a real browser (Debian's chromium, driven by Playwright): the page
loads offline without console errors, paints every picture, fits a laptop window, and
lists the rows of the terminal's tables in the terminal's order.

`make test` installs chromium where it can (root with apt-get, as in CI); elsewhere these
tests skip and say so. Each test leaves a full-page screenshot under its tmp dir and names
it in any failure, so a person can look at what the browser drew.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from idard.bench import cli
from idard.bench.store import RecordStore
from tests.bench.test_report_model import _records, _terminal_rows

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright (a test dependency) is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} not installed (Debian package chromium; `make test` installs it "
                                       "as root): the page is not rendered in a browser")

#: A laptop browser window: the page must not need horizontal scrolling in it.
WINDOW = {"width": 1400, "height": 900}


def _open(page_path: Path, shot: Path) -> dict:
    """Load ``page_path`` in headless chromium; what a person would see, as data."""
    seen: dict = {"console": [], "requests": [], "failed": []}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport=WINDOW)
            page.on("console", lambda m: seen["console"].append((m.type, m.text)))
            page.on("pageerror", lambda e: seen["console"].append(("pageerror", str(e))))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.on("requestfailed", lambda r: seen["failed"].append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            page.screenshot(path=str(shot), full_page=True)
            seen["images"] = page.evaluate(
                "[...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
            seen["tables"] = page.evaluate(  # {table id: body rows as lists of cell texts}
                """() => Object.fromEntries([...document.querySelectorAll('table[id]')].map(t => [t.id,
                   [...t.querySelectorAll('tr')].slice(1).map(r => [...r.cells].map(c => c.innerText.trim()))]))""")
            seen["scroll_width"] = page.evaluate("document.documentElement.scrollWidth")
        finally:
            browser.close()
    return seen


@pytest.fixture(scope="module")
def psnr_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run with PSNR (higher is better), LPIPS, two of one plug-in family and error
    records in every row; reported by the CLI with its HTML page."""
    run = tmp_path_factory.mktemp("browser") / "run"
    RecordStore(run).append(_records())
    result = CliRunner().invoke(cli.app, ["report", str(run), "--baseline", "bicubic", "--bootstrap", "200",
                                          "--html", "--grid-images", "0"])
    assert result.exit_code == 0, result.output
    return run, result.output


def test_the_page_loads_offline_without_errors_and_paints_every_picture(psnr_run: tuple[Path, str],
                                                                       tmp_path: Path) -> None:
    run, _ = psnr_run
    shot = tmp_path / "report.png"
    seen = _open(run / "report.html", shot)
    where = f"(screenshot: {shot})"
    assert not [m for m in seen["console"] if m[0] in ("error", "warning", "pageerror")], f"{seen['console']} {where}"
    assert not seen["failed"], f"requests failed: {seen['failed']} {where}"
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), f"{seen['requests']} {where}"
    assert seen["images"], f"no pictures on the page {where}"
    unpainted = [alt for alt, complete, width, height in seen["images"] if not (complete and width > 0 and height > 0)]
    assert not unpainted, f"pictures not painted: {unpainted} {where}"
    assert seen["scroll_width"] <= WINDOW["width"], f"page {seen['scroll_width']} px wide in a 1400-px window {where}"


def test_the_page_lists_the_terminals_rows_in_the_terminals_order(psnr_run: tuple[Path, str], tmp_path: Path) -> None:
    """Both tables, row by row: the labels, the order (PSNR best-first) and the counts that
    the terminal printed are what the browser shows."""
    run, output = psnr_run
    shot = tmp_path / "report.png"
    seen = _open(run / "report.html", shot)
    terminal = _terminal_rows(output)
    assert len(terminal) == 2, output  # the IDA-RD table and the paired table
    for table_id, rows in zip(("ida-rd", "paired"), terminal):
        shown = seen["tables"].get(table_id)
        assert shown is not None, f"no table #{table_id} on the page (screenshot: {shot})"
        assert [r[0] for r in shown] == [r[0] for r in rows], f"#{table_id} order or labels (screenshot: {shot})"
        assert shown == rows, f"#{table_id}: the page's cells differ from the terminal's (screenshot: {shot})"
    psnr = [r[0] for r in seen["tables"]["ida-rd"] if "psnr" in r]
    assert psnr[0] == "bicubic" and psnr[-1] == "blur(sigma=2.0)", f"PSNR best-first: {psnr} (screenshot: {shot})"
