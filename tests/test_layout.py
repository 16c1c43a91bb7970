"""The layout's contract (docs/architecture.md): no import cycles, layers, SQL only in ledger/,
verify/ independent of the engine, no reach-in for another module's private names, no module
over 600 lines.

Imports are read from the source with ``ast``: every ``import`` and ``from ... import`` of the
package counts, at module level, inside functions (lazy imports for start-up speed) and under
``TYPE_CHECKING`` alike, so a cycle cannot hide in a function body; so does
``importlib.import_module`` (the CLI's command modules, the engine package's lazy exports), and a
dynamic import the reader cannot resolve fails the contract. A private name is neither imported
(``from m import _x``) nor read as an attribute (``m._x``) from another module. Imports inside
functions are there for start-up speed only (measured), and the mapping has one write path.
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
    ("__main__", "sample.__main__"),  # entry points: `python -m sfr_gateway`, `python -m sfr_gateway.sample`
    ("cli",),
    ("home.init",),
    ("monitor",),  # issue 17: status, metrics, alerts, status page after each run; reads run's held-back listing
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


def _dynamic_targets(call: ast.Call, constants: dict[str, list[str]]) -> list[str] | None:
    """The modules an ``import_module(...)`` call may load; None when the reader cannot tell.

    A string names its module; an f-string ``f"sfr_gateway.deid.{...}"`` (a package's lazy
    exports) may load any module under its fixed prefix; ``NAME[key]`` any string value of the
    module-level dict ``NAME`` (``cli.COMMAND_MODULES``)."""
    if not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = str(arg.values[0].value)
        return [f"sfr_gateway.{m}" for m in MODULES if m and f"sfr_gateway.{m}".startswith(prefix)] or None
    if isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name) and arg.value.id in constants:
        return constants[arg.value.id]
    return None


def _is_import_module(node: ast.AST) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
        (isinstance(func, ast.Name) and func.id == "import_module")


def _module_dicts(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level ``NAME = {...}`` dicts: their string values."""
    out: dict[str, list[str]] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) else None
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(target, ast.Name) and isinstance(value, ast.Dict):
            out[target.id] = [v.value for v in value.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return out


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module of the package, line) for every import in ``path``.

    ``importlib.import_module`` counts too (lazy command modules, a package's lazy exports); a
    call whose target the reader cannot tell yields ``"?"``, which the tests refuse."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = _module_dicts(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_import_module(node):
            targets = _dynamic_targets(node, constants)
            if targets is None:
                yield "?", node.lineno
                continue
            for target in targets:
                if target == "sfr_gateway" or target.startswith("sfr_gateway."):
                    yield _known(target.removeprefix("sfr_gateway").lstrip(".")), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sfr_gateway" or alias.name.startswith("sfr_gateway."):
                    yield _known(alias.name.removeprefix("sfr_gateway").lstrip(".")), node.lineno
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                target = _from_target(name, path, node, alias.name)
                if target is not None:
                    yield target, node.lineno


def _from_target(name: str, path: Path, node: ast.ImportFrom, alias: str) -> str | None:
    """The module of the package that ``from ... import alias`` in module ``name`` loads, if any:
    ``from pkg import module`` imports the module, ``from pkg import NAME`` the package."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    if node.level:
        base = package[: len(package) - node.level + 1] if node.level > 1 else package
        target = ".".join(base + ([node.module] if node.module else []))
    elif node.module and (node.module == "sfr_gateway" or node.module.startswith("sfr_gateway.")):
        target = node.module.removeprefix("sfr_gateway").lstrip(".")
    else:
        return None
    sub = f"{target}.{alias}" if target else alias
    return _known(sub) if sub in MODULES else _known(target)


def _known(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in _imports(name, path) if m not in (name, "?")} for name, path in MODULES.items()}


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


def test_the_import_reader_sees_dynamic_imports() -> None:
    """``import_module`` counts: the CLI's lazy command modules, and the engine package's lazy
    exports (``from sfr_gateway.deid import Change`` loads ``deid.engine`` on first use)."""
    graph = _graph()
    assert {"cli.run", "cli.deidentify", "cli.mapping"} <= graph["cli"]
    assert {"deid.engine", "deid.files", "deid.profile"} <= graph["deid"]
    assert "deid.pseudonym" in graph["cli.consent"]


def test_every_dynamic_import_can_be_read() -> None:
    """An ``import_module`` whose target the reader cannot tell could hide a cycle."""
    unread = [f"{name}:{line}" for name, path in MODULES.items() for m, line in _imports(name, path) if m == "?"]
    assert unread == []


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


def _bound_modules(name: str, tree: ast.Module) -> dict[str, str]:
    """Local names bound to a module of the package (``from . import gate as _gate``)."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                target = _from_target(name, MODULES[name], node, alias.name)
                if target is not None and target.rpartition(".")[2] == alias.name:
                    bound[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name.startswith("sfr_gateway."):
                    bound[alias.asname] = alias.name.removeprefix("sfr_gateway.")
    return bound


def test_no_module_reads_another_modules_private_attributes() -> None:
    """``module._name`` is a reach-in as much as ``from module import _name``."""
    wrong = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = _bound_modules(name, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                wrong.append(f"{name}:{node.lineno} {bound[node.value.id]}.{node.attr}")
    assert wrong == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_600_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)}: {lines} lines"


def test_each_cli_module_is_named_after_its_one_command() -> None:
    """``cli/<name>.py`` serves the command ``<name>`` and nothing else (``common`` aside)."""
    import importlib

    from sfr_gateway.cli import COMMAND_MODULES

    files = {m.removeprefix("cli.") for m in MODULES if m.startswith("cli.")} - {"common"}
    assert set(COMMAND_MODULES) == files
    for name, module in COMMAND_MODULES.items():
        assert module == f"sfr_gateway.cli.{name}"
        assert [c.name for c in importlib.import_module(module).COMMANDS] == [name]


# Imports of the package's own modules inside functions, kept there for a reason other than the
# one the test below measures: {(importer, imported): why}.
LAZY_FOR_ANOTHER_REASON: dict[tuple[str, str], str] = {
    ("scan.walk", "home.workers"): "multiprocessing (standard library) only when there are headers to read: "
                                   "a cron rescan that finds nothing new forks nothing",
}

# In a fresh interpreter that has imported the importer: the third-party top-level modules (and
# the engine, ``sfr_gateway.deid``, which light paths promise not to load: docs/architecture.md)
# that importing the imported module adds. One fork per importer, one more per import.
_PROBE = r"""
import importlib, json, os, sys
skip = set(sys.stdlib_module_names) | {"sfr_gateway"}
def tops():
    engine = {"sfr_gateway.deid"} & set(sys.modules)
    return ({k.split(".")[0] for k in sys.modules if not k.startswith("_")} - skip) | engine
def child(fn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            data = json.dumps(fn()).encode()
        except BaseException as e:
            data = json.dumps({"error": repr(e)}).encode()
        os.write(w, data)
        os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 1 << 16):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(out)
def per_importer(importer, targets):
    importlib.import_module(importer)
    before = tops()
    def one(target):
        importlib.import_module(target)
        return sorted(tops() - before)
    return {t: child(lambda t=t: one(t)) for t in targets}
pairs = json.loads(sys.argv[1])
print(json.dumps({m: child(lambda m=m: per_importer(m, ts)) for m, ts in pairs.items()}))
"""


def _lazy_imports() -> dict[tuple[str, str], int]:
    """{(importer, imported module): line} for imports of the package inside function bodies."""
    found: dict[tuple[str, str], int] = {}
    for name, path in MODULES.items():
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = ast.Module(body=fn.body, type_ignores=[])
                for node in ast.walk(body):
                    if isinstance(node, ast.ImportFrom):
                        for alias in node.names:
                            target = _from_target(name, path, node, alias.name)
                            if target is not None and target != name:
                                found.setdefault((name, target), node.lineno)
                    elif isinstance(node, ast.Import):
                        for alias in node.names:
                            if alias.name.startswith("sfr_gateway."):
                                found.setdefault((name, _known(alias.name.removeprefix("sfr_gateway."))), node.lineno)
    return found


def test_every_import_inside_a_function_keeps_a_library_off_a_path() -> None:
    """An import of the package inside a function is there for start-up speed, so it must load a
    third-party library (or the engine) its module does not already load (measured); otherwise it
    belongs at the top of the module, where a reader looks for what a module depends on. (Issue 16 counted 62
    imports inside functions, some hiding cycles.)"""
    import json
    import subprocess
    import sys

    lazy = _lazy_imports()
    assert set(LAZY_FOR_ANOTHER_REASON) <= set(lazy), "a listed lazy import is gone: drop it from the list"
    pairs: dict[str, list[str]] = {}
    for importer, imported in lazy:
        if (importer, imported) not in LAZY_FOR_ANOTHER_REASON:
            pairs.setdefault(f"sfr_gateway.{importer}" if importer else "sfr_gateway", []).append(
                f"sfr_gateway.{imported}" if imported else "sfr_gateway")
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(pairs)], capture_output=True, text=True,
                          timeout=600, check=True, cwd=ROOT)
    loaded = json.loads(proc.stdout)
    light = [f"{importer}:{lazy[(importer, imported)]} imports {imported} inside a function, which loads no library"
             f" (nor the engine) {importer} does not already load: move it to the top"
             for (importer, imported) in lazy if (importer, imported) not in LAZY_FOR_ANOTHER_REASON
             and loaded[f"sfr_gateway.{importer}"][f"sfr_gateway.{imported}"] == []]
    assert light == []


def test_the_mapping_has_one_write_path() -> None:
    """Issue 16: the mapping's rows are sealed and written by ``MappingStore.record`` only, which
    ``mapping.sync.record_released`` (``run`` and ``deidentify``) and ``mapping.regenerate`` (the
    rebuild) call; the ledger's mapping writes are reached from the mapping package only."""
    writes = {"upsert_rows", "record_released", "delete_all_rows", "delete_rows_of_other_keys"}
    callers: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                attr = node.func.attr
                own = isinstance(node.func.value, ast.Name) and node.func.value.id == "self"
                if attr in writes or (attr == "record" and not own):  # x.record(...): a MappingStore's
                    callers.setdefault(attr, set()).add(name)
    assert callers.get("upsert_rows") == {"mapping.store"}
    assert callers.get("record") == {"mapping.sync", "mapping.regenerate"}
    assert set().union(*(v for k, v in callers.items() if k in writes)) <= {"mapping.store", "mapping.sync",
                                                                            "mapping.regenerate"}
