"""Exercises of notebook 03, weight initialization."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from helpers.exercises._core import NotYet, attempt, exercise, one_number

__all__ = ["check_xavier_std", "check_he_uniform_bound", "check_orthogonal_matrix"]


def _fans(shape) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _measured_std(fill_, shape, seed: int) -> float:
    return float(fill_(torch.empty(shape), generator=torch.Generator().manual_seed(seed)).std())


@exercise("3.1", "Xavier's standard deviation for any weight shape")
def check_xavier_std(fn: Callable) -> None:
    r"""Exercise 3.1: ``fn(shape)`` returns the Xavier-normal std for a weight of that shape, gain 1.

    Shapes of Linear (out, in) and Conv2d (out, in, kh, kw) weights; the fans of a
    convolution include the receptive field :math:`k_h k_w`, so
    :math:`\text{std} = \sqrt{2/((c_{in} + c_{out})\, k_h k_w)}`. The hint reports the std
    measured on ``torch.nn.init.xavier_normal_`` for comparison.
    """
    for shape in ((64, 64), (10, 100), (32, 16, 3, 3), (8, 3, 5, 5)):
        value = one_number(attempt(fn, shape))
        fan_in, fan_out = _fans(shape)
        if math.isclose(value, math.sqrt(2 / (fan_in + fan_out)), rel_tol=1e-6):
            continue
        measured = _measured_std(torch.nn.init.xavier_normal_, shape, 31)
        if len(shape) > 2 and math.isclose(value, math.sqrt(2 / (shape[0] + shape[1])), rel_tol=1e-6):
            raise NotYet(f"For shape {shape} you ignored the kernel: torch.nn.init.xavier_normal_ gives a measured "
                         f"std of {measured:.4f}, you returned {value:.4f}. Each output of a convolution sums over "
                         "in_channels × kh × kw inputs: those are its fans.")
        if math.isclose(value, math.sqrt(shape[1] / shape[0]), rel_tol=1e-6):
            raise NotYet("That is √(d_in/d_out), a common mistake: for a square layer it is 1 whatever the width. "
                         f"Measured std of torch.nn.init.xavier_normal_ for {shape}: {measured:.4f}.")
        raise NotYet(f"For shape {shape} torch.nn.init.xavier_normal_ gives a measured std of {measured:.4f}, you "
                     f"returned {value:.4g}. Xavier's variance is 2/(fan_in + fan_out); return the std.")


def _mean_square_factor(bound: float, negative_slope: float, width: int = 256, depth: int = 30) -> float:
    """Per-layer factor of the mean square in a leaky-ReLU net with U(-bound, bound) weights (measured)."""
    g = torch.Generator().manual_seed(32)
    h = torch.randn(512, width, generator=g, dtype=torch.float64)
    first = None
    for _ in range(depth):
        w = (2 * torch.rand(width, width, generator=g, dtype=torch.float64) - 1) * bound
        h = nn.functional.leaky_relu(h @ w.T, negative_slope)
        m = float(h.square().mean())
        first = m if first is None else first
    return (m / first) ** (1 / (depth - 1)) if first > 0 and math.isfinite(m) and m > 0 else math.inf


@exercise("3.2", "He's uniform bound for leaky ReLU")
def check_he_uniform_bound(fn: Callable) -> None:
    r"""Exercise 3.2: ``fn(fan_in, fan_out, negative_slope)`` returns He's uniform bound for leaky ReLU.

    :math:`b = \sqrt{6 / ((1 + a^2)\,\text{fan\_in})}`: the variance
    :math:`2/((1+a^2)\,\text{fan\_in})` keeps the mean square of a leaky-ReLU layer with
    slope :math:`a`, and :math:`\mathcal U(-b, b)` has variance :math:`b^2/3`. A wrong
    answer gets the per-layer factor measured in a 30-layer net initialised with it.
    """
    for fan_in, fan_out, slope in ((256, 256, 0.5), (100, 10, 0.2), (3, 300, 0.0), (256, 64, 1.0)):
        value = one_number(attempt(fn, fan_in, fan_out, slope))
        if math.isclose(value, math.sqrt(6 / ((1 + slope**2) * fan_in)), rel_tol=1e-6):
            continue
        factor = _mean_square_factor(value * math.sqrt(fan_in / 256), slope) if value > 0 else 0.0
        where = (f"Measured in a 30-layer leaky-ReLU net (a = {slope:g}) with your bound: the mean square "
                 f"changes ×{factor:.3g} per layer, 1 is the target. ")
        if math.isclose(value, math.sqrt(6 / fan_in), rel_tol=1e-6) and slope > 0:
            raise NotYet(where + "That is ReLU's bound: leaky ReLU keeps (1 + a²)/2 of the mean square, not ½.")
        if math.isclose(value, math.sqrt(2 / (fan_in + fan_out)), rel_tol=1e-6):
            raise NotYet(where + "That is a common mistake for He's bound; fan_out plays no part in mode 'fan_in'.")
        raise NotYet(where + "Find the variance that keeps the signal, then the b with b²/3 equal to it.")


@exercise("3.3", "an orthogonal matrix")
def check_orthogonal_matrix(fn: Callable) -> None:
    """Exercise 3.3: ``fn(rows, cols, generator)`` returns a (semi-)orthogonal ``rows × cols`` matrix."""
    samples = []
    for rows, cols in ((5, 5), (3, 8), (8, 3)):
        answer = attempt(fn, rows, cols, torch.Generator().manual_seed(rows * 10 + cols))
        if not isinstance(answer, torch.Tensor) or tuple(answer.shape) != (rows, cols):
            raise NotYet(f"Return a tensor of shape ({rows}, {cols}).")
        w = answer.detach().double()
        gram = w @ w.T if rows <= cols else w.T @ w
        if not torch.allclose(gram, torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-4):
            raise NotYet("Q of a QR factorisation has orthonormal columns; for a wide "
                         "matrix factor its transpose and transpose Q back.")
        samples.append(w)
    other = fn(5, 5, torch.Generator().manual_seed(1234))
    if torch.equal(other.detach().double(), samples[0]):
        raise NotYet("Orthogonal, but the same for every generator: draw a Gaussian "
                     "matrix with it first (the identity is orthogonal but not random).")
