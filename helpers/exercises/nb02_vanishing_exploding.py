"""Exercises of notebook 02, vanishing and exploding gradients."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from helpers.diagnostics import layer_grad_norms
from helpers.exercises._core import NotYet, attempt, exercise, one_number, seeded
from helpers.models import MLP
from helpers.theory import chi

__all__ = ["check_critical_sigma_w", "check_layer_gradient_norms", "check_exploding_exponent"]


@exercise("2.1", "critical weight scale")
def check_critical_sigma_w(fn: Callable) -> None:
    r"""Exercise 2.1: ``fn(activation, sigma_b)`` returns a weight scale at which :math:`\chi = 1`.

    Cases: ``("sigmoid", 0.0)`` and ``("tanh", 0.3)``, neither printed in notebook 02.
    Checked with :func:`helpers.theory.chi` at the learner's :math:`\sigma_w`: 30 layers at
    that :math:`\chi` must change the gradient norm by less than a factor 2.
    """
    for activation, sigma_b in (("sigmoid", 0.0), ("tanh", 0.3)):
        sigma_w = one_number(attempt(fn, activation, sigma_b), "Return one number per case.")
        value = chi(activation, sigma_w, sigma_b=sigma_b) if 0 < sigma_w < 1e3 else math.inf
        if 0 < value and abs(15 * math.log(value)) < math.log(2):
            continue
        naive = {"sigmoid": 4.0, "tanh": 1.0}[activation]
        if math.isclose(sigma_w, naive, rel_tol=0.02):
            raise NotYet(f"σ_w = {naive:g} would give χ = 1 only if every pre-activation sat at 0, where the "
                         f"slope is largest. With this σ_w (and σ_b = {sigma_b:g}) they spread out and the "
                         f"mean squared slope is smaller: χ = {value:.2f}. Measure χ with helpers.theory.chi and "
                         "search for the σ_w where it crosses 1 (a bisection is enough).")
        raise NotYet(f"For {activation} with σ_b = {sigma_b:g}, χ = {value:.3g} at your σ_w, not close to 1. "
                     "Evaluate helpers.theory.chi(activation, σ_w, sigma_b=σ_b) on a few σ_w and bisect.")


@exercise("2.2", "per-layer gradient norms")
def check_layer_gradient_norms(fn: Callable) -> None:
    """Exercise 2.2: ``fn(model)`` returns the list of weight-gradient norms, input to output."""
    with seeded(22):
        model = MLP(6, 3, width=8, depth=4, activation="tanh")
        nn.functional.cross_entropy(model(torch.randn(16, 6)), torch.randint(0, 3, (16,))).backward()
    expected = list(layer_grad_norms(model).values())
    answer = attempt(fn, model)
    try:
        values = [float(v) for v in answer]
    except (TypeError, ValueError):
        raise NotYet("Return a list of numbers, one per Linear layer.") from None
    if len(values) != len(expected):
        raise NotYet(f"Expected {len(expected)} numbers (one per Linear layer, "
                     f"weights only), got {len(values)}.")
    if not all(math.isclose(v, e, rel_tol=1e-5) for v, e in zip(values, expected)):
        raise NotYet("Use the Frobenius norm of each Linear layer's weight.grad "
                     "(not squared, not the bias), ordered from input to output.")


@exercise("2.3", "how fast the input gradient explodes")
def check_exploding_exponent(fn: Callable) -> None:
    r"""Exercise 2.3: ``fn(depth)`` returns the exponent p of the exploding *input* gradient.

    Multiplying every weight of a bias-free ReLU MLP with ``depth`` hidden layers by k
    multiplies :math:`\partial L/\partial x` by :math:`k^p` (cross-entropy, saturated softmax):
    the input gradient passes through all ``depth + 1`` weight matrices, so p = depth + 1.
    Notebook 02 measures the *weight* gradients (p = depth), not this one.
    """
    for depth in (3, 7, 12):
        value = one_number(attempt(fn, depth))
        if math.isclose(value, depth + 1):
            continue
        if math.isclose(value, depth):
            raise NotYet("That is the exponent of the weight gradients (section 4). The gradient with respect to "
                         "the input is a different product: count the weight matrices between x and the loss.")
        raise NotYet("A bias-free ReLU net is positively homogeneous: scaling one layer's weights by k scales "
                     "everything after it by k. How many weight matrices does ∂L/∂x pass through?")
