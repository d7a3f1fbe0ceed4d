"""The import graph of ``uer/`` against the layer table of docs/design.md.

The table is read from the document itself, so the picture and the check cannot drift
apart: every module of ``uer/`` belongs to exactly one layer, no import points up the
table, the modules form no import circle, and a function-local import says why it is
local (``# lazy: ...``: it keeps start-up fast or the library is optional).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
LAZY = "# lazy:"


def layer_table(text: str) -> list[tuple[str, list[str]]]:
    """``[(layer, [module prefix, ...]), ...]`` from the ``| layer | modules | holds |`` table, top first."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith("| layer | modules |"):
            inside = True
            continue
        if inside and line.startswith("| ---"):
            continue
        if inside and line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows.append((cells[0], re.findall(r"`(uer[\w.]*)`", cells[1])))
        elif inside:
            break
    return rows


def module_files(package: Path) -> dict[str, Path]:
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(tree: ast.AST, modules: dict[str, Path], importer: str = "") -> dict[str, int]:
    """The ``uer`` modules a module's code (``importer``) imports, anywhere in it: name -> first line.

    Importing ``uer.a.b`` runs ``uer/a/__init__.py`` first, so the packages above an imported
    module count as imported too -- except the importer's own packages, which are already
    being imported when it runs (and the root package ``uer``, which holds no imports).
    """
    own = {importer.rsplit(".", depth)[0] for depth in range(importer.count(".") + 1)}
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            while name.count(".") and name not in own:
                found.setdefault(name, node.lineno)
                name = name.rpartition(".")[0]
    return found


def local_imports(tree: ast.AST, lines: list[str]) -> list[tuple[int, str]]:
    """Function-local import statements without a ``# lazy:`` reason on their line: (line, text)."""
    bare = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                text = " ".join(lines[node.lineno - 1:node.end_lineno])
                if LAZY not in text:
                    bare.append((node.lineno, lines[node.lineno - 1].strip()))
    return bare


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    """The index (0 = top) of the most specific table entry ``module`` falls under."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(table):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def analyse(package: Path, table: list[tuple[str, list[str]]]) -> dict[str, list]:
    """What breaks the rules in ``package``: unplaced modules, upward imports, circles, bare local imports."""
    modules = module_files(package)
    graph: dict[str, set[str]] = {}
    problems: dict[str, list] = {"unplaced": [], "upward": [], "circles": [], "local": []}
    for name, path in sorted(modules.items()):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        imports = {target: line for target, line in imported_modules(tree, modules, name).items() if target != name}
        graph[name] = set(imports)
        own = layer_of(name, table)
        if own is None and name != package.name:
            problems["unplaced"].append(name)
        for target, line in sorted(imports.items()):
            theirs = layer_of(target, table)
            if own is not None and theirs is not None and theirs < own:
                problems["upward"].append(f"{path.relative_to(package.parent)}:{line}: {name} ({table[own][0]}) "
                                          f"imports {target} ({table[theirs][0]})")
        problems["local"] += [f"{path.relative_to(package.parent)}:{line}: {text}"
                              for line, text in local_imports(tree, source.splitlines())]
    problems["circles"] = circles(graph)
    return problems


TABLE = layer_table(DESIGN.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def uer_problems():
    return analyse(ROOT / "uer", TABLE)


def test_the_design_document_has_a_layer_table():
    names = [name for name, _ in TABLE]
    assert names[0] == "entry" and names[-1] == "foundation" and len(names) >= 5
    assert all(prefixes for _, prefixes in TABLE)


def test_every_module_belongs_to_a_layer(uer_problems):
    assert uer_problems["unplaced"] == [], "add these modules to the layer table of docs/design.md"


def test_no_import_points_up_the_layer_table(uer_problems):
    assert uer_problems["upward"] == []


def test_no_import_circles(uer_problems):
    assert uer_problems["circles"] == []


def test_function_local_imports_say_why(uer_problems):
    assert uer_problems["local"] == [], f"import at the top of the module, or say why not with '{LAZY} ...'"


def test_the_checker_finds_what_it_forbids(tmp_path):
    """A made-up package with one of each fault: the analysis reports each."""
    package = tmp_path / "uer"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "top.py").write_text("import uer.low.a\n")
    (package / "low" / "a.py").write_text("from uer.low import b\n\ndef f():\n    import uer.top\n")
    (package / "low" / "b.py").write_text("import uer.low.a\n\ndef g():\n    import json  # lazy: example\n")
    (package / "stray.py").write_text("")
    (package / "mid").mkdir()
    (package / "mid" / "__init__.py").write_text("from uer.mid import c\n")
    (package / "mid" / "c.py").write_text("")
    (package / "mid" / "d.py").write_text("from uer.mid.c import x\n")
    (package / "low" / "e.py").write_text("from uer.mid.c import x\n")
    table = [("entry", ["uer.top"]), ("middle", ["uer.mid"]), ("foundation", ["uer.low"])]
    problems = analyse(package, table)
    assert problems["unplaced"] == ["uer.stray"]
    assert problems["upward"] == ["uer/low/a.py:4: uer.low.a (foundation) imports uer.top (entry)",
                                  "uer/low/e.py:1: uer.low.e (foundation) imports uer.mid (middle)",
                                  "uer/low/e.py:1: uer.low.e (foundation) imports uer.mid.c (middle)"]
    assert ["uer.low.a", "uer.low.b", "uer.top"] in problems["circles"]
    assert problems["local"] == ["uer/low/a.py:4: import uer.top"]


# Imports the layer order allows but the design forbids (docs/design.md, "Consequences").
FORBIDDEN = {"uer.sweep": ("uer.tasks", "uer.finetuning", "uer.stages"),
             "uer.sweep_tables": ("uer.tasks", "uer.finetuning", "uer.stages")}


def test_the_sweep_callback_reads_files_and_imports_no_task_code():
    modules = module_files(ROOT / "uer")
    for name, banned in FORBIDDEN.items():
        assert name in modules, f"{name} is gone: update FORBIDDEN"
        imports = imported_modules(ast.parse(modules[name].read_text(encoding="utf-8")), modules, name)
        assert [target for target in imports if target.startswith(banned)] == [], name
