"""One table model behind every surface: the terminal, Markdown, CSV, Parquet, JSON and the
HTML page list the same rows in the same order under the same labels with the same
counts, and carry the same caveats (CIs over too few images, smoke-test models)."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from idard.bench import cli
from idard.bench.store import RecordStore

runner = CliRunner()


def _records(model: str = "m", n_images: int = 4, errors_per_row: int = 2) -> pl.DataFrame:
    """PSNR (higher is better) and LPIPS records of four downscalers, two of one family
    (``blur`` is ``blur(sigma=1.0)``), and ``errors_per_row`` error records per row (an
    unreadable image), so that order, labels and every count can be told apart."""
    rng = np.random.default_rng(0)
    rows = []
    levels = {"bicubic": 0.0, "nearest": 1.0, "blur": 0.5, "blur(sigma=2.0)": 2.0}
    for metric, higher, good, step in (("psnr", True, 30.0, -3.0), ("lpips-alex", False, 0.2, 0.1)):
        for downscaler, level in levels.items():
            for i in range(n_images):
                for seed in range(3):
                    rows.append({"image": f"im{i}", "downscaler": downscaler, "model": model, "metric": metric,
                                 "seed": seed, "scale": 4, "value": good + step * level + rng.normal(0, 0.05),
                                 "finite": True, "error": None, "higher_is_better": higher})
            for seed in range(errors_per_row):
                rows.append({"image": "broken", "downscaler": downscaler, "model": model, "metric": metric,
                             "seed": seed, "scale": 4, "value": float("nan"), "finite": False,
                             "error": "ImageError: broken.png: cannot identify image file", "higher_is_better": higher})
    return pl.DataFrame(rows)


def _terminal_rows(output: str, first_header: str = "downscaler") -> list[list[list[str]]]:
    """The body rows of each rich table in ``output``, as lists of stripped cells."""
    tables, current = [], None
    for line in output.splitlines():
        if line.startswith("┃") and first_header in line:
            current = []
            tables.append(current)
        elif line.startswith("│") and current is not None:
            current.append([c.strip() for c in line.strip("│").split("│")])
        elif line.startswith("└"):
            current = None
    return tables


def _markdown_headers(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("| downscaler"))
    return [c.strip() for c in line.strip("|").split("|")]


def _markdown_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")][1:]  # after the header
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def _html_rows(page: str, anchor: str) -> tuple[list[str], list[list[str]]]:
    body = re.search(rf"<table id={anchor}>(.*?)</table>", page).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    headers = [html.unescape(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", rows[0])]
    return headers, [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)] for r in rows[1:]]


def _shown(headers: list[str], rows: list[list[str]], names: tuple[str, ...]) -> list[tuple[str, ...]]:
    index = [headers.index(n) for n in names]
    return [tuple(row[i] for i in index) for row in rows]


@pytest.fixture()
def report_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """``report RUN --format md,csv,parquet,json --html PAGE`` on `_records`: its output."""
    run = tmp_path / "run"
    RecordStore(run).append(_records())
    monkeypatch.setattr(cli.console, "width", 250)  # one terminal line per row
    result = runner.invoke(cli.app, ["report", str(run), "--format", "md,csv,parquet,json", "--bootstrap", "100",
                                     "--html", str(run / "page.html"), "--grid-images", "0"])
    assert result.exit_code == 0, result.output
    return run, result.output


TABLE_KEYS = ("downscaler", "metric", "images", "samples", "errors")
DATA_KEYS = ("downscaler", "metric", "n_images", "n_samples", "n_errors")
PAIRED_KEYS = ("downscaler", "metric", "vs", "images", "pairs")
PAIRED_DATA_KEYS = ("downscaler", "metric", "baseline", "n_images", "n_pairs")


def test_every_format_lists_the_same_rows_in_the_same_order_with_the_same_labels_and_counts(report_dir) -> None:
    run, output = report_dir
    terminal, paired_terminal = _terminal_rows(output)
    md = (run / "ida_rd.md").read_text()
    headers = _markdown_headers(md)
    expected = _shown(headers, _markdown_rows(md), TABLE_KEYS)
    # the order is the terminal's and ida_rd.md's: least to most information lost, PSNR descending
    assert expected == [("bicubic", "lpips-alex", "4", "12", "2"), ("blur(sigma=1.0)", "lpips-alex", "4", "12", "2"),
                        ("nearest", "lpips-alex", "4", "12", "2"), ("blur(sigma=2.0)", "lpips-alex", "4", "12", "2"),
                        ("bicubic", "psnr", "4", "12", "2"), ("blur(sigma=1.0)", "psnr", "4", "12", "2"),
                        ("nearest", "psnr", "4", "12", "2"), ("blur(sigma=2.0)", "psnr", "4", "12", "2")]
    assert _shown(headers, terminal, TABLE_KEYS) == expected
    page = (run / "page.html").read_text()
    assert _shown(*_html_rows(page, "ida-rd"), TABLE_KEYS) == expected
    as_text = [tuple(str(v) for v in row) for row in pl.read_csv(run / "ida_rd.csv").select(DATA_KEYS).iter_rows()]
    assert as_text == expected
    assert [tuple(str(v) for v in row) for row in pl.read_parquet(run / "ida_rd.parquet").select(DATA_KEYS).iter_rows()] \
        == expected
    rows = json.loads((run / "ida_rd.json").read_text())["rows"]
    assert [tuple(str(r[k]) for k in DATA_KEYS) for r in rows] == expected
    # the data formats keep the ids beside the labels, and the numbers unrounded
    data = pl.read_parquet(run / "ida_rd.parquet")
    assert data["downscaler_id"].to_list()[:2] == ["bicubic", "blur"]
    assert any(len(str(v).split(".")[1]) > 4 for v in data["ida_rd"].to_list())

    md_paired = (run / "paired_vs_bicubic.md").read_text()
    paired_headers = _markdown_headers(md_paired)
    expected_paired = _shown(paired_headers, _markdown_rows(md_paired), PAIRED_KEYS)
    assert [row[0] for row in expected_paired] == ["blur(sigma=1.0)", "nearest", "blur(sigma=2.0)"] * 2
    assert _shown(paired_headers, paired_terminal, PAIRED_KEYS) == expected_paired
    assert _shown(*_html_rows(page, "paired"), PAIRED_KEYS) == expected_paired
    for frame in (pl.read_csv(run / "paired_vs_bicubic.csv"), pl.read_parquet(run / "paired_vs_bicubic.parquet"),
                  pl.DataFrame(json.loads((run / "paired_vs_bicubic.json").read_text())["rows"])):
        assert [tuple(str(v) for v in row) for row in frame.select(PAIRED_DATA_KEYS).iter_rows()] == expected_paired


def test_the_html_page_shows_every_column_of_the_terminal_and_its_bar_chart_labels(report_dir) -> None:
    """It dropped ``better`` and ``errors``, had no paired table and sorted PSNR worst first."""
    run, output = report_dir
    page = (run / "page.html").read_text()
    headers, rows = _html_rows(page, "ida-rd")
    assert headers == _markdown_headers((run / "ida_rd.md").read_text())
    assert "errors" in headers and "better" in headers and rows[4][headers.index("better")] == "higher"
    assert "<table id=paired>" in page and "Paired differences" in page


def _report(tmp_path: Path, frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    run = tmp_path / "run"
    RecordStore(run).append(frame)
    monkeypatch.setattr(cli.console, "width", 250)
    result = runner.invoke(cli.app, ["report", str(run), "--format", "md,csv,parquet,json", "--bootstrap", "100",
                                     "--html", str(run / "page.html"), "--grid-images", "0"])
    assert result.exit_code == 0, result.output
    return run, result.output


def test_cis_over_too_few_images_are_marked_with_their_rule_in_every_format(tmp_path: Path, monkeypatch) -> None:
    """Two images: a paired CI of [-3.95, -3.88] next to Wilcoxon p = 0.5 is no CI to cite."""
    run, output = _report(tmp_path, _records(n_images=2), monkeypatch)
    rule = "CI over fewer than 10 images: not an interval to cite"
    for name in ("ida_rd", "paired_vs_bicubic"):
        md = (run / f"{name}.md").read_text()
        assert rule in md and all(row[6].endswith("†") for row in _markdown_rows(md)), name
        assert "2 images: 0.11" in md  # the width a 2-image bootstrap has of an exact t-interval
        assert rule in json.loads((run / f"{name}.json").read_text())["notes"][0]
        assert rule in json.loads(pq_metadata(run / f"{name}.parquet"))["notes"][0]
        csv = pl.read_csv(run / f"{name}.csv")
        assert csv["ci_few_images"].all() and csv["caveats"].str.contains("CI from 2 image").all()
    assert output.count(rule) == 2 and "]†" in output
    page = (run / "page.html").read_text()
    assert page.count(rule) == 2 and "]†</td>" in page


def test_enough_images_carry_no_ci_mark(tmp_path: Path, monkeypatch) -> None:
    run, output = _report(tmp_path, _records(n_images=10), monkeypatch)
    assert "†" not in output and "†" not in (run / "ida_rd.md").read_text()
    assert not pl.read_csv(run / "ida_rd.csv")["ci_few_images"].any()


def pq_metadata(path: Path) -> str:
    import pyarrow.parquet as pq

    return pq.read_schema(path).metadata[b"idard"].decode()


@pytest.mark.parametrize("model", ["srflow-tiny-4x", "resshift-tiny-4x"])
def test_tables_of_an_embedded_model_say_it_is_a_smoke_test_model(tmp_path: Path, monkeypatch, model: str) -> None:
    run, output = _report(tmp_path, _records(model=model), monkeypatch)
    banner = "smoke-test model: not for publication"
    assert banner in " ".join(output.split())
    for name in ("ida_rd", "paired_vs_bicubic"):
        assert banner in (run / f"{name}.md").read_text()
        assert banner in json.loads((run / f"{name}.json").read_text())["banner"]
        assert banner in json.loads(pq_metadata(run / f"{name}.parquet"))["banner"]
        assert pl.read_csv(run / f"{name}.csv")["caveats"].str.contains(banner, literal=True).all()
    page = (run / "page.html").read_text()
    assert page.count(f"<p class=banner>{banner}") >= 3  # the page, and above each table


def test_a_published_model_has_no_banner(tmp_path: Path, monkeypatch) -> None:
    run, output = _report(tmp_path, _records(model="srflow(weights='SRFlow_DF2K_4X.pth',heat=1.1)"), monkeypatch)
    assert "smoke-test" not in output and "smoke-test" not in (run / "page.html").read_text()
    assert json.loads((run / "ida_rd.json").read_text())["banner"] is None


def test_the_ci_width_ratios_are_the_bootstrap_over_the_exact_t_interval() -> None:
    from scipy import stats

    from idard.bench.report.model import CI_WIDTH_RATIO

    for n, ratio in CI_WIDTH_RATIO.items():
        exact = stats.norm.ppf(0.975) * math.sqrt((n - 1) / n) / stats.t.ppf(0.975, n - 1)
        assert ratio == round(exact, 2), n
