"""Issue 19: the package is built in layers, read from its imports (nothing is run).

A module may import from its own layer or a lower one, never from a higher one; imports within
a layer form no cycle; and every import of a helpers module stands at the top of its module,
where a reader sees the dependency graph, not inside a function. Every module must have a place
in :data:`LAYERS`: a new module fails this test until it is placed.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "helpers"

# Lowest first (the lead's table, issue 19); the package docstring draws the same map.
# A name covers its submodules (helpers.exercises.* are L5).
LAYERS = {
    "helpers": 0,   # the package root: a docstring and __version__, it imports nothing
    # L0 foundation
    "helpers._checks": 0, "helpers._layers": 0, "helpers._fused": 0, "helpers.progress": 0,
    "helpers.claims": 0, "helpers.errata": 0, "helpers.device": 0, "helpers.data": 0,
    # L1 layers and models
    "helpers.activations": 1, "helpers.init": 1, "helpers.normalization": 1, "helpers.regularization": 1,
    "helpers.recurrent": 1, "helpers.models": 1, "helpers.transformer": 1, "helpers.theory": 1,
    # L2 optimisation
    "helpers.optim": 2, "helpers.clipping": 2, "helpers.schedulers": 2, "helpers.amp": 2, "helpers.sharding": 2,
    # L3 diagnostics
    "helpers.diagnostics": 3,
    # L4 training
    "helpers.training": 4, "helpers.lr_finder": 4, "helpers.ensemble": 4, "helpers.checkup": 4,
    # L5 top
    "helpers.plotting": 5, "helpers.solutions": 5, "helpers.exercises": 5,
}
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


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported helpers module, line, whether the import sits inside a function or class)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []

    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend((target, child.lineno, nested) for target in _targets(child, module))
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
            visit(child, inner)

    visit(tree, False)
    return found


IMPORTS = {module: _imports(module) for module in MODULES}


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if layer_of(m) is None)
    assert not unplaced, f"place these modules in LAYERS (and in helpers/__init__.py's map): {unplaced}"


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


def test_the_package_root_imports_nothing_and_maps_every_module_in_its_layer():
    """helpers/__init__.py's docstring: a line ``L<n> …`` opens each layer, then its modules as :mod:`…`."""
    assert IMPORTS["helpers"] == []
    doc = ast.get_docstring(ast.parse(MODULES["helpers"].read_text(encoding="utf-8")))
    mapped, layer = {}, None
    for line in doc.splitlines():
        if re.match(r"L\d ", line):
            layer = int(line[1])
        for name in re.findall(r":mod:`(helpers[\w.]*)`", line):
            mapped.setdefault(name, layer)
    assert mapped == {name: n for name, n in LAYERS.items() if name != "helpers"}


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


def test_layer_of_reads_package_prefixes():
    assert layer_of("helpers.exercises.nb01") == 5 and layer_of("helpers.lr_finder") == 4
    assert layer_of("helpers.nowhere") is None
