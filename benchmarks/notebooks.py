"""Wall time and peak memory of every notebook, each executed in a fresh kernel.

Usage: python benchmarks/notebooks.py [--repeat N] [NOTEBOOK ...]

Each run executes the notebook in memory (the committed file is not touched) in a child
process; its peak memory is the kernel's maximum resident set size. Prints the median
wall time of N runs against the budgets in docs/maintainers.md, Measured (60 s a notebook, 6 min in all).
Run it the way `make benchmarks` does: thread counts pinned, progress bars off.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_BUDGET_S = 60
COURSE_BUDGET_S = 6 * 60


def run_one(path: str) -> None:
    """Child mode: execute one notebook, print wall time and the kernel's peak RSS as JSON."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=600, record_timing=False,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the kernel, now waited for
    print(json.dumps({"seconds": elapsed, "peak_mib": peak_kib / 1024}))


def measure(path: Path) -> dict:
    # a fresh process per run, so that RUSAGE_CHILDREN sees only this notebook's kernel
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child)
        return 0
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    print(f"{'notebook':40s} {'median s':>9s} {'peak MiB':>9s}  budget")
    total = 0.0
    over = 0
    for path in paths:
        runs = [measure(path) for _ in range(args.repeat)]
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak_mib"] for r in runs)
        total += seconds
        verdict = "within" if seconds <= NOTEBOOK_BUDGET_S else "OVER"
        over += verdict == "OVER"
        print(f"{path.name:40s} {seconds:9.1f} {peak:9.0f}  {verdict} ({NOTEBOOK_BUDGET_S} s)")
    verdict = "within" if total <= COURSE_BUDGET_S else "OVER"
    print(f"{'whole course':40s} {total:9.1f} {'':9s}  {verdict} ({COURSE_BUDGET_S} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
