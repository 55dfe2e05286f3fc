import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.activations import ACTIVATION_NAMES
from helpers.diagnostics import (
    GradientMonitor,
    activation_grad_norms,
    capture_activations,
    grad_norms_for_batch,
    jacobian_singular_values,
    layer_grad_norms,
    weighted_layers,
)
from helpers.models import MLP


def _batch(n=32, features=6, classes=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_layer_grad_norms_equal_the_weights_gradient_norms_in_order():
    net = MLP(6, 3, width=8, depth=3, activation="tanh")
    x, y = _batch()
    F.cross_entropy(net(x), y).backward()
    norms = layer_grad_norms(net)
    assert list(norms) == ["fc1", "fc2", "fc3", "out"]
    for name, layer in net.named_children():
        if isinstance(layer, nn.Linear):
            assert norms[name] == pytest.approx(layer.weight.grad.norm().item(), rel=1e-6)


def test_layer_grad_norms_none_grads_and_no_layers():
    net = MLP(6, 3, width=8, depth=2)
    assert layer_grad_norms(net) == {"fc1": 0.0, "fc2": 0.0, "out": 0.0}
    net.out.weight.grad = torch.ones_like(net.out.weight)
    assert layer_grad_norms(net)["out"] == pytest.approx(net.out.weight.numel() ** 0.5)
    assert layer_grad_norms(nn.Sequential(nn.ReLU())) == {}


def test_layer_grad_norms_include_conv_layers():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    net(torch.randn(2, 1, 8, 8)).sum().backward()
    assert list(layer_grad_norms(net)) == ["0", "3"]
    assert list(weighted_layers(net)) == ["0", "3"]


def test_layer_grad_norms_rejects_non_modules():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        layer_grad_norms([torch.zeros(2)])


def test_grad_norms_for_batch_starts_from_zero_gradients():
    net = MLP(6, 3, width=8, depth=2)
    x, y = _batch()
    first = grad_norms_for_batch(net, x, y)
    second = grad_norms_for_batch(net, x, y)  # would double if gradients accumulated
    assert first == pytest.approx(second)


def test_activation_grad_norms_match_retained_gradients():
    net = MLP(6, 3, width=8, depth=3, activation="sigmoid")
    x, y = _batch()
    norms = activation_grad_norms(net, x, y)
    h, kept = x, []
    for name, module in net.named_children():
        h = module(h)
        if name.startswith("act"):
            h.retain_grad()
            kept.append(h)
    F.cross_entropy(h, y).backward()
    assert list(norms.values()) == pytest.approx([t.grad.norm().item() for t in kept], rel=1e-6)
    assert all(not m._forward_hooks for m in net.modules())


def test_capture_activations_names_and_hook_cleanup():
    net = MLP(4, 2, width=8, depth=2)
    acts = capture_activations(net, torch.randn(16, 4))
    assert {k: tuple(v.shape) for k, v in acts.items()} == {"act1": (16, 8), "act2": (16, 8)}
    assert all(not m._forward_hooks for m in net.modules())
    assert torch.all(acts["act1"] >= 0)


def test_jacobian_singular_values_of_a_linear_map():
    W = torch.randn(5, 3, dtype=torch.float64)
    sv = jacobian_singular_values(lambda v: W @ v, torch.randn(3, dtype=torch.float64))
    assert torch.allclose(sv, torch.linalg.svdvals(W))


def test_jacobian_singular_values_match_the_product_of_layer_jacobians():
    torch.manual_seed(3)
    net = MLP(4, 4, width=4, depth=2, activation="tanh").double()
    x = torch.randn(4, dtype=torch.float64)
    z1 = net.fc1(x)
    h1 = torch.tanh(z1)
    z2 = net.fc2(h1)
    J = net.out.weight @ torch.diag(1 - torch.tanh(z2) ** 2) @ net.fc2.weight @ torch.diag(1 - h1**2) @ net.fc1.weight
    assert torch.allclose(jacobian_singular_values(net, x), torch.linalg.svdvals(J))


@pytest.mark.parametrize("x", [torch.zeros(2, 3), torch.tensor(1.0), [1.0, 2.0]])
def test_jacobian_singular_values_bad_input(x):
    with pytest.raises(ValueError, match="x must be a 1-D tensor"):
        jacobian_singular_values(lambda v: v, x)


def test_jacobian_singular_values_bad_fn():
    with pytest.raises(TypeError, match="fn must be callable"):
        jacobian_singular_values(3, torch.zeros(2))


# -- GradientMonitor ----------------------------------------------------------------------

def _one_step(net, monitor, x, y, clip=None, lr=0.1):
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    optimizer.zero_grad()
    F.cross_entropy(net(x), y).backward()
    before = {n: g for n, g in layer_grad_norms(net).items()}
    weights = {n: m.weight.detach().clone() for n, m in weighted_layers(net).items()}
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    optimizer.step()
    record = monitor.step()
    return record, before, weights


def test_monitor_records_pre_clip_gradient_norms_and_update_ratios():
    net = MLP(6, 3, width=8, depth=3, activation="tanh")
    x, y = _batch()
    with GradientMonitor(net) as monitor:
        record, grad_before_clip, weights = _one_step(net, monitor, x, y, clip=1e-3)
    assert record.grad_norm == pytest.approx(grad_before_clip, rel=1e-6)
    for name, layer in weighted_layers(net).items():
        expected = (layer.weight - weights[name]).norm() / weights[name].norm()
        assert record.update_ratio[name] == pytest.approx(expected.item(), rel=1e-5)


def test_monitor_saturation_and_dead_fractions_match_their_definitions():
    torch.manual_seed(0)
    x, y = _batch()
    for activation, level in (("sigmoid", 0.1), ("tanh", 0.1), ("relu", None)):
        net = MLP(6, 3, width=16, depth=2, activation=activation)
        with torch.no_grad():
            net.fc1.weight.mul_(8)  # push the first layer into saturation
            net.fc1.bias.fill_(-1.0 if activation != "relu" else -20.0)
        acts = capture_activations(net, x)
        with GradientMonitor(net) as monitor:
            record, _, _ = _one_step(net, monitor, x, y, lr=0.0)
        for name, out in acts.items():
            assert record.act_mean[name] == pytest.approx(out.mean().item(), rel=1e-5)
            assert record.act_std[name] == pytest.approx(out.std().item(), rel=1e-5)
            if activation == "sigmoid":
                expected = (out * (1 - out) < level / 4).float().mean().item()
                assert record.saturation[name] == pytest.approx(expected)
            elif activation == "tanh":
                expected = (1 - out**2 < level).float().mean().item()
                assert record.saturation[name] == pytest.approx(expected)
            else:
                expected = (out.max(dim=0).values <= 0).float().mean().item()
                assert record.dead[name] == pytest.approx(expected)
        assert (record.saturation if activation != "relu" else record.dead)["act1"] > 0


@pytest.mark.parametrize("activation", [n for n in ACTIVATION_NAMES if n != "identity"])
def test_monitor_watches_every_registry_activation_fused_or_from_scratch(activation):
    # SELU's fused nn.SELU was once missing from the watched kinds: its nets had no activation statistics
    x, y = _batch()
    records = []
    for from_scratch in (False, True):
        torch.manual_seed(0)
        net = MLP(6, 3, width=16, depth=2, activation=activation, from_scratch=from_scratch)
        with GradientMonitor(net) as monitor:
            records.append(_one_step(net, monitor, x, y, lr=0.0)[0])
        assert set(capture_activations(net, x)) == {"act1", "act2"}
    fused, scratch = records
    assert set(fused.act_mean) == set(scratch.act_mean) == {"act1", "act2"}
    assert fused.act_mean == pytest.approx(scratch.act_mean, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_monitor_measures_the_course_activations_like_torchs(activation):
    torch.manual_seed(0)
    x, y = _batch()
    fused_net = MLP(6, 3, width=16, depth=2, activation=activation)
    with torch.no_grad():
        fused_net.fc1.weight.mul_(8)  # push the first layer into saturation
        fused_net.fc1.bias.fill_(-20.0 if activation == "relu" else -1.0)
    scratch_net = MLP(6, 3, width=16, depth=2, activation=activation, from_scratch=True)
    scratch_net.load_state_dict(fused_net.state_dict())
    records = []
    for net in (fused_net, scratch_net):
        with GradientMonitor(net) as monitor:
            records.append(_one_step(net, monitor, x, y, lr=0.0)[0])
    fused, scratch = records
    measure = "dead" if activation == "relu" else "saturation"
    assert getattr(scratch, measure) == pytest.approx(getattr(fused, measure))
    assert getattr(scratch, measure)["act1"] > 0


def test_monitor_every_and_history():
    net = MLP(6, 3, width=8, depth=2)
    x, y = _batch()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, every=2) as monitor:
        for _ in range(5):
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
            monitor.step()
    assert monitor.steps() == [0, 2, 4]
    history = monitor.history("update_ratio")
    assert list(history) == ["fc1", "fc2", "out"] and all(len(v) == 3 for v in history.values())
    assert all(v > 0 for values in history.values() for v in values)


def test_monitor_ignores_evaluation_passes():
    net = MLP(6, 3, width=8, depth=2)
    x, y = _batch()
    with GradientMonitor(net) as monitor:
        net.eval()
        net(x)
        net.train()
        record, _, _ = _one_step(net, monitor, x, y)
    assert set(record.act_mean) == {"act1", "act2"}


def test_monitor_detach_removes_hooks_and_step_needs_attach():
    net = MLP(6, 3, width=8, depth=2)
    monitor = GradientMonitor(net).attach()
    monitor.attach()  # idempotent
    monitor.detach()
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(RuntimeError, match="detached"):
        monitor.step()


@pytest.mark.parametrize("kwargs, error", [({"every": 0}, ValueError), ({"every": 1.0}, TypeError),
                                           ({"saturation_level": 1.0}, ValueError)])
def test_monitor_bad_arguments(kwargs, error):
    with pytest.raises(error):
        GradientMonitor(MLP(2, 2, 2, 1), **kwargs)


def test_monitor_history_bad_quantity():
    with pytest.raises(ValueError, match="quantity must be one of"):
        GradientMonitor(MLP(2, 2, 2, 1)).history("loss")


def test_monitor_on_a_conv_net():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 2, (8,))
    with GradientMonitor(net) as monitor:
        record, _, _ = _one_step(net, monitor, x, y)
    assert set(record.grad_norm) == {"0", "3"} and "1" in record.dead


