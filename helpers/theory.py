r"""Mean-field predictions for deep, wide networks at random initialisation.

For a net with weights :math:`W_{ij} \sim \mathcal N(0, \sigma_w^2/n)` and biases
:math:`b_i \sim \mathcal N(0, \sigma_b^2)`, the pre-activations of a wide layer are
Gaussian with a variance :math:`q_\ell` that follows the *variance map*

.. math:: q_{\ell+1} = \sigma_w^2\, \mathbb E_{z\sim\mathcal N(0,1)}\big[\varphi(\sqrt{q_\ell} z)^2\big] + \sigma_b^2 ,

and the squared norm of the back-propagated gradient changes by the factor

.. math:: \chi = \sigma_w^2\, \mathbb E_{z}\big[\varphi'(\sqrt{q^*} z)^2\big]

per layer (Poole et al. 2016; Schoenholz et al. 2017). :math:`\chi < 1`: gradients
vanish like :math:`\chi^{L/2}`; :math:`\chi > 1`: they explode; :math:`\chi = 1`: the net
is at the *edge of chaos* and gradients keep their size.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from helpers._checks import check_callable, check_int, check_real
from helpers.activations import make_activation

__all__ = ["chi", "gaussian_expectation", "preactivation_variances", "variance_map", "variance_preserving_gain"]

# The expectation rule (see _gaussian_rule): 10-point Gauss-Legendre panels on each side of 0.
_PANEL_NODES, _PANEL_WEIGHTS = np.polynomial.legendre.leggauss(10)
_PANEL_WEIGHTS = _PANEL_WEIGHTS / math.sqrt(2 * math.pi)  # the normal density's constant, folded in
_Z_EDGES = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0])  # in standard deviations
_H_EDGES = 2.0 ** np.arange(-1, 7)  # |h| = 0.5, 1, 2, ..., 64: where the activations bend


def _gaussian_rule(std: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes, weights, :math:`\sum_k w_k f(h_k) \approx \mathbb E[f(h)]`, :math:`h \sim \mathcal N(0, \text{std}^2)`.

    Composite Gauss–Legendre, 10 nodes a panel, on :math:`[-10\,\text{std}, 0]` and
    :math:`[0, 10\,\text{std}]` separately (the Gaussian mass beyond is :math:`1.5\cdot10^{-23}`),
    so a kink or a jump at 0 (ReLU, ELU, SELU and their slopes) costs no accuracy. Panel edges
    sit at whole standard deviations (the Gaussian's scale) and at :math:`|h| = 0.5, 1, 2, …, 64`
    (the activations' scale), so a slope peaked on a scale far below std (tanh' at
    :math:`q = 10^4`) is resolved as well as a broad one. At most 32 panels, 320 nodes.

    Args:
        std: the standard deviation, :math:`\ge 0` (0 puts every node at :math:`h = 0`).

    Returns:
        ``(h, w)``: float64 arrays of the same length; the weights sum to 1 (to rounding).
    """
    inner = _H_EDGES[_H_EDGES < _Z_EDGES[-1] * std] / std
    edges = np.sort(np.concatenate((_Z_EDGES, inner)))
    half = np.diff(edges)[:, None] / 2
    z = (edges[:-1, None] + half * (1 + _PANEL_NODES)).ravel()
    w = (half * _PANEL_WEIGHTS).ravel() * np.exp(-0.5 * z * z)
    return std * np.concatenate((-z, z)), np.concatenate((w, w))


def _mean_square(module: torch.nn.Module, q: float) -> float:
    r""":math:`\mathbb E[\varphi(\sqrt q z)^2]` for the activation ``module``."""
    h, w = _gaussian_rule(math.sqrt(q))
    phi = module(torch.from_numpy(h)).numpy()  # no tensor requires grad: no graph is built
    with np.errstate(over="ignore"):  # a diverging map (ReLU, large sigma_w) reaches inf quietly
        return float(w @ (phi * phi))


def _mean_square_slope(module: torch.nn.Module, q: float) -> float:
    r""":math:`\mathbb E[\varphi'(\sqrt q z)^2]` for the activation ``module`` (the slope by autograd)."""
    h, w = _gaussian_rule(math.sqrt(q))
    t = torch.tensor(h, requires_grad=True)
    (slope,) = torch.autograd.grad(module(t).sum(), t)
    slope = slope.numpy()
    return float(w @ (slope * slope))


def gaussian_expectation(fn, variance: float) -> float:
    r""":math:`\mathbb E[f(h)]` for :math:`h \sim \mathcal N(0, \text{variance})`, by quadrature.

    Composite Gauss–Legendre on each side of :math:`h = 0`, truncated at 10 standard
    deviations, with panel edges at whole standard deviations and at
    :math:`|h| = 0.5, 1, 2, …, 64`. Exact to about :math:`10^{-13}` relative (checked against
    adaptive quadrature) for :math:`f` smooth on each side of 0 — a kink or a jump *at 0* is
    fine — that grows at most polynomially and changes shape only on the scale of
    :math:`\sqrt{\text{variance}}` or of :math:`|h| \sim 0.5`–64: :math:`\varphi^2` and
    :math:`\varphi'^2` of every activation of :mod:`helpers.activations`, at any variance. A
    kink or jump elsewhere, or a feature narrower than both scales, is resolved less well.

    Args:
        fn: maps a float64 NumPy array of :math:`h` values to an array of the same shape.
        variance: :math:`\mathrm{Var}(h) \ge 0`; 0 gives :math:`f(0)`.

    Raises:
        TypeError: ``fn`` is not callable, or ``variance`` is not a real number.
        ValueError: ``variance`` is negative or not finite.

    Example:
        >>> round(gaussian_expectation(lambda h: h ** 2, 2.0), 12)
        2.0
        >>> round(gaussian_expectation(lambda h: (h > 0).astype(float), 3.0), 12)   # a jump at 0
        0.5
    """
    check_callable("fn", fn)
    check_real("variance", variance, minimum=0.0)
    h, w = _gaussian_rule(math.sqrt(variance))
    return float(w @ fn(h))


