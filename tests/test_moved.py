"""helpers._moved: a name that moved says where it went, and nothing else changes."""

import importlib

import pytest

MOVES = [("helpers.schedulers", "lr_finder", "helpers.lr_finder"),
         ("helpers.schedulers", "LRFinderResult", "helpers.lr_finder"),
         ("helpers.schedulers", "suggest_lr", "helpers.lr_finder"),
         ("helpers.transformer", "block_grad_norms", "helpers.diagnostics")]


@pytest.mark.parametrize("old, name, new", MOVES)
def test_importing_a_moved_name_from_its_old_home_names_the_new_one(old, name, new):
    with pytest.raises(ImportError, match=f"from {new} import {name}"):
        exec(f"from {old} import {name}", {})
    assert hasattr(importlib.import_module(new), name)


@pytest.mark.parametrize("old", sorted({m[0] for m in MOVES}))
def test_other_missing_names_are_still_attribute_errors(old):
    module = importlib.import_module(old)
    assert not hasattr(module, "not_a_name")
    with pytest.raises(AttributeError, match="has no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018
