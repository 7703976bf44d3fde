"""What a report says: every metric read the same way, labels that never hide a parameter,
the reduction written with the table, honest small samples, a table whatever happens to
the paired comparison, and outputs that never replace each other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.bench.report import markdown, table_models
from idard.bench.report.reduce import build_report
from idard.bench.store import RecordStore

runner = CliRunner()


def _lines(report, which: int = 0) -> list[str]:
    """The body lines of one of ``report``'s tables in Markdown (0: IDA-RD, 1: paired)."""
    return [line for line in markdown(table_models(report)[which]).splitlines() if line.startswith("| ")][1:]


def _text(report, which: int) -> str:
    return markdown(table_models(report)[which])


def _records(metric: str, higher_is_better: bool, n_images: int = 4, converged: bool | None = None) -> pl.DataFrame:
    """bicubic beats nearest on every image: PSNR higher, LPIPS lower."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_images):
        for seed in range(2):
            good, bad = (30.0, 25.0) if higher_is_better else (0.2, 0.4)
            for downscaler, value in (("bicubic", good), ("nearest", bad), ("blur", (good + bad) / 2),
                                      ("blur(sigma=2.0)", bad + (bad - good))):
                rows.append({"image": f"im{i}", "downscaler": downscaler, "model": "m", "metric": metric, "seed": seed,
                             "scale": 4, "value": value + rng.normal(0, 0.01), "finite": True,
                             "converged": converged, "higher_is_better": higher_is_better})
    return pl.DataFrame(rows)


def test_psnr_reads_like_lpips_rows_from_least_to_most_loss_and_positive_loses_more() -> None:
    for metric, higher in (("lpips-alex", False), ("psnr", True)):
        report = build_report(_records(metric, higher), baseline="bicubic", n_boot=100)
        lines = _lines(report)
        assert [line.split("|")[1].strip() for line in lines] == [
            "bicubic", "blur(sigma=1.0)", "nearest", "blur(sigma=2.0)"], metric
        assert ("| higher |" in lines[0]) == higher
        paired = report.paired.sort("downscaler")
        assert (paired["loss_diff"] > 0).all(), metric  # every other downscaler loses more than bicubic
        assert (paired["mean_diff"] < 0).all() == higher  # the raw difference keeps its sign
        shown = _text(report, 1)
        assert "| nearest | m | " + metric in shown and "| +" in shown.split("nearest")[1].splitlines()[0]


def test_labels_show_the_parameter_that_tells_rows_apart() -> None:
    report = build_report(_records("lpips-alex", False), baseline="blur(sigma=1)", n_boot=100)
    text = _text(report, 0)
    assert "| blur(sigma=1.0) |" in text and "| blur |" not in text
    assert report.baseline == "blur" and "| blur(sigma=1.0) |" in _text(report, 1)


def test_an_unknown_baseline_names_the_known_downscalers(tmp_path: Path) -> None:
    RecordStore(tmp_path).append(_records("lpips-alex", False))
    result = runner.invoke(app, ["report", str(tmp_path), "--baseline", "lanczos", "--bootstrap", "100"])
    assert result.exit_code == 2
    assert "unknown downscaler 'lanczos'; known: bicubic, blur, blur(sigma=2.0), nearest" in result.output


def test_small_samples_say_the_wilcoxon_test_cannot_reach_005() -> None:
    small = build_report(_records("lpips-alex", False, n_images=4), baseline="bicubic", n_boot=100)
    assert (small.paired["p_wilcoxon"] >= 0.125).all() and (small.paired["p_floor"] == 0.125).all()
    assert "Too few images for the Wilcoxon test to reach p < 0.05" in _text(small, 1)
    assert "4 images: p >= 0.125" in _text(small, 1)
    enough = build_report(_records("lpips-alex", False, n_images=8), baseline="bicubic", n_boot=100)
    assert "Too few images" not in _text(enough, 1)


def test_a_report_always_writes_its_table(tmp_path: Path) -> None:
    """Every sample unconverged (PULSE at its default eps): no paired table, but the IDA-RD
    table is written and the message names --include-unconverged; --baseline none works."""
    RecordStore(tmp_path).append(_records("lpips-alex", False, converged=False))
    result = runner.invoke(app, ["report", str(tmp_path), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert "--include-unconverged" in result.output and "no paired differences" in result.output
    assert (tmp_path / "ida_rd.md").is_file() and pl.read_parquet(tmp_path / "ida_rd.parquet").height == 4
    (tmp_path / "ida_rd.md").unlink()
    none = runner.invoke(app, ["report", str(tmp_path), "--bootstrap", "100", "--baseline", "none"])
    assert none.exit_code == 0, none.output
    assert (tmp_path / "ida_rd.md").is_file() and not list(tmp_path.glob("paired*"))


def test_report_out_and_formats_with_the_reduction_and_one_file_per_baseline(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "tables"
    RecordStore(run).append(_records("psnr", True))
    for baseline in ("bicubic", "blur(sigma=2)"):
        result = runner.invoke(app, ["report", str(run), "--out", str(out), "--format", "md,csv,parquet,json",
                                     "--baseline", baseline, "--bootstrap", "200"])
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{stem}.{ext}" for stem in ("ida_rd", "paired_vs_bicubic", "paired_vs_blur_sigma=2.0")
                           for ext in ("md", "csv", "parquet", "json"))
    assert not list(run.glob("ida_rd*"))  # the run directory is left as it was
    meta = json.loads((out / "ida_rd.json").read_text())["reduction"]
    assert meta == {"n_boot": 200, "bootstrap_seed": 0, "ci_level": 0.95, "baseline": "blur(sigma=2.0)",
                    "unconverged": "left out of the means"}
    assert json.loads(pq.read_schema(out / "paired_vs_bicubic.parquet").metadata[b"idard"])["reduction"]["baseline"] == "bicubic"
    assert "n_boot: 200" in (out / "ida_rd.md").read_text()
    bad = runner.invoke(app, ["report", str(run), "--format", "md,xlsx"])
    assert bad.exit_code == 2 and "allowed formats are md, csv, parquet, json" in bad.output


def test_report_out_writes_the_checks_beside_the_tables_not_into_the_run(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "tables"
    RecordStore(run).append(_records("lpips-alex", False))
    (run / "suite.yaml").write_text("name: s\nchecks:\n  - ranks_last: blur(sigma=2.0)\n")
    result = runner.invoke(app, ["report", str(run), "--out", str(out), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert (out / "checks.md").is_file() and (out / "checks.json").is_file()
    assert not list(run.glob("checks.*"))  # the run directory is left as it was
    assert json.loads((out / "checks.json").read_text())
