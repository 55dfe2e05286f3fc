"""Exercises of notebook 09, optimizers."""

from __future__ import annotations

from collections.abc import Callable

import torch

from helpers.exercises._core import NotYet, attempt, close, exercise

__all__ = ["check_momentum_step", "check_adam_step"]


@exercise("9.1", "one step of SGD with momentum")
def check_momentum_step(fn: Callable) -> None:
    r"""Exercise 9.1: ``fn(param, grad, buf, lr, momentum, nesterov)`` returns ``(new_param, new_buf)``.

    :math:`b \leftarrow \mu b + g`; the step is :math:`\eta b` (or :math:`\eta(g + \mu b)` with Nesterov).
    """
    g = torch.Generator().manual_seed(91)
    for nesterov in (False, True):
        param = torch.randn(6, generator=g, dtype=torch.float64)
        grad = torch.randn(6, generator=g, dtype=torch.float64)
        buf = torch.randn(6, generator=g, dtype=torch.float64)
        new_buf = 0.9 * buf + grad
        new_param = param - 0.1 * (grad + 0.9 * new_buf if nesterov else new_buf)
        answer = attempt(fn, param.clone(), grad.clone(), buf.clone(), 0.1, 0.9, nesterov)
        if not (isinstance(answer, tuple | list) and len(answer) == 2):
            raise NotYet("Return a pair (new_param, new_buf).")
        if not close(answer[1], new_buf, tol=1e-12):
            raise NotYet("The buffer is momentum × old buffer + gradient "
                         "(PyTorch's convention, without a (1 − momentum) factor).")
        if not close(answer[0], new_param, tol=1e-12):
            raise NotYet("Without Nesterov the step is lr × new buffer; with Nesterov it "
                         "is lr × (gradient + momentum × new buffer).")


@exercise("9.2", "one step of Adam")
def check_adam_step(fn: Callable) -> None:
    r"""Exercise 9.2: ``fn(param, grad, m, v, t, lr, beta1, beta2, eps)`` returns ``(param, m, v)`` after step ``t``."""
    g = torch.Generator().manual_seed(92)
    lr, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-8
    param = torch.randn(5, generator=g, dtype=torch.float64)
    m, v = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    for t in (1, 2, 3):
        grad = torch.randn(5, generator=g, dtype=torch.float64)
        m_new = beta1 * m + (1 - beta1) * grad
        v_new = beta2 * v + (1 - beta2) * grad ** 2
        p_new = param - lr * (m_new / (1 - beta1 ** t)) / ((v_new / (1 - beta2 ** t)).sqrt() + eps)
        answer = attempt(fn, param.clone(), grad, m.clone(), v.clone(), t, lr, beta1, beta2, eps)
        if not (isinstance(answer, tuple | list) and len(answer) == 3):
            raise NotYet("Return a triple (param, m, v).")
        if not (close(answer[1], m_new, 1e-10) and close(answer[2], v_new, 1e-10)):
            raise NotYet("m and v are moving averages of the gradient and of its square, "
                         "with weights β and 1 − β.")
        if not close(answer[0], p_new, 1e-7):
            raise NotYet("Divide m by 1 − β₁ᵗ and v by 1 − β₂ᵗ (bias correction) and add "
                         "ε after the square root.")
        param, m, v = p_new, m_new, v_new
