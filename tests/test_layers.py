"""rowquant's modules form layers: no module imports another that imports it back (directly or
through others), and no module uses another's private (underscore) names.

The import graph is read from the source with ``ast``, not by importing: every ``import`` and
``from ... import`` of a rowquant module counts, relative or absolute, at the top of a module or
inside a function (a lazy import only hides a cycle until the function runs), except those under
``if TYPE_CHECKING:``, which never run. Private modules (``_api``, ``_checks``) are importable, as
are their public names; ``io._write_all`` and ``from .table import _human_bytes`` are not. The
checker itself is tested on small made-up packages, so that a checker finding nothing cannot
pass for a package without faults.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import rowquant

PACKAGE = "rowquant"
PACKAGE_DIR = Path(rowquant.__file__).resolve().parent


@dataclass(frozen=True)
class Use:
    """An import or a private name used, and where: ``module:line``."""

    module: str
    line: int
    target: str

    def where(self) -> str:
        return f"{self.module}:{self.line}"


def module_names(package_dir: Path, package: str) -> dict[str, Path]:
    """Every Python module of the package (subpackages included), by dotted name."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join([package, *parts])] = path
    return names


def compiled_modules(package_dir: Path, package: str) -> set[str]:
    """Modules without Python source (the extension): imported, but importing nothing here."""
    names = set()
    for path in package_dir.rglob("*"):
        if path.suffix in (".so", ".pyd", ".pyx"):
            relative = path.relative_to(package_dir)
            names.add(".".join([package, *relative.parent.parts, path.name.split(".")[0]]))
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes_that_run(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (its ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


class ModuleReader:
    """The imports of rowquant modules, and the private names used, of one package's source."""

    def __init__(self, package_dir: Path, package: str):
        self.package = package
        self.sources = module_names(package_dir, package)
        self.modules = set(self.sources) | compiled_modules(package_dir, package)

    def _owner(self, dotted: str) -> str | None:
        """The package module that importing ``dotted`` names: the longest prefix that is one."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            name = ".".join(parts[:end])
            if name in self.modules:
                return name
        return None

    def _base(self, module: str, node: ast.ImportFrom) -> str:
        """The absolute module a ``from ... import`` reads from."""
        if node.level == 0:
            return node.module or ""
        is_package = self.sources[module].name == "__init__.py"
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        return ".".join(parts + ([node.module] if node.module else []))

    def read(self, module: str) -> tuple[list[Use], list[Use]]:
        """(imports of package modules, private names of other package modules used)."""
        tree = ast.parse(self.sources[module].read_text(encoding="utf-8"), str(module))
        imports: list[Use] = []
        private: list[Use] = []
        bound: dict[str, str] = {}  # local names bound to package modules by imports
        nodes = list(_nodes_that_run(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = self._owner(alias.name)
                    if target is None:
                        continue
                    imports.append(Use(module, node.lineno, target))
                    if alias.asname:
                        bound[alias.asname] = target
                    else:  # "import rowquant.io" binds "rowquant"
                        top = alias.name.split(".")[0]
                        if top in self.modules:
                            bound[top] = top
            elif isinstance(node, ast.ImportFrom):
                base = self._base(module, node)
                if self._owner(base) is None:
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in self.modules:
                        imports.append(Use(module, node.lineno, submodule))
                        bound[alias.asname or alias.name] = submodule
                        continue
                    imports.append(Use(module, node.lineno, self._owner(base)))
                    if alias.name.startswith("_") and not _is_dunder(alias.name):
                        private.append(Use(module, node.lineno, submodule))
        for node in nodes:
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            owner = self._module_of(node.value, bound)
            if owner is None or owner == module or _is_dunder(node.attr):
                continue
            if f"{owner}.{node.attr}" not in self.modules:  # a private module is importable
                private.append(Use(module, node.lineno, f"{owner}.{node.attr}"))
        return imports, sorted(private, key=lambda use: use.line)

    def _module_of(self, expression: ast.expr, bound: dict[str, str]) -> str | None:
        """The package module ``expression`` (a name or ``a.b.c``) stands for, if it is one."""
        if isinstance(expression, ast.Name):
            return bound.get(expression.id)
        if isinstance(expression, ast.Attribute):
            parent = self._module_of(expression.value, bound)
            if parent is not None and f"{parent}.{expression.attr}" in self.modules:
                return f"{parent}.{expression.attr}"
        return None

    def graph(self) -> dict[str, dict[str, Use]]:
        """module -> {imported module -> the first import of it}."""
        edges: dict[str, dict[str, Use]] = {}
        for module in sorted(self.sources):
            edges[module] = {}
            for use in sorted(self.read(module)[0], key=lambda use: use.line):
                edges[module].setdefault(use.target, use)
        return edges

    def private_uses(self) -> list[Use]:
        return [use for module in sorted(self.sources) for use in self.read(module)[1]]


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def cycles(edges: dict[str, dict[str, Use]]) -> list[list[Use]]:
    """The cycles of imports, as the imports that make them: for each group of modules that
    import one another (Tarjan's strongly connected components), a shortest cycle through each
    import inside the group (so every import to undo is named), each cycle once."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(start: str) -> None:
        # iterative: a deep chain of modules must not hit the recursion limit
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges.get(target, {})))))
                    break
                if target in on_stack:
                    low[module] = min(low[module], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == module:
                            break
                    if len(group) > 1 or module in edges.get(module, {}):
                        groups.append(group)

    for module in sorted(edges):
        if module not in index:
            visit(module)
    found: dict[frozenset[tuple[str, str]], list[Use]] = {}
    for group in groups:
        for module in sorted(group):
            for target, use in sorted(edges[module].items()):
                if target in group:
                    cycle = [use] + _path(target, module, group, edges)
                    found.setdefault(frozenset((use.module, use.target) for use in cycle), cycle)
    return list(found.values())


def _path(start: str, end: str, group: set[str], edges: dict[str, dict[str, Use]]) -> list[Use]:
    """A shortest chain of imports from ``start`` to ``end`` inside ``group`` (none when they
    are the same module)."""
    paths: dict[str, list[Use]] = {start: []}
    frontier = [start]
    while frontier and end not in paths:
        following = []
        for module in frontier:
            for target, use in sorted(edges.get(module, {}).items()):
                if target in group and target not in paths:
                    paths[target] = paths[module] + [use]
                    following.append(target)
        frontier = following
    return paths[end]


def describe(cycle: list[Use]) -> str:
    """``a -> b -> a (a:3 imports b, b:12 imports a)``, from the first module in name order."""
    first = min(range(len(cycle)), key=lambda position: cycle[position].module)
    cycle = cycle[first:] + cycle[:first]
    names = " -> ".join([cycle[0].module] + [use.target for use in cycle])
    lines = ", ".join(f"{use.where()} imports {use.target}" for use in cycle)
    return f"{names} ({lines})"


# ----------------------------------------------------------------------------- rowquant itself


def test_the_reader_sees_rowquants_modules_and_their_imports():
    reader = ModuleReader(PACKAGE_DIR, PACKAGE)
    assert {"rowquant", "rowquant.io", "rowquant.table", "rowquant._api"} <= set(reader.sources)
    edges = reader.graph()
    # the public package imports the file functions; the file functions build tables
    assert "rowquant.io" in edges["rowquant"]
    assert "rowquant.table" in edges["rowquant.io"]


def test_modules_import_one_another_without_a_cycle():
    found = cycles(ModuleReader(PACKAGE_DIR, PACKAGE).graph())
    assert not found, "import cycles:\n" + "\n".join(describe(cycle) for cycle in found)


def test_no_module_uses_another_modules_private_names():
    uses = ModuleReader(PACKAGE_DIR, PACKAGE).private_uses()
    assert not uses, "private names used across modules:\n" + "\n".join(
        f"{use.where()} uses {use.target}" for use in uses
    )


# ----------------------------------------------------------------------------- the checker


def make_package(root: Path, files: dict[str, str]) -> Path:
    package_dir = root / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = package_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package_dir


def found_cycles(tmp_path: Path, files: dict[str, str]) -> list[str]:
    reader = ModuleReader(make_package(tmp_path, files), "pkg")
    return [describe(cycle) for cycle in cycles(reader.graph())]


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    found = found_cycles(tmp_path, {
        "io.py": "from . import report\n",
        "report.py": "def error_report():\n    from . import io\n    return io.load\n",
    })
    assert found == [
        "pkg.io -> pkg.report -> pkg.io (pkg.io:1 imports pkg.report, "
        "pkg.report:2 imports pkg.io)"
    ]


@pytest.mark.parametrize("statement", [
    "import pkg.a", "import pkg.a as a", "from pkg import a", "from pkg.a import name",
    "from .a import name", "from . import a as other", "from .sub import deep",
])
def test_every_spelling_of_an_import_is_an_edge(tmp_path, statement):
    files = {
        "a.py": "from .b import x\n",
        "b.py": f"x = 1\ndef later():\n    {statement}\n",
        "sub/__init__.py": "",
        "sub/deep.py": "from .. import a\n",
    }
    found = found_cycles(tmp_path, files)
    assert len(found) == 1 and found[0].startswith("pkg.a -> pkg.b -> "), found


def test_a_cycle_of_three_is_named_in_full(tmp_path):
    found = found_cycles(tmp_path, {
        "a.py": "import os\nfrom . import b\n",
        "b.py": "from .c import f\n",
        "c.py": "def f():\n    from .a import g\n",
        "d.py": "from . import a, b, c\n",
    })
    assert found == [
        "pkg.a -> pkg.b -> pkg.c -> pkg.a (pkg.a:2 imports pkg.b, pkg.b:1 imports pkg.c, "
        "pkg.c:2 imports pkg.a)"
    ]


def test_imports_for_type_checking_only_and_other_packages_are_no_edges(tmp_path):
    assert found_cycles(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": (
            "import typing\nfrom typing import TYPE_CHECKING\nimport numpy\n"
            "if TYPE_CHECKING:\n    from .a import A\n"
            "if typing.TYPE_CHECKING:\n    from . import a\n"
            "def f():\n    import torch\n    import onnx.helper\n"
        ),
    }) == []
    # the else branch of the same if does run
    found = found_cycles(tmp_path / "else", {
        "a.py": "from . import b\n",
        "b.py": "if TYPE_CHECKING:\n    pass\nelse:\n    from . import a\n",
    })
    assert len(found) == 1


def test_private_names_of_other_modules_are_found(tmp_path):
    reader = ModuleReader(make_package(tmp_path, {
        "io.py": "_write_all = None\nMETADATA = {}\n",
        "_atomic.py": "write_all = None\n",
        "table.py": "def _human_bytes(n):\n    pass\n",
        "onnx.py": (
            "from . import io as _io, _atomic\nimport pkg.io\nimport pkg\n"
            "_io._write_all\n_io.METADATA\n_atomic.write_all\n"
            "pkg.io._write_all\npkg._atomic\npkg._atomic.write_all\npkg.__doc__\n"
        ),
        "cli.py": (
            "def f():\n    from .table import _human_bytes\n    from . import _atomic\n"
            "    from ._atomic import write_all\n    return _atomic._hidden\n"
        ),
    }), "pkg")
    assert sorted((use.where(), use.target) for use in reader.private_uses()) == [
        ("pkg.cli:2", "pkg.table._human_bytes"),
        ("pkg.cli:5", "pkg._atomic._hidden"),
        ("pkg.onnx:4", "pkg.io._write_all"),
        ("pkg.onnx:7", "pkg.io._write_all"),
    ]
