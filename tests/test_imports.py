"""The package's import graph, read from the source with `ast` (nothing is imported).

House rules it guards (STYLE.md rule 1, issue 16): no import cycle anywhere in `streetwatch/`;
nothing in `streetwatch.edge` imports `streetwatch.central`; the wire schema `edge/alerts.py`
imports only the standard library and pydantic.

What counts as an import, and why:
- Every `import` / `from ... import` statement in the module counts, wherever it stands: at module
  level, inside a function (a lazy import still makes one module depend on the other: a cycle
  through it is a cycle in the design, only deferred to run time) and under `if TYPE_CHECKING:`
  (an annotation naming another module's type is a dependency on that module; mypy resolves it
  even if Python does not).
- `from pkg import name` depends on `pkg.name` when that is a module of the package, else on `pkg`.
- Importing `a.b.c` from outside package `a.b` also runs `a/b/__init__.py`, so the importer depends
  on that package too (a cycle through a package's re-exports is a real start-up cycle). A module
  inside the package does not get that edge: a package's `__init__` re-exporting its own
  submodules, which import each other, is not a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "streetwatch"
ROOT = "streetwatch"
WIRE_SCHEMA = "streetwatch.edge.alerts"
WIRE_SCHEMA_MAY_IMPORT = frozenset(sys.stdlib_module_names) | {"pydantic", "__future__"}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as written (`module`) and resolved to a package module (`target`)."""

    module: str
    target: str | None
    line: int


def module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its name, for its __init__)."""
    return {module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, importer: str, *, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The package module `name` stands for: itself, or the nearest enclosing module; None if foreign."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(importer: str, modules: Mapping[str, Path]) -> Iterator[Import]:
    """Each import in the module's source, anywhere in it (module level, functions, TYPE_CHECKING)."""
    path = modules[importer]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, _resolve(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, importer, is_package=is_package)
            for alias in node.names:
                dotted = f"{base}.{alias.name}"
                target = dotted if dotted in modules else _resolve(base, modules)
                yield Import(base, target, node.lineno)


def _packages_run_by(importer: str, target: str) -> list[str]:
    """The package __init__s that importing `target` runs and that do not enclose `importer`."""
    parts = target.split(".")
    ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [pkg for pkg in ancestors if not (importer == pkg or importer.startswith(pkg + "."))]


Graph = dict[str, dict[str, int]]  # importer -> {imported module: line of the first such import}


