"""Exercises of notebook 01, gradient descent and backpropagation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from helpers.exercises._core import NotYet, attempt, close, exercise, one_number

__all__ = ["check_quadratic_gradient", "check_largest_stable_lr", "check_linear_backward"]


def _spd_matrix(n: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eigenvalues = torch.linspace(0.5, 5.0, n, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T


@exercise("1.1", "gradient of a quadratic")
def check_quadratic_gradient(fn: Callable) -> None:
    r"""Exercise 1.1: ``fn(A, b, theta)`` returns the gradient of the quadratic, for any square ``A``.

    .. math:: \nabla_\theta \big(\tfrac12 \theta^\top A \theta - b^\top \theta\big)
              = \tfrac12 (A + A^\top)\,\theta - b

    Notebook 01 prints the symmetric case (:math:`A\theta - b`); the checker uses
    matrices that are *not* symmetric, so copying that formula is not enough.
    """
    g = torch.Generator().manual_seed(11)
    for n in (2, 5):
        A = _spd_matrix(n, g) + torch.randn(n, n, generator=g, dtype=torch.float64)  # not symmetric
        b = torch.randn(n, generator=g, dtype=torch.float64)
        theta = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
        (0.5 * theta @ A @ theta - b @ theta).backward()
        answer = attempt(fn, A, b, theta.detach().clone())
        if not close(answer, theta.grad):
            if close(answer, A @ theta.detach() - b):
                raise NotYet("Aθ − b is the gradient only when A is symmetric, and this A is "
                             "not. Write ½θᵀAθ as ½Σᵢⱼ θᵢAᵢⱼθⱼ and differentiate with respect to θₖ: "
                             "θₖ appears once as the row index and once as the column index.")
            raise NotYet("Differentiate each term: ½θᵀAθ (write it as ½Σᵢⱼ θᵢAᵢⱼθⱼ; A need "
                         "not be symmetric) and bᵀθ, whose gradient is b. Return a tensor shaped like theta.")


@exercise("1.2", "largest stable learning rate with momentum")
def check_largest_stable_lr(fn: Callable) -> None:
    r"""Exercise 1.2: ``fn(A, beta)`` returns the learning rate above which gradient descent with
    heavy-ball momentum :math:`\beta` diverges on the quadratic with Hessian A.

    The iteration :math:`\theta_{t+1} = \theta_t - \eta\nabla L(\theta_t) + \beta(\theta_t - \theta_{t-1})`
    (PyTorch's ``SGD(momentum=beta)``) multiplies the pair :math:`(e_t, e_{t-1})` along an eigenvector
    with eigenvalue :math:`\lambda` by :math:`\begin{pmatrix} 1 + \beta - \eta\lambda & -\beta \\ 1 & 0\end{pmatrix}`;
    for :math:`0 \le \beta < 1` both of its eigenvalues lie inside the unit circle iff
    :math:`0 < \eta\lambda < 2(1 + \beta)`, so the limit is :math:`2(1 + \beta)/\lambda_{max}(A)`
    (Polyak 1964). Notebook 01 derives only :math:`\beta = 0`; the checker also tries 0.5 and 0.9.
    """
    g = torch.Generator().manual_seed(12)
    for n in (2, 6):
        A = _spd_matrix(n, g)
        lam = float(torch.linalg.eigvalsh(A).max())
        for beta in (0.0, 0.5, 0.9):
            expected = 2.0 * (1.0 + beta) / lam
            value = one_number(attempt(fn, A.clone(), beta))
            if math.isclose(value, expected, rel_tol=1e-6):
                continue
            if beta > 0 and math.isclose(value, 2.0 / lam, rel_tol=1e-6):
                raise NotYet(f"2/λmax is plain gradient descent's limit (β = 0); with momentum "
                             f"β = {beta} it changes. Along an eigenvector write the error recurrence "
                             "e_{t+1} = (1 + β − ηλ) e_t − β e_{t−1} as a 2×2 matrix acting on (e_t, e_{t−1}) "
                             "and find the η at which one of its eigenvalues reaches −1.")
            raise NotYet(f"Wrong for β = {beta}. The 2×2 matrix [[1 + β − ηλ, −β], [1, 0]] "
                         "has determinant β < 1, so it turns unstable when an eigenvalue passes −1: put z = −1 "
                         "into its characteristic polynomial z² − (1 + β − ηλ) z + β and solve for η, for the "
                         "largest λ.")


@exercise("1.3", "backward pass of a linear layer")
def check_linear_backward(fn: Callable) -> None:
    r"""Exercise 1.3: ``fn(x, W, b, grad_out)`` returns ``(grad_x, grad_W, grad_b)`` for :math:`y = x W^\top + b`."""
    g = torch.Generator().manual_seed(13)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(7, 3, generator=g, dtype=torch.float64)
    (x @ W.T + b).backward(grad_out)
    answer = attempt(fn, x.detach(), W.detach(), b.detach(), grad_out)
    if not (isinstance(answer, tuple | list) and len(answer) == 3):
        raise NotYet("Return a tuple (grad_x, grad_W, grad_b).")
    for name, got, want in zip(("grad_x", "grad_W", "grad_b"), answer, (x.grad, W.grad, b.grad)):
        if not close(got, want):
            raise NotYet(f"{name} is wrong: each gradient has the shape of its "
                         "variable, and the bias gradient sums over the batch.")
