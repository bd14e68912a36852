"""The package's layout: no import cycles, and the runtime codec apart from training and tools.

Every import inside the package counts, those inside functions too (they hide cycles otherwise).
The layers, from the bottom: the runtime modules (pixels to streams and back) import only each
other; ``training`` may import the runtime; ``tools`` (bench, fuzz) may import the runtime and
``training``; the CLI may import anything. Nothing imports the CLI.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "icnn_codec"
NAME = PACKAGE.name


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=1)
def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(source: str, here: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package's modules that module ``here`` (whose code is ``source``) imports anywhere in
    its body, absolute or relative; ``from . import x`` counts as importing module ``x``."""
    package = here if is_package else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if node.module:  # ``from . import x`` imports x, not the package's own __init__ again
                found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m in modules and m != here}


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(path.read_text(), name, path.name == "__init__.py", set(modules))
            for name, path in modules.items()}


def layer(module: str) -> str:
    if module == NAME:
        return "api"
    if module == f"{NAME}.cli":
        return "cli"
    for sub in ("training", "tools"):
        if module == f"{NAME}.{sub}" or module.startswith(f"{NAME}.{sub}."):
            return sub
    return "runtime"


ALLOWED = {
    "runtime": {"runtime"},
    "api": {"runtime"},
    "training": {"runtime", "training"},
    "tools": {"runtime", "training", "tools"},
    "cli": {"runtime", "training", "tools", "cli"},
}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None. Package ``__init__``
    modules are left out as targets: importing ``a.b`` runs ``a/__init__`` first, but an edge to
    the package itself is only a re-export, which cannot close a cycle on its own."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt == NAME:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_import_walker_sees_imports_inside_functions_and_relative_ones():
    modules = {f"{NAME}.a", f"{NAME}.b", f"{NAME}.sub.c", f"{NAME}.sub.probe"}
    code = "def f():\n    from ..a import x\n    from . import c\nimport icnn_codec.b\nimport os\n"
    assert imported_modules(code, f"{NAME}.sub.probe", False, modules) == {f"{NAME}.a", f"{NAME}.b", f"{NAME}.sub.c"}


def test_the_cycle_finder_finds_a_cycle_of_three():
    graph = {f"{NAME}.a": {f"{NAME}.b"}, f"{NAME}.b": {f"{NAME}.c"}, f"{NAME}.c": {f"{NAME}.a"}, f"{NAME}.d": set()}
    assert find_cycle(graph) == [f"{NAME}.a", f"{NAME}.b", f"{NAME}.c", f"{NAME}.a"]


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("module", sorted(package_modules()))
def test_each_module_imports_only_from_the_layers_below_it(module):
    graph = import_graph()
    wrong = sorted(m for m in graph[module] if layer(m) not in ALLOWED[layer(module)])
    assert not wrong, f"{module} ({layer(module)}) must not import {wrong}"


POSIX_ONLY = {"resource", "fcntl", "termios", "pwd", "grp", "posix"}


@pytest.mark.parametrize("module", sorted(package_modules()))
def test_no_module_imports_a_posix_only_module_at_start_up(module):
    """Windows has no ``resource`` (nor ``fcntl``, ...): ``icnn`` must start there, so such a module
    may only be imported inside the function that needs it."""
    tree = ast.parse(package_modules()[module].read_text())
    top_level = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top_level |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert not top_level & POSIX_ONLY


def test_the_wheel_lists_every_subpackage():
    """setuptools packs only the packages pyproject.toml names: a subpackage left out installs a
    CLI that cannot import it."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    subpackages = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert subpackages <= listed