def import_graph(modules: Mapping[str, Path]) -> Graph:
    graph: Graph = {name: {} for name in modules}
    for importer in modules:
        for imp in imports_of(importer, modules):
            if imp.target is None:
                continue
            for target in [imp.target, *_packages_run_by(importer, imp.target)]:
                if target != importer and target in modules:
                    graph[importer].setdefault(target, imp.line)
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's components with more than one module (each one holds at least one cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    """One shortest cycle through the component's first module (breadth first, inside the component)."""
    start, members = component[0], set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if nxt in members and nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in component {component}")  # a Tarjan component always has one


def describe_cycle(graph: Graph, cycle: list[str], modules: Mapping[str, Path], *, root: Path) -> str:
    """`a -> b -> a`, then each step with the file and line of its import."""
    steps = [
        f"{a} -> {b} ({modules[a].relative_to(root)}:{graph[a][b]})"
        for a, b in zip(cycle, cycle[1:], strict=False)
    ]
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def import_cycles(package_dir: Path) -> list[str]:
    modules = package_modules(package_dir)
    graph = import_graph(modules)
    return [
        describe_cycle(graph, shortest_cycle(graph, component), modules, root=package_dir.parent)
        for component in strongly_connected(graph)
    ]


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    found = package_modules(PACKAGE_DIR)
    assert WIRE_SCHEMA in found and "streetwatch.edge.pipeline" in found, f"not the package: {PACKAGE_DIR}"
    return found


def test_no_import_cycle_in_the_package() -> None:
    cycles = import_cycles(PACKAGE_DIR)
    assert not cycles, f"{len(cycles)} import cycle(s) in streetwatch/:\n" + "\n".join(cycles)


def imports_of_central_in_edge(modules: Mapping[str, Path], *, root: str = ROOT) -> list[str]:
    """`file:line imports module` for each import of `<root>.central` from `<root>.edge`."""
    edge, central = f"{root}.edge", f"{root}.central"
    return [
        f"{modules[name].name}:{imp.line} imports {imp.module}"
        for name in modules
        if name == edge or name.startswith(edge + ".")
        for imp in imports_of(name, modules)
        if imp.target is not None and (imp.target == central or imp.target.startswith(central + "."))
    ]


def foreign_imports_of_wire_schema(modules: Mapping[str, Path], *, root: str = ROOT) -> list[str]:
    """`line N: module` for each import of the wire schema beyond the standard library and pydantic."""
    return [
        f"line {imp.line}: {imp.module}"
        for imp in imports_of(f"{root}.edge.alerts", modules)
        if imp.module.split(".")[0] not in WIRE_SCHEMA_MAY_IMPORT
    ]


def test_edge_never_imports_central(modules: dict[str, Path]) -> None:
    wrong = imports_of_central_in_edge(modules)
    assert not wrong, "edge must not import central (only the wire schema is shared):\n" + "\n".join(wrong)


def test_wire_schema_imports_only_stdlib_and_pydantic(modules: dict[str, Path]) -> None:
    wrong = foreign_imports_of_wire_schema(modules)
    assert not wrong, f"{WIRE_SCHEMA} may import the standard library and pydantic only, not:\n" + "\n".join(wrong)


# The walker itself, on small packages written for the case: each row is files -> the cycle it must find.
WALKER_CASES = [
    pytest.param({"a.py": "from pkg import b\n", "b.py": "import pkg.a\n"}, ["pkg.a -> pkg.b -> pkg.a"],
                 id="module-level"),
    pytest.param({"a.py": "def f():\n    from pkg.b import g\n", "b.py": "from pkg.a import f\n"},
                 ["pkg.a -> pkg.b -> pkg.a"], id="function-level"),
    pytest.param({"a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
                  "b.py": "from .a import A\n"}, ["pkg.a -> pkg.b -> pkg.a"], id="type-checking-and-relative"),
    # a imports only sub.z, but that runs sub/__init__, which imports sub.x, which imports a.
    pytest.param({"a.py": "from pkg.sub.z import Z\n", "sub/__init__.py": "from pkg.sub.x import X\n",
                  "sub/x.py": "import pkg.a\n", "sub/z.py": ""},
                 ["pkg.a -> pkg.sub -> pkg.sub.x -> pkg.a"], id="through-a-package-init"),
    pytest.param({"a.py": "import os\nfrom pkg import b\n", "b.py": "import json\n",
                  "sub/__init__.py": "from .x import X\nfrom .y import Y\n", "sub/x.py": "from pkg.sub.y import Y\n",
                  "sub/y.py": "import pkg.b\n"}, [], id="no-cycle"),
]


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    package = root / "pkg"
    for relative, source in {"__init__.py": "", **files}.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(source, encoding="utf-8")
    return package


@pytest.mark.parametrize(("files", "expected"), WALKER_CASES)
def test_the_walker_finds_each_kind_of_cycle(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    found = [cycle.split("\n")[0] for cycle in import_cycles(write_package(tmp_path, files))]
    assert found == expected


def test_the_walker_finds_edge_importing_central_and_a_heavy_wire_schema(tmp_path: Path) -> None:
    package = write_package(tmp_path, {
        "edge/__init__.py": "", "central/__init__.py": "", "central/db.py": "",
        "edge/alerts.py": "import json\nfrom pydantic import BaseModel\nimport numpy as np\n",
        "edge/worker.py": "def run():\n    from pkg.central.db import engine\n",
        "edge/cli.py": "from ..central import db\n",
    })
    modules = package_modules(package)
    assert sorted(imports_of_central_in_edge(modules, root="pkg")) == [
        "cli.py:1 imports pkg.central", "worker.py:2 imports pkg.central.db"]
    assert foreign_imports_of_wire_schema(modules, root="pkg") == ["line 3: numpy"]
