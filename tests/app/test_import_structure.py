"""The import structure, read off the source with :mod:`ast` (nothing is imported): layers import
only downward, no two files import each other in a loop, no module imports another module's
private (underscore) names, and outside the CLI the package's own modules are imported at the top.

Layers, lowest first: core, learn/sample, inject (scenarios), deliver (connectors), app. Imports
inside functions count as much as those at the top: a loop through a function-level import still
ties the two files together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: import name -> the folder that holds it (pyproject.toml's package-dir)
FOLDERS = {"streamsynth.connectors": "connectors", "streamsynth.scenarios": "scenarios", "streamsynth": "streamsynth"}

CORE, LEARN, INJECT, DELIVER, APP = range(5)
LAYER_NAMES = ("core", "learn/sample", "inject", "deliver", "app")
#: module prefix -> layer; the longest matching prefix wins
LAYERS = {
    "streamsynth": CORE,  # errors, rng, contract, schema, io, manifest, identifiers, encoders, threads, ...
    "streamsynth.models": LEARN,
    "streamsynth.rules": LEARN,
    "streamsynth.privacy": LEARN,
    "streamsynth.evaluate": LEARN,
    "streamsynth.scenarios": INJECT,
    "streamsynth.connectors": DELIVER,
    "streamsynth.cli": APP,
    "streamsynth.pipeline": APP,
    "streamsynth.ray_sample": APP,  # runs the pipeline's sources as Ray tasks
    "streamsynth.ray_replay": APP,  # runs replay jobs of the pipeline's sources as Ray actors
    "streamsynth.rebalance": APP,
    "streamsynth.__main__": APP,
}
#: pairs that the layer order alone would allow but the design does not: the scenario layer and
#: delivery never import model code, and delivery knows nothing of scenarios
FORBIDDEN = (
    ("streamsynth.scenarios", "streamsynth.models"),
    ("streamsynth.connectors", "streamsynth.models"),
    ("streamsynth.connectors", "streamsynth.scenarios"),
)


def _module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by its import name (a package by its ``__init__``)."""
    out: dict[str, Path] = {}
    for prefix, folder in FOLDERS.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if prefix == "streamsynth" and parts[0] in ("connectors", "scenarios"):
                continue
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([prefix, *parts])] = path
    return out


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def inner_imports(root: Path = ROOT) -> list[str]:
    """Imports of the package's own modules inside functions, outside the CLI (whose commands
    import their work lazily so that ``--help`` stays fast; see ``streamsynth/cli/__init__.py``)."""
    out = []
    for module, path in _module_files(root).items():
        if _within(module, "streamsynth.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out += [f"{module}:{inner.lineno} imports {inner.module} inside {node.name}()"
                        for inner in ast.walk(node)
                        if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("streamsynth")]
    return out


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for each import of a project module."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("streamsynth")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("streamsynth"):
                continue
            names = []
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # a submodule, imported by name
                    found.append((f"{base}.{alias.name}", [], node.lineno))
                else:
                    names.append(alias.name)
            if names:
                found.append((base, names, node.lineno))
    return [(target, names, line) for target, names, line in found if target in modules]


def import_graph(root: Path = ROOT) -> dict[str, list[tuple[str, list[str], int]]]:
    modules = _module_files(root)
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def wrong_way_imports(graph) -> list[str]:
    out = []
    for module, imports in graph.items():
        for target, _, line in imports:
            if _layer(target) > _layer(module):
                out.append(f"{module}:{line} ({LAYER_NAMES[_layer(module)]}) imports {target} "
                           f"({LAYER_NAMES[_layer(target)]})")
            out += [f"{module}:{line} imports {target}: {low} never imports {high}"
                    for low, high in FORBIDDEN if _within(module, low) and _within(target, high)]
    return out


def import_circles(graph) -> list[list[str]]:
    """The strongly connected components of more than one file (Tarjan's algorithm)."""
    edges = {m: sorted({t for t, _, _ in imports if t != m}) for m, imports in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return circles


def private_imports(graph) -> list[str]:
    return [f"{module}:{line} imports {', '.join(n for n in names if n.startswith('_'))} from {target}"
            for module, imports in graph.items() for target, names, line in imports
            if target != module and any(n.startswith("_") and not n.startswith("__") for n in names)]


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_layers_import_only_downward(graph):
    assert wrong_way_imports(graph) == []


def test_no_files_import_each_other_in_a_loop(graph):
    assert import_circles(graph) == []


def test_no_module_imports_another_modules_private_names(graph):
    assert private_imports(graph) == []


def test_the_package_imports_its_own_modules_at_the_top_outside_the_cli():
    assert inner_imports() == []


def test_every_module_has_a_layer(graph):
    assert "streamsynth.connectors.registry" in graph and "streamsynth.scenarios.spec" in graph
    assert _layer("streamsynth.io") == CORE and _layer("streamsynth.cli.core") == APP


def test_the_checks_catch_a_planted_wrong_way_import_a_loop_and_a_private_name(tmp_path):
    """The same checks on a small tree with one of each defect."""
    pkg = tmp_path / "streamsynth"
    (pkg / "models").mkdir(parents=True)
    (tmp_path / "connectors").mkdir()
    (tmp_path / "scenarios").mkdir()
    for folder in (pkg, pkg / "models", tmp_path / "connectors", tmp_path / "scenarios"):
        (folder / "__init__.py").write_text("")
    (pkg / "io.py").write_text("from streamsynth.models.base import fit\n")  # core -> learn
    (pkg / "models" / "base.py").write_text("from streamsynth.models import other\ndef fit(): ...\n")
    (pkg / "models" / "other.py").write_text("from streamsynth.models.base import fit\n")  # a loop
    (tmp_path / "connectors" / "sink.py").write_text("from streamsynth.io import _secret\n")  # private
    (tmp_path / "scenarios" / "pool.py").write_text("def f():\n    from streamsynth.io import read\n")  # inner
    (tmp_path / "scenarios" / "spec.py").write_text("from streamsynth.connectors.sink import x\n")
    planted = import_graph(tmp_path)
    assert sorted(wrong_way_imports(planted)) == [
        "streamsynth.io:1 (core) imports streamsynth.models.base (learn/sample)",
        "streamsynth.scenarios.spec:1 (inject) imports streamsynth.connectors.sink (deliver)",
    ]
    assert import_circles(planted) == [["streamsynth.models.base", "streamsynth.models.other"]]
    assert private_imports(planted) == ["streamsynth.connectors.sink:1 imports _secret from streamsynth.io"]
    assert inner_imports(tmp_path) == ["streamsynth.scenarios.pool:2 imports streamsynth.io inside f()"]
