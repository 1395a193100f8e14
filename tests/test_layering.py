"""Imports run one way: the engine imports no web, queue or database code; the API loads no torch
and nothing of worker/, and importing it writes nothing; no module of app/ or worker/ imports itself
back through others."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import app
import worker
from tests.utils.services import ROOT


def modules_after_import(*modules: str, cwd: Path = ROOT) -> set[str]:
    code = f"import sys, {', '.join(modules)}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def modules_of(package) -> list[str]:
    """Every module of `package` (not `__main__`s, which run a program when imported)."""
    walked = pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    return sorted(m.name for m in walked if not m.name.endswith(".__main__"))


def test_the_engine_imports_no_web_queue_or_database_code():
    engine = [m for m in modules_of(app) if m.startswith("app.adaptation")]
    loaded = top_level(modules_after_import(*engine))
    assert "torch" in loaded
    assert not loaded & {"fastapi", "starlette", "celery", "kombu", "sqlalchemy", "alembic", "redis"}


def test_the_api_loads_no_torch_and_nothing_of_the_worker():
    api = [m for m in modules_of(app) if m.startswith(("app.api", "app.schemas", "app.services", "app.queue"))]
    loaded = modules_after_import(*api)
    assert "fastapi" in top_level(loaded)
    assert not top_level(loaded) & {"torch", "transformers"}
    assert not {name for name in loaded if name == "worker" or name.startswith("worker.")}


def test_importing_any_api_module_creates_no_file(tmp_path):
    api = [m for m in modules_of(app) if m.startswith(("app.api", "app.queue", "app.services", "app.cli"))]
    modules_after_import(*api, cwd=tmp_path)  # the default var_dir is ./var, relative to where it runs
    assert list(tmp_path.iterdir()) == []


def test_object_storage_clients_load_only_where_object_storage_is_configured():
    # The engine reads local folders only; the API with the default local store never loads s3fs.
    assert not top_level(modules_after_import("app.adaptation.job")) & {"s3fs", "aiobotocore"}
    assert not top_level(modules_after_import("app.api.main")) & {"s3fs", "aiobotocore"}


# ---- no import cycles --------------------------------------------------------------------------------


def import_graph(packages: list[Path]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports, anywhere in its code (a function's import is
    an edge too). Imports under `if TYPE_CHECKING:` are not: they never run. `from pkg import name`
    is an edge to pkg.name when that is a module, else to pkg."""
    files = {}
    for package in packages:
        for path in package.rglob("*.py"):
            parts = list(path.relative_to(package.parent).with_suffix("").parts)
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        type_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for statement in node.body
            for inner in ast.walk(statement)
        }
        graph[module] = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_of_app_or_worker_imports_itself_back():
    graph = import_graph([Path(app.__file__).parent, Path(worker.__file__).parent])
    assert len(graph) > 150 and "app.adaptation.trainer" in graph["app.adaptation.classification"]
    assert cycles(graph) == []
    # The engine runs the specs it is given: it never expands a recipe (the stored spec is whole).
    assert not [
        module for module in graph if module.startswith("app.adaptation") and "app.schemas.recipes" in graph[module]
    ]


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import x\n")
    (package / "b.py").write_text("x = 1\ndef f():\n    from pkg import c\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    graph = import_graph([package])
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert graph["pkg.d"] == set()  # a type-only import is no edge
