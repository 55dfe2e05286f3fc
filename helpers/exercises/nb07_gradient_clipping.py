"""Exercises of notebook 07, gradient clipping."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from helpers.exercises._core import NotYet, attempt, close, exercise, expect_close, one_number

__all__ = ["check_clip_by_value", "check_clip_by_global_norm", "check_threshold_from_norms"]


@exercise("7.1", "clip by value")
def check_clip_by_value(fn: Callable) -> None:
    r"""Exercise 7.1: ``fn(g, v)`` returns a new tensor with every entry clamped into :math:`[-v, v]`."""
    g = torch.Generator().manual_seed(71)
    for v in (0.5, 2.0):
        grad = 3 * torch.randn(50, generator=g, dtype=torch.float64)
        expect_close(fn, (grad.clone(), v), grad.clamp(-v, v), tol=1e-12,
                     hint="Entries inside [−v, v] must stay as they are; those below −v "
                          "become −v and those above v become v. Check the lower bound of your max().")


@exercise("7.2", "clip by global norm")
def check_clip_by_global_norm(fn: Callable) -> None:
    r"""Exercise 7.2: ``fn(grads, max_norm)`` returns the list of clipped gradients.

    One scale for all tensors: :math:`\min(1, c/\lVert g \rVert_2)`, :math:`\lVert g \rVert_2` over all
    entries of all tensors.
    """
    g = torch.Generator().manual_seed(72)
    grads = [torch.randn(shape, generator=g, dtype=torch.float64) * s
             for shape, s in (((4, 3), 1.0), ((3,), 10.0), ((2, 2, 2), 0.1))]
    total = math.sqrt(sum(float(t.square().sum()) for t in grads))
    for max_norm in (0.5 * total, 2 * total):
        scale = min(1.0, max_norm / total)
        answer = attempt(fn, [t.clone() for t in grads], max_norm)
        if not (isinstance(answer, list | tuple) and len(answer) == len(grads)):
            raise NotYet(f"Return a list of {len(grads)} tensors, one per gradient.")
        if not all(close(a, t * scale, tol=1e-5) for a, t in zip(answer, grads)):
            raise NotYet("Use one norm over all entries of all tensors (not one per "
                         "tensor), and scale only when it exceeds max_norm.")


@exercise("7.3", "a threshold from observed gradient norms")
def check_threshold_from_norms(fn: Callable) -> None:
    r"""Exercise 7.3: ``fn(norms, fraction)`` returns a threshold exceeded by ``fraction`` of ``norms``."""
    g = torch.Generator().manual_seed(73)
    norms = torch.exp(torch.randn(400, generator=g, dtype=torch.float64)).tolist()
    for fraction in (0.1, 0.25):
        threshold = one_number(attempt(fn, list(norms), fraction))
        fired = sum(n > threshold for n in norms) / len(norms)
        if abs(fired - fraction) > 0.01:
            raise NotYet(f"With your threshold clipping would fire on {fired:.0%} of these "
                         f"steps instead of {fraction:.0%}. Which quantile of the norms is that?")
