"""The maintainers' notebook runner stores byte-stable notebooks."""

import nbformat
import run_notebooks


def test_merge_streams_joins_chunks_of_one_stream_only():
    out = nbformat.v4.new_output
    outputs = [out("stream", name="stdout", text="a"), out("stream", name="stdout", text="b\n"),
               out("stream", name="stderr", text="c"), out("display_data", data={"text/plain": "x"}),
               out("stream", name="stdout", text="d")]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=outputs)])
    run_notebooks.tidy(notebook)
    assert [(o["output_type"], o.get("text")) for o in notebook.cells[0].outputs] == [
        ("stream", "ab\n"), ("stream", "c"), ("display_data", None), ("stream", "d")]


def test_merge_streams_of_nothing():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(), nbformat.v4.new_markdown_cell("x")])
    notebook.cells[0].metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    notebook.metadata["widgets"] = {"state": {}}
    run_notebooks.tidy(notebook)
    assert notebook.cells[0].outputs == [] and notebook.cells[0].metadata == {}
    assert notebook.cells[1].source == "x" and "widgets" not in notebook.metadata
