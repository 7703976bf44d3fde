"""CLI papercuts (issue 22, item 9): what a user types from the README works, errors say
what exists, and the help reads well in an 80-column terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from idard.bench.cli import app
from idard.bench.store import RecordStore
from idard.bench.suite import SuiteError, parse_suite

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def readme_commands() -> list[str]:
    """Every ``idard-bench ...`` command the README shows, in code blocks and inline."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        commands += [line.split("  #")[0].strip() for line in block.splitlines() if "idard-bench" in line]
    commands += [span for span in re.findall(r"`([^`\n]*idard-bench [^`\n]*)`", text)]
    return commands


def test_every_readme_command_is_valid_shell() -> None:
    """``--baseline blur(sigma=1)`` unquoted is a bash syntax error: a reader who pastes it gets nothing."""
    commands = readme_commands()
    assert len(commands) > 10
    bad = [c for c in commands if subprocess.run(["bash", "-n", "-c", c], capture_output=True).returncode != 0]
    assert bad == []


def test_a_baseline_spelling_that_matches_nothing_names_the_family_ids(tmp_path: Path) -> None:
    """``--baseline blur`` means blur(sigma=1.0); when the run holds only blur(sigma=2.0)
    the error says so, instead of only listing every downscaler."""
    frame = pl.DataFrame({"image": ["a", "a", "a", "b", "b", "b"],
                          "downscaler": ["bicubic", "nearest", "blur(sigma=2.0)"] * 2, "model": "m",
                          "metric": "lpips-alex", "seed": 0, "scale": 4, "value": [0.3, 0.4, 0.5, 0.31, 0.42, 0.55],
                          "finite": True, "higher_is_better": False})
    RecordStore(tmp_path / "run").append(frame, suite_hash="abc")
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--baseline", "blur", "--bootstrap", "100",
                                 "--out", str(tmp_path / "tables")])
    message = " ".join(result.output.split())
    assert "blur(sigma=1.0)" in message and "blur(sigma=2.0)" in message, message


def test_suite_validation_reports_every_problem_at_once(tmp_path: Path) -> None:
    data = {"name": "x", "images": ["hr/"], "downscalers": ["bicubic", "blurr", "blur(sigma=-1)"],
            "models": ["srflow-tiny-4x"], "metrics": ["lpips-alxe"], "samples": 0, "colour": "rgb"}
    with pytest.raises(SuiteError) as caught:
        parse_suite(data, "my.yaml", tmp_path)
    lines = str(caught.value).splitlines()
    for key in ("'colour'", "'downscalers[1]'", "'downscalers[2]'", "'metrics[0]'", "'samples'"):
        assert any(key in line for line in lines), (key, lines)
    assert all(line.startswith("my.yaml: key ") for line in lines), lines


def _help(arguments: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(REPO)}
    env.pop("TERMINAL_WIDTH", None)
    done = subprocess.run([sys.executable, "-m", "idard.bench.cli", *arguments, "--help"], capture_output=True,
                          text=True, env=env, check=True)
    return done.stdout


#: Every command, in the order ``idard-bench --help`` lists them: the measure's single steps
#: first, then a run's life (run, report, repair), then the tools around it.
COMMANDS = ["downscale", "upscale", "distortion", "list", "run", "report", "explain", "migrate", "compact",
            "status", "weights", "faces", "subset", "train-srflow", "train-resshift", "validate-model"]


def test_root_help_lists_every_command_in_order() -> None:
    """The commands live in several modules (issue 23); ``--help`` still lists each once,
    in one deliberate order, and the help checks below cover every one of them."""
    text = _help([])
    listed = [m.group(1) for m in re.finditer(r"^│ ([a-z][a-z-]+) ", text, re.M)]
    assert listed == COMMANDS


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_reads_well_at_80_columns(command: str | None) -> None:
    """No reST double backticks, no line past 80 columns, and paragraphs re-wrapped to the
    terminal (not the docstring's own line breaks, which left ragged half-lines)."""
    text = _help([command] if command else [])
    assert "``" not in text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    prose = [line.strip() for line in lines if line.startswith(" ") and not line.lstrip().startswith(("│", "╭", "╰"))]
    ragged = [a for a, b in zip(prose, prose[1:]) if a and b and len(a) < 50 and not a.startswith("Usage")]
    assert ragged == [], ragged


def _missing_weights_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: w\nimages: [hr/]\ndownscalers: [bicubic]\n"
                     "models: ['srflow(weights=SRFlow_DF2K_4X.pth)', srflow-tiny-4x]\nmetrics: [psnr]\n")
    return suite


def test_weights_prints_its_table_and_exits_as_its_help_says_when_a_file_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDARD_WEIGHTS_DIR", str(tmp_path / "cache"))
    result = runner.invoke(app, ["weights", "--suite", str(_missing_weights_suite(tmp_path))])
    assert "Exits 1 when" in _help(["weights"]).replace("\n", " ").replace("  ", " ")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.replace("│", " ").split())  # cells wrap: read them as text
    assert "MISSING" in text and "srflow-tiny-4x.safetensors" in text  # the table, with the file that is here
    assert "idard-bench weights fetch SRFlow_DF2K_4X" in text  # and where the missing one comes from


def test_list_does_not_call_a_dead_host_fetchable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SRFlow's archive host answers 404 (andreas128/SRFlow#64): 'fetchable' would send users to a fetch that fails."""
    monkeypatch.setenv("IDARD_WEIGHTS_DIR", str(tmp_path / "cache"))
    result = runner.invoke(app, ["list"], env={"COLUMNS": "250"})
    rows = [line for line in result.output.splitlines() if "SRFlow_DF2K_4X" in line]
    assert rows and not any("fetchable" in row for row in rows), rows
    assert any("fetchable" in line for line in result.output.splitlines() if "gaussian" in line)


def test_the_version_comes_from_git_tags() -> None:
    """A release number names one commit: setuptools-scm derives it from the tags (a
    commit past a tag is ``X.devN+g<sha>``), never from a number typed into pyproject."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert any(r.startswith("setuptools-scm") or r.startswith("setuptools_scm")
               for r in project["build-system"]["requires"])
    assert "fallback_version" in project["tool"]["setuptools_scm"]  # a copy without .git still builds


@pytest.mark.slow
def test_a_fresh_clone_without_tags_installs_with_a_dev_version(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-tags", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "tag", "-d", *subprocess.run(
        ["git", "-C", str(clone), "tag"], capture_output=True, text=True).stdout.split()], capture_output=True)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "out"),
                            str(clone)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "out").glob("idard-*.whl")).name
    version = wheel.split("-")[1]
    assert re.fullmatch(r"\d+(\.\d+)*\.dev\d+\+g[0-9a-f]+", version), version
