"""Checks as data: a suite's ``checks:`` are validated on load and evaluated on a run's table."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from idard.bench.suite.checks import CheckError, evaluate_checks, parse_checks, summary_lines
from idard.bench.suite import SuiteError, load_suite

SUITE = "images: [bundled:held-out]\ndownscalers: [bicubic, bilinear, nearest, 'blur(sigma=1)', 'blur(sigma=2)']\n" \
        "models: [srflow-tiny-4x]\n"


def _table(values: dict[str, float], metric: str = "lpips-alex", model: str = "srflow-tiny-4x") -> pl.DataFrame:
    return pl.DataFrame({
        "downscaler": list(values), "model": [model] * len(values), "metric": [metric] * len(values),
        "scale": [4] * len(values), "ida_rd": list(values.values()),
        "ci_low": [v - 0.01 for v in values.values()], "ci_high": [v + 0.01 for v in values.values()],
    })


def _results(raw: list, table: pl.DataFrame, records: pl.DataFrame | None = None):
    return evaluate_checks(parse_checks(raw, "s.yaml"), table, records)


def test_a_ladder_rising_with_its_parameter_passes_with_the_papers_sign() -> None:
    table = _table({"blur": 0.5, "blur(sigma=2.0)": 0.6, "blur(sigma=3.0)": 0.7})
    rising = {"spearman": {"family": "Gauss. blur", "template": "blur(sigma={})", "parameter": [1, 2, 3], "sign": 1}}
    falling = {"spearman": {"family": "wrong sign", "template": "blur(sigma={})", "parameter": [1, 2, 3], "sign": -1}}
    ok, wrong = _results([rising, falling], table)
    assert ok.passed is True and ok.values["rho"] == {"srflow-tiny-4x / lpips-alex / x4": 1.0}
    assert wrong.passed is False
    assert summary_lines([ok, wrong])[0] == ("Spearman rho per family (Gauss. blur, wrong sign): +1 +1, "
                                             "paper's signs: no")


def test_a_ladder_with_a_missing_rung_is_undecided_not_passed() -> None:
    table = _table({"blur": 0.5, "blur(sigma=2.0)": 0.6})
    (result,) = _results([{"spearman": {"template": "blur(sigma={})", "parameter": [1, 2, 3], "sign": 1}}], table)
    assert result.passed is None and math.isnan(result.values["rho"]["srflow-tiny-4x / lpips-alex / x4"])


def test_min_abs_accepts_a_nearly_monotone_ladder() -> None:
    table = _table({"blur": 0.5, "blur(sigma=2.0)": 0.7, "blur(sigma=3.0)": 0.6, "blur(sigma=4.0)": 0.8})
    check = {"template": "blur(sigma={})", "parameter": [1, 2, 3, 4], "sign": 1}
    strict, loose = _results([{"spearman": check}, {"spearman": {**check, "min_abs": 0.75}}], table)
    assert strict.passed is False and loose.passed is True  # rho = 0.8


def test_ranks_last_and_ranks_above_follow_the_metric_direction() -> None:
    lpips = _table({"bicubic": 0.30, "bilinear": 0.32, "nearest": 0.37})
    checks = [{"ranks_last": "nearest"}, {"ranks_above": {"a": "nearest", "b": ["bicubic", "bilinear"]}},
              {"ranks_above": {"a": "bicubic", "b": "bilinear"}}]
    assert [r.passed for r in _results(checks, lpips)] == [True, True, False]
    psnr = _table({"bicubic": 29.0, "bilinear": 30.0, "nearest": 25.0}, metric="psnr")  # higher PSNR = less lost
    assert [r.passed for r in _results(checks, psnr)] == [True, True, True]


def test_ranks_last_among_a_list_ignores_other_downscalers() -> None:
    table = _table({"bicubic": 0.30, "nearest": 0.37, "blur(sigma=3.0)": 0.70})
    everyone, classic = _results([{"ranks_last": "nearest"},
                                  {"ranks_last": {"downscaler": "nearest", "among": ["bicubic"]}}], table)
    assert everyone.passed is False and "blur(sigma=3.0)" in everyone.detail
    assert classic.passed is True


def test_spread_checks_read_the_std_over_seeds_from_the_records() -> None:
    rows = [("a", "bicubic", "det", "lpips-alex", s, 0.3) for s in range(3)]
    rows += [("a", "bicubic", "sto", "lpips-alex", s, 0.3 + 0.02 * s) for s in range(3)]
    records = pl.DataFrame(rows, schema=["image", "downscaler", "model", "metric", "seed", "value"], orient="row")
    records = records.with_columns(finite=pl.lit(True))
    table = _table({"bicubic": 0.3})
    det, sto, sto_below = _results([{"spread_below": {"model": "det", "max_std_over_seeds": 1e-6}},
                                    {"spread_above": {"model": "sto", "min_std_over_seeds": 1e-3}},
                                    {"spread_below": {"model": "sto", "max_std_over_seeds": 1e-3}}], table, records)
    assert (det.passed, sto.passed, sto_below.passed) == (True, True, False)
    assert det.values["std_over_seeds"] == 0.0


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{ranks_first: nearest}", "unknown check kind 'ranks_first'"),
        ("{ranks_above: {a: nearest}}", "checks[0].ranks_above.b': is required"),
        ("{ranks_above: {a: nearest, b: bicubic, c: 1}}", "checks[0].ranks_above.c': unknown key"),
        ("{spearman: {template: 'blur(sigma={})', parameter: [1, 2], sign: 2}}", "checks[0].spearman.sign': must be +1 or -1"),
        ("{spearman: {downscalers: [bicubic], parameter: [1, 2], sign: 1}}", "1 downscalers but 2 parameter values"),
        ("{ranks_last: lanczos}", "downscaler 'lanczos' is not in the suite's downscalers"),
        ("{spread_below: {model: srflow-tiny-4x(heat=0), max_std_over_seeds: 0}}", "is not one of the suite's models"),
        ("{spread_below: {model: srflow-tiny-4x, max_std_over_seeds: -1}}", "must be >= 0"),
        # str.format fields beyond the one {} once raised IndexError, KeyError, ValueError
        ("{spearman: {template: 'blur(sigma={}){.__class__}', parameter: [1, 2], sign: 1}}",
         "checks[0].spearman.template': must be a spec with exactly one {} and no other braces"),
        ("{spearman: {template: 'blur(sigma={}){x}', parameter: [1, 2], sign: 1}}", "no other braces"),
        ("{spearman: {template: '{x}', parameter: [1, 2], sign: 1}}", "no other braces"),
        ("{spearman: {template: 'blur(sigma={0}){}', parameter: [1, 2], sign: 1}}", "no other braces"),
        ("{spearman: {template: 'blur(sigma={})}', parameter: [1, 2], sign: 1}}", "no other braces"),
    ],
)
def test_a_bad_check_names_the_file_and_the_key(tmp_path: Path, raw: str, says: str) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE + f"checks:\n  - {raw}\n")
    with pytest.raises(SuiteError) as excinfo:
        load_suite(path)
    assert str(path) in str(excinfo.value) and says in str(excinfo.value)


def test_checks_are_stored_canonically_in_the_suite(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE + "checks:\n  - spearman: {template: 'blur(sigma={})', parameter: [1, 2], sign: 1}\n"
                            "  - spread_above: {model: 'srflow-tiny-4x(heat=0.7)', min_std_over_seeds: 0.001}\n")
    suite = load_suite(path)
    assert suite.checks[0]["spearman"]["downscalers"] == ["blur(sigma=1)", "blur(sigma=2)"]
    assert suite.checks[1]["spread_above"]["model"] == "srflow-tiny-4x"  # heat 0.7 is its default
    # the normalised form parses again (the run directory's suite.yaml copy is read back)
    assert len(parse_checks([dict(c) for c in suite.checks], "copy")) == 2


def test_a_check_kind_needs_a_mapping_with_one_key() -> None:
    with pytest.raises(CheckError, match="one key"):
        parse_checks([{"ranks_last": "nearest", "ranks_above": {}}], "s.yaml")


def _run_dir_with_copy(tmp_path: Path, text: str) -> str:
    run = tmp_path / "run"
    run.mkdir()
    (run / "suite.yaml").write_text(text)
    return str(run)


def test_the_run_directorys_suite_copy_goes_through_the_bounded_loader(tmp_path: Path) -> None:
    """``report`` reads the run's suite.yaml for its checks: with yaml.safe_load, a 4.4 KB
    copy whose check quotes one long value named ~57,000 times gave a 231 MB message."""
    from tests.guarded import run_guarded

    s = "[&s " + "x" * 4000 + ", &l1 [" + ", ".join(["*s"] * 16) + "], &l2 [" + ", ".join(["*l1"] * 16)
    s += "], &l3 [" + ", ".join(["*l2"] * 16) + "], [" + ", ".join(["*l3"] * 13) + "]]"
    run = _run_dir_with_copy(tmp_path, f"name: bomb\nchecks: [{{ranks_above: {{a: x, b: y, scale: {s}}}}}]\n")
    said = run_guarded(f"""
