"""Statistics of helpers.init for many shapes (Linear and Conv), searched with hypothesis.

Each scheme's sample variance must fall within a confidence bound of its formula: with
:math:`n` independent draws of variance :math:`\\sigma^2` and kurtosis :math:`\\kappa`, the sample
variance has standard error :math:`\\sigma^2\\sqrt{(\\kappa - 1)/n}` (:math:`\\kappa = 3` normal,
:math:`9/5` uniform). The bound is 6 standard errors (a false alarm about once in 10^9 draws),
and the examples are derandomized, so a failure is a bug, never bad luck.
"""

import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from helpers import init as course

Z = 6.0


@st.composite
def weight_shapes(draw, min_numel=400):
    """(out, in, *kernel) with enough entries for a meaningful variance."""
    out_features, in_features = draw(st.integers(2, 96)), draw(st.integers(2, 96))
    kernel = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
    shape = (out_features, in_features, *kernel)
    if math.prod(shape) < min_numel:
        shape = (max(out_features, math.ceil(min_numel / math.prod(shape[1:]))), *shape[1:])
    return shape


GAINS = st.sampled_from([0.5, 1.0, math.sqrt(2.0), 5 / 3])
NONLINEARITIES = st.sampled_from(["relu", "tanh", "linear", "leaky_relu", "selu"])


def _assert_statistics(w, variance, kurtosis):
    n = w.numel()
    mean, sample_var = float(w.double().mean()), float(w.double().var())
    assert abs(mean) <= Z * math.sqrt(variance / n), (mean, variance, n)
    assert abs(sample_var - variance) <= Z * variance * math.sqrt((kurtosis - 1) / n), (sample_var, variance, n)


@given(weight_shapes(), GAINS, st.integers(0, 2**31 - 1))
def test_xavier_variance(shape, gain, seed):
    fan_in, fan_out = course.fans(torch.empty(shape))
    variance = gain**2 * 2.0 / (fan_in + fan_out)
    g = torch.Generator().manual_seed(seed)
    _assert_statistics(course.xavier_uniform_(torch.empty(shape), gain, generator=g), variance, 9 / 5)
    _assert_statistics(course.xavier_normal_(torch.empty(shape), gain, generator=g), variance, 3.0)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    assert course.xavier_uniform_(torch.empty(shape), gain, generator=g).abs().max() <= bound


@given(weight_shapes(), NONLINEARITIES, st.sampled_from(["fan_in", "fan_out"]), st.floats(0.0, 0.5),
       st.integers(0, 2**31 - 1))
def test_kaiming_variance(shape, nonlinearity, mode, a, seed):
    fan_in, fan_out = course.fans(torch.empty(shape))
    gain = course.calculate_gain(nonlinearity, a if nonlinearity == "leaky_relu" else None)
    variance = gain**2 / (fan_in if mode == "fan_in" else fan_out)
    g = torch.Generator().manual_seed(seed)
    w = course.kaiming_uniform_(torch.empty(shape), a=a, mode=mode, nonlinearity=nonlinearity, generator=g)
    _assert_statistics(w, variance, 9 / 5)
    assert w.abs().max() <= math.sqrt(3 * variance) * (1 + 1e-6)
    w = course.kaiming_normal_(torch.empty(shape), a=a, mode=mode, nonlinearity=nonlinearity, generator=g)
    _assert_statistics(w, variance, 3.0)


@given(weight_shapes(min_numel=4), GAINS, st.integers(0, 2**31 - 1))
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape, gain, seed):
    w = course.orthogonal_(torch.empty(shape, dtype=torch.float64), gain,
                           generator=torch.Generator().manual_seed(seed)).reshape(shape[0], -1)
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(small, gain**2 * torch.eye(len(small), dtype=torch.float64), rtol=0, atol=1e-10)


ANY_SHAPE = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)
SCHEMES = ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]


@pytest.mark.parametrize("name", SCHEMES)
@given(shape=ANY_SHAPE, seed=st.integers(0, 2**31 - 1))
def test_any_shape_behaves_as_torch_init(name, shape, seed):
    """Scalars, 1-D tensors (no fans), zero-element tensors: the same numbers, or the same kind of error."""
    outcomes = []
    for fn in (getattr(course, name), getattr(nn.init, name)):
        w = torch.full(shape, 7.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zero-element warning, checked in test_init.py
            try:
                fn(w, generator=torch.Generator().manual_seed(seed))
                outcomes.append(("ok", w))
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                outcomes.append(("error", type(error)))
    (ours, ours_value), (theirs, theirs_value) = outcomes
    if ours_value is ValueError and theirs == "ok" and len(shape) < 2:
        return  # torch's Kaiming returns early on an empty 1-D tensor; ours refuses every 1-D tensor (no fans)
    if theirs_value is ZeroDivisionError:  # torch's Xavier divides by fan_in + fan_out = 0 for shape (0, 0, ...)
        assert ours == "ok" and ours_value.numel() == 0
        return
    assert ours == theirs, (shape, outcomes)
    if ours == "ok":
        assert torch.equal(ours_value, theirs_value)
    else:
        assert ours_value is ValueError  # ours always says which argument is wrong
