"""helpers.init fills tensors with exactly the numbers torch.nn.init does, for the same generator."""

import math
import warnings

import pytest
import torch
from torch import nn

from helpers import init as course
from helpers.models import MLP

SHAPES = {
    "linear": (20, 30),
    "linear_tall": (30, 7),
    "conv1d": (8, 4, 3),
    "conv2d": (16, 3, 5, 5),
    "conv3d": (4, 2, 3, 3, 3),
}


def _pair(shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- calculate_gain ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d",
                                  "sigmoid", "tanh", "relu", "selu"])
def test_calculate_gain_matches_torch(name):
    assert course.calculate_gain(name) == nn.init.calculate_gain(name)


@pytest.mark.parametrize("slope", [None, 0, 0.01, 0.2, 1, 3, 5.5])
def test_leaky_relu_gain_matches_torch(slope):
    assert course.calculate_gain("leaky_relu", slope) == nn.init.calculate_gain("leaky_relu", slope)


def test_relu_gain_restores_the_second_moment():
    z = torch.randn(1_000_000, generator=_gen(), dtype=torch.float64)
    assert course.calculate_gain("relu") ** 2 * z.relu().square().mean().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name, param, error", [("gelu", None, ValueError), ("ReLU", None, ValueError),
                                                 (3, None, TypeError), ("leaky_relu", "0.1", ValueError),
                                                 ("leaky_relu", True, ValueError),
                                                 ("leaky_relu", float("nan"), ValueError)])
def test_calculate_gain_bad_arguments(name, param, error):
    with pytest.raises(error, match="nonlinearity|param"):
        course.calculate_gain(name, param)


# -- the samplers: identical to torch --------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("gain", [1.0, 5 / 3, 0.5])
@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "orthogonal_"])
def test_gain_schemes_identical_to_torch(name, shape, gain):
    ours, theirs = _pair(shape)
    getattr(course, name)(ours, gain=gain, generator=_gen(3))
    getattr(nn.init, name)(theirs, gain=gain, generator=_gen(3))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "FAN_OUT"])
@pytest.mark.parametrize("nonlinearity, a", [("relu", 0), ("leaky_relu", 0), ("leaky_relu", 0.01),
                                             ("leaky_relu", 0.2), ("leaky_relu", 1), ("leaky_relu", math.sqrt(5)),
                                             ("tanh", 0), ("linear", 0)])
@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
def test_kaiming_identical_to_torch(name, shape, mode, nonlinearity, a):
    ours, theirs = _pair(shape)
    getattr(course, name)(ours, a=a, mode=mode, nonlinearity=nonlinearity, generator=_gen(7))
    getattr(nn.init, name)(theirs, a=a, mode=mode, nonlinearity=nonlinearity, generator=_gen(7))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                                  "kaiming_normal_", "orthogonal_"])
def test_global_generator_and_layer_parameters(name):
    """Without generator= both draw from the global generator; Parameters are filled in place."""
    ours, theirs = nn.Conv2d(3, 6, 3), nn.Conv2d(3, 6, 3)
    torch.manual_seed(11)
    returned = getattr(course, name)(ours.weight)
    torch.manual_seed(11)
    getattr(nn.init, name)(theirs.weight)
    assert returned is ours.weight and ours.weight.requires_grad
    assert torch.equal(ours.weight, theirs.weight)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_dtypes(dtype):
    ours, theirs = _pair((12, 9), dtype)
    course.kaiming_uniform_(ours, generator=_gen())
    nn.init.kaiming_uniform_(theirs, generator=_gen())
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("make, var", [
    (lambda w: course.xavier_uniform_(w, generator=_gen()), 2 / (400 + 200)),
    (lambda w: course.xavier_normal_(w, generator=_gen()), 2 / (400 + 200)),
    (lambda w: course.kaiming_uniform_(w, nonlinearity="relu", generator=_gen()), 2 / 200),
    (lambda w: course.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=_gen()), 2 / 400),
    (lambda w: course.orthogonal_(w, generator=_gen()), 1 / 400),
])
def test_variances_are_what_the_formulas_say(make, var):
    w = make(torch.empty(400, 200, dtype=torch.float64))
    # the sample variance of 80 000 draws is within a few percent
    assert w.var().item() == pytest.approx(var, rel=0.03)