def test_monitor_activations_without_a_saturation_measure():
    net = MLP(6, 3, width=8, depth=2, activation="gelu")
    x, y = _batch()
    with GradientMonitor(net) as monitor:
        record, _, _ = _one_step(net, monitor, x, y)
    assert set(record.act_mean) == {"act1", "act2"}
    assert record.saturation == {} and record.dead == {}


def test_monitor_with_a_frozen_layer():
    net = MLP(6, 3, width=8, depth=2)
    net.fc1.requires_grad_(False)
    x, y = _batch()
    with GradientMonitor(net) as monitor:
        record, _, _ = _one_step(net, monitor, x, y)
    assert set(record.grad_norm) == {"fc2", "out"}
    assert record.update_ratio["fc1"] == 0.0 and record.update_ratio["out"] > 0


def _exact_norm(t):
    """The 2-norm in float64 with the largest entry divided out: the truth for any finite entries."""
    t = t.detach().double()
    peak = float(t.abs().max())
    return peak * float(torch.linalg.vector_norm(t / peak)) if peak else 0.0


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e20), (torch.float32, 1e30), (torch.float16, 1e4),
                                          (torch.float16, 100.0), (torch.bfloat16, 1.0), (torch.float64, 1e200)])
def test_monitor_and_layer_grad_norms_report_huge_finite_gradients_and_updates(dtype, scale):
    # F1: float32 gradients of ~1e19 have a finite norm of ~1e21 whose float32 squares overflow; float16 norms
    # above 65504 are inf in float16; float64 squares of 1e200 overflow float64
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)).to(dtype)
    before = [p.detach().clone() for p in (net[0].weight, net[2].weight)]
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    with GradientMonitor(net) as monitor:
        (net(torch.randn(8, 64).to(dtype)).sum() * scale).backward()
        grads = [net[0].weight.grad, net[2].weight.grad]
        assert all(bool(torch.isfinite(g).all()) for g in grads)
        expected = {"0": _exact_norm(grads[0]), "2": _exact_norm(grads[1])}
        opt.step()
        record = monitor.step()
    rel = max(torch.finfo(dtype).eps, 1e-6)
    assert record.grad_norm == pytest.approx(expected, rel=rel)
    assert layer_grad_norms(net) == pytest.approx(expected, rel=1e-9)
    after = [net[0].weight, net[2].weight]
    ratios = {name: _exact_norm((a - b).double()) / _exact_norm(b) for name, a, b in zip(("0", "2"), after, before)}
    assert all(math.isfinite(r) for r in record.update_ratio.values())
    assert record.update_ratio == pytest.approx(ratios, rel=max(rel, 1e-5))


