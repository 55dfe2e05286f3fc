"""The maintainers' notebook runner stores byte-stable notebooks."""

import importlib.util
from pathlib import Path

import nbformat

RUNNER = Path(__file__).resolve().parents[1] / "tools" / "run_notebooks.py"
SPEC = importlib.util.spec_from_file_location("run_notebooks", RUNNER)
run_notebooks = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(run_notebooks)


def test_merge_streams_joins_chunks_of_one_stream_only():
    out = nbformat.v4.new_output
    outputs = [out("stream", name="stdout", text="a"), out("stream", name="stdout", text="b\n"),
               out("stream", name="stderr", text="c"), out("display_data", data={"text/plain": "x"}),
               out("stream", name="stdout", text="d")]
    merged = run_notebooks.merge_streams(outputs)
    assert [(o["output_type"], o.get("text")) for o in merged] == [
        ("stream", "ab\n"), ("stream", "c"), ("display_data", None), ("stream", "d")]


def test_merge_streams_of_nothing():
    assert run_notebooks.merge_streams([]) == []
