"""Throughput of helpers.ensemble against training the same models one after another with fit().

Usage: python benchmarks/ensemble.py [--repeat N] [--update]

Workload (its budget in docs/maintainers.md, Measured): 32 MLPs of depth 20 and width 64 on the digits, mini-batches
of 64, SGD with momentum, 2 torch threads. One round trains the 32 models once with a loop
of ``fit`` calls and once as one ``fit_ensemble`` call, ``EPOCHS`` epochs each, interleaved;
the ratio of the medians over ``--repeat`` rounds is the speed-up in throughput (model-steps per
second; budget: >= 8x). The 32 models are built before the clock starts on both sides (building
them is not training); stacking them into the ensemble is timed.

Also printed: the GFLOP/s the ensemble reaches (forward + backward = 3x the forward's
multiply-adds, x2 flops each) against the rate torch.bmm itself reaches on the layer's
shapes (32 x (64 x 64) @ (64 x 64)), on the same machine, in the same run.
``--update`` writes the section into benchmarks/RESULTS.md (replacing an older one).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from helpers.data import digits
from helpers.ensemble import Ensemble, fit_ensemble
from helpers.models import MLP
from helpers.training import fit

MODELS, DEPTH, WIDTH, BATCH, THREADS, EPOCHS = 32, 20, 64, 64, 2, 2
BUDGET = 8.0
ROOT = Path(__file__).resolve().parents[1]
HEADING = "## `helpers.ensemble` against a loop of `fit`"


def _models() -> list:
    models = []
    for seed in range(MODELS):
        torch.manual_seed(seed)
        models.append(MLP(64, 10, width=WIDTH, depth=DEPTH))
    return models


def loop_of_fit(data) -> float:
    models = _models()
    start = time.perf_counter()
    for model in models:
        fit(model, data.train, epochs=EPOCHS, optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
            loss_fn=F.cross_entropy, progress=False, batch_size=BATCH)
    return time.perf_counter() - start


def ensemble(data) -> float:
    models = _models()
    start = time.perf_counter()
    fit_ensemble(Ensemble(models), data.train, epochs=EPOCHS, lr=0.01, momentum=0.9, batch_size=BATCH,
                 progress_bar=False)
    return time.perf_counter() - start


def bmm_gflops(repeat: int = 200) -> float:
    a, b = torch.randn(MODELS, BATCH, WIDTH), torch.randn(MODELS, WIDTH, WIDTH)
    for _ in range(10):
        torch.bmm(a, b)
    start = time.perf_counter()
    for _ in range(repeat):
        torch.bmm(a, b)
    return 2 * MODELS * BATCH * WIDTH * WIDTH * repeat / (time.perf_counter() - start) / 1e9


def flops_per_step() -> float:
    weights = 64 * WIDTH + (DEPTH - 1) * WIDTH * WIDTH + WIDTH * 10
    return 3 * 2 * BATCH * weights * MODELS


def measure(repeat: int) -> dict:
    torch.set_num_threads(THREADS)
    data = digits()
    ensemble(data)  # warm-up
    loops, ensembles = [], []
    for _ in range(repeat):
        loops.append(loop_of_fit(data))
        ensembles.append(ensemble(data))
    steps = -(-len(data.X_train) // BATCH) * EPOCHS
    t_loop, t_ens = statistics.median(loops), statistics.median(ensembles)
    return {"loop_s": t_loop, "ensemble_s": t_ens, "speedup": t_loop / t_ens, "steps": steps,
            "ms_per_model_step_loop": 1e3 * t_loop / (steps * MODELS),
            "ms_per_model_step_ensemble": 1e3 * t_ens / (steps * MODELS),
            "gflops": flops_per_step() * steps / t_ens / 1e9, "bmm_gflops": bmm_gflops(), "repeat": repeat}


def section(r: dict) -> list[str]:
    verdict = "within" if r["speedup"] >= BUDGET else "**over**"
    return [HEADING, "",
            f"{MODELS} MLPs (depth {DEPTH}, width {WIDTH}) on the digits, batch {BATCH}, SGD + momentum, "
            f"{THREADS} torch threads; {EPOCHS} epochs ({r['steps']} steps) each way, models built before the clock "
            f"starts, median of {r['repeat']} interleaved round(s) (benchmarks/ensemble.py).", "",
            "| measured | loop of `fit` | ensemble | speed-up | budget | verdict |", "|---|---:|---:|---:|---:|---|",
            f"| helpers.ensemble: 32 models, {EPOCHS} epochs | {r['loop_s']:.2f} s "
            f"({r['ms_per_model_step_loop']:.2f} ms/model-step) | {r['ensemble_s']:.2f} s "
            f"({r['ms_per_model_step_ensemble']:.3f} ms/model-step) | {r['speedup']:.1f}x | >= {BUDGET:.0f}x | "
            f"{verdict} |", "",
            f"The ensemble computes {r['gflops']:.0f} GFLOP/s; torch.bmm alone reaches {r['bmm_gflops']:.0f} GFLOP/s "
            f"on the same shapes ({r['gflops'] / r['bmm_gflops']:.0%} of it).", ""]


def update_results(lines: list[str], path: Path = ROOT / "benchmarks" / "RESULTS.md") -> None:
    text = path.read_text() if path.exists() else "# Measured budgets\n"
    block = "\n".join(lines)
    pattern = re.compile(re.escape(HEADING) + r".*?(?=\n## |\Z)", re.S)
    text = pattern.sub(block.rstrip("\n"), text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    path.write_text(text.rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--update", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()
    lines = section(measure(args.repeat))
    print("\n".join(lines))
    if args.update:
        update_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
