"""Re-execute notebooks in order, each in a fresh kernel, and save them byte-stably.

Usage: python tools/run_notebooks.py notebooks/*.ipynb

The caller pins thread counts and switches progress bars off (``make notebooks`` does).
Timing metadata is not recorded and execution counts restart at 1, so running it
twice on the same machine leaves ``git status`` clean.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

KERNEL = "python3"


def tidy(notebook: nbformat.NotebookNode) -> None:
    """Make an executed notebook byte-stable: no timing, no widget state, whole streams.

    How a kernel chunks printed text depends on timing (a loaded machine splits one
    ``print`` in two); nbconvert's CoalesceStreamsPreprocessor joins consecutive chunks of
    one stream (and drops text that a carriage return overwrites, as a terminal would), so
    the stored notebook is the same every run.
    """
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    CoalesceStreamsPreprocessor().preprocess(notebook, {})
    notebook.metadata.pop("widgets", None)


def execute(path: Path) -> float:
    """Execute one notebook in place; return its wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                       "name": KERNEL}
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=600, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    tidy(notebook)
    nbformat.write(notebook, path)
    return elapsed


def main(paths: list[str]) -> int:
    if not paths:
        print("usage: python tools/run_notebooks.py NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    for name in sorted(paths):
        elapsed = execute(Path(name))
        print(f"{name}: executed in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
