"""Exercises of notebook 06, residual (and dense) connections."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from helpers.exercises._core import exercise, expect_close, seeded

__all__ = ["check_residual_block", "check_residual_jacobian"]


@exercise("6.1", "a residual block")
def check_residual_block(fn: Callable) -> None:
    r"""Exercise 6.1: ``fn(x, branch, projection)`` returns :math:`P x + F(x)`.

    :math:`P` is ``projection``, or the identity when it is None.
    """
    with seeded(61):
        cases = [(nn.Sequential(nn.Tanh(), nn.Linear(5, 5)), None, 5),
                 (nn.Sequential(nn.Tanh(), nn.Linear(5, 3)), nn.Linear(5, 3, bias=False), 5)]
        inputs = [torch.randn(4, width, dtype=torch.float64) for *_, width in cases]
    for (branch, projection, _), x in zip(cases, inputs):
        branch.double()
        if projection is not None:
            projection.double()
        with torch.no_grad():
            expected = (x if projection is None else projection(x)) + branch(x)
            expect_close(fn, (x.clone(), branch, projection), expected, tol=1e-10,
                         hint="Apply F once, to x, and add the skip: x itself, or projection(x) "
                              "when the branch changes the width.")


def _linear_residual_stack(matrices, h):
    for m in matrices:
        h = h + m @ h
    return h


@exercise("6.2", "the Jacobian of a residual stack")
def check_residual_jacobian(fn: Callable) -> None:
    r"""Exercise 6.2: ``fn(jacobians)`` returns :math:`\partial h_L / \partial h_0 = (I + J_L) \cdots (I + J_1)`.

    ``jacobians[l]`` is the Jacobian of the branch of block :math:`l + 1` (applied first for ``l = 0``).
    """
    g = torch.Generator().manual_seed(62)
    matrices = [0.3 * torch.randn(4, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    expected = torch.autograd.functional.jacobian(
        lambda h: _linear_residual_stack(matrices, h), torch.randn(4, dtype=torch.float64))
    expect_close(fn, ([m.clone() for m in matrices],), expected, tol=1e-10,
                 hint="Each block contributes I + J (the skip gives I), and the chain rule "
                      "puts the last block on the left: (I + J_3)(I + J_2)(I + J_1).")
