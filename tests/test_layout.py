"""The layout's contract (docs/architecture.md): no import cycles, layers, SQL only in ledger/,
verify/ independent of the engine, no reach-in for another module's private names, no module
over 600 lines.

Imports are read from the source with ``ast``: every ``import`` and ``from ... import`` of the
package counts, at module level, inside functions (lazy imports for start-up speed) and under
``TYPE_CHECKING`` alike, so a cycle cannot hide in a function body.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sfr_gateway"

# Lower layers never import higher ones; packages on one line are independent of each other.
# (The order and why: docs/architecture.md, "Layers".)
LAYERS: list[tuple[str, ...]] = [
    ("__main__",),
    ("cli",),
    ("home.init",),
    ("run",),
    ("audit", "verify", "dicomnet", "central"),
    ("mapping", "consent"),
    ("scan", "transport"),
    ("deid", "batch"),
    ("keys",),
    ("crypto", "ledger"),
    ("home",),
    ("errors", "data", "sample"),
]
MAX_LINES = 600
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+"
                 r"(TABLE|INDEX|VIEW|TRIGGER)|PRAGMA\s+\w+)\b", re.IGNORECASE | re.DOTALL)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path  # "" is the package itself
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module of the package, line) for every import in ``path``."""
    is_pkg = path.name == "__init__.py"
    package = name.split(".") if is_pkg else name.split(".")[:-1]
    package = [p for p in package if p]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sfr_gateway" or alias.name.startswith("sfr_gateway."):
                    yield _known(alias.name.removeprefix("sfr_gateway").lstrip(".")), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "sfr_gateway" or node.module.startswith("sfr_gateway.")):
                target = node.module.removeprefix("sfr_gateway").lstrip(".")
            else:
                continue
            for alias in node.names:  # `from pkg import module` imports the module
                sub = f"{target}.{alias.name}" if target else alias.name
                yield (_known(sub) if sub in MODULES else _known(target)), node.lineno


def _known(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in _imports(name, path) if m != name} for name, path in MODULES.items()}


def _layer(module: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for depth, line in enumerate(LAYERS):
        for prefix in line:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (depth, prefix)
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_reader_sees_lazy_and_relative_imports() -> None:
    """The reader itself: a lazy import inside a function and ``from . import x`` both count."""
    graph = _graph()
    assert "deid.engine" in graph["run.release"] or "deid.files" in graph["run.release"]
    assert all(m in MODULES for deps in graph.values() for m in deps)


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if m and _layer(m) is None] == []


def test_lower_layers_never_import_higher_ones() -> None:
    wrong = []
    for name, deps in _graph().items():
        mine = _layer(name)
        for dep in deps:
            theirs = _layer(dep)
            if mine is None or theirs is None or dep == "":
                continue
            if theirs[0] < mine[0] or (theirs[0] == mine[0] and theirs[1] != mine[1]):
                wrong.append(f"{name} (layer {LAYERS[mine[0]]}) imports {dep} (layer {LAYERS[theirs[0]]})")
    assert wrong == []


def test_the_transport_interface_imports_no_implementation() -> None:
    deps = _graph()["transport.base"]
    assert {d for d in deps if d.startswith("transport.")} == set()


def test_verify_never_imports_the_engine() -> None:
    wrong = [(name, dep) for name, deps in _graph().items() if name.startswith("verify")
             for dep in deps if dep == "deid" or dep.startswith("deid.")]
    assert wrong == []


def test_only_the_ledger_holds_sql() -> None:
    wrong = []
    for name, path in MODULES.items():
        if name == "ledger" or name.startswith("ledger."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                wrong.append(f"{name}:{node.lineno}")
            elif isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany", "executescript"):
                wrong.append(f"{name}:{node.lineno} .{node.attr}")
    assert wrong == []


def test_no_module_imports_another_modules_private_names() -> None:
    """Public functions instead of reach-ins: ``from x import _name`` only for dunders."""
    wrong = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("sfr_gateway")):
                wrong += [f"{name}:{node.lineno} {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_600_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)}: {lines} lines"
