"""Invariances of helpers.normalization for random shapes and transforms, searched with hypothesis.

Skipped until helpers.normalization exists (it lands with the normalization notebook).
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

normalization = pytest.importorskip("helpers.normalization")

EPS = 1e-10  # so small that eps / variance does not blur the invariances below
SEEDS = st.integers(0, 2**31 - 1)
SCALES = st.floats(0.1, 10.0)


def _randn(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@st.composite
def batch_norm_inputs(draw):
    """(layer, x): BatchNorm1d on (N, C) or (N, C, L), BatchNorm2d on (N, C, H, W)."""
    channels = draw(st.integers(1, 6))
    batch = draw(st.integers(2, 8))
    kind = draw(st.sampled_from(["1d", "1d-seq", "2d"]))
    if kind == "1d":
        layer, shape = normalization.BatchNorm1d(channels, eps=EPS), (batch, channels)
    elif kind == "1d-seq":
        layer, shape = normalization.BatchNorm1d(channels, eps=EPS), (batch, channels, draw(st.integers(1, 5)))
    else:
        layer = normalization.BatchNorm2d(channels, eps=EPS)
        shape = (batch, channels, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return layer.double().train(), _randn(shape, draw(SEEDS))


@given(batch_norm_inputs(), SEEDS)
def test_batch_norm_in_training_ignores_a_per_feature_affine_change_of_its_input(layer_and_x, seed):
    layer, x = layer_and_x
    g = torch.Generator().manual_seed(seed)
    channels = x.shape[1]
    shape = [1, channels] + [1] * (x.dim() - 2)
    a = (0.1 + 9.9 * torch.rand(channels, generator=g, dtype=torch.float64)).reshape(shape)
    b = (10 * torch.randn(channels, generator=g, dtype=torch.float64)).reshape(shape)
    torch.testing.assert_close(layer(a * x + b), layer(x), rtol=1e-6, atol=1e-6)


@given(batch_norm_inputs())
def test_batch_norm_output_has_zero_mean_and_unit_variance_per_feature(layer_and_x):
    layer, x = layer_and_x
    y = layer(x)
    dims = [0, *range(2, x.dim())]
    var, mean = torch.var_mean(y, dim=dims, correction=0)
    torch.testing.assert_close(mean, torch.zeros_like(mean), rtol=0, atol=1e-8)
    constant = torch.var(x, dim=dims, correction=0) < 1e-12  # a channel with one value stays at 0
    torch.testing.assert_close(var[~constant], torch.ones_like(var[~constant]), rtol=1e-6, atol=1e-6)


@given(st.integers(1, 6), st.lists(st.integers(1, 5), min_size=1, max_size=3), st.integers(1, 2), SEEDS)
def test_layer_norm_ignores_a_per_example_scale_and_shift(batch, normalized, normalized_dims, seed):
    normalized_shape = tuple(normalized[-normalized_dims:])
    if len(normalized_shape) == 1 and normalized_shape[0] == 1:
        normalized_shape = (2,)  # one value per example normalises to 0 whatever is done to it
    layer = normalization.LayerNorm(normalized_shape, eps=EPS).double()
    x = _randn((batch, *normalized_shape), seed)
    g = torch.Generator().manual_seed(seed + 1)
    example = [batch] + [1] * len(normalized_shape)
    a = (0.1 + 9.9 * torch.rand(example, generator=g, dtype=torch.float64))
    b = 10 * torch.randn(example, generator=g, dtype=torch.float64)
    torch.testing.assert_close(layer(a * x + b), layer(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer(-x), -layer(x), rtol=1e-9, atol=1e-9)  # odd in x


@given(batch_norm_inputs())
def test_batch_norm_equals_torch_for_random_shapes(layer_and_x):
    layer, x = layer_and_x
    reference = (torch.nn.BatchNorm1d if isinstance(layer, normalization.BatchNorm1d) else torch.nn.BatchNorm2d)(
        x.shape[1], eps=EPS).double().train()
    torch.testing.assert_close(layer(x), reference(x), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(layer.running_mean, reference.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.running_var, reference.running_var, rtol=1e-12, atol=1e-12)
