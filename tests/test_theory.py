import math

import numpy as np
import pytest
import torch

from helpers.diagnostics import activation_grad_norms
from helpers.models import MLP, scale_init_
from helpers.theory import chi, gaussian_expectation, preactivation_variances, variance_map


def test_gaussian_expectation_moments():
    assert gaussian_expectation(lambda h: h**2, 2.0) == pytest.approx(2.0)
    assert gaussian_expectation(lambda h: h**4, 2.0) == pytest.approx(3 * 4.0)
    assert gaussian_expectation(lambda h: (h > 0).astype(float), 1.0) == pytest.approx(0.5)


def test_relu_closed_forms():
    assert variance_map("relu", 3.0, sigma_w=1.5, sigma_b=0.5) == pytest.approx(1.5**2 * 3.0 / 2 + 0.25)
    for sigma_w in (0.5, 1.0, math.sqrt(2), 2.0):
        assert chi("relu", sigma_w, q=1.0) == pytest.approx(sigma_w**2 / 2)


def test_tanh_small_weights_have_chi_sigma_squared():
    # the fixed point of q is 0 for sigma_w < 1, where tanh'(0) = 1
    assert chi("tanh", 0.5) == pytest.approx(0.25, rel=1e-6)


def test_sigmoid_chi_is_below_a_sixteenth_of_sigma_squared():
    for sigma_w in (0.5, 1.0, 4.0):
        assert chi("sigmoid", sigma_w) < sigma_w**2 / 16


def test_chi_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2_000_000, generator=g, dtype=torch.float64) * math.sqrt(0.7)
    expected = 1.3**2 * float(((1 - torch.tanh(z) ** 2) ** 2).mean())
    assert chi("tanh", 1.3, q=0.7) == pytest.approx(expected, rel=2e-3)


def test_preactivation_variances_iterate_the_map():
    qs = preactivation_variances("tanh", 1.5, 0.1, q0=1.0, depth=3)
    assert qs[1] == pytest.approx(variance_map("tanh", qs[0], 1.5, 0.1))
    assert len(qs) == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="sigma_w"):
        chi("tanh", -1.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        chi("not_an_activation", 1.0)
    with pytest.raises(ValueError, match="variance"):
        gaussian_expectation(np.square, -1.0)
    with pytest.raises(ValueError, match="depth"):
        preactivation_variances("relu", 1.0, depth=0)


@pytest.mark.parametrize("activation, sigma_w", [("tanh", 1.5), ("sigmoid", 4.0), ("relu", 1.2)])
def test_prediction_matches_a_wide_network(activation, sigma_w):
    torch.manual_seed(0)
    net = scale_init_(MLP(32, 10, 512, 20, activation), gain=sigma_w, bias=0.0)
    x, y = torch.randn(128, 32), torch.randint(0, 10, (128,))
    logs = np.log(list(activation_grad_norms(net, x, y).values()))
    factor = math.exp(-np.polyfit(np.arange(5, 17), logs[5:17], 1)[0])
    assert factor == pytest.approx(math.sqrt(chi(activation, sigma_w)), rel=0.05)


def test_variance_preserving_gain():
    from helpers.theory import variance_preserving_gain
    assert variance_preserving_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-6)
    assert variance_preserving_gain("identity") == pytest.approx(1.0, rel=1e-9)
    assert variance_preserving_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)), rel=1e-6)
    # Monte Carlo check for a smooth activation
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gain = variance_preserving_gain("gelu")
    assert (gain**2 * torch.nn.functional.gelu(z).square().mean()).item() == pytest.approx(1.0, abs=0.005)
    with pytest.raises(ValueError, match="activation"):
        variance_preserving_gain("not_an_activation")


def test_chi_is_not_rounded_for_callers():
    # the doctest rounds; a caller gets the full-precision value (issue 16)
    assert chi("relu", 1e-7) == pytest.approx(0.5e-14, rel=1e-9)  # rounding to 12 digits would give 0


