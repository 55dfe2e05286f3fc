"""One command for every budget of the course (docs/maintainers.md, "Measured"): writes benchmarks/RESULTS.md.

Usage: python benchmarks/results.py [--repeat N] [--output PATH] [--skip-fresh-clone] [--quick]
                                    [--only notebooks|fresh-clone|overhead|ensemble]

Measures, on this machine:

* every notebook's wall time and peak memory (median of ``--repeat`` runs, each in a fresh
  kernel; :mod:`benchmarks.notebooks`) and the whole course's time; budgets 60 s and 6 min;
* ``make test`` from a fresh clone, install included (``git clone`` of this repository's
  HEAD into a temporary directory, with the pip cache of this machine); budget 12 min;
* ``fit()`` against a hand-written loop and a step with ``GradientMonitor`` against one
  without (:mod:`benchmarks.overhead`); budgets 5 % and 10 %;
* ``helpers.ensemble``: 32 models trained at once against a loop of ``fit`` over the same 32
  (:mod:`benchmarks.ensemble`); budget >= 8x, with the GFLOP/s reached against torch.bmm's;
* each from-scratch component against its torch counterpart: clipping, optimizers, and
  normalization layers and recurrent cells when those modules exist (no budget is set for
  these: the ratios are reported for information);
* on a machine with CUDA, the components again on the GPU.

Numbers are medians of repeated runs; each ratio is measured within one run, its two
sides interleaved. Run it on a quiet machine, the way ``make benchmarks`` does (thread
counts pinned, progress bars off). ``--quick`` is a smoke test of this script (one
notebook, one repetition, tiny sizes, no fresh clone): it prints the report and writes
nothing unless ``--output`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# isort: split
# The other benchmarks, scripts beside this one: run as `python benchmarks/results.py`, Python puts
# benchmarks/ first on sys.path, so they import as plain modules (`helpers` is the installed package).
import ensemble as ensemble_bench
import overhead as overhead_bench

import notebooks as notebook_bench  # benchmarks/notebooks.py; ruff sorts it as the notebooks/ folder

ROOT = Path(__file__).resolve().parents[1]

MAKE_TEST_BUDGET_S = 12 * 60
FIT_BUDGET, MONITOR_BUDGET = 0.05, 0.10  # docs/maintainers.md, Measured: fit <= 5 %, GradientMonitor <= 10 %


def verdict(value: float, budget: float) -> str:
    return "within" if value <= budget else "**over**"


def median_time(fn, repeat: int, number: int) -> float:
    """Median over ``repeat`` rounds of the mean time of ``number`` calls (after one warm-up call)."""
    fn()
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - start) / number)
    return statistics.median(rounds)


def interleaved(fns: dict, repeat: int, number: int) -> dict:
    """Median seconds per call of each function, the functions' rounds interleaved."""
    for fn in fns.values():
        fn()
    rounds = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            rounds[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(values) for name, values in rounds.items()}


# ------------------------------------------------------------------------------------ sections

def section_notebooks(paths: list[Path], repeat: int) -> list[str]:
    lines = ["## Notebooks", "",
             f"Median wall time of {repeat} execution(s), each in a fresh kernel; peak = the kernel's maximum RSS.", "",
             "| notebook | median s | peak MiB | budget | verdict |", "|---|---:|---:|---:|---|"]
    total = 0.0
    for path in paths:
        runs = [notebook_bench.measure(path) for _ in range(repeat)]
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak_mib"] for r in runs)
        total += seconds
        lines.append(f"| {path.name} | {seconds:.1f} | {peak:.0f} | {notebook_bench.NOTEBOOK_BUDGET_S} s | "
                     f"{verdict(seconds, notebook_bench.NOTEBOOK_BUDGET_S)} |")
        print(f"  {path.name}: {seconds:.1f} s", flush=True)
    lines.append(f"| **whole course** ({len(paths)} notebooks) | {total:.1f} | | "
                 f"{notebook_bench.COURSE_BUDGET_S} s | {verdict(total, notebook_bench.COURSE_BUDGET_S)} |")
    return lines + [""]


