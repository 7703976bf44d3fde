"""IDA-RD tables rendered for the terminal, Markdown and CSV."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from idard.bench.report import markdown, write_reports

TABLE = pl.DataFrame({
    "downscaler": ["nearest", "bicubic"], "model": ["m", "m"], "metric": ["lpips-alex"] * 2, "scale": [4, 4],
    "ida_rd": [0.5, 0.25], "std_images": [0.1, None], "ci_low": [0.4, 0.2], "ci_high": [0.6, 0.3],
    "n_images": [3, 1], "n_samples": [24, 8], "n_nonfinite": [0, 2],
})


def test_markdown_sorts_by_ida_rd_and_formats_fixed_decimals() -> None:
    lines = markdown(TABLE).splitlines()
    assert lines[0].startswith("| downscaler | model | metric | scale | IDA-RD | ± images | 95% CI |")
    assert lines[2].startswith("| bicubic | m | lpips-alex | x4 | 0.2500 | — | [0.2000, 0.3000] | 1 | 8 | 2 |")
    assert lines[3].startswith("| nearest |")


def test_write_reports_writes_markdown_csv_and_parquet(tmp_path: Path) -> None:
    paths = write_reports(TABLE, tmp_path / "run")
    assert [p.name for p in paths] == ["ida_rd.md", "ida_rd.csv", "ida_rd.parquet"]
    assert pl.read_parquet(paths[2]).equals(TABLE)
    assert pl.read_csv(paths[1])["downscaler"].to_list() == ["nearest", "bicubic"]
