import math

import pytest
import torch
from torch import nn

from helpers import activations
from helpers.models import ACTIVATION_NAMES, MLP, make_activation, scale_init_


def test_mlp_layer_names_and_shapes():
    net = MLP(64, 10, width=32, depth=3, activation="tanh")
    assert [n for n, _ in net.named_children()] == ["fc1", "act1", "fc2", "act2", "fc3", "act3", "out"]
    assert net(torch.zeros(5, 64)).shape == (5, 10)
    assert len(net.linear_layers()) == 4
    assert "depth=3" in repr(net)


def test_depth_zero_is_a_linear_model():
    net = MLP(4, 2, width=8, depth=0)
    assert [n for n, _ in net.named_children()] == ["out"]
    assert net.out.in_features == 4


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_every_activation_by_name(name):
    net = MLP(3, 2, width=4, depth=2, activation=name)
    out = net(torch.randn(6, 3))
    assert out.shape == (6, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_from_scratch_activations_compute_the_same_net(name):
    torch.manual_seed(0)
    fused = MLP(3, 2, width=4, depth=3, activation=name).double()
    scratch = MLP(3, 2, width=4, depth=3, activation=name, from_scratch=True).double()
    scratch.load_state_dict(fused.state_dict())
    assert all(isinstance(getattr(scratch, f"act{i}"), activations.Activation) for i in (1, 2, 3))
    x = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(scratch(x), fused(x), rtol=1e-12, atol=1e-12)


def test_make_activation_passes_arguments():
    assert make_activation("leaky_relu", negative_slope=0.2).negative_slope == 0.2


@pytest.mark.parametrize("kwargs, error, text", [
    ({"width": 0}, ValueError, "width must be an int >= 1, got 0"),
    ({"width": 2.0}, TypeError, "width must be an int"),
    ({"depth": -1}, ValueError, "depth"),
    ({"activation": "softsign"}, ValueError, r"activation must be one of .*'softsign'"),
    ({"activation": None}, TypeError, "activation"),
    ({"in_features": True}, TypeError, "in_features"),
])
def test_mlp_bad_arguments(kwargs, error, text):
    args = {"in_features": 4, "out_features": 2, "width": 8, "depth": 2, **kwargs}
    with pytest.raises(error, match=text):
        MLP(**args)


def test_scale_init_statistics_and_biases():
    net = scale_init_(MLP(256, 10, width=256, depth=3), gain=2.0, bias=0.1)
    for layer in net.linear_layers():
        expected = 2.0 / math.sqrt(layer.in_features)
        assert abs(layer.weight.std().item() / expected - 1) < 0.1
        assert torch.all(layer.bias == 0.1)


def test_scale_init_conv_weights_use_the_receptive_field():
    conv = nn.Sequential(nn.Conv2d(16, 64, kernel_size=3))
    scale_init_(conv, gain=1.0)
    assert abs(conv[0].weight.std().item() * math.sqrt(16 * 9) - 1) < 0.1


@pytest.mark.parametrize("gain", [0.0, -1.0, float("inf")])
def test_scale_init_bad_gain_modifies_nothing(gain):
    net = MLP(4, 2, 8, 1)
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(ValueError, match="gain"):
        scale_init_(net, gain=gain)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
