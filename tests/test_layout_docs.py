"""The module map stays the tree: docs/architecture.md and the README name every package and
module that exists, and nothing that does not (issue 16: "the README and docs/architecture.md
match the tree").

- docs/architecture.md's package table has one row per package and top-level module; a package's
  row names each of its modules in backticks outside parentheses (inside them, backticks are
  for anything else: functions, files, settings), and nothing else there; its "imports" column
  names exactly the packages its modules import (``errors`` may always be imported).
- The README's layout paragraph names every package.
- Every module path written in README.md, docs/architecture.md or a package README
  (``sfr_gateway/deid/rawread.py``, ``deid/pseudonym``, ``sfr_gateway.mapping.sync.record_released``)
  exists, down to the name after the module.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from test_layout import MODULES, PACKAGE, ROOT, _graph

ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"
DOCS = [README, ARCHITECTURE, *sorted(PACKAGE.rglob("README.md")), ROOT / "profiles" / "README.md"]
PACKAGES = sorted({m.split(".")[0] for m in MODULES if m and (PACKAGE / m.split(".")[0]).is_dir()})
TOP_MODULES = sorted(f"{m}.py" for m in MODULES if m and "." not in m and m not in PACKAGES)
IDENT = re.compile(r"[a-z_][a-z0-9_]*")


def _rows() -> dict[str, tuple[str, str]]:
    """{first cell: (owns, imports)} of the package table, backticks kept."""
    rows = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 3:
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def _named_outside_parentheses(cell: str) -> list[str]:
    """Backticked identifiers at parenthesis depth 0 (dunders and capitalised names aside)."""
    names, depth = [], 0
    for part in re.split(r"(`[^`]*`)", cell):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            word = part.strip("`")
            if depth == 0 and IDENT.fullmatch(word) and not word.startswith("__"):
                names.append(word)
        else:
            depth += part.count("(") - part.count(")")
    return names


def _own_modules(package: str, rows: dict[str, tuple[str, str]]) -> set[str]:
    """The modules directly in ``package`` that have no row of their own (``home/init``)."""
    return {m.split(".")[1] for m in MODULES if m.startswith(package + ".") and m.count(".") == 1
            and f"{package}/{m.split('.')[1]}" not in rows}


def _package_of(module: str, rows: dict[str, tuple[str, str]]) -> str:
    """The table row a module belongs to: ``home/init``, ``deid/``, ``errors.py``."""
    parts = module.split(".")
    if len(parts) > 1 and f"{parts[0]}/{parts[1]}" in rows:
        return f"{parts[0]}/{parts[1]}"
    return f"{parts[0]}/" if parts[0] in PACKAGES else f"{parts[0]}.py"


def test_the_table_has_a_row_per_package_and_top_level_module() -> None:
    rows = _rows()
    expected = {f"{p}/" for p in PACKAGES} | set(TOP_MODULES)
    assert {r for r in rows if "/" not in r[:-1]} == expected
    assert all(r.rstrip("/").removesuffix(".py").replace("/", ".") in MODULES for r in rows), sorted(rows)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_packages_row_names_exactly_its_modules(package: str) -> None:
    rows = _rows()
    owns, _ = rows[f"{package}/"]
    named = _named_outside_parentheses(owns)
    assert sorted(set(named)) == sorted(_own_modules(package, rows)), owns


def test_the_imports_column_names_what_each_package_imports() -> None:
    rows = _rows()
    order = list(rows)
    actual: dict[str, set[str]] = {r: set() for r in rows}
    for module, deps in _graph().items():
        if not module:
            continue
        mine = _package_of(module, rows)
        for dep in deps:
            theirs = _package_of(dep, rows) if dep else ""
            if theirs and theirs != mine and theirs != "errors.py":
                actual[mine].add(theirs.rstrip("/").removesuffix(".py").replace("/", "."))
    wrong = []
    for row, (_, imports) in rows.items():
        if imports == "everything":
            continue
        if imports.startswith("all of the above but"):
            allowed = {r.rstrip("/").removesuffix(".py").replace("/", ".") for r in order[:order.index(row)]}
            allowed -= set(_named_outside_parentheses(imports))
            if not actual[row] <= allowed:
                wrong.append(f"{row}: imports {sorted(actual[row] - allowed)}, not allowed by '{imports}'")
            continue
        named = {n.replace("/", ".") for n in re.findall(r"`([a-z_/]+)`", re.sub(r"\([^)]*\)", "", imports))}
        listed = named - {"errors"}
        if imports != "—" and not named:
            wrong.append(f"{row}: imports column not understood: {imports}")
        elif listed != actual[row]:
            wrong.append(f"{row}: the table says {sorted(listed)}, the code imports {sorted(actual[row])}")
    assert wrong == []


def test_the_readme_layout_names_every_package() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("\nLayout: ")
    end = text.find("\n\n", start + 1)
    paragraph = text[start:end if end > 0 else len(text)]
    named = set(re.findall(r"`([a-z_]+)/`", paragraph))
    assert set(PACKAGES) <= named
    assert [n for n in named - set(PACKAGES) if not (ROOT / n).is_dir()] == []


def _references(text: str) -> tuple[list[str], list[str]]:
    """(dotted module names, other file paths) of the package written in a text: paths
    (``sfr_gateway/deid/rawread.py``, ``sfr_gateway/data/iod-types.json``), dotted names
    (``sfr_gateway.mapping.sync.record_released``) and ``pkg/module`` in backticks."""
    modules, files = [], []
    for token in re.findall(r"\bsfr_gateway/[^\s`'\")]+", text):
        token = token.rstrip(".,;:")
        if any(c in token for c in "*{<"):
            continue
        if token.endswith(".py") or "." not in token.rpartition("/")[2]:
            modules.append(token.removesuffix(".py").rstrip("/").replace("/", "."))
        else:
            files.append(token)
    # a dotted name after a slash is a file in a path (HOME/metrics/sfr_gateway.prom), not a module
    modules += re.findall(r"(?<!/)\bsfr_gateway(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text)
    modules += [f"sfr_gateway.{m.removesuffix('.py').replace('/', '.')}"
                for m in re.findall(r"`([a-z_]+/[a-z_]+(?:\.py)?)`", text) if m.split("/")[0] in PACKAGES]
    return modules, files


def _resolves(ref: str) -> bool:
    parts = ref.split(".")
    if parts[:2] == ["sfr_gateway", "profiles"]:  # top-level profiles/, packaged under this name
        return len(parts) == 2
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[1:cut])
        if name in MODULES:
            obj: object = importlib.import_module(".".join(parts[:cut]))
            for attr in parts[cut:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
        if (PACKAGE / name.replace(".", "/")).is_dir():  # a data folder: ledger/migrations
            return len(parts) == cut
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_the_docs_name_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    modules, files = _references(text)
    missing = sorted({ref for ref in modules if not _resolves(ref)} | {f for f in files if not (ROOT / f).exists()})
    assert missing == []
