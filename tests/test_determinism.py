"""A notebook executed twice in fresh kernels is stored byte for byte the same.

`make determinism` does this for every notebook (about twice the course's run time); here
one notebook that trains and plots stands in for them inside `make test`.
"""

import shutil
from pathlib import Path

import pytest
import run_notebooks

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_gradient_descent_backprop.ipynb"])
def test_executing_a_notebook_twice_gives_the_same_bytes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROGRESS", "0")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    copies = []
    for run in ("first", "second"):
        folder = tmp_path / run
        folder.mkdir()
        copy = folder / name
        shutil.copy(ROOT / "notebooks" / name, copy)
        run_notebooks.execute(copy)
        copies.append(copy.read_bytes())
    assert copies[0] == copies[1]