# --- the expectations against adaptive quadrature (issue: 120 Gauss-Hermite nodes were 0.4 %-82 % off) ----

_SELU_SCALE, _SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def _sigmoid(h):
    return 0.5 * (1.0 + math.tanh(h / 2))


def _softplus(h):
    return max(h, 0.0) + math.log1p(math.exp(-abs(h)))


def _sech2(h):
    return 0.0 if abs(h) > 300 else 1.0 / math.cosh(h) ** 2


# (phi, phi') in plain float math, written independently of torch's modules
_REFERENCE = {
    "identity": (lambda h: h, lambda h: 1.0),
    "sigmoid": (_sigmoid, lambda h: _sigmoid(h) * _sigmoid(-h)),
    "tanh": (math.tanh, _sech2),
    "relu": (lambda h: max(h, 0.0), lambda h: float(h > 0)),
    "leaky_relu": (lambda h: h if h > 0 else 0.01 * h, lambda h: 1.0 if h > 0 else 0.01),
    "elu": (lambda h: h if h > 0 else math.expm1(h), lambda h: 1.0 if h > 0 else math.exp(h)),
    "selu": (lambda h: _SELU_SCALE * (h if h > 0 else _SELU_ALPHA * math.expm1(h)),
             lambda h: _SELU_SCALE * (1.0 if h > 0 else _SELU_ALPHA * math.exp(h))),
    "gelu": (lambda h: h * 0.5 * math.erfc(-h / math.sqrt(2)),
             lambda h: 0.5 * math.erfc(-h / math.sqrt(2)) + h * math.exp(-h * h / 2) / math.sqrt(2 * math.pi)),
    "swish": (lambda h: h * _sigmoid(h), lambda h: _sigmoid(h) * (1 + h * _sigmoid(-h))),
    "mish": (lambda h: h * math.tanh(_softplus(h)),
             lambda h: math.tanh(_softplus(h)) + h * _sech2(_softplus(h)) * _sigmoid(h)),
}


def _adaptive_expectation(f, q):
    """E[f(sqrt(q) z)] by scipy's adaptive quad, each side of 0 apart, split where f bends at small |h|."""
    integrate = pytest.importorskip("scipy.integrate")
    s = math.sqrt(q)
    edges = [0.0, *sorted(c / s for c in (0.5, 2.0, 8.0, 32.0, 128.0) if c / s < 12.0), 12.0]
    pieces = [(lambda z, sign=sign: f(sign * s * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), a, b)
              for sign in (-1.0, 1.0) for a, b in zip(edges[:-1], edges[1:])]
    rough = sum(integrate.quad(*piece, epsrel=1e-6)[0] for piece in pieces)
    # pieces far below the total (a sigmoid's tail) need only an absolute accuracy
    return sum(integrate.quad(*piece, epsabs=1e-15 * abs(rough), epsrel=1e-12, limit=200)[0] for piece in pieces)


@pytest.mark.parametrize("activation", sorted(_REFERENCE))
@pytest.mark.parametrize("q", [1e-4, 0.5, 1.0, 12.5, 100.0, 1e4])
def test_variance_map_and_chi_match_adaptive_quadrature(activation, q):
    phi, slope = _REFERENCE[activation]
    assert variance_map(activation, q, sigma_w=1.0) == pytest.approx(
        _adaptive_expectation(lambda h: phi(h) ** 2, q), rel=1e-10)
    assert chi(activation, 1.0, q=q) == pytest.approx(_adaptive_expectation(lambda h: slope(h) ** 2, q), rel=1e-10)


@pytest.mark.parametrize("activation, q", [("selu", 1.0), ("elu", 1.0), ("tanh", 100.0), ("gelu", 100.0),
                                           ("swish", 100.0), ("relu", 3.0), ("tanh", 1e6)])
