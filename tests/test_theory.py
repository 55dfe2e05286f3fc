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
