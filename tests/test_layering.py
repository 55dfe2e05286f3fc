"""Issue 19: the package is built in layers, read from its imports (nothing is run).

A module may import from its own layer or a lower one, never from a higher one; imports within
a layer form no cycle; and every import of a helpers module stands at the top of its module,
where a reader sees the dependency graph, not inside a function. Every module must have a place
in the map of helpers/__init__.py's docstring: a new module fails this test until it is placed.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "helpers"

# The one map of the layers is helpers/__init__.py's docstring: a line ``L<n> …`` opens each
# layer, then one line per module starting with :mod:`helpers.x`. It is parsed below, so a new
# module is placed by adding its line there. A name covers its submodules (helpers.exercises.*).
PACKAGE_DOC = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8")))


def parse_layer_map(doc: str) -> dict[str, int]:
    """``{module: layer}`` from the package docstring's map; the root ``helpers`` (it imports nothing) is L0."""
    layers, layer = {"helpers": 0}, None
    for line in doc.splitlines():
        if heading := re.match(r"L(\d) ", line):
            layer = int(heading[1])
        elif entry := re.match(r"\s+:mod:`(helpers[\w.]*)`", line):
            assert layer is not None, f"{entry[1]} is mapped before any 'L<n> ...' heading"
            assert entry[1] not in layers, f"{entry[1]} is mapped twice in helpers/__init__.py"
            layers[entry[1]] = layer
    return layers


LAYERS = parse_layer_map(PACKAGE_DOC)
# Function-level imports allowed, and why. A solution's source is what show_solution prints:
# it carries its own imports so that a learner can run it as printed.
FUNCTION_LEVEL_ALLOWED = {
    "helpers.solutions": "a solution's source is printed for the learner and must run as printed",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """The layer of a module: its own entry, else that of the package it lies in (helpers.exercises.x)."""
    if module == "helpers":
        return LAYERS[module]
    while module != "helpers":
        if module in LAYERS:
            return LAYERS[module]
        module = module.rpartition(".")[0]
    return None


def _exists(module: str) -> bool:
    return module in MODULES


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> list[str]:
    """The helpers modules an import statement loads (``from helpers import x`` loads helpers.x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "helpers"]
    if node.level:   # relative: from the importer's package, up level - 1
        package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if base.split(".")[0] != "helpers":
        return []
    submodules = [f"{base}.{alias.name}" for alias in node.names if _exists(f"{base}.{alias.name}")]
    names_from_base = len(submodules) < len(node.names)
    return submodules + ([base] if names_from_base else [])


def _dynamic_target(call: ast.Call) -> str | None:
    """The helpers module named by ``importlib.import_module("helpers.x")`` or ``__import__("helpers.x")``."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.split(".")[0] == "helpers":
        return arg.value
    return None


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported helpers module, line, whether the import sits inside a function or class)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []

    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend((target, child.lineno, nested) for target in _targets(child, module))
            elif isinstance(child, ast.Call) and (target := _dynamic_target(child)):
                found.append((target, child.lineno, nested))
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
            visit(child, inner)

    visit(tree, False)
    return found


IMPORTS = {module: _imports(module) for module in MODULES}


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if layer_of(m) is None)
    assert not unplaced, f"place these modules in helpers/__init__.py's map of layers: {unplaced}"


def test_the_table_names_only_helpers_modules():
    assert all(name == "helpers" or name.startswith("helpers.") for name in LAYERS)
    assert set(LAYERS.values()) == set(range(6))


def test_no_import_goes_up_a_layer():
    upward = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} {m} (L{layer_of(m)}) imports {t} (L{layer_of(t)})"
              for m, imports in IMPORTS.items() for t, line, _ in imports
              if layer_of(t) is not None and layer_of(m) is not None and layer_of(t) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_no_helpers_import_inside_a_function():
    hidden = []
    for m, imports in IMPORTS.items():
        hidden += [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {t} inside a function"
                   for t, line, nested in imports
                   if nested and layer_of(m) is not None and m not in FUNCTION_LEVEL_ALLOWED]
    assert not hidden, "move these imports to the top of the module:\n" + "\n".join(hidden)


def test_no_import_cycle():
    graph = {m: sorted({t for t, _, _ in imports if t in MODULES and t != m}) for m, imports in IMPORTS.items()}
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for t in graph[m]:
            if state.get(t) == "open":
                cycle = path[path.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m)


def test_the_package_root_imports_nothing_and_maps_only_existing_modules():
    assert IMPORTS["helpers"] == []
    missing = sorted(name for name in LAYERS if name not in MODULES)
    assert not missing, f"helpers/__init__.py maps modules that do not exist: {missing}"


def test_parse_layer_map():
    doc = "Intro naming :mod:`helpers.nowhere`.\n\nL0 base\n    :mod:`helpers.a`   see :mod:`helpers.b`\n" \
          "L2 top\n    :mod:`helpers.b`   b\n"
    assert parse_layer_map(doc) == {"helpers": 0, "helpers.a": 0, "helpers.b": 2}


# -- the reader itself, on small made-up modules ------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("from helpers import activations, _fused", ["helpers.activations", "helpers._fused"]),
    ("from helpers.models import MLP", ["helpers.models"]),
    ("import helpers.diagnostics as d", ["helpers.diagnostics"]),
    ("from helpers import __version__", ["helpers"]),
    ("import torch", []),
])
def test_targets(source, expected):
    assert _targets(ast.parse(source).body[0], "helpers.theory") == expected


@pytest.mark.parametrize("source, expected", [
    ('importlib.import_module("helpers.plotting")', "helpers.plotting"),
    ('import_module("helpers.training")', "helpers.training"),
    ('__import__("helpers.diagnostics")', "helpers.diagnostics"),
    ('importlib.import_module("numpy")', None),
    ('importlib.import_module(name)', None),
    ('print("helpers.plotting")', None),
])
def test_dynamic_target(source, expected):
    assert _dynamic_target(ast.parse(source).body[0].value) == expected


def test_an_import_module_call_inside_a_function_is_seen(tmp_path, monkeypatch):
    path = tmp_path / "fake.py"
    path.write_text("import importlib\n\ndef f():\n    return importlib.import_module('helpers.plotting')\n")
    monkeypatch.setitem(MODULES, "helpers.fake", path)
    assert _imports("helpers.fake") == [("helpers.plotting", 4, True)]


def test_layer_of_reads_package_prefixes():
    assert layer_of("helpers.exercises.nb01") == 5 and layer_of("helpers.lr_finder") == 4
    assert layer_of("helpers.nowhere") is None
