"""Exercises of notebook 10, learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Callable

from helpers.exercises._core import NotYet, attempt, exercise, one_number

__all__ = ["check_cosine_lr", "check_half_life_gamma"]


@exercise("10.1", "cosine annealing")
def check_cosine_lr(fn: Callable) -> None:
    r"""Exercise 10.1: ``fn(t, T, eta_max, eta_min)`` returns the cosine-annealed learning rate at step ``t <= T``."""
    for T, eta_max, eta_min in ((10, 0.1, 0.0), (37, 1.0, 0.05)):
        for t in range(T + 1):
            expected = eta_min + 0.5 * (eta_max - eta_min) * (1 + math.cos(math.pi * t / T))
            value = one_number(attempt(fn, t, T, eta_max, eta_min))
            if not math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12):
                raise NotYet("At t = 0 it must give eta_max and at t = T eta_min; the "
                             "cosine term 1 + cos(πt/T) runs from 2 to 0, so it needs a factor ½.")


@exercise("10.2", "decay factor for a half-life")
def check_half_life_gamma(fn: Callable) -> None:
    r"""Exercise 10.2: ``fn(k)`` returns the factor :math:`\gamma` per step that halves the rate in ``k`` steps."""
    for k in (1, 10, 250):
        gamma = one_number(attempt(fn, k))
        if not math.isclose(gamma ** k, 0.5, rel_tol=1e-9):
            raise NotYet("After k steps the rate is multiplied by γᵏ; solve γᵏ = ½.")
