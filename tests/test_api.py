"""The public face: ``from idard import evaluate, ida_rd_table`` as the README shows it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=900)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_idard_is_light_and_its_names_load_on_use(tmp_path: Path) -> None:
    out = _python("import sys, idard; print(sorted(m for m in ('torch', 'polars') if m in sys.modules)); "
                  "from idard import ida_rd_table, paired_table, TableModel; "
                  "print('torch' in sys.modules, ida_rd_table.__module__, 'ida_rd_table' in dir(idard))", tmp_path)
    assert out.splitlines() == ["[]", "False idard.bench.report.model True"]


def test_a_missing_name_says_so(tmp_path: Path) -> None:
    out = _python("import idard\ntry:\n    idard.nope\nexcept AttributeError as e:\n    print(e)", tmp_path)
    assert out.strip() == "module 'idard' has no attribute 'nope'"


def _readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_offline_as_written(tmp_path: Path) -> None:
    """Ranked as the CLI ranks them (LPIPS: bicubic, nearest, blur), every column shown
    (Polars' own print hid IDA-RD behind an ellipsis), and the embedded model's banner."""
    code = _readme_example()
    assert "from idard import evaluate, ida_rd_table" in code and "SRFlow_DF2K_4X" in code  # the published model named
    out = _python(code, tmp_path)
    table = out.split("shape:")[0]
    assert "IDA-RD" in table and "…" not in table and "smoke-test model: not for publication" in table
    rows = [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]
    assert rows == ["bicubic", "nearest", "blur(sigma=2.0)"]
    assert "loses more by" in out and "Wilcoxon p" in out