from idard.bench.suite.checks import CheckError, checks_of_run
try:
    _report(repr(checks_of_run({run!r})))
except CheckError as exc:
    _report(str(exc))
""", memory_bytes=2 << 30, timeout_s=60).result
    assert said.startswith(f"{run}/suite.yaml: refused: more than 1,048,576 characters") and len(said) < 300


@pytest.mark.parametrize(("text", "says"), [
    ("name: x\n" + "# padding\n" * 200_000, "suite.yaml: refused: more than 1,048,576 bytes"),
    ("name: x\nchecks: [\n", "suite.yaml: not valid YAML: while parsing"),
    ("name: x\nname: y\n", "suite.yaml: not valid YAML: duplicate key 'name'"),
    ("name: x\nchecks: [[a, b]]\n", "suite.yaml: key 'checks[0]': must be a mapping with one key"),
])
def test_a_broken_suite_copy_is_one_line_naming_it(tmp_path: Path, text: str, says: str) -> None:
    from idard.bench.suite.checks import checks_of_run

    run = _run_dir_with_copy(tmp_path, text)
    with pytest.raises(CheckError) as refused:
        checks_of_run(run)
    assert str(refused.value).startswith(f"{run}/") and says in str(refused.value)
    assert "\n" not in str(refused.value)