def section_fresh_clone() -> list[str]:
    lines = ["## `make test` from a fresh clone", ""]
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        start = time.perf_counter()
        result = subprocess.run(["make", "test"], cwd=clone, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    log = ROOT / "benchmarks" / "out" / "make-test-fresh-clone.log"      # git-ignored: the phases' times are in it
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(result.stdout + result.stderr)
    status = "passed" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
    lines += ["| measured | budget | verdict | result |", "|---:|---:|---|---|",
              f"| {seconds / 60:.1f} min | {MAKE_TEST_BUDGET_S // 60} min | {verdict(seconds, MAKE_TEST_BUDGET_S)} | "
              f"{status} |", "",
              "Install included, from this machine's pip cache (no download of torch)."]
    if result.returncode:
        lines += ["", "```", *result.stdout.splitlines()[-15:], "```"]
    return lines + [""]


def section_overhead(repeat: int) -> list[str]:
    from helpers.data import digits

    data = digits()
    overhead_bench.hand_loop(data, overhead_bench.BATCH_SIZES[0], record_all=True)  # warm-up
    lines = ["## Overhead of `fit()` and `GradientMonitor`", "",
             f"MLP depth {overhead_bench.DEPTH}, width {overhead_bench.WIDTH} on the digits; median step time over "
             f"{repeat} interleaved round(s) of {overhead_bench.EPOCHS} epoch(s) (see benchmarks/overhead.py).", "",
             "| batch | ratio | measured | budget | verdict |", "|---:|---|---:|---:|---|"]
    for batch in overhead_bench.BATCH_SIZES:
        steps = {"minimal": [], "recording": [], "fit": [], "monitor": []}
        for _ in range(repeat):
            steps["minimal"] += overhead_bench.hand_loop(data, batch)
            steps["recording"] += overhead_bench.hand_loop(data, batch, record_all=True)
            steps["fit"] += overhead_bench.with_fit(data, batch)
            steps["monitor"] += overhead_bench.hand_loop(data, batch, monitor=1)
        median = {k: statistics.median(v) for k, v in steps.items()}
        fit_ratio = median["fit"] / median["recording"]
        monitor_ratio = median["monitor"] / median["minimal"]
        lines.append(f"| {batch} | `fit()` / loop recording the same | {fit_ratio:.3f} | {1 + FIT_BUDGET:.2f} | "
                     f"{verdict(fit_ratio, 1 + FIT_BUDGET)} |")
        bare = median["fit"] / median["minimal"]
        lines.append(f"| {batch} | `fit()` / minimal loop (loss only) | {bare:.3f} | – | – |")
        lines.append(f"| {batch} | step + `GradientMonitor` / step | {monitor_ratio:.3f} | {1 + MONITOR_BUDGET:.2f} | "
                     f"{verdict(monitor_ratio, 1 + MONITOR_BUDGET)} |")
    lines += ["", "Where the monitor's time goes (measured with 1 thread, batch 64, ~3 ms per plain step): the "
              "update-to-data ratio needs at least four passes over all weights per step (norm of the snapshot, "
              "difference, its norm, new snapshot: ~0.75 ms), the gradient norms one more (one multi-tensor norm, "
              "~0.1 ms), the activation statistics one stacking copy and one pass (~0.2 ms), the Python hooks "
              "~0.3 ms. The 10 % budget is below that floor for this workload; `every=10` amortises it."]
    return lines + [""]


def _grads_model(device, width: int, depth: int):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers).to(device)
    model(torch.randn(64, width, device=device)).square().mean().backward()
    return list(model.parameters())


def component_pairs(device, quick: bool) -> dict[str, tuple]:
    """{component: (ours, torch's)}: zero-argument callables doing the same work."""
    from helpers import clipping, optim

    width, depth = (32, 2) if quick else (256, 10)
    params = _grads_model(device, width, depth)
    pairs = {
        "clip_grad_norm_": (lambda: clipping.clip_grad_norm_(params, 1e9),
                            lambda: torch.nn.utils.clip_grad_norm_(params, 1e9)),
        "clip_grad_value_": (lambda: clipping.clip_grad_value_(params, 1e9),
                             lambda: torch.nn.utils.clip_grad_value_(params, 1e9)),
    }
    for name, kwargs in (("SGD", {"lr": 1e-6, "momentum": 0.9}), ("Adam", {"lr": 1e-6}),
                         ("AdamW", {"lr": 1e-6}), ("RAdam", {"lr": 1e-6})):
        ours, theirs = getattr(optim, name)(params, **kwargs), getattr(torch.optim, name)(params, **kwargs)
        pairs[f"{name}.step"] = (ours.step, theirs.step)
    batch = 16 if quick else 256
    try:
        from helpers import normalization
    except ImportError:
        normalization = None
    if normalization is not None:
        x = torch.randn(batch, width, device=device, requires_grad=True)
        for name, ours, theirs in (("BatchNorm1d", normalization.BatchNorm1d(width), torch.nn.BatchNorm1d(width)),
                                   ("LayerNorm", normalization.LayerNorm(width), torch.nn.LayerNorm(width))):
            ours, theirs = ours.to(device), theirs.to(device)
            pairs[f"{name} fwd+bwd"] = ((lambda m: lambda: m(x).sum().backward())(ours),
                                        (lambda m: lambda: m(x).sum().backward())(theirs))
    try:
        from helpers import recurrent
    except ImportError:
        recurrent = None
    if recurrent is not None:
        steps, features, hidden = (5, 4, 8) if quick else (50, 16, 64)
        xs = torch.randn(steps, batch, features, device=device)
        for name in ("RNNCell", "LSTMCell", "GRUCell"):
            ours = getattr(recurrent, name)(features, hidden).to(device)
            theirs = getattr(torch.nn, name)(features, hidden).to(device)
            pairs[f"{name} {steps} steps fwd+bwd"] = (_unroll(ours, xs, hidden, name == "LSTMCell"),
                                                      _unroll(theirs, xs, hidden, name == "LSTMCell"))
    return pairs


