"""Adaptive sampling (``samples: {min, max, target}``): the suite key, and a run on a real
local Ray that stops groups at different K, resumes computing nothing, and reports K per
group and why sampling stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.bench.store import RecordStore
from idard.bench.suite import SuiteError, load_suite, suite_document
from idard.measure.records import KEY_COLUMNS
from idard.measure.stopping import SamplingRule
from tests.bench.conftest import write_crops

runner = CliRunner()
MINIMAL = "images: [bundled:held-out]\ndownscalers: [bicubic, nearest]\nmodels: [srflow-tiny-4x]\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------ the suite key

def test_a_samples_mapping_is_an_adaptive_rule_over_the_first_max_seeds(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, MINIMAL + "samples: {min: 4, max: 64, ci_halfwidth: 0.002}\n"))
    assert suite.sampling == SamplingRule(min=4, max=64, ci_halfwidth=0.002)
    assert suite.seeds == tuple(range(64))
    paired = load_suite(_write(tmp_path, MINIMAL + "samples: {min: 2, max: 8, paired_halfwidth: 0.01}\n"
                                                   "seed_start: 10\n"))
    assert paired.sampling.baseline == "bicubic" and paired.seeds == tuple(range(10, 18))


def test_a_fixed_k_suite_is_unchanged(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, MINIMAL + "samples: 8\n"))
    assert suite.sampling is None and suite.seeds == tuple(range(8))
    assert "samples" not in suite_document(suite) and "sampling" not in json.dumps(suite.to_dict(), default=str)


def test_the_run_directory_copy_of_an_adaptive_suite_loads_as_the_same_suite(tmp_path: Path) -> None:
    suite = load_suite(_write(tmp_path, MINIMAL + "samples: {min: 2, max: 8, paired_halfwidth: 0.01, "
                                                  "baseline: nearest}\n"))
    (tmp_path / "copy").mkdir()
    copy = tmp_path / "copy" / "suite.yaml"
    copy.write_text(yaml.safe_dump(suite_document(suite)))
    again = load_suite(copy)
    assert again.sampling == suite.sampling and again.seeds == suite.seeds and again.digest() == suite.digest()


@pytest.mark.parametrize(("samples", "key", "says"), [
    ("{min: 4, max: 64, ci_halfwidth: 0.002, patience: 3}", "samples.patience", "unknown key; allowed keys: min"),
    ("{max: 64, ci_halfwidth: 0.002}", "samples.min", "is required"),
    ("{min: 4, max: 0, ci_halfwidth: 0.002}", "samples.max", "positive integer"),
    ("{min: 8, max: 4, ci_halfwidth: 0.002}", "samples.min", "at most samples.max"),
    ("{min: 4, max: 64}", "samples", "exactly one target"),
    ("{min: 4, max: 64, ci_halfwidth: 0.1, paired_halfwidth: 0.1}", "samples", "exactly one target"),
    ("{min: 4, max: 64, ci_halfwidth: -1}", "samples.ci_halfwidth", "number > 0"),
    ("{min: 4, max: 64, paired_halfwidth: 0.1, baseline: lanczos}", "samples.baseline", "not among"),
    ("{min: 4, max: 64, ci_halfwidth: 0.1, baseline: bicubic}", "samples.baseline", "only the paired rule"),
])
def test_a_bad_rule_is_one_line_naming_the_file_and_key(tmp_path: Path, samples: str, key: str, says: str) -> None:
    path = _write(tmp_path, MINIMAL + f"samples: {samples}\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert str(path) in message and repr(key) in message and says in message


def test_a_paired_rule_without_bicubic_names_its_default(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace("bicubic, ", "") + "samples: {min: 2, max: 8, paired_halfwidth: 0.1}\n")
    with pytest.raises(SuiteError, match=r"'samples.baseline'.*'bicubic' is not among.*default is bicubic"):
        load_suite(path)


# ------------------------------------------------------------------------ a run on Ray

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # ours alone
    yield
    ray.shutdown()


#: One 48-px crop: one image, so no group is at its images limit and more seeds always help.
#: At K=2 bicubic's CI is already narrower than 0.004 and blur(sigma=3)'s is not, nor at 4
#: or 8 (measured; the model and the bootstrap are seeded, so this is deterministic).
ADAPTIVE = ("name: adaptive\nimages: [images]\ndownscalers: [bicubic, 'blur(sigma=3)']\n"
            "models: [srflow-tiny-4x]\nmetrics: [lpips-alex]\nsamples: {min: 2, max: 8, ci_halfwidth: 0.004}\n")


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory: pytest.TempPathFactory, local_ray):
    root = tmp_path_factory.mktemp("adaptive")
    write_crops(root / "images", 1)
    (root / "suite.yaml").write_text(ADAPTIVE)
    result = runner.invoke(app, ["run", "--suite", str(root / "suite.yaml"), "--out", str(root / "run"),
                                 "--bootstrap", "100"])
    return root, result


def test_groups_stop_at_different_k_and_the_seeds_are_the_first_k(adaptive_run) -> None:
    root, result = adaptive_run
    assert result.exit_code == 0, result.output
    records = RecordStore(root / "run").scan().collect()
    seeds = dict(records.group_by("downscaler").agg(pl.col("seed").sort()).rows())
    assert seeds == {"bicubic": [0, 1], "blur(sigma=3.0)": list(range(8))}
    assert records.select(KEY_COLUMNS).is_unique().all()
    groups = {g["downscaler"]: g for g in json.loads((root / "run" / "adaptive.json").read_text())["groups"]}
    assert (groups["bicubic"]["decision"], groups["bicubic"]["k_drawn"]) == ("target met", 2)
    assert (groups["blur(sigma=3.0)"]["decision"], groups["blur(sigma=3.0)"]["k_drawn"]) == ("max reached", 8)
    assert "look 1 at K=2: 4 records computed; groups: 1 continue, 1 target met" in result.output
    assert "look 3 at K=8: 4 records computed" in result.output


def test_the_tables_show_k_per_group_and_why_sampling_stopped(adaptive_run) -> None:
    root, _ = adaptive_run
    table = pl.read_csv(root / "run" / "ida_rd.csv")
    assert dict(table.select("downscaler", "k_drawn").rows()) == {"bicubic": 2, "blur(sigma=3.0)": 8}
    assert dict(table.select("downscaler", "sampling").rows()) == {"bicubic": "target met",
                                                                   "blur(sigma=3.0)": "max reached"}
    markdown = (root / "run" / "ida_rd.md").read_text()
    assert "| K | sampling stopped |" in markdown and "adaptive sampling: CI half-width <= 0.004" in markdown
    assert "1 metric x up to 8 seeds by adaptive sampling" in markdown  # the keys line does not claim 8 seeds everywhere
    paired = pl.read_parquet(root / "run" / "paired_vs_bicubic.parquet")
    assert paired["sampling"].to_list() == ["max reached"]


def test_status_counts_as_missing_only_seeds_a_look_would_draw(adaptive_run) -> None:
    from idard.bench.run.jobs import suite_status

    root, _ = adaptive_run
    _, table = suite_status(load_suite(root / "suite.yaml"), root / "run")
    rows = {r["downscaler"]: r for r in table.iter_rows(named=True)}
    assert (rows["bicubic"]["done"], rows["bicubic"]["missing"], rows["bicubic"]["sampling"]) == (2, 0, "target met")
    assert (rows["blur(sigma=3.0)"]["done"], rows["blur(sigma=3.0)"]["missing"]) == (8, 0)
    assert rows["blur(sigma=3.0)"]["sampling"] == "max reached"


def test_the_status_command_shows_each_pairs_sampling_state(adaptive_run) -> None:
    root, _ = adaptive_run
    shown = runner.invoke(app, ["status", "--suite", str(root / "suite.yaml"), "--out", str(root / "run")],
                          )
    assert shown.exit_code == 0, shown.output
    said = " ".join(shown.output.split())  # the title wraps at the table's width
    assert "10 records done, 0 missing at most; adaptive sampling: CI half-width <= 0.004" in said
    assert "target met" in shown.output and "max reached" in shown.output


def test_status_before_an_adaptive_run_counts_up_to_max(tmp_path: Path) -> None:
    from idard.bench.run.jobs import suite_status

    write_crops(tmp_path / "images", 1)
    (tmp_path / "suite.yaml").write_text(ADAPTIVE)
    _, table = suite_status(load_suite(tmp_path / "suite.yaml"), tmp_path / "run")
    assert table["missing"].to_list() == [8, 8]
    assert set(table["sampling"]) == {"sampling (at most K=8)"}


def test_the_html_page_shows_k_and_why_sampling_stopped(adaptive_run, tmp_path: Path) -> None:
    root, _ = adaptive_run
    page = tmp_path / "page.html"
    shown = runner.invoke(app, ["report", str(root / "run"), "--bootstrap", "100", "--out", str(tmp_path / "tables"),
                                "--html", str(page), "--grid-images", "0"])
    assert shown.exit_code == 0, shown.output
    text = page.read_text()
    assert "<th" in text and "sampling stopped" in text and "target met" in text and "max reached" in text
    assert "adaptive sampling: CI half-width &lt;= 0.004" in text or "adaptive sampling: CI half-width <= 0.004" in text


def test_an_adaptive_run_rerun_computes_nothing_and_decides_the_same(adaptive_run, tmp_path: Path) -> None:
    root, _ = adaptive_run
    shutil.copytree(root, tmp_path / "copy")
    before = json.loads((root / "run" / "adaptive.json").read_text())["groups"]
    again = runner.invoke(app, ["run", "--suite", str(tmp_path / "copy" / "suite.yaml"),
                                "--out", str(tmp_path / "copy" / "run"), "--bootstrap", "100"])
    assert again.exit_code == 0, again.output
    assert "records computed" in again.output and "computed 0" not in again.output
    assert again.output.count(": 0 records computed;") == 3  # every look, nothing drawn
    assert "nothing to compute" in again.output
    assert json.loads((tmp_path / "copy" / "run" / "adaptive.json").read_text())["groups"] == before


def test_the_records_are_those_of_the_fixed_k_suite(adaptive_run, tmp_path: Path) -> None:
    root, _ = adaptive_run
    fixed = tmp_path / "suite.yaml"
    fixed.write_text(ADAPTIVE.replace("samples: {min: 2, max: 8, ci_halfwidth: 0.004}", "samples: 2")
                     .replace("[bicubic, 'blur(sigma=3)']", "[bicubic]").replace("[images]", f"[{root / 'images'}]"))
    result = runner.invoke(app, ["run", "--suite", str(fixed), "--out", str(tmp_path / "run"), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert "K |" not in (tmp_path / "run" / "ida_rd.md").read_text()  # a fixed-K table has no K column
    mine = RecordStore(root / "run").scan().filter(pl.col("downscaler") == "bicubic").collect()
    theirs = RecordStore(tmp_path / "run").scan().collect()
    assert mine.sort("seed")["value"].to_list() == theirs.sort("seed")["value"].to_list()


# ------------------------------------------------------------- the paired rule's level

def _paired_run(tmp_path: Path, rule: SamplingRule | None) -> Path:
    """A run of `test_report_model._records` (4 images x 3 seeds), with an adaptive.json
    of ``rule`` whose groups all stopped at K=3."""
    from idard.bench.run.adaptive import write_sampling
    from tests.bench.test_report_model import _records

    run = tmp_path / ("paired" if rule else "fixed")
    store = RecordStore(run)
    store.append(_records())
    if rule is not None:
        groups = [{"downscaler": d, "model": "m", "metric": m, "scale": 4, "decision": "max reached", "k": 3,
                   "k_drawn": 3}
                  for d in ("nearest", "blur(sigma=1.0)", "blur(sigma=2.0)") for m in ("psnr", "lpips-alex")]
        write_sampling(store, rule, [], groups)
    return run


def _paired_markdown(run: Path) -> tuple[list[str], dict[str, str]]:
    result = runner.invoke(app, ["report", str(run), "--format", "md", "--bootstrap", "200", "--grid-images", "0"])
    assert result.exit_code == 0, result.output
    text = (run / "paired_vs_bicubic.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| downscaler"))
    headers = [c.strip() for c in header.strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and line != header and not line.startswith("|---")]
    ci = next(h for h in headers if h.endswith("CI"))
    return headers, {f"{r[0]} {r[2]}": r[headers.index(ci)] for r in rows}


def test_a_paired_rules_table_shows_the_intervals_it_decided_on(tmp_path: Path) -> None:
    from idard.bench.run.adaptive import paired_level

    rule = SamplingRule(min=1, max=8, paired_halfwidth=0.01, baseline="bicubic")  # looks 1, 2, 4, 8
    paired, fixed = _paired_run(tmp_path, rule), _paired_run(tmp_path, None)
    assert paired_level(RecordStore(paired)) == pytest.approx(1 - 0.05 / 4) and paired_level(RecordStore(fixed)) == 0.95
    headers, wide = _paired_markdown(paired)
    fixed_headers, narrow = _paired_markdown(fixed)
    assert "98.75% CI" in headers and "95% CI" in fixed_headers
    width = lambda cell: float(cell.strip("[]†").split(",")[1]) - float(cell.strip("[]†").split(",")[0])  # noqa: E731
    assert wide.keys() == narrow.keys()
    assert all(width(wide[k]) > width(narrow[k]) for k in wide)


# ------------------------------------------------- the Python API reads a run as report does

def test_the_python_api_on_a_run_directory_shows_what_report_shows(adaptive_run) -> None:
    import idard

    root, _ = adaptive_run
    table = idard.ida_rd_table(str(root / "run"), n_boot=100)
    assert dict(table.rows.select("downscaler", "k_drawn").rows()) == {"bicubic": 2, "blur(sigma=3.0)": 8}
    written = pl.read_parquet(root / "run" / "ida_rd.parquet")  # the run's own report, same bootstrap
    assert table.rows.select("downscaler", "ida_rd", "ci_low", "ci_high").sort("downscaler").equals(
        written.select("downscaler", "ida_rd", "ci_low", "ci_high").sort("downscaler"))


def test_the_python_apis_paired_table_of_a_run_is_at_its_decided_level(tmp_path: Path) -> None:
    import idard

    rule = SamplingRule(min=1, max=8, paired_halfwidth=0.01, baseline="bicubic")
    run = _paired_run(tmp_path, rule)
    api = idard.paired_table(run, "bicubic", n_boot=200)
    assert "98.75% CI" in api.headers()
    _, cli = _paired_markdown(run)
    from_records = idard.paired_table(RecordStore(run).scan(), "bicubic", n_boot=200)  # a bare frame: nominal 95 %
    assert "95% CI" in from_records.headers() and len(api.rows) == len(cli)
