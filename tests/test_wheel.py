"""`pip install .` gives a wheel that runs the main job from any folder: it carries the
default suite, the embedded model's weights and the LICENSE that pyproject declares."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        capture_output=True, text=True, check=False, cwd=out)
    if built.returncode != 0:
        pytest.fail(f"pip wheel failed: {built.stderr[-2000:]}")
    return next(out.glob("idard-*.whl"))


@pytest.mark.slow
def test_the_wheel_carries_the_default_suite_weights_and_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "idard/suites/quickstart.yaml" in names
    assert "idard/weights/srflow-tiny-4x.safetensors" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.slow
def test_the_installed_package_finds_its_suite_from_any_folder(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import idard, idard.bench.run.jobs as j; from idard.bench.suite import load_suite; "
            "s = load_suite(j.default_suite()); print(idard.__file__); print(j.default_suite()); print(s.name, s.models)")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    package, suite, summary = done.stdout.splitlines()
    assert package.startswith(str(target)) and suite.startswith(str(target))
    assert summary == "quickstart ('srflow-tiny-4x',)"


def test_the_packaged_suite_is_the_benchmark_quickstart() -> None:
    """The fast check (the wheel builds are slow): the package holds the suite and the
    project its LICENSE, and the package copy is the benchmark's."""
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["idard"]
    assert "suites/*.yaml" in data and (REPO / "LICENSE").is_file()
    assert (REPO / "idard" / "suites" / "quickstart.yaml").read_text() == (REPO / "benchmark" / "quickstart.yaml").read_text()


@pytest.mark.slow  # a fresh venv with every dependency from the package index (~2 min), then a real run
def test_the_wheel_installs_into_a_fresh_venv_and_runs_a_suite_from_an_empty_folder(wheel: Path,
                                                                                     tmp_path: Path) -> None:
    """What a user does with the wheel: a new venv, ``pip install idard-*.whl`` (its declared
    dependencies, at the project's pinned versions), then ``idard-bench run`` in a folder
    that holds nothing of the project. PSNR, so no LPIPS trunk weights are needed."""
    from PIL import Image

    from idard.measure.datasets import bundled_path

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-compile", "-c", str(REPO / "requirements" / "constraints.txt"),
         str(wheel)], capture_output=True, text=True, timeout=1200, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]
    work = tmp_path / "empty"
    (work / "images").mkdir(parents=True)
    Image.open(bundled_path("coffee")).convert("RGB").crop((100, 100, 148, 148)).save(work / "images" / "a.png")
    (work / "suite.yaml").write_text("name: wheel\nimages: [images]\ndownscalers: [bicubic, nearest]\n"
                                     "models: [srflow-tiny-4x]\nmetrics: [psnr]\nsamples: 2\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": "/tmp"}
    done = subprocess.run([str(venv / "bin" / "idard-bench"), "run", "--suite", "suite.yaml", "--out", "run",
                           "--bootstrap", "100"], cwd=work, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "4 tasks to compute" in done.stdout and (work / "run" / "ida_rd.md").is_file()
    assert not (work / "run" / "records").is_symlink() and list((work / "run" / "records").glob("part-*.parquet"))