@pytest.mark.parametrize("shape", [(5, 5), (3, 8), (8, 3), (6, 2, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_rows_or_columns_are_orthonormal(shape, gain):
    w = course.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=gain, generator=_gen()).reshape(shape[0], -1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    assert torch.allclose(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-12)


def test_fans_of_conv_weights():
    assert course.fans(torch.empty(16, 3, 5, 5)) == (75, 400)
    assert course.fans(nn.Conv1d(4, 8, 3).weight) == (12, 24)
    assert course.fans(nn.Linear(30, 20).weight) == (30, 20)


# -- edge cases -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                                  "kaiming_normal_", "orthogonal_"])
@pytest.mark.parametrize("shape", [(4,), ()])
def test_fewer_than_two_dimensions_raise_like_torch(name, shape):
    with pytest.raises(ValueError):
        getattr(nn.init, name)(torch.ones(shape))
    tensor = torch.ones(shape)
    with pytest.raises(ValueError, match="2 dimensions"):
        getattr(course, name)(tensor)
    assert torch.equal(tensor, torch.ones(shape))


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_"])
def test_kaiming_zero_element_tensor_warns_like_torch(name):
    with pytest.warns(UserWarning, match="zero-element"):
        out = getattr(course, name)(torch.empty(0, 3))
    assert out.shape == (0, 3)


@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "orthogonal_"])
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0), (2, 0, 3)])
def test_zero_element_tensors_are_a_no_op(name, shape):
    generator = _gen()
    before = generator.get_state()
    assert getattr(course, name)(torch.empty(shape), generator=generator).shape == shape
    assert torch.equal(generator.get_state(), before)


@pytest.mark.parametrize("call, error, match", [
    (lambda w: course.kaiming_normal_(w, mode="fan_avg"), ValueError, "mode"),
    (lambda w: course.kaiming_normal_(w, nonlinearity="swish"), ValueError, "nonlinearity"),
    (lambda w: course.kaiming_uniform_(w, a="0.1"), TypeError, "a must be"),
    (lambda w: course.xavier_uniform_(w, gain="1"), TypeError, "gain"),
    (lambda w: course.xavier_normal_(w, gain=float("inf")), ValueError, "gain"),
    (lambda w: course.orthogonal_(w, generator=0), TypeError, "generator"),
    (lambda w: course.xavier_uniform_(w.tolist()), TypeError, "tensor"),
])
def test_bad_arguments_raise_before_modifying(call, error, match):
    w = torch.ones(3, 4)
    with pytest.raises(error, match=match):
        call(w)
    assert torch.equal(w, torch.ones(3, 4))


# -- whole models -------------------------------------------------------------------------

def _conv_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


@pytest.mark.parametrize("scheme, kwargs, reference", [
    ("xavier_uniform", {"gain": 5 / 3}, nn.init.xavier_uniform_),
    ("xavier_normal", {}, nn.init.xavier_normal_),
    ("kaiming_uniform", {"nonlinearity": "relu"}, nn.init.kaiming_uniform_),
    ("kaiming_normal", {"a": 0.2, "mode": "fan_out"}, nn.init.kaiming_normal_),
    ("orthogonal", {"gain": 2.0}, nn.init.orthogonal_),
    ("normal", {"std": 0.05}, lambda w, std, generator: nn.init.normal_(w, 0.0, std, generator=generator)),
])
@pytest.mark.parametrize("make_model", [lambda: MLP(8, 3, 6, 3), _conv_model], ids=["mlp", "conv"])
def test_init_weights_equals_torch_layer_by_layer(scheme, kwargs, reference, make_model):
    ours, theirs = make_model(), make_model()
    course.init_weights_(ours, scheme, generator=_gen(5), **kwargs)
    generator = _gen(5)
    for module in theirs.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            reference(module.weight, generator=generator, **kwargs)
            nn.init.zeros_(module.bias)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_init_weights_bad_arguments_modify_nothing():
    net = MLP(4, 2, 3, 2)
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(ValueError, match="scheme"):
        course.init_weights_(net, "he")
    with pytest.raises(TypeError, match="keyword"):
        course.init_weights_(net, "xavier_normal", nonlinearity="relu")
    with pytest.raises(ValueError, match="mode"):
        course.init_weights_(net, "kaiming_normal", mode="both")
    with pytest.raises(TypeError, match="model"):
        course.init_weights_([nn.Linear(2, 2)], "orthogonal")
    with pytest.raises(ValueError, match="no layer"):
        course.init_weights_(nn.Tanh(), "orthogonal")
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_init_weights_does_not_warn_while_validating():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        course.init_weights_(MLP(4, 2, 3, 1), "kaiming_uniform", nonlinearity="relu")


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_lsuv_gives_every_layer_unit_output_std(activation):
    torch.manual_seed(0)
    net = MLP(16, 4, 32, 6, activation=activation)
    x = torch.randn(512, 16)
    steps = course.lsuv_(net, x, tol=0.01, generator=_gen())
    assert list(steps) == [f"fc{i}" for i in range(1, 7)] + ["out"]
    h = x
    for module in net:
        h = module(h)
        if isinstance(module, nn.Linear):
            assert h.std().item() == pytest.approx(1.0, abs=0.011)