def test_chi_matches_30_digit_quadrature(activation, q):
    # the hostile tester's cases: 0.8 %, 0.4 %, 82 %, 2-5 % off with 120 Gauss-Hermite nodes
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    slope = {"selu": lambda h: _SELU_SCALE * (1 if h > 0 else _SELU_ALPHA * mp.exp(h)),
             "elu": lambda h: 1 if h > 0 else mp.exp(h), "tanh": lambda h: mp.sech(h) ** 2,
             "gelu": lambda h: mp.ncdf(h) + h * mp.npdf(h), "relu": lambda h: 1 if h > 0 else 0,
             "swish": lambda h: (1 + mp.exp(-h)) ** -1 * (1 + h * (1 + mp.exp(h)) ** -1)}[activation]
    s = mp.sqrt(q)
    edges = sorted({0, *(sign * c / s for c in (0.5, 2, 8, 32) for sign in (-1, 1)), *range(-12, 13)})
    expected = mp.quad(lambda z: slope(s * z) ** 2 * mp.npdf(z), [-mp.inf, *edges, mp.inf])
    assert chi(activation, 1.0, q=q) == pytest.approx(float(expected), rel=1e-11)


@pytest.mark.parametrize("activation, sigma_w, sigma_b", [("tanh", 4.0, 0.0), ("tanh", 1.5, 0.3),
                                                           ("sigmoid", 4.0, 0.0), ("selu", 1.2, 0.1)])
def test_chi_at_its_default_q_is_taken_at_the_true_fixed_point(activation, sigma_w, sigma_b):
    phi, slope = _REFERENCE[activation]
    q = preactivation_variances(activation, sigma_w, sigma_b, depth=500)[-1]
    mapped = sigma_w**2 * _adaptive_expectation(lambda h: phi(h) ** 2, q) + sigma_b**2
    assert mapped == pytest.approx(q, rel=1e-10)
    expected = sigma_w**2 * _adaptive_expectation(lambda h: slope(h) ** 2, q)
    assert chi(activation, sigma_w, sigma_b) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("variance", [0.0, 1e-12, 1e-4, 1.0, 3.7, 1e4, 1e10])
def test_gaussian_expectation_of_moments_kinks_and_jumps(variance):
    std = math.sqrt(variance)
    assert gaussian_expectation(lambda h: (h > 0).astype(float), variance) == pytest.approx(
        0.5 if variance else 0.0, rel=1e-12)
    assert gaussian_expectation(np.abs, variance) == pytest.approx(std * math.sqrt(2 / math.pi), rel=1e-12)
    assert gaussian_expectation(np.square, variance) == pytest.approx(variance, rel=1e-12)
    assert gaussian_expectation(lambda h: h**4, variance) == pytest.approx(3 * variance**2, rel=1e-12)
    assert gaussian_expectation(lambda h: np.maximum(h, 0.0) ** 2, variance) == pytest.approx(variance / 2, rel=1e-12)


def test_preactivation_variances_stop_early_only_where_the_map_is_stationary():
    for activation, sigma_w, sigma_b in [("tanh", 1.5, 0.0), ("relu", math.sqrt(2), 0.0), ("tanh", 1.0, 0.0),
                                         ("sigmoid", 4.0, 0.2)]:
        q, iterated = 1.0, []
        for _ in range(300):
            q = variance_map(activation, q, sigma_w, sigma_b)
            iterated.append(q)
        assert preactivation_variances(activation, sigma_w, sigma_b, depth=300) == iterated


def test_an_overflowing_variance_map_gives_inf_quietly_and_chi_asks_for_q():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qs = preactivation_variances("relu", 10.0, depth=300)
        assert math.isinf(qs[-1]) and all(math.isfinite(q) for q in qs[:100])
        with pytest.raises(ValueError, match="diverges for relu with sigma_w=10.0; pass q"):
            chi("relu", 10.0)
        assert chi("relu", 10.0, q=1.0) == pytest.approx(50.0, rel=1e-12)
