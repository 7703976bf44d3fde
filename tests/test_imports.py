"""The package's import graph: no cycle, and arrows that go one way between rooms.

`idard.bench` is five rooms (issue 23): ``cli -> report -> run -> suite -> store`` over
`idard.measure`. A reader who changes how records are stored reads ``store/`` and nothing
above it; one who adds an output format reads ``report/``. That holds only while no module
imports one above it, so these tests read every module's source with `ast` and collect
*every* import: at module level, inside functions (the usual way a circle is hidden: it
breaks the circle at run time, not the dependency) and under ``TYPE_CHECKING``.

A package's ``__init__`` that re-exports its own submodules is no cycle as long as those
submodules import their siblings directly (``idard.bench.store.records``), never the
package: importing ``a.b.c`` is an edge to ``a.b.c`` only, not to ``a.b``.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "idard"

#: The rooms of `idard.bench`, lowest first: a module may import its own room and those below.
ROOMS = ("store", "suite", "run", "report", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> source file."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source.

    ``from X import y`` is an import of ``X.y`` when that is a module, else of ``X``;
    relative imports are resolved against ``name`` (a package's ``__init__`` is its package).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {_owner(target, known) for target in found if target.split(".")[0] == "idard"} - {name, None}


def _owner(target: str, known: set[str]) -> str | None:
    """The module of the package that ``target`` names (its nearest known ancestor)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def room(name: str) -> str | None:
    """The room of an `idard.bench` module (None for modules outside `idard.bench`)."""
    parts = name.split(".")
    if parts[:2] != ["idard", "bench"]:
        return None
    return parts[2] if len(parts) > 2 else "bench"


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Function-level and ``TYPE_CHECKING`` imports count; ``from pkg import submodule`` is an
    import of the submodule, ``from pkg import name`` of the package; relative ones resolve."""
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "from idard.bench import store\n"
                      "from .sibling import thing\n"
                      "if TYPE_CHECKING:\n    from idard.measure.records import KEY_COLUMNS\n"
                      "def late():\n    import idard.measure.images.deep\n    from idard import provenance\n")
    known = {"idard", "idard.bench", "idard.bench.store", "idard.bench.run", "idard.bench.run.sibling",
             "idard.measure", "idard.measure.records", "idard.measure.images", "idard.provenance"}
    assert imported("idard.bench.run.mod", source, known) == {
        "idard.bench.store", "idard.bench.run.sibling", "idard.measure.records", "idard.measure.images",
        "idard.provenance"}


def test_no_module_imports_itself_through_others(graph: dict[str, set[str]]) -> None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_measure_never_imports_the_bench(graph: dict[str, set[str]]) -> None:
    """`idard.measure` stands alone (no Ray, no run directory), and ``import idard`` stays light."""
    wrong = {name: sorted(t for t in targets if t.startswith("idard.bench"))
             for name, targets in graph.items() if not name.startswith("idard.bench")}
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_every_bench_module_lives_in_a_room(graph: dict[str, set[str]]) -> None:
    flat = sorted(name for name in graph if room(name) not in (*ROOMS, None) and name != "idard.bench")
    assert flat == []


def test_rooms_import_only_their_own_and_those_below(graph: dict[str, set[str]]) -> None:
    """``cli -> report -> run -> suite -> store -> idard.measure``: the store imports no
    runner, suite or report; a suite knows nothing of how it is run; the runner renders
    nothing (the report recomputes samples on the runner's worker, never the reverse)."""
    upward = []
    for name, targets in graph.items():
        source = room(name)
        if source not in ROOMS:
            continue
        for target in targets:
            if room(target) in ROOMS and ROOMS.index(room(target)) > ROOMS.index(source):
                upward.append(f"{name} -> {target}")
    assert sorted(upward) == []


def _function_level_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The imports of the package's own modules made inside a function body."""
    found = []
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if name and name.split(".")[0] == "idard":
                        found.append(node)
    return found


def _commented(lines: list[str], node: ast.stmt) -> bool:
    """A comment on the import's own lines, on an import of the run it belongs to, or on
    the line above that run."""
    if any("#" in lines[i] for i in range(node.lineno - 1, node.end_lineno)):
        return True
    above = node.lineno - 2
    while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
        if "#" in lines[above]:
            return True
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def test_every_function_level_import_in_bench_says_why_it_is_lazy() -> None:
    """Issue 23: no function-level import to dodge a circle; the lazy ones (start-up time:
    `idard-bench --help` must not import torch) say so, so a reader never has to wonder."""
    silent = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        lines = path.read_text().splitlines()
        silent += [f"{path.relative_to(ROOT.parent)}:{node.lineno}: {lines[node.lineno - 1].strip()}"
                   for node in _function_level_imports(ast.parse("\n".join(lines))) if not _commented(lines, node)]
    assert not silent, "function-level imports without a comment saying why:\n" + "\n".join(silent)