def _unroll(cell, xs, hidden, lstm):
    def run():
        h = xs.new_zeros(xs.shape[1], hidden)
        state = (h, h.clone()) if lstm else h
        for x in xs:
            state = cell(x, state)
        (state[0] if lstm else state).sum().backward()
    return run


def section_components(device, repeat: int, quick: bool) -> list[str]:
    pairs = component_pairs(device, quick)
    number = 1 if quick else 20
    lines = [f"## From-scratch components vs torch ({device.type})", "",
             f"Median time per call over {repeat} interleaved round(s) of {number} call(s). No budget is set "
             "for these; the ratio says what learning from readable code costs.", "",
             "| component | ours µs | torch µs | ours / torch |", "|---|---:|---:|---:|"]
    for name, (ours, theirs) in pairs.items():
        times = interleaved({"ours": ours, "torch": theirs}, repeat, number)
        if device.type == "cuda":
            torch.cuda.synchronize()
        lines.append(f"| {name} | {times['ours'] * 1e6:.0f} | {times['torch'] * 1e6:.0f} | "
                     f"{times['ours'] / times['torch']:.2f} |")
    return lines + [""]


def header(args) -> list[str]:
    return ["# Measured budgets", "",
            f"Written by `make benchmarks` (benchmarks/results.py) on {datetime.date.today().isoformat()}: "
            f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)"
            f"{', CUDA: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ', no GPU'}."
            + (" **Quick smoke run: the numbers mean nothing.**" if args.quick else ""), ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--skip-fresh-clone", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["notebooks", "fresh-clone", "overhead", "ensemble"], default=None,
                        help="measure one section and replace it in the existing report")
    args = parser.parse_args()
    if args.only is not None:
        return only_section(args)
    if args.quick:
        args.repeat = 1
        args.skip_fresh_clone = True
        overhead_bench.EPOCHS = 1
    elif args.output is None:
        args.output = ROOT / "benchmarks" / "RESULTS.md"
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))[:1 if args.quick else None]

    lines = header(args)
    print("notebooks ...", flush=True)
    lines += section_notebooks(paths, args.repeat)
    if args.skip_fresh_clone:
        lines += ["## `make test` from a fresh clone", "", "Not measured in this run (--skip-fresh-clone).", ""]
    elif shutil.which("git") and shutil.which("make"):
        print("make test from a fresh clone ...", flush=True)
        lines += section_fresh_clone()
    print("overhead ...", flush=True)
    lines += section_overhead(args.repeat)
    print("ensemble ...", flush=True)
    lines += ensemble_bench.section(ensemble_bench.measure(1 if args.quick else args.repeat))
    print("components ...", flush=True)
    lines += section_components(torch.device("cpu"), args.repeat, args.quick)
    if torch.cuda.is_available():
        lines += section_components(torch.device("cuda"), args.repeat, args.quick)
    report = "\n".join(lines)
    print(report)
    if args.output is not None:
        args.output.write_text(report)
        print(f"written to {args.output}")
    return 0


def only_section(args) -> int:
    """Re-measure one section and splice it into the report (the other sections are kept)."""
    output = args.output or ROOT / "benchmarks" / "RESULTS.md"
    if args.only == "notebooks":
        lines = section_notebooks(sorted((ROOT / "notebooks").glob("*.ipynb")), args.repeat)
    elif args.only == "fresh-clone":
        lines = section_fresh_clone()
    elif args.only == "overhead":
        lines = section_overhead(args.repeat)
    else:
        lines = ensemble_bench.section(ensemble_bench.measure(args.repeat))
    section = "\n".join(lines)
    print(section)
    text = output.read_text() if output.exists() else ""
    start = text.find(lines[0] + "\n")
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    output.write_text(text)
    print(f"section '{lines[0]}' written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