def test_monitor_refines_huge_weights_and_keeps_true_infinities():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.mul_(1e25)            # weights whose float32 norm overflows: the ratio must not collapse to 0
    opt = torch.optim.SGD(net[0].parameters(), lr=1e20)  # a change that shows next to weights of 1e25
    corner = torch.zeros(2, 3, dtype=torch.bool)
    corner[0, 0] = True
    net[1].weight.register_hook(lambda g: torch.where(corner, math.inf, g))  # one infinite entry
    with GradientMonitor(net) as monitor:
        before = net[0].weight.detach().clone()
        net(torch.randn(8, 4)).sum().backward()
        opt.step()
        record = monitor.step()
    assert record.grad_norm["1"] == math.inf        # an infinite entry: inf is the truth, and reported
    change = _exact_norm(net[0].weight.detach().double() - before.double())
    assert 0 < record.update_ratio["0"] == pytest.approx(change / _exact_norm(before), rel=1e-5)


def test_layer_grad_norms_and_the_monitor_on_complex_weights():
    # torch refuses a float64 norm of a complex tensor: the complex norms used to raise
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2, dtype=torch.complex64))
    x = torch.randn(4, 3, dtype=torch.complex64)

    def backward():
        net.zero_grad()
        net(x).abs().square().mean().backward()

    with GradientMonitor(net) as monitor:
        backward()
        expected = float(torch.linalg.vector_norm(net[0].weight.grad.to(torch.complex128)))
        assert layer_grad_norms(net) == {"0": pytest.approx(expected, rel=1e-12)}
        torch.optim.SGD(net.parameters(), lr=0.0).step()          # no update: a ratio of 0, recomputed exactly
        record = monitor.step()
    assert record.update_ratio == {"0": 0.0}
    assert record.grad_norm == {"0": pytest.approx(expected, rel=1e-6)}


