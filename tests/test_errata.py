"""helpers.errata: every pointer names a heading that exists, and notebook 14 demonstrates every entry."""

import json
import re
from pathlib import Path

import pytest

from helpers.errata import ERRATA, FAQ

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def headings(number: str) -> set[str]:
    paths = list(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    assert len(paths) == 1, f"no single notebook numbered {number}: {paths}"
    cells = json.loads(paths[0].read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def keys_recorded_in_notebook_14(register: str) -> set[str]:
    """The keys notebook 14's code passes to ``register.add(...)`` or ``register.update({...})``."""
    path = next(NOTEBOOKS.glob("14_*.ipynb"))
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    calls = re.findall(rf"\b{register}\.(?:add|update)\(([^)]*)\)", code)
    return {key for call in calls for key in re.findall(r'"([^"]+)"', call)}


@pytest.mark.parametrize("record", ERRATA + FAQ, ids=lambda r: r.key)
def test_pointer_names_an_existing_heading(record):
    assert record.heading in headings(record.notebook), record.where


def pointers_in_markdown() -> list[tuple[str, str]]:
    """Every (notebook number, heading) that a notebook's text points to as: notebook NN, “heading”."""
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        for number, heading in re.findall(r"(?:notebook )?(\d\d), “([^”]+)”", text):
            found.append((number, " ".join(heading.split())))
    return found


@pytest.mark.parametrize("number, heading", pointers_in_markdown())
def test_pointers_in_the_notebooks_text_name_existing_headings(number, heading):
    """Renaming a heading must not leave a dangling “heading” pointer in another notebook's text."""
    assert heading in headings(number), f"no heading “{heading}” in notebook {number}"


@pytest.mark.parametrize("records", [ERRATA, FAQ], ids=["errata", "faq"])
def test_keys_are_unique_and_articles_exist(records):
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys))
    assert {r.article for r in records} <= {"000", "001", "002", "003", "004"}
    assert all(r.section and r.notebook.isdigit() and len(r.notebook) == 2 for r in records)


def test_errata_are_numbered_in_order():
    assert [r.key for r in ERRATA] == [f"E{i}" for i in range(1, len(ERRATA) + 1)]


@pytest.mark.parametrize("record", ERRATA, ids=lambda r: r.key)
def test_notebook_14_demonstrates_every_erratum(record):
    assert record.key in keys_recorded_in_notebook_14("demonstrated")


@pytest.mark.parametrize("record", FAQ, ids=lambda r: r.key)
def test_notebook_14_answers_every_question(record):
    assert record.key in keys_recorded_in_notebook_14("answered")
