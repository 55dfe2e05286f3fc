"""Hygiene of the committed notebooks: what nbval compares must be stable everywhere.

nbval re-executes the notebooks and compares outputs; these tests check what it
cannot: that the stored outputs were produced in order, carry nothing machine-specific,
follow the course template and stay small.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IGNORE = "NBVAL_IGNORE_OUTPUT"
IGNORE_TAG = "nbval-ignore-output"   # nbval's cell tag: the learner does not see test machinery
RAISES = "NBVAL_RAISES_EXCEPTION"

ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
ABSOLUTE_PATH = re.compile(r"(/(root|home|tmp|work|Users|usr|opt)/|[A-Z]:\\\\)")
TIMING = re.compile(r"\d+(\.\d+)?\s*(it/s|s/it)|\d+:\d\d<|\bin \d+\.\d+ ?s\b|elapsed", re.I)
RAW_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{3,}(e[-+]?\d+)?|\d\.\d+e[-+]\d+")
WARNING = re.compile(r"Warning\b|warnings\.warn")


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def text_of(output):
    if output["output_type"] == "stream":
        return "".join(output["text"])
    data = output.get("data", {})
    return "".join(data.get("text/plain", "")) + "".join(data.get("text/html", ""))


def ignored(cell) -> bool:
    """nbval leaves the cell's output uncompared: its tag, or the older comment marker."""
    return IGNORE_TAG in cell.get("metadata", {}).get("tags", []) or IGNORE in source(cell)


def compared_outputs(nb):
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and not ignored(cell):
            for output in cell.get("outputs", []):
                yield index, output


def test_notebooks_are_numbered_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert names, "no notebooks found"
    numbers = [int(re.match(r"(\d\d)_[a-z0-9_]+\.ipynb$", n).group(1)) for n in names]
    assert numbers == list(range(len(numbers))), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
class TestNotebook:
    def test_kernelspec_is_python3(self, path):
        assert load(path)["metadata"]["kernelspec"]["name"] == "python3"

    def test_every_code_cell_executed_once_in_order(self, path):
        counts = [c["execution_count"] for c in load(path)["cells"] if c["cell_type"] == "code"]
        assert counts == list(range(1, len(counts) + 1)), "re-run with `make notebooks`"

    def test_no_stored_errors_except_expected_ones(self, path):
        for cell in load(path)["cells"]:
            if cell["cell_type"] == "code" and RAISES not in source(cell):
                assert all(o["output_type"] != "error" for o in cell.get("outputs", [])), source(cell)[:80]

    def test_no_widget_state_or_timing_metadata(self, path):
        nb = load(path)
        assert "widgets" not in nb["metadata"]
        for cell in nb["cells"]:
            assert "execution" not in cell.get("metadata", {})
            for output in cell.get("outputs", []):
                assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {})

    def test_outputs_carry_nothing_machine_specific(self, path):
        for index, output in compared_outputs(load(path)):
            text = text_of(output)
            for pattern, what in ((ADDRESS, "memory address"), (ABSOLUTE_PATH, "absolute path"),
                                  (TIMING, "timing"), (RAW_FLOAT, "raw float"), (WARNING, "warning")):
                match = pattern.search(text)
                assert match is None, f"cell {index}: {what} {match.group(0)!r} in a compared output"
            assert not (output["output_type"] == "stream" and output["name"] == "stderr"), f"cell {index}: stderr"

    def test_no_hard_coded_device(self, path):
        for cell in load(path)["cells"]:
            if cell["cell_type"] == "code":
                assert not re.search(r"""["']cuda""", source(cell)), "use helpers.device.get_device()"

    def test_bounded_size(self, path):
        assert path.stat().st_size < 3_000_000
        for _, output in compared_outputs(load(path)):
            assert len(text_of(output)) < 5_000

    def test_follows_the_course_template(self, path):
        cells = load(path)["cells"]
        markdown = "\n".join(source(c) for c in cells if c["cell_type"] == "markdown")
        headings = ["Key take-aways", "References"]
        if not path.name.startswith("00"):  # the welcome notebook has no experiment of its own to fix
            headings += ["Learning goals", "See it", "Build it", "Fix it", "Exercises"]
        for heading in headings:
            assert heading in markdown, f"missing section {heading!r}"

    def test_markdown_is_not_left_commented_out(self, path):
        # a script-to-notebook converter that keeps the "# " of py:percent cells turns every
        # line into a heading; "# ## 1 · Theory" or a lone "#" is the sign of it
        for cell in load(path)["cells"]:
            if cell["cell_type"] == "markdown":
                for line in source(cell).splitlines():
                    assert not re.match(r"#( #|$)", line), f"commented-out markdown: {line!r}"

    def test_no_trailing_semicolon_to_hide_a_result(self, path):
        # nbval's kernel keeps no input history, so IPython cannot see the ';' and shows the result
        for cell in load(path)["cells"]:
            if cell["cell_type"] == "code":
                assert not source(cell).rstrip().endswith(";"), source(cell)[-80:]

    def test_figures_end_with_plt_show(self, path):
        for cell in load(path)["cells"]:
            src = source(cell)
            if cell["cell_type"] == "code" and re.search(r"\bplot_\w+\(|plt\.subplots\(", src):
                assert "plt.show()" in src, src[:80]

    def test_exercises_are_left_for_the_learner(self, path):
        for cell in load(path)["cells"]:
            src = source(cell)
            if cell["cell_type"] == "code" and re.search(r"\bcheck_\w+\(", src) and "def " in src:
                out = "".join(text_of(o) for o in cell.get("outputs", []))
                assert "not attempted yet" in out, "reference solutions belong in tests/, not in notebooks"
