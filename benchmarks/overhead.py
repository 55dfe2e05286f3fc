"""Overhead of the course's training loop and monitor, per training step.

Usage: python benchmarks/overhead.py [--repeat N]

* ``fit()`` against a hand-written loop doing the same work (forward, loss, backward,
  step, reading the loss); budget: at most 5 % slower;
* a step with ``GradientMonitor`` against one without; budget: at most 15 %.

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


def _model_and_optimizer():
    torch.manual_seed(0)
    model = MLP(64, 10, WIDTH, DEPTH, "relu")
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def hand_loop(data, batch: int, monitor: bool = False) -> list[float]:
    model, optimizer = _model_and_optimizer()
    watcher = GradientMonitor(model).attach() if monitor else None
    X, y = data.train
    generator = torch.Generator().manual_seed(0)
    losses = []
    clock = StepClock()
    for _ in range(EPOCHS):
        order = torch.randperm(len(X), generator=generator)
        for i in range(0, len(X), batch):
            index = order[i:i + batch]
            x_batch, y_batch = X[index], y[index]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_batch), y_batch)
            loss.backward()
            optimizer.step()
            if watcher is not None:
                watcher.step()
            losses.append(loss.item())
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
    hand_loop(data, BATCH_SIZES[0])  # warm-up
    print(f"MLP depth {DEPTH}, width {WIDTH}, digits, {torch.get_num_threads()} threads; "
          f"median step time over {args.repeat} interleaved rounds of {EPOCHS} epochs")
    for batch in BATCH_SIZES:
        steps = {"hand-written loop": [], "fit()": [], "hand loop + GradientMonitor": []}
        for _ in range(args.repeat):
            steps["hand-written loop"] += hand_loop(data, batch)
            steps["fit()"] += with_fit(data, batch)
            steps["hand loop + GradientMonitor"] += hand_loop(data, batch, monitor=True)
        median = {k: statistics.median(v) for k, v in steps.items()}
        print(f"batch {batch}:")
        for name, seconds in median.items():
            print(f"  {name:30s} {seconds * 1000:7.3f} ms/step")
        for name, budget in (("fit()", 0.05), ("hand loop + GradientMonitor", 0.15)):
            ratio = median[name] / median["hand-written loop"]
            verdict = "within" if ratio <= 1 + budget else "OVER"
            print(f"  {name} / hand-written loop: {ratio:.3f}  {verdict} (budget {1 + budget:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
