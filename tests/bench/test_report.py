"""IDA-RD tables rendered for the terminal, Markdown, CSV and Parquet from one `TableModel`."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from idard.bench.report import markdown, table_models, write_reports
from idard.bench.report.reduce import Report

TABLE = pl.DataFrame({
    "downscaler": ["nearest", "bicubic"], "model": ["m", "m"], "metric": ["lpips-alex"] * 2, "scale": [4, 4],
    "ida_rd": [0.5, 0.25], "std_images": [0.1, None], "ci_low": [0.4, 0.2], "ci_high": [0.6, 0.3],
    "n_images": [12, 1], "n_samples": [24, 8], "n_nonfinite": [0, 2], "n_errors": [0, 0], "n_unconverged": [0, 0],
})


def _models(table: pl.DataFrame = TABLE, paired: pl.DataFrame | None = None, **options):
    return table_models(Report(table=table, paired=paired, baseline=None if paired is None else "bicubic",
                               n_boot=100, seed=0, **options))


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_markdown_sorts_by_ida_rd_and_formats_fixed_decimals() -> None:
    lines = _table_lines(markdown(_models()[0]))
    assert lines[0].startswith("| downscaler | model | metric | scale | IDA-RD | ± images | 95% CI |")
    assert lines[1].startswith("| bicubic | m | lpips-alex | x4 | 0.2500 | — | [0.2000, 0.3000]† | 1 | 8 | 2 | 0 |")
    assert lines[2].startswith("| nearest | m | lpips-alex | x4 | 0.5000 | 0.1000 | [0.4000, 0.6000] | 12 |")


def test_the_unconverged_column_says_whether_those_samples_are_in_the_mean(tmp_path: Path) -> None:
    """Shown only when some sample missed its goal; its header names the reduction used."""
    assert "unconverged" not in _table_lines(markdown(_models()[0]))[0]
    counted = TABLE.with_columns(n_unconverged=pl.Series([5, 0]))
    assert _table_lines(markdown(_models(counted)[0]))[0].endswith("| errors | unconverged (left out) | better |")
    included = _models(counted, include_unconverged=True)
    assert _table_lines(markdown(included[0]))[0].endswith("| unconverged (in mean) | better |")
    written = write_reports(included, tmp_path)
    assert "unconverged (in mean)" in Path(written[0]).read_text()


def test_write_reports_writes_markdown_csv_and_parquet_in_the_shown_order(tmp_path: Path) -> None:
    paths = write_reports(_models(), tmp_path / "run")
    assert [Path(p).name for p in paths] == ["ida_rd.md", "ida_rd.csv", "ida_rd.parquet"]
    data = pl.read_parquet(paths[2])
    assert data["downscaler"].to_list() == ["bicubic", "nearest"] and data["ida_rd"].to_list() == [0.25, 0.5]
    assert pl.read_csv(paths[1])["downscaler_id"].to_list() == ["bicubic", "nearest"]


PAIRED = pl.DataFrame({
    "downscaler": ["nearest", "area"], "model": ["m"] * 2, "metric": ["lpips-alex"] * 2, "scale": [4, 4],
    "baseline": ["bicubic"] * 2, "mean_diff": [0.012, -0.003], "std_images": [0.01, 0.0],
    "ci_low": [0.004, -0.003], "ci_high": [0.02, -0.003], "p_wilcoxon": [0.03, float("nan")],
    "n_images": [12, 1], "n_pairs": [32, 8],
})


def test_paired_differences_are_written_signed_with_their_ci(tmp_path: Path) -> None:
    paired = _models(paired=PAIRED)[1]
    assert "| nearest | m | lpips-alex | x4 | bicubic | +0.0120 | [+0.0040, +0.0200] | 0.03 | 12 | 32 |" in markdown(paired)
    names = [Path(p).name for p in write_reports(_models(paired=PAIRED), tmp_path)]
    assert names[3:] == ["paired_vs_bicubic.md", "paired_vs_bicubic.csv", "paired_vs_bicubic.parquet"]


def test_rich_paired_table_sorts_by_signed_difference_and_shows_undefined_p_as_a_dash() -> None:
    from rich.console import Console

    from idard.bench.report import rich_table

    console = Console(width=200, record=True)
    console.print(rich_table(_models(paired=PAIRED)[1]))
    lines = [line for line in console.export_text().splitlines() if "bicubic" in line]
    assert "area" in lines[0] and "-0.0030" in lines[0] and "—" in lines[0] and "nan" not in lines[0]
    assert "nearest" in lines[1] and "+0.0120" in lines[1] and "[+0.0040, +0.0200]" in lines[1]


def test_tables_of_an_object_store_run_are_written_beside_its_records() -> None:
    import io

    from idard.bench.store import RecordStore

    store = RecordStore("mock:///bucket/run")  # pyarrow's in-memory filesystem
    store._fs.create_dir("bucket/run")  # it wants parent folders, unlike S3 and GCS
    paths = write_reports(_models(), store)
    assert store.remote and paths[0] == "mock:///bucket/run/ida_rd.md"  # as the user names it, to paste
    with store._fs.open_input_file("bucket/run/ida_rd.parquet") as fh:
        assert pl.read_parquet(io.BytesIO(fh.read()))["ida_rd"].to_list() == [0.25, 0.5]
