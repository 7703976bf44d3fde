"""Careless and hostile use of the command line: one line naming the file or key, exit 2.

None of these needs Ray: each is refused, or reported, before any worker starts.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.bench.store import RecordStore
from idard.measure.records import RECORD_SCHEMA
from tests.bench.conftest import write_suite

runner = CliRunner()  # its output holds stdout and stderr
REPO = Path(__file__).resolve().parents[2]


def _one_line_error(result, *needles: str) -> str:
    text = result.output.strip()
    assert result.exit_code == 2, text
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text
    return text


def test_out_that_is_a_file(photo_dir: Path) -> None:
    suite = write_suite(photo_dir, ["bicubic"])
    (photo_dir / "afile").write_text("not a run directory")
    result = runner.invoke(app, ["run", "--suite", str(suite), "--out", str(photo_dir / "afile")])
    _one_line_error(result, "afile: cannot be used as a run directory")


def test_a_plug_in_value_its_class_refuses_names_file_and_key(photo_dir: Path) -> None:
    suite = photo_dir / "suite.yaml"
    suite.write_text("images: [images]\ndownscalers: [bicubic]\nmodels: [srflow-tiny-4x]\n"
                     "metrics: ['lpips-alex(batch_size=0)']\n")
    result = runner.invoke(app, ["status", "--suite", str(suite), "--out", str(photo_dir / "run")])
    _one_line_error(result, str(suite), "'metrics[0]'", "batch_size must be >= 1")


@pytest.mark.parametrize(("images", "says"), [("missing", "'missing': "), ("images/*.jpg", "holds no images"),
                                              ("bundled:nope", "unknown bundled image 'nope'")])
def test_image_sources_that_hold_nothing(photo_dir: Path, images: str, says: str) -> None:
    suite = write_suite(photo_dir, ["bicubic"], images=images)
    (photo_dir / "run").mkdir()  # an existing run directory: status has nothing else to say
    result = runner.invoke(app, ["status", "--suite", str(suite), "--out", str(photo_dir / "run")])
    _one_line_error(result, says)


def _suite_records(images: list[str], seeds: range) -> pl.DataFrame:
    rows = [{"image": i, "downscaler": "bicubic", "model": "srflow-tiny-4x", "metric": "lpips-alex", "seed": s,
             "scale": 4, "value": 0.1 + 0.01 * s, "finite": True} for i in images for s in seeds]
    return pl.DataFrame(rows, schema={k: RECORD_SCHEMA[k] for k in rows[0]})


def test_status_and_report_count_a_key_written_twice_once_and_say_so(photo_dir: Path) -> None:
    """Two runs on one directory once made status print ``missing 4294967008``."""
    suite = write_suite(photo_dir, ["bicubic"], samples=2)
    out = photo_dir / "run"
    store = RecordStore(out)
    names = ["img000", "img001", "img002"]
    store.append(_suite_records(names, range(2)))
    store.append(_suite_records(names, range(2)))  # the second writer's copy
    store.append(_suite_records(names[:1], range(2)))  # and more
    status = runner.invoke(app, ["status", "--suite", str(suite), "--out", str(out)])
    assert status.exit_code == 0, status.output
    text = " ".join(status.output.split())  # the title wraps where the temporary path's length puts it
    assert "6/6 records done" in text and "more than once" in text
    row = next(line for line in status.output.splitlines() if " bicubic " in line)
    assert [c.strip() for c in row.split("│")[3:5]] == ["6", "0"]  # done, missing: never underflowed
    report = runner.invoke(app, ["report", str(out), "--bootstrap", "100"])
    assert report.exit_code == 0, report.output
    assert "8 extra copies" in report.output
    assert pl.read_parquet(out / "ida_rd.parquet")["n_images"].to_list() == [3]


def test_report_names_a_corrupt_part_and_goes_on(photo_dir: Path) -> None:
    out = photo_dir / "run"
    RecordStore(out).append(_suite_records(["img000", "img001"], range(2)))
    (out / "records" / "part-20990101T000000-bad.parquet").write_bytes(b"PAR1 truncated")
    report = runner.invoke(app, ["report", str(out), "--bootstrap", "100"])
    assert report.exit_code == 0, report.output
    text = report.output
    assert re.search(r"part-20990101T000000-bad.parquet: not a readable Parquet file", text), text
    assert "Traceback" not in text


def test_a_write_that_fails_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """A real failed write (the file-size limit stands in for a full disk: both are OSErrors
    from write(2)), through the store, in a process of its own."""
    code = (
        "import resource, signal, sys, polars as pl\n"
        "from idard.bench.store import RecordStore, StoreWriteError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n"
        "frame = pl.DataFrame({'image': [str(i) * 50 for i in range(2000)]})\n"
        f"try:\n    RecordStore({str(tmp_path)!r}).append(frame)\n"
        "except StoreWriteError as exc:\n    print(exc)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert re.fullmatch(r"\S+/records/part-\S+\.parquet: cannot write \(File too large\)\n", run.stdout), run
    assert not list((tmp_path / "records").glob(".*.tmp"))  # no half-written partial left
