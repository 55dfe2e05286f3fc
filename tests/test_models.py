import copy
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from helpers import activations
from helpers.activations import ACTIVATION_NAMES, make_activation
from helpers.models import MLP, scale_init_


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
    ({"activation": "not_an_activation"}, ValueError, r"activation must be one of .*'not_an_activation'"),
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


# --- normalization, residual connections, dropout, conv nets, dense blocks ----------------

from helpers.diagnostics import GradientMonitor, layer_grad_norms  # noqa: E402
from helpers.models import ConvNet, DenseBlock  # noqa: E402
from helpers.normalization import BatchNorm1d, BatchNorm2d, LayerNorm, RMSNorm, WeightNormLinear  # noqa: E402
from helpers.regularization import Dropout  # noqa: E402


@pytest.mark.parametrize("norm, kind", [("batch", BatchNorm1d), ("layer", LayerNorm), ("rms", RMSNorm)])
def test_mlp_norm_and_dropout_layers_are_the_course_s_own(norm, kind):
    net = MLP(6, 3, width=8, depth=2, norm=norm, dropout=0.2)
    assert [n for n, _ in net.named_children()] == ["fc1", "norm1", "act1", "drop1",
                                                    "fc2", "norm2", "act2", "drop2", "out"]
    assert isinstance(net.norm1, kind) and isinstance(net.drop2, Dropout) and net.drop2.p == 0.2
    assert net(torch.randn(5, 6)).shape == (5, 3)
    assert "norm=" in repr(net) and "dropout=0.2" in repr(net)


def test_residual_mlp_computes_skip_plus_branch():
    torch.manual_seed(0)
    net = MLP(4, 2, width=4, depth=2, activation="tanh", residual=True).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    h1 = x + net.fc1(torch.tanh(x))               # pre-activation: the branch ends with its Linear layer
    h2 = h1 + net.fc2(torch.tanh(h1))
    torch.testing.assert_close(net(x), net.out(h2))
    assert not hasattr(net, "proj1")                # same width: identity skip


def test_residual_mlp_projects_the_skip_when_the_width_changes():
    torch.manual_seed(0)
    net = MLP(5, 2, width=3, depth=2, activation="relu", residual=True, residual_scale=0.5).double()
    assert [n for n, _ in net.named_children()] == ["act1", "fc1", "proj1", "act2", "fc2", "out"]
    assert net.proj1.bias is None and net.proj1.weight.shape == (3, 5)
    x = torch.randn(4, 5, dtype=torch.float64)
    h1 = net.proj1(x) + 0.5 * net.fc1(torch.relu(x))
    h2 = h1 + 0.5 * net.fc2(torch.relu(h1))
    torch.testing.assert_close(net(x), net.out(h2))
    assert [type(m) for m in net.linear_layers()] == [nn.Linear] * 3     # projections left out


def test_residual_mlp_plain_forward_when_residual_is_false():
    torch.manual_seed(0)
    net = MLP(4, 2, width=4, depth=3, residual=False)
    x = torch.randn(3, 4)
    torch.testing.assert_close(net(x), nn.Sequential(*net.children())(x))


def test_rezero_starts_as_identity_and_learns_its_scale():
    torch.manual_seed(0)
    net = MLP(6, 3, width=6, depth=4, residual=True, residual_scale=0.0, learn_residual_scale=True)
    assert [n for n, _ in net.named_parameters() if n.startswith("alpha")] == [f"alpha{i}" for i in range(1, 5)]
    x = torch.randn(8, 6)
    torch.testing.assert_close(net(x), net.out(x))   # every branch is scaled by 0
    nn.functional.cross_entropy(net(x), torch.randint(0, 3, (8,))).backward()
    assert all(float(getattr(net, f"alpha{i}").grad.abs()) > 0 for i in range(1, 5))
    assert float(net.fc1.weight.grad.abs().sum()) == 0.0            # no gradient through a zero branch
    assert "learned" in repr(net)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_residual_connections_keep_the_first_layer_gradient_alive(activation):
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    first = {}
    for residual in (False, True):
        torch.manual_seed(0)
        net = MLP(16, 4, width=16, depth=30, activation=activation, residual=residual, residual_scale=0.2)
        nn.functional.cross_entropy(net(x), y).backward()
        norms = layer_grad_norms(net)
        first[residual] = norms["fc1"] / norms["out"]
    assert first[True] > 1e-3 and first[True] > 1e3 * first[False]


