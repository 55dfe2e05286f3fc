"""Exercises of notebook 13, the capstone: diagnose, then fix."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from helpers.exercises._core import NotYet, attempt, exercise

__all__ = ["check_update_ratios", "check_gradient_verdict"]


@exercise("13.1", "update-to-data ratios")
def check_update_ratios(fn: Callable) -> None:
    r"""Exercise 13.1: ``fn(before, after)`` returns :math:`\lVert W' - W \rVert_F / \lVert W \rVert_F` per tensor.

    ``before`` and ``after`` are lists of weight tensors (any shapes) before and after one
    optimizer step; the answer is a list of floats, one per tensor.
    """
    g = torch.Generator().manual_seed(131)
    before = [torch.randn(shape, generator=g, dtype=torch.float64)
              for shape in ((6, 4), (3, 2, 3, 3), (5,))]
    # one small, one large and one medium step, so that dividing by the wrong norm shows
    after = [w + scale * torch.randn(w.shape, generator=g, dtype=torch.float64)
             for w, scale in zip(before, (1e-3, 2.0, 0.3))]
    expected = [float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)) for b, a in zip(before, after)]
    answer = attempt(fn, [w.clone() for w in before], [w.clone() for w in after])
    try:
        values = [float(v) for v in answer]
    except (TypeError, ValueError):
        raise NotYet("Return a list of numbers, one per weight tensor.") from None
    if len(values) != len(expected):
        raise NotYet(f"Return {len(expected)} numbers, one per weight tensor.")
    if not all(math.isclose(v, e, rel_tol=1e-6) for v, e in zip(values, expected)):
        raise NotYet("Take the Frobenius norm of the whole change W_after − W_before (not the "
                     "change of the norms, not a mean of absolute values), and divide by the norm of the "
                     "weights *before* the step.")


_VERDICT_CASES = [
    ({"fc1": 1e-9, "fc2": 1e-5, "fc3": 1e-2, "out": 0.5}, "vanishing"),
    ({"fc1": 40.0, "fc2": 3.0, "fc3": 0.5, "out": 0.02}, "exploding"),
    ({"fc1": 0.3, "fc2": 0.4, "fc3": 0.6, "out": 0.5}, "healthy"),
    # a dip in the middle does not make the first-to-last ratio small
    ({"fc1": 0.2, "fc2": 1e-5, "fc3": 0.3, "out": 0.4}, "healthy"),
    ({"fc1": float("nan"), "fc2": 1.0, "out": 0.5}, "exploding"),
    ({"fc1": 0.1, "fc2": float("inf"), "out": 0.5}, "exploding"),
    # layer names are not in alphabetical order: use the order given
    ({"input": 5e-5, "hidden": 0.01, "classifier": 0.1}, "vanishing"),
    ({"conv1": 0.01, "out": 5.0}, "healthy"),
]


@exercise("13.2", "a verdict from per-layer gradient norms")
def check_gradient_verdict(fn: Callable) -> None:
    r"""Exercise 13.2: ``fn(norms)`` returns ``"vanishing"``, ``"exploding"`` or ``"healthy"``.

    ``norms`` maps layer names to gradient norms, from the input layer to the output
    layer. With :math:`r` = first / last: ``"exploding"`` if any norm is NaN or inf or
    :math:`r > 10^3`; ``"vanishing"`` if :math:`r < 10^{-3}`; ``"healthy"`` otherwise.
    """
    for norms, expected in _VERDICT_CASES:
        answer = attempt(fn, dict(norms))
        if answer == expected:
            continue
        if any(not math.isfinite(v) for v in norms.values()):
            hint = "A NaN or inf gradient norm means the gradient blew up: check for it first."
        else:
            hint = ("Compare the first layer's norm with the last layer's, in the order of the dict "
                    "(input first), as first / last.")
        raise NotYet(f"For {norms} the verdict is {expected!r}, you said {answer!r}. {hint}")