def variance_map(activation: str, q: float, sigma_w: float, sigma_b: float = 0.0) -> float:
    r"""One step of the variance map :math:`q \mapsto \sigma_w^2 \mathbb E[\varphi(\sqrt q z)^2] + \sigma_b^2`.

    The expectation by :func:`gaussian_expectation`'s rule (about :math:`10^{-13}` relative).
    """
    check_real("q", q, minimum=0.0)
    check_real("sigma_w", sigma_w, minimum=0.0)
    check_real("sigma_b", sigma_b, minimum=0.0)
    return sigma_w * sigma_w * _mean_square(make_activation(activation), q) + sigma_b * sigma_b


def preactivation_variances(activation: str, sigma_w: float, sigma_b: float = 0.0,
                            q0: float = 1.0, depth: int = 50) -> list[float]:
    r"""The variances :math:`q_1, …, q_{depth}` the variance map predicts from :math:`q_0`.

    Once the map returns its argument exactly, the remaining entries are that value (what
    iterating on would give, without the cost); once it overflows they are ``inf``.
    """
    check_int("depth", depth, minimum=1)
    check_real("q0", q0, minimum=0.0)  # else the first variance_map call would name it q
    check_real("sigma_w", sigma_w, minimum=0.0)
    check_real("sigma_b", sigma_b, minimum=0.0)
    module = make_activation(activation)
    qs, q = [], q0
    while len(qs) < depth:
        new = sigma_w * sigma_w * _mean_square(module, q) + sigma_b * sigma_b
        if new == q or not math.isfinite(new):
            qs.extend([new] * (depth - len(qs)))
        else:
            qs.append(new)
        q = new
    return qs


def chi(activation: str, sigma_w: float, sigma_b: float = 0.0, q: float | None = None) -> float:
    r"""The per-layer factor :math:`\chi = \sigma_w^2 \mathbb E[\varphi'(\sqrt q z)^2]` of the squared gradient norm.

    The expectation by :func:`gaussian_expectation`'s rule: about :math:`10^{-13}` relative for
    every activation and any :math:`q`, kinked (ReLU, ELU, SELU) or sharply peaked
    (tanh' at large :math:`q`) slopes included.

    Args:
        activation: a name accepted by :func:`helpers.activations.make_activation`.
        sigma_w: weight scale, :math:`\mathrm{Var}(W_{ij}) = \sigma_w^2 / \text{fan\_in}`.
        sigma_b: bias standard deviation.
        q: pre-activation variance; ``None`` uses the fixed point of the variance map
            reached from :math:`q_0 = 1` after 500 layers (:func:`preactivation_variances`).

    Returns:
        :math:`\chi`; gradients shrink (or grow) by :math:`\sqrt\chi` per layer.

    Raises:
        ValueError: ``activation`` unknown; ``sigma_w``, ``sigma_b`` or ``q`` negative or not
            finite; ``q`` is ``None`` and the variance map overflows within 500 layers.
        TypeError: ``sigma_w``, ``sigma_b`` or ``q`` not a real number.

    Example:
        >>> round(chi("relu", sigma_w=2 ** 0.5), 12)   # He initialisation keeps gradients' size
        1.0
        >>> chi("sigmoid", sigma_w=1.0) < 1 / 16   # sigmoid' <= 1/4
        True
    """
    check_real("sigma_w", sigma_w, minimum=0.0)
    check_real("sigma_b", sigma_b, minimum=0.0)
    module = make_activation(activation)
    if q is None:
        q = preactivation_variances(activation, sigma_w, sigma_b, q0=1.0, depth=500)[-1]
        if not math.isfinite(q):
            raise ValueError(f"the variance map diverges for {activation} with sigma_w={sigma_w}; pass q")
    check_real("q", q, minimum=0.0)
    return sigma_w * sigma_w * _mean_square_slope(module, q)


def variance_preserving_gain(activation: str) -> float:
    r"""The weight gain that keeps the second moment of unit-variance pre-activations.

    .. math:: \text{gain} = \big(\mathbb E_{z\sim\mathcal N(0,1)}[\varphi(z)^2]\big)^{-1/2},

    so that with :math:`\mathrm{Var}(W) = \text{gain}^2/n_{in}` the next layer's pre-activations
    have variance 1 again. For ReLU this is :math:`\sqrt2` (He), for leaky ReLU with slope
    :math:`a` it is :math:`\sqrt{2/(1+a^2)}`; it also gives a gain to activations that
    :func:`helpers.init.calculate_gain` does not know (ELU, GELU, Swish, Mish).

    Args:
        activation: a name accepted by :func:`helpers.activations.make_activation`.

    Example:
        >>> round(variance_preserving_gain("relu") ** 2, 6)
        2.0
    """
    return 1.0 / math.sqrt(_mean_square(make_activation(activation), 1.0))