def test_mlp_with_norm_trains_and_its_buffers_are_in_the_state_dict():
    torch.manual_seed(0)
    net = MLP(4, 2, width=8, depth=2, norm="batch")
    keys = set(net.state_dict())
    assert {"norm1.running_mean", "norm1.running_var", "norm1.num_batches_tracked"} <= keys
    net(torch.randn(16, 4))
    assert int(net.norm1.num_batches_tracked) == 1


@pytest.mark.parametrize("kwargs, error, text", [
    ({"norm": "group"}, ValueError, r"norm must be one of \('batch', 'layer', 'rms'\), got 'group'"),
    ({"norm": 1}, TypeError, "norm must be a str"),
    ({"residual": 1}, TypeError, "residual must be a bool, got int"),
    ({"dropout": 1.0}, ValueError, "dropout must be < 1.0, got 1.0"),
    ({"dropout": -0.1}, ValueError, "dropout must be >= 0.0"),
    ({"residual_scale": float("inf")}, ValueError, "residual_scale must be finite"),
    ({"learn_residual_scale": "yes"}, TypeError, "learn_residual_scale must be a bool"),
])
def test_mlp_bad_new_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        MLP(4, 2, width=8, depth=2, **kwargs)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", [None, "batch"])
def test_convnet_shapes_and_gradients(residual, norm):
    torch.manual_seed(0)
    net = ConvNet(channels=(4, 8, 8), norm=norm, residual=residual)
    out = net(torch.randn(6, 64))
    assert out.shape == (6, 10)
    assert net(torch.randn(6, 1, 8, 8)).shape == (6, 10)
    out.sum().backward()
    norms = layer_grad_norms(net)
    expected = ["conv1", "conv2", "conv3", "out"]
    if residual:
        expected = ["conv1", "proj1", "conv2", "proj2", "conv3", "out"]
    assert list(norms) == expected and all(v > 0 for v in norms.values())
    if norm == "batch":
        assert isinstance(net.norm1, BatchNorm2d)
        assert net.norm1.num_features == (1 if residual else 4)     # pre-activation: the block's input
        assert (net.conv1.bias is None) == (not residual)


def test_residual_convnet_adds_the_identity_when_channels_agree():
    torch.manual_seed(0)
    net = ConvNet(channels=(4, 4), norm=None, residual=True).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    h1 = net.proj1(x) + net.conv1(torch.relu(x))
    h2 = h1 + net.conv2(torch.relu(h1))
    torch.testing.assert_close(net(x), net.out(h2.flatten(1)))
    assert not hasattr(net, "proj2")


@pytest.mark.parametrize("kwargs, error, text", [
    ({"channels": 16}, TypeError, "channels must be a sequence of ints"),
    ({"channels": ()}, ValueError, "at least one convolution"),
    ({"channels": (4, 0)}, ValueError, "channels entries must be an int >= 1"),
    ({"norm": "layer"}, ValueError, r"norm must be one of \('batch',\)"),
])
def test_convnet_bad_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        ConvNet(**kwargs)


def test_convnet_bad_input_shape():
    with pytest.raises(ValueError, match=r"flat inputs \(N, 64\), got shape \(2, 10\)"):
        ConvNet(channels=(4,))(torch.randn(2, 10))


def test_dense_block_concatenates_every_layer():
    torch.manual_seed(0)
    block = DenseBlock(5, growth=3, layers=2, activation="tanh").double()
    x = torch.randn(4, 5, dtype=torch.float64)
    h1 = torch.tanh(block.fc1(x))
    h2 = torch.tanh(block.fc2(torch.cat([x, h1], dim=1)))
    torch.testing.assert_close(block(x), torch.cat([x, h1, h2], dim=1))
    assert block.out_features == 11 and block.fc2.in_features == 8


@pytest.mark.parametrize("kwargs, text", [({"growth": 0}, "growth"), ({"layers": 0}, "layers"),
                                          ({"activation": "nope"}, "activation")])
def test_dense_block_bad_arguments(kwargs, text):
    args = {"in_features": 4, "growth": 2, "layers": 2, **kwargs}
    with pytest.raises(ValueError, match=text):
        DenseBlock(**args)


