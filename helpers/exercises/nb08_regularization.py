"""Exercises of notebook 08, regularization."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from helpers.exercises._core import exercise, expect_close

__all__ = ["check_l1_gradient", "check_inverted_dropout", "check_weight_decay_step"]


@exercise("8.1", "the gradient of the L1 penalty")
def check_l1_gradient(fn: Callable) -> None:
    r"""Exercise 8.1: ``fn(w, coefficient)`` returns the gradient of :math:`\lambda \sum_i |w_i|` (0 where w = 0)."""
    g = torch.Generator().manual_seed(81)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    w[0, 0] = 0.0
    expect_close(fn, (w.clone(), 0.3), 0.3 * torch.sign(w), tol=1e-12,
                 hint="|w| has slope +1 for w > 0 and −1 for w < 0, whatever the size of w "
                      "(λ·w would be the gradient of the L2 penalty).")


@exercise("8.2", "inverted dropout")
def check_inverted_dropout(fn: Callable) -> None:
    r"""Exercise 8.2: ``fn(x, mask, p)`` applies inverted dropout with the given 0/1 ``mask``."""
    g = torch.Generator().manual_seed(82)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    for p in (0.25, 0.6):
        mask = (torch.rand(6, 4, generator=g, dtype=torch.float64) >= p).double()
        expect_close(fn, (x.clone(), mask.clone(), p), x * mask / (1 - p), tol=1e-12,
                     hint="Keep the masked units and divide them by the keep probability "
                          "1 − p, so the expected value of every unit stays x.")


@exercise("8.3", "an SGD step with weight decay")
def check_weight_decay_step(fn: Callable) -> None:
    r"""Exercise 8.3: ``fn(w, grad, lr, weight_decay)`` returns the weights after one step of ``torch.optim.SGD``."""
    g = torch.Generator().manual_seed(83)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64)
    grad = torch.randn(4, 3, generator=g, dtype=torch.float64)
    param = nn.Parameter(w.clone())
    param.grad = grad.clone()
    torch.optim.SGD([param], lr=0.1, weight_decay=0.01).step()
    expect_close(fn, (w.clone(), grad.clone(), 0.1, 0.01), param.detach(), tol=1e-12,
                 hint="Weight decay adds weight_decay · w to the gradient before the step: "
                      "w − lr · (grad + weight_decay · w).")
