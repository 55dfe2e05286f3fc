"""Every module says what it offers: each public class and function it defines is in its ``__all__``.

A name is public when it does not start with "_"; a module defines it when the object's
``__module__`` is that module (names a module imports from elsewhere are not its own). A reader,
``from helpers.x import *`` and the docs then see the same list. A helper that is not meant for
users gets a leading underscore instead.
"""

import importlib
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "helpers"

# Modules whose public-looking functions are deliberately left out of __all__, and why.
EXEMPT = {
    "helpers.solutions": "its functions are printed to learners by show_solution: private by design, "
                         "and named as the exercises name them",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))


def defined_public_names(module) -> list[str]:
    """The public classes and functions that ``module`` itself defines, in definition order."""
    return [name for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__]


@pytest.mark.parametrize("name", [m for m in MODULES if m not in EXEMPT])
def test_every_public_name_a_module_defines_is_in_its_all(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__: list its public names after the imports"
    missing = [n for n in defined_public_names(module) if n not in module.__all__]
    assert not missing, (f"{name} defines {missing} but its __all__ does not list them: "
                         "add them to __all__, or rename them with a leading '_' if they are not for users")


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name):
    module = importlib.import_module(name)
    absent = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
    assert not absent, f"{name}.__all__ lists names the module does not have: {absent}"


def test_the_exemptions_are_modules():
    assert set(EXEMPT) <= set(MODULES)


def test_defined_public_names_skips_imports_and_private_names():
    module = importlib.import_module("helpers._layers")
    assert defined_public_names(module) == ["describe_kinds", "recurrent_weights", "check_materialised"]
