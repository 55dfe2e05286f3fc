"""Exercises of notebook 05, normalization."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from helpers.exercises._core import exercise, expect_close

__all__ = ["check_batch_norm_forward", "check_running_variance", "check_weight_norm"]


@exercise("5.1", "batch norm, training mode")
def check_batch_norm_forward(fn: Callable) -> None:
    r"""Exercise 5.1: ``fn(x, gamma, beta, eps)`` normalises a batch (N, C) in training mode.

    .. math:: y = \gamma \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    with :math:`\mu` and the biased :math:`\sigma^2` taken per column.
    """
    g = torch.Generator().manual_seed(51)
    for n, c in ((16, 3), (5, 7)):
        x = 3 * torch.randn(n, c, generator=g, dtype=torch.float64) + 2
        x[:, 0] = 1.5                     # a constant column: its variance is 0
        gamma = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
        beta = torch.randn(c, generator=g, dtype=torch.float64)
        eps = 0.1
        expected = nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
        expect_close(fn, (x.clone(), gamma.clone(), beta.clone(), eps), expected, tol=1e-8,
                     hint="Average over the batch (dim 0), one mean and one biased variance "
                          "per column, and divide by √(σ² + ε), not σ + ε.")


@exercise("5.2", "running variance")
def check_running_variance(fn: Callable) -> None:
    r"""Exercise 5.2: ``fn(running_var, batch, momentum)`` returns the updated running variance.

    .. math:: \hat\sigma^2 \leftarrow (1 - \alpha)\,\hat\sigma^2 + \alpha\, \tfrac{m}{m-1}\sigma^2_{batch}
    """
    g = torch.Generator().manual_seed(52)
    for m, momentum in ((4, 0.1), (10, 0.3)):
        running = torch.rand(3, generator=g, dtype=torch.float64) + 0.5
        batch = 2 * torch.randn(m, 3, generator=g, dtype=torch.float64)
        layer = nn.BatchNorm1d(3, momentum=momentum).double()
        layer.running_var.copy_(running)
        layer(batch)
        expect_close(fn, (running.clone(), batch.clone(), momentum), layer.running_var, tol=1e-10,
                     hint="momentum is the weight of the *new* batch, and the running "
                          "estimate uses the unbiased variance of the batch (divide by m − 1).")


@exercise("5.3", "weight normalization")
def check_weight_norm(fn: Callable) -> None:
    r"""Exercise 5.3: ``fn(g, v)`` returns the weight :math:`w_i = g_i v_i / \lVert v_i \rVert` (rows i)."""
    gen = torch.Generator().manual_seed(53)
    g = torch.rand(4, 1, generator=gen, dtype=torch.float64) * 3 + 0.5
    v = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    expected = g * v / v.norm(dim=1, keepdim=True)
    expect_close(fn, (g.clone(), v.clone()), expected, tol=1e-10,
                 hint="Normalise each row of v (one output unit each) to length 1, then "
                      "multiply by its learned gain g: without g every row would have length 1.")
