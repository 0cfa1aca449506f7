"""The rings of STYLE.md, checked: import-linter's contracts, and no import circles.

The contracts live in pyproject.toml (``[tool.importlinter]``): widgets > cli > batch > core,
and a core without Qt, napari, magicgui, Dask or zarr.  A circle is looked for at every
level: between modules, and between the sub-packages and modules inside each package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="needs import-linter (the testing extra)")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "napari_tiled_unet"


def test_import_linter_contracts_are_kept():
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.exists() else ["lint-imports"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """Return one circle of ``edges`` (a list of nodes, first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.fixture(scope="module")
def graph():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return grimp.build_graph(PACKAGE)


def _imports(graph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_no_circle_between_modules(graph):
    assert _find_cycle(_imports(graph)) is None


def _child_edges(imports: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    """Imports between the children (modules, sub-packages) of ``package``."""
    depth = package.count(".") + 1

    def child(module: str) -> str | None:
        if not module.startswith(package + "."):
            return None
        return ".".join(module.split(".")[: depth + 1])

    edges: dict[str, set[str]] = {}
    for source, targets in imports.items():
        a = child(source)
        for target in targets:
            b = child(target)
            if a and b and a != b:
                edges.setdefault(a, set()).add(b)
    return edges


def test_no_circle_inside_any_package(graph):
    """Inside each package, its children (modules and sub-packages) form no circle."""
    imports = _imports(graph)
    packages = {m.rsplit(".", 1)[0] for m in graph.modules if "." in m}
    assert {
        "napari_tiled_unet",
        "napari_tiled_unet.core",
        "napari_tiled_unet.core.model",
    } <= packages
    for package in sorted(packages):
        assert _find_cycle(_child_edges(imports, package)) is None, package


def test_the_cycle_finder_finds_circles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}}) is None
    imports = {"p.a.x": {"p.b"}, "p.b": {"p.a.y"}}
    assert _child_edges(imports, "p") == {"p.a": {"p.b"}, "p.b": {"p.a"}}