def test_diagnostics_report_the_direction_of_weight_normed_layers():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(fc1=WeightNormLinear(4, 6), act1=nn.Tanh(), out=nn.Linear(6, 2)))
    net(torch.randn(8, 4)).square().sum().backward()
    norms = layer_grad_norms(net)
    assert list(norms) == ["fc1", "out"]
    assert math.isclose(norms["fc1"], float(net.fc1.v.grad.norm()), rel_tol=1e-6)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net) as monitor:
        net.zero_grad()
        net(torch.randn(8, 4)).square().sum().backward()
        opt.step()
        record = monitor.step()
    assert set(record.grad_norm) == {"fc1", "out"} and record.update_ratio["fc1"] > 0


def test_gradient_monitor_on_residual_normalized_mlp():
    torch.manual_seed(0)
    net = MLP(6, 3, width=8, depth=3, norm="batch", residual=True, dropout=0.1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net) as monitor:
        nn.functional.cross_entropy(net(torch.randn(16, 6)), torch.randint(0, 3, (16,))).backward()
        opt.step()
        record = monitor.step()
    assert list(record.grad_norm) == ["fc1", "proj1", "fc2", "fc3", "out"]
    assert set(record.act_mean) == {"act1", "act2", "act3"}


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_with_torch_layers_computes_the_same_function(norm, residual):
    from helpers.models import with_torch_layers

    torch.manual_seed(0)
    net = MLP(6, 3, width=8, depth=3, norm=norm, residual=residual, dropout=0.2).double()
    x = torch.randn(16, 6, dtype=torch.float64)
    net(x)                                                   # move the running statistics
    reference = copy.deepcopy(net)
    with_torch_layers(net)
    assert isinstance(net.drop1, nn.Dropout) and isinstance(net.norm1, nn.BatchNorm1d | nn.LayerNorm)
    assert net.norm1.weight.dtype == torch.float64
    for mode in ("train", "eval"):
        getattr(net, mode)()
        getattr(reference, mode)()
        torch.manual_seed(1)
        expected = reference(x)
        torch.manual_seed(1)
        torch.testing.assert_close(net(x), expected, rtol=1e-10, atol=1e-12)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value, rtol=1e-10, atol=1e-12)


def test_with_torch_layers_on_convnet_and_bad_argument():
    from helpers.models import with_torch_layers

    net = with_torch_layers(ConvNet(channels=(4, 4), residual=True).eval())
    assert isinstance(net.norm2, nn.BatchNorm2d) and not net.norm2.training
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        with_torch_layers("net")


def test_with_torch_layers_swaps_rms_norm_for_torch_s_and_computes_the_same():
    from helpers.models import with_torch_layers

    torch.manual_seed(0)
    ours = MLP(6, 3, width=8, depth=2, norm="rms").double()
    with torch.no_grad():
        ours.norm1.weight.uniform_(0.5, 1.5)
    x = torch.randn(5, 6, dtype=torch.float64)
    expected = ours(x)
    fused = with_torch_layers(ours)
    assert isinstance(fused.norm1, nn.RMSNorm) and fused.norm1.weight.dtype == torch.float64
    torch.testing.assert_close(fused(x), expected, rtol=0, atol=1e-12)


def test_from_scratch_activations_in_residual_conv_and_dense_models():
    from helpers import activations

    torch.manual_seed(0)
    fused = MLP(6, 3, width=6, depth=2, activation="tanh", norm="layer", residual=True).double()
    scratch = MLP(6, 3, width=6, depth=2, activation="tanh", norm="layer", residual=True, from_scratch=True).double()
    scratch.load_state_dict(fused.state_dict(), strict=True)
    assert isinstance(scratch.act1, activations.Tanh)
    x = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(scratch(x), fused(x))
    assert isinstance(ConvNet(channels=(2,), from_scratch=True).act1, activations.ReLU)
    assert isinstance(DenseBlock(4, 2, 1, from_scratch=True).act1, activations.ReLU)
    with pytest.raises(TypeError, match="from_scratch must be a bool"):
        MLP(4, 2, width=4, depth=1, from_scratch=1)


def test_scale_init_refuses_a_lazy_layer_before_changing_any():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.LazyLinear(2))
    before = net[0].weight.detach().clone()
    with pytest.raises(ValueError, match="model has a lazy layer whose shapes are not known yet: '2'"):
        scale_init_(net, gain=2.0)
    assert torch.equal(net[0].weight, before)