def test_lsuv_on_a_conv_net_and_without_orthogonal_start():
    net = _conv_model()
    x = torch.randn(64, 1, 8, 8)
    course.lsuv_(net, x, orthogonal=False, target_std=0.5)
    assert net[0](x).std().item() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("kwargs, error", [({"x": torch.randn(1, 4)}, ValueError), ({"x": [[1.0]]}, ValueError),
                                            ({"target_std": 0.0}, ValueError), ({"max_iter": 0}, ValueError),
                                            ({"tol": -1.0}, ValueError)])
def test_lsuv_bad_arguments(kwargs, error):
    net = MLP(4, 2, 3, 1)
    before = [p.clone() for p in net.parameters()]
    arguments = {"x": torch.randn(8, 4)} | kwargs
    with pytest.raises(error):
        course.lsuv_(net, **arguments)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


# ---- issue 16: orthogonal_ (and what uses it) on float16/bfloat16


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (5, 5), (3, 2, 2)])
def test_orthogonal_low_precision_is_the_float32_draw_rounded_once(dtype, shape):
    from helpers import init as hinit

    ours = hinit.orthogonal_(torch.empty(shape, dtype=dtype), gain=2.0, generator=torch.Generator().manual_seed(0))
    reference = torch.nn.init.orthogonal_(torch.empty(shape), gain=2.0, generator=torch.Generator().manual_seed(0))
    assert ours.dtype == dtype and torch.equal(ours, reference.to(dtype))


def test_init_weights_and_lsuv_on_half_models():
    from helpers import init as hinit

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).bfloat16()
    hinit.init_weights_(net, "orthogonal")
    w = net[0].weight.float()
    torch.testing.assert_close(w.T @ w, torch.eye(6), atol=0.05, rtol=0)
    steps = hinit.lsuv_(net, torch.randn(64, 6).bfloat16())
    assert list(steps) == ["0", "2"]


def _with_lazy_layer():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.LazyLinear(2))


@pytest.mark.parametrize("call", [
    lambda net: course.init_weights_(net, "xavier_uniform"),
    lambda net: course.init_weights_(net, "orthogonal", gain=2.0),
    lambda net: course.lsuv_(net, torch.randn(16, 3)),
], ids=["init_weights_ xavier", "init_weights_ orthogonal", "lsuv_"])
def test_a_lazy_layer_is_refused_before_any_layer_changes(call):
    # F7: init_weights_ re-initialised the first Linear, then failed on the lazy one
    net = _with_lazy_layer()
    before = net[0].weight.detach().clone()
    with pytest.raises(ValueError, match=r"model has a lazy layer whose shapes are not known yet: '2' "
                                         r"\(LazyLinear: weight, bias\)"):
        call(net)
    assert torch.equal(net[0].weight, before)
    net(torch.randn(16, 3))      # materialised by a forward pass: now it initialises
    call(net)


def test_a_lazy_module_that_is_not_initialised_does_not_stop_init_weights_():
    net = nn.Sequential(nn.Linear(3, 4), nn.LazyBatchNorm1d())   # init_weights_ touches only the Linear
    course.init_weights_(net, "kaiming_normal")
