"""Overhead of the course's training loop and monitor, per training step.

Usage: python benchmarks/overhead.py [--repeat N]

* ``fit()`` against a hand-written loop that records the same per-step quantities (loss,
  accuracy, gradient norm); budget: at most 5 % slower. The ratio to a minimal loop
  that records only the loss is printed too: the difference is the price of the
  statistics ``History`` keeps, not of ``fit``;
* a step with ``GradientMonitor`` against one without; budget: at most 10 %. Recording
  one step in ten (``every=10``) is printed too: it is the way to make the cost vanish.

Every step is timed on its own (a clock passed to ``fit`` as its monitor, and called at
the same point of the hand loop), and the medians of all step times are compared, so
that the pauses a shared 2-core machine inflicts on a few steps do not decide the ratio.
The variants are interleaved, ``--repeat`` rounds of 3 epochs each.

Workloads: an MLP of depth 10 and width 256 on the digits, CPU, with mini-batches of 64
and of 256. Both extras cost a fixed amount per step (a few passes over the weights:
``fit`` computes the gradient norm and keeps a copy of the weights for its divergence
guard; the monitor reads gradient and update norms and activation statistics), so their
share shrinks as the step grows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from helpers.data import digits
from helpers.diagnostics import GradientMonitor
from helpers.models import MLP
from helpers.training import fit

EPOCHS, DEPTH, WIDTH = 3, 10, 256
BATCH_SIZES = (64, 256)


class StepClock:
    """Records the time at the end of every step; ``fit`` calls ``step()`` as it would a monitor's."""

    def __init__(self):
        self.stamps = [time.perf_counter()]

    def step(self):
        self.stamps.append(time.perf_counter())

    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def trimmed_mean(values: list[float], cut: float = 0.05) -> float:
    """Mean without the fastest and slowest ``cut`` share of the values."""
    values = sorted(values)
    k = int(len(values) * cut)
    return statistics.fmean(values[k:len(values) - k])


def _model_and_optimizer():
    torch.manual_seed(0)
    model = MLP(64, 10, WIDTH, DEPTH, "relu")
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def hand_loop(data, batch: int, monitor: int = 0, record_all: bool = False) -> list[float]:
    model, optimizer = _model_and_optimizer()
    watcher = GradientMonitor(model, every=monitor).attach() if monitor else None
    params = list(model.parameters())
    X, y = data.train
    generator = torch.Generator().manual_seed(0)
    history = []
    clock = StepClock()
    for _ in range(EPOCHS):
        order = torch.randperm(len(X), generator=generator)
        for i in range(0, len(X), batch):
            index = order[i:i + batch]
            x_batch, y_batch = X[index], y[index]
            optimizer.zero_grad(set_to_none=True)
            output = model(x_batch)
            loss = F.cross_entropy(output, y_batch)
            loss.backward()
            if record_all:  # what History records: loss, accuracy, global gradient norm
                norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
                hits = (output.detach().argmax(dim=1) == y_batch).sum()
                history.append(torch.stack([loss.detach(), norm, hits.float()]).tolist())
            else:
                history.append(loss.item())
            optimizer.step()
            if watcher is not None:
                watcher.step()
            clock.step()
    return clock.durations()


def with_fit(data, batch: int) -> list[float]:
    model, optimizer = _model_and_optimizer()
    clock = StepClock()
    fit(model, data.train, epochs=EPOCHS, optimizer=optimizer, loss_fn=F.cross_entropy,
        batch_size=batch, progress=False, monitor=clock)
    return clock.durations()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    data = digits()
    hand_loop(data, BATCH_SIZES[0], record_all=True)  # warm-up
    print(f"MLP depth {DEPTH}, width {WIDTH}, digits, {torch.get_num_threads()} threads; "
          f"median step time over {args.repeat} interleaved rounds of {EPOCHS} epochs")
    for batch in BATCH_SIZES:
        steps = {"minimal loop (loss only)": [], "loop recording what fit records": [], "fit()": [],
                 "minimal loop + GradientMonitor": [], "minimal loop + GradientMonitor(every=10)": []}
        for _ in range(args.repeat):
            steps["minimal loop (loss only)"] += hand_loop(data, batch)
            steps["loop recording what fit records"] += hand_loop(data, batch, record_all=True)
            steps["fit()"] += with_fit(data, batch)
            steps["minimal loop + GradientMonitor"] += hand_loop(data, batch, monitor=1)
            steps["minimal loop + GradientMonitor(every=10)"] += hand_loop(data, batch, monitor=10)
        median = {k: statistics.median(v) for k, v in steps.items()}
        print(f"batch {batch}:")
        for name, seconds in median.items():
            print(f"  {name:42s} {seconds * 1000:7.3f} ms/step")
        # one step in ten is monitored: its cost is the mean over steps, not the median step
        amortised = {k: trimmed_mean(v) for k, v in steps.items()}
        for name, base, budget in (("fit()", "loop recording what fit records", 0.05),
                                   ("fit()", "minimal loop (loss only)", None),
                                   ("minimal loop + GradientMonitor", "minimal loop (loss only)", 0.10),
                                   ("minimal loop + GradientMonitor(every=10)", "minimal loop (loss only)", None)):
            table = amortised if "every=10" in name else median
            ratio = table[name] / table[base]
            verdict = "" if budget is None else (
                f"  {'within' if ratio <= 1 + budget else 'OVER'} (budget {1 + budget:.2f})")
            how = " (mean step)" if table is amortised else ""
            print(f"  {name} / {base}: {ratio:.3f}{how}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