def _monitored_step(net, x):
    with GradientMonitor(net) as monitor:
        net(x).float().mean().backward()
        torch.optim.SGD(net.parameters(), lr=0.0).step()
        return monitor.step()


@pytest.mark.parametrize("batch", [4, 256])
def test_monitor_activation_statistics_of_float16_outputs_do_not_overflow(batch):
    # every ReLU output is exactly 100: float16 sums of squares (batch 4) and sums (batch 256) pass 65504
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1)).half()
    with torch.no_grad():
        net[0].weight.fill_(25.0)
        net[0].bias.zero_()
    record = _monitored_step(net, torch.ones(batch, 4, dtype=torch.float16))
    assert record.act_mean == {"1": 100.0} and record.act_std == {"1": 0.0}


@pytest.mark.parametrize("scale", [1e3, 1e19, 1e30])
def test_monitor_activation_statistics_of_huge_float32_outputs_are_finite(scale):
    # float32 squares of 1e19 overflow: the one-pass variance was inf - inf = NaN, and NaN skipped the redo
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        net[2].weight.mul_(scale)
    x = torch.randn(32, 4)
    record = _monitored_step(net, x)
    act = net[3](net[2](net[1](net[0](x)))).detach().double()
    assert record.act_mean["3"] == pytest.approx(float(act.mean()), rel=1e-6)
    assert record.act_std["3"] == pytest.approx(float(act.std()), rel=1e-5)


def test_monitor_activation_statistics_keep_true_infinities():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(math.inf)
        net[0].bias.zero_()
    record = _monitored_step(net, torch.ones(5, 2))
    assert record.act_mean == {"1": math.inf} and math.isnan(record.act_std["1"])


def _bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    net(torch.randn(16, 4))             # running statistics away from their initial values
    return net, torch.randn(16, 4), torch.randint(0, 3, (16,))


_READ_ONLY = {
    "capture_activations": lambda net, x, y: capture_activations(net, x),
    "activation_grad_norms": activation_grad_norms,
    "grad_norms_for_batch": grad_norms_for_batch,
}


@pytest.mark.parametrize("name", list(_READ_ONLY))
def test_diagnostics_leave_batch_norm_buffers_as_they_were(name):
    # a training-mode forward pass updated the running statistics and num_batches_tracked
    net, x, y = _bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    twin = copy.deepcopy(net)
    result = _READ_ONLY[name](net, x, y)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()) and net.training
    if name == "capture_activations":
        expected = twin[2](twin[1](twin[0](x)))
        assert torch.equal(result["2"], expected.detach())
    else:
        F.cross_entropy(twin(x), y).backward()
        assert all(torch.equal(a.grad, b.grad) for a, b in zip(net.parameters(), twin.parameters()))


@pytest.mark.parametrize("name", list(_READ_ONLY))
def test_diagnostics_leave_batch_norm_buffers_as_they_were_on_an_error(name):
    net, x, y = _bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}

    def fail(*_):
        raise RuntimeError("late failure")

    net[3].register_forward_hook(fail)          # after the batch norm has updated its statistics
    with pytest.raises(RuntimeError, match="late failure"):
        _READ_ONLY[name](net, x, y)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
