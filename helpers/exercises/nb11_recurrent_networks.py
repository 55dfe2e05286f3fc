"""Exercises of notebook 11, recurrent networks: gradients through time."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from helpers.exercises._core import NotYet, attempt, close, exercise, expect_close, one_number

__all__ = ["check_gru_step", "check_bptt", "check_growth_bound"]


@exercise("11.1", "a GRU step from scratch")
def check_gru_step(fn: Callable) -> None:
    r"""Exercise 11.1: ``fn(x, h, weight_ih, weight_hh, bias_ih, bias_hh)`` returns :math:`h'` of a GRU.

    Gate order r, z, n (torch's); :math:`n = \tanh(x W_{in}^\top + b_{in} + r \odot (h W_{hn}^\top + b_{hn}))`,
    :math:`h' = (1 - z) \odot n + z \odot h`. Checked against :class:`torch.nn.GRUCell`.
    """
    g = torch.Generator().manual_seed(111)
    for batch, input_size, hidden_size in ((4, 3, 5), (2, 6, 2)):
        reference = nn.GRUCell(input_size, hidden_size, dtype=torch.float64)   # its init is overwritten below
        with torch.no_grad():
            for p in reference.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        x = torch.randn(batch, input_size, generator=g, dtype=torch.float64)
        h = torch.randn(batch, hidden_size, generator=g, dtype=torch.float64)
        with torch.no_grad():
            expected = reference(x, h)
        weights = [p.detach().clone() for p in (reference.weight_ih, reference.weight_hh,
                                                 reference.bias_ih, reference.bias_hh)]
        expect_close(fn, (x, h, *weights), expected, tol=1e-8,
                     hint="Split x W_ihᵀ + b_ih and h W_hhᵀ + b_hh into r, z, n blocks with "
                          ".chunk(3, dim=1) (order r, z, n); r multiplies the whole recurrent part of n, bias "
                          "b_hn included; z weights the OLD state: h' = (1 − z)·n + z·h.")


def _tanh_rnn_weight_grad(weight_ih, weight_hh, bias, xs, losses):
    """The states of the tanh RNN started at 0, and the gradient of sum_t <state_t, losses[t]> with respect to W_hh."""
    states, h = [], torch.zeros(xs.shape[1], weight_hh.shape[0], dtype=torch.float64)
    for x in xs:
        h = torch.tanh(x @ weight_ih.T + h @ weight_hh.T + bias)
        states.append(h)
    (grad,) = torch.autograd.grad(sum((s * d).sum() for s, d in zip(states, losses)), weight_hh)
    return [s.detach() for s in states], grad


@exercise("11.2", "back-propagation through time with a loss at every step")
def check_bptt(fn: Callable) -> None:
    r"""Exercise 11.2: ``fn(weight_hh, states, grads)`` returns :math:`\partial L/\partial W_{hh}` (loss at every step).

    The tanh RNN :math:`h_t = \tanh(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)` starts at :math:`h_0 = 0`;
    the loss is :math:`L = \sum_t \ell_t(h_t)` and ``grads[t]`` is :math:`\partial \ell_t/\partial h_t`.
    The gradient that reaches :math:`h_t` is its own loss's plus what comes back from step :math:`t+1`,
    :math:`\delta_t = g_t + (\delta_{t+1} \odot (1 - h_{t+1}^2)) W_{hh}`, and
    :math:`\partial L/\partial W_{hh} = \sum_t (\delta_t \odot (1 - h_t^2))^\top h_{t-1}` (rows are batch
    entries). Checked against autograd.
    """
    g = torch.Generator().manual_seed(112)
    batch, input_size, hidden_size, steps = 3, 2, 4, 6
    weight_ih = torch.randn(hidden_size, input_size, generator=g, dtype=torch.float64)
    weight_hh = (torch.randn(hidden_size, hidden_size, generator=g, dtype=torch.float64) * 0.7).requires_grad_(True)
    bias = torch.randn(hidden_size, generator=g, dtype=torch.float64) * 0.1
    xs = torch.randn(steps, batch, input_size, generator=g, dtype=torch.float64)
    grads = [torch.randn(batch, hidden_size, generator=g, dtype=torch.float64) for _ in range(steps)]
    states, expected = _tanh_rnn_weight_grad(weight_ih, weight_hh, bias, xs, grads)
    _, last_only = _tanh_rnn_weight_grad(weight_ih, weight_hh, bias, xs,
                                         [torch.zeros_like(d) for d in grads[:-1]] + [grads[-1]])
    answer = attempt(fn, weight_hh.detach().clone(), [s.clone() for s in states], [d.clone() for d in grads])
    if not (isinstance(answer, torch.Tensor) and answer.shape == expected.shape):
        raise NotYet(f"Return one tensor of W_hh's shape {tuple(expected.shape)}: ∂L/∂W_hh.")
    if close(answer, last_only, 1e-5):
        raise NotYet("That is the gradient of the last step's loss alone. Every step's loss adds "
                     "its own gradient where it reads the state: δ_t = grads[t] + (δ_{t+1} ⊙ (1 − h_{t+1}²)) W_hh.")
    if close(answer.T, expected, 1e-5):
        raise NotYet("Transposed: entry (i, j) pairs unit i's pre-activation gradient with the "
                     "previous state's unit j, Σ_t (δ_t ⊙ (1 − h_t²))ᵀ @ h_{t−1}.")
    if not close(answer, expected, 1e-5):      # float32's precision: an answer summed in float32 is right
        raise NotYet("Walk back from step T: δ_t = grads[t] + (δ_{t+1} ⊙ (1 − h_{t+1}²)) @ W_hh; "
                     "each step adds (δ_t ⊙ (1 − h_t²))ᵀ @ h_{t−1} to ∂L/∂W_hh, with h_0 = 0 (the state "
                     "BEFORE the step multiplies W_hh).")


@exercise("11.3", "the largest growth per step of a sigmoid RNN")
def check_growth_bound(fn: Callable) -> None:
    r"""Exercise 11.3: ``fn(weight_hh)`` returns the tightest bound on one step's gradient growth, sigmoid units.

    For :math:`h_t = \sigma(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)` with the logistic :math:`\sigma`,
    :math:`\partial h_t/\partial h_{t-1} = \mathrm{diag}(h_t(1-h_t)) W_{hh}` and :math:`h(1-h) \le 1/4`
    (equality at pre-activation 0), so the smallest bound over all states is
    :math:`\sigma_{max}(W_{hh})/4`. Checked on non-normal matrices, whose spectral radius is far below
    their largest singular value.
    """
    g = torch.Generator().manual_seed(113)
    for n in (3, 8):
        shift = torch.diag(torch.full((n - 1,), 2.0, dtype=torch.float64), 1)
        W = torch.triu(torch.randn(n, n, generator=g, dtype=torch.float64)) * 0.5 + shift
        sigma_max = float(torch.linalg.matrix_norm(W, ord=2))
        value = one_number(attempt(fn, W.clone()))
        radius = float(torch.linalg.eigvals(W).abs().max())
        if any(math.isclose(value, r, rel_tol=1e-6) for r in (radius, radius / 4)):
            raise NotYet("That uses the spectral radius (largest |eigenvalue|): it governs "
                         "Wᵗ for large t, but one step of a non-normal matrix can stretch a vector more.")
        if math.isclose(value, sigma_max, rel_tol=1e-6):
            raise NotYet("That is the tanh RNN's bound, where |tanh'| ≤ 1. The logistic "
                         "sigmoid's slope is σ'(z) = σ(z)(1 − σ(z)): how large can it get?")
        if not math.isclose(value, sigma_max / 4, rel_tol=1e-6):
            raise NotYet("Bound the slope of the sigmoid over all pre-activations, then the "
                         "largest stretch of W_hh: its largest singular value (not the Frobenius norm).")
