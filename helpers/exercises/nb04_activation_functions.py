"""Exercises of notebook 04, activation functions."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from helpers.exercises._core import NotYet, attempt, close, exercise, one_number

__all__ = ["check_leaky_relu", "check_sigmoid_derivative", "check_dead_fraction"]


@exercise("4.1", "leaky ReLU from scratch")
def check_leaky_relu(fn: Callable) -> None:
    r"""Exercise 4.1: ``fn(x, a)`` returns :math:`x` where :math:`x > 0` and :math:`a x` elsewhere."""
    g = torch.Generator().manual_seed(41)
    for a in (0.01, 0.2):
        x = torch.randn(50, generator=g, dtype=torch.float64) * 3
        answer = attempt(fn, x.clone(), a)
        if close(answer, a * x):
            raise NotYet("a·x on both branches (article 004's formula) is a linear function: "
                         "a deep net of it is one linear map. Only the negative side is scaled.")
        if not close(answer, torch.nn.functional.leaky_relu(x, a)):
            raise NotYet("Keep x where x > 0 and use a·x where x ≤ 0 (torch.where helps).")


@exercise("4.2", "the sigmoid's derivative")
def check_sigmoid_derivative(fn: Callable) -> None:
    r"""Exercise 4.2: ``fn(x)`` returns :math:`\sigma'(x) = \sigma(x)(1 - \sigma(x))`, finite for large :math:`|x|`."""
    x = torch.tensor([-1000.0, -30.0, -2.0, 0.0, 0.5, 3.0, 30.0, 1000.0], dtype=torch.float64)
    answer = attempt(fn, x.clone())
    s = torch.sigmoid(x)
    if not isinstance(answer, torch.Tensor) or not torch.isfinite(answer).all():
        raise NotYet("Return a tensor that stays finite at ±1000: e^{1000} overflows, "
                     "so write the derivative in terms of σ(x) itself.")
    if not close(answer, s * (1 - s), tol=1e-9):
        raise NotYet("Differentiate 1/(1 + e^{−x}) and express the result with σ(x).")


@exercise("4.3", "fraction of dead units")
def check_dead_fraction(fn: Callable) -> None:
    """Exercise 4.3: ``fn(h)`` returns the fraction of units (columns) of a ReLU output that are 0 for every example."""
    g = torch.Generator().manual_seed(43)
    h = torch.relu(torch.randn(64, 20, generator=g))
    h[:, :5] = 0.0           # five dead units
    h[3, 5:8] = 0.0          # zeros that do not make a unit dead
    value = one_number(attempt(fn, h.clone()), "Return one number between 0 and 1.")
    if math.isclose(value, (h == 0).float().mean().item(), rel_tol=1e-6):
        raise NotYet("That is the fraction of zero *entries*; a unit is dead only if its "
                     "whole column is zero, for every example of the batch.")
    if not math.isclose(value, 0.25, rel_tol=1e-6):
        raise NotYet("Rows are examples, columns are units: count the columns that are zero "
                     "in every row, divided by the number of columns.")
