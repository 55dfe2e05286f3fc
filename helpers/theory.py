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

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(120)
_WEIGHTS = _WEIGHTS / math.sqrt(2 * math.pi)  # now sum to 1: expectations under N(0, 1)


def _phi_and_slope(activation: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    module = make_activation(activation)
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    out = module(t)
    (slope,) = torch.autograd.grad(out.sum(), t)
    return out.detach().numpy(), slope.numpy()


def gaussian_expectation(fn, variance: float) -> float:
    r""":math:`\mathbb E[f(h)]` for :math:`h \sim \mathcal N(0, \text{variance})`, by Gauss–Hermite quadrature.

    120 nodes, none at 0 (where ReLU's slope jumps), so step-like integrands come out
    right too.

    Example:
        >>> round(gaussian_expectation(lambda h: h ** 2, 2.0), 6)
        2.0
    """
    check_callable("fn", fn)
    check_real("variance", variance, minimum=0.0)
    return float(np.sum(_WEIGHTS * fn(math.sqrt(variance) * _NODES)))


def variance_map(activation: str, q: float, sigma_w: float, sigma_b: float = 0.0) -> float:
    r"""One step of the variance map :math:`q \mapsto \sigma_w^2 \mathbb E[\varphi(\sqrt q z)^2] + \sigma_b^2`."""
    check_real("q", q, minimum=0.0)
    check_real("sigma_w", sigma_w, minimum=0.0)
    check_real("sigma_b", sigma_b, minimum=0.0)
    phi, _ = _phi_and_slope(activation, math.sqrt(q) * _NODES)
    return sigma_w**2 * float(np.sum(_WEIGHTS * phi**2)) + sigma_b**2


def preactivation_variances(activation: str, sigma_w: float, sigma_b: float = 0.0,
                            q0: float = 1.0, depth: int = 50) -> list[float]:
    """The variances :math:`q_1, …, q_{depth}` the variance map predicts from :math:`q_0`."""
    check_int("depth", depth, minimum=1)
    check_real("q0", q0, minimum=0.0)  # else the first variance_map call would name it q
    qs, q = [], q0
    for _ in range(depth):
        q = variance_map(activation, q, sigma_w, sigma_b)
        qs.append(q)
    return qs


def chi(activation: str, sigma_w: float, sigma_b: float = 0.0, q: float | None = None) -> float:
    r"""The per-layer factor :math:`\chi = \sigma_w^2 \mathbb E[\varphi'(\sqrt q z)^2]` of the squared gradient norm.

    Args:
        activation: a name accepted by :func:`helpers.activations.make_activation`.
        sigma_w: weight scale, :math:`\mathrm{Var}(W_{ij}) = \sigma_w^2 / \text{fan\_in}`.
        sigma_b: bias standard deviation.
        q: pre-activation variance; ``None`` uses the fixed point of the variance map
            reached from :math:`q_0 = 1` after 500 layers.

    Returns:
        :math:`\chi`; gradients shrink (or grow) by :math:`\sqrt\chi` per layer.

    Example:
        >>> round(chi("relu", sigma_w=2 ** 0.5), 12)   # He initialisation keeps gradients' size
        1.0
        >>> chi("sigmoid", sigma_w=1.0) < 1 / 16   # sigmoid' <= 1/4
        True
    """
    check_real("sigma_w", sigma_w, minimum=0.0)
    if q is None:
        q = preactivation_variances(activation, sigma_w, sigma_b, q0=1.0, depth=500)[-1]
        if not math.isfinite(q):
            raise ValueError(f"the variance map diverges for {activation} with sigma_w={sigma_w}; pass q")
    check_real("q", q, minimum=0.0)
    _, slope = _phi_and_slope(activation, math.sqrt(q) * _NODES)
    return sigma_w**2 * float(np.sum(_WEIGHTS * slope**2))


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
    phi, _ = _phi_and_slope(activation, _NODES)
    return 1.0 / math.sqrt(float(np.sum(_WEIGHTS * phi**2)))
