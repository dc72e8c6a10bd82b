"""The package's shape: no import cycles inside ``samosval/``.

Every import counts, at any depth (one inside a function hides a cycle, it does
not remove it). A package's ``__init__`` importing its own submodules is not a
cycle. Cycles are found as strongly connected components of the import graph.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "samosval"


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    root = package.parent
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            candidates = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        edges |= {c for c in candidates if c in modules and c != name}
    if is_package:  # a package importing its own submodules is how packages work
        edges = {e for e in edges if not e.startswith(name + ".")}
    return edges


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
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
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_the_package_has_no_import_cycles():
    modules = module_files()
    assert "samosval.domain.deployments" in modules and "samosval.permissions" in modules
    cycles = import_cycles(modules)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_check_sees_a_cycle_hidden_in_a_function(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from . import a\n")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def later():\n    from .. import a\n    return a\n")
    assert import_cycles(module_files(package)) == [["pkg.a", "pkg.sub.b"]]
    (package / "sub" / "b.py").write_text("X = 1\n")
    assert import_cycles(module_files(package)) == []


def test_permissions_stay_pure():
    """The rules know nothing of Flask or the database: the domain, the routes and
    the templates all ask the same functions."""
    modules = module_files()
    imported = imports_of("samosval.permissions", modules["samosval.permissions"], modules)
    assert imported <= {"samosval.domain", "samosval.domain.repos", "samosval.domain.statuses"}
    tree = ast.parse(modules["samosval.permissions"].read_text(encoding="utf-8"))
    outside = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    outside |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and not node.level and node.module
    }
    assert outside <= {"__future__"}


def test_no_domain_module_reads_the_clock():
    """Time comes from the caller (the route's sim_now(), the engine's now)."""
    for name, path in module_files().items():
        if not name.startswith("samosval.domain"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "time.time(" not in text and "datetime.now(" not in text and "utcnow_iso()" not in text, name


def test_alerts_are_written_in_one_place():
    """Raising, resolving and counting alerts is ``domain/alerts.py``'s job."""
    sql = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+alerts\b", re.IGNORECASE)
    allowed = {"samosval.domain.alerts", "samosval.legacy.steps"}
    for name, path in module_files().items():
        if name not in allowed:
            assert not sql.search(path.read_text(encoding="utf-8")), name


def test_templates_ask_the_same_rules(app):
    """``{{ access.can_build(...) }}`` in a template is ``permissions.can_build``."""
    from samosval import permissions

    assert app.jinja_env.globals["access"] is permissions
