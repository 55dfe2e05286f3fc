"""Issue 16, kinds 6, 7 and 11: one registry of weighted layers (ConvTranspose included),
norms without underflow, and the monitor on recurrent and conv-transpose models."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import _layers, diagnostics, init, models
from helpers.checkup import checkup
from helpers.diagnostics import GradientMonitor, layer_grad_norms, watched_weights
from helpers.training import fit

CONV_T = [nn.ConvTranspose1d(4, 6, 3), nn.ConvTranspose2d(4, 6, (3, 2), groups=2),
          nn.ConvTranspose3d(2, 3, 2, bias=False)]


def test_one_registry_everywhere():
    assert diagnostics.WEIGHTED_LAYERS is init.WEIGHTED_LAYERS is models.WEIGHTED_LAYERS is _layers.WEIGHTED_LAYERS
    for path in sorted(Path(_layers.__file__).parent.rglob("*.py")):   # no second copy of the tuple
        if path.name != "_layers.py":
            assert "nn.Linear, nn.Conv1d" not in path.read_text(encoding="utf-8"), path.name
    for kind in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                 nn.ConvTranspose3d):
        assert kind in _layers.WEIGHTED_LAYERS


@pytest.mark.parametrize("layer", CONV_T, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("scheme, ours, theirs", [
    ("xavier_uniform", {}, nn.init.xavier_uniform_), ("xavier_normal", {}, nn.init.xavier_normal_),
    ("kaiming_uniform", {"nonlinearity": "relu"}, lambda w, **k: nn.init.kaiming_uniform_(w, nonlinearity="relu", **k)),
    ("kaiming_normal", {"mode": "fan_out"}, lambda w, **k: nn.init.kaiming_normal_(w, mode="fan_out", **k)),
    ("orthogonal", {}, nn.init.orthogonal_),
])
def test_init_weights_conv_transpose_equals_torch(layer, scheme, ours, theirs):
    a, b = _copy(layer), _copy(layer)
    if a.bias is not None:
        nn.init.constant_(a.bias, 3.0)
    init.init_weights_(a, scheme, generator=torch.Generator().manual_seed(0), **ours)
    theirs(b.weight, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.weight, b.weight)
    assert a.bias is None or torch.equal(a.bias, torch.zeros_like(a.bias))


def _copy(m):
    import copy

    return copy.deepcopy(m)


def test_conv_transpose_fans_follow_torch():
    for layer in CONV_T:
        assert init.fans(layer.weight) == nn.init._calculate_fan_in_and_fan_out(layer.weight)


def test_scale_init_and_lsuv_reach_conv_transpose():
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(3, 8, 3), nn.Tanh(), nn.ConvTranspose2d(8, 4, 3))
    before = [p.detach().clone() for p in net.parameters()]
    models.scale_init_(net, gain=1.0, bias=0.5)
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert torch.equal(net[0].bias, torch.full((8,), 0.5))
    steps = init.lsuv_(net, torch.randn(64, 3, 5, 5))
    assert list(steps) == ["0", "2"]
    assert net[:3](torch.randn(64, 3, 5, 5)).std().item() == pytest.approx(1.0, abs=0.1)


def test_layer_grad_norms_and_monitor_see_conv_transpose():
    net = nn.Sequential(nn.ConvTranspose1d(2, 3, 3), nn.ReLU(), nn.ConvTranspose1d(3, 1, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net) as monitor:
        net(torch.randn(4, 2, 5)).square().mean().backward()
        norms = layer_grad_norms(net)
        opt.step()
        record = monitor.step()
    assert list(norms) == ["0", "2"] and all(v > 0 for v in norms.values())
    assert list(record.grad_norm) == ["0", "2"] and list(record.update_ratio) == ["0", "2"]
    for name, value in norms.items():
        assert record.grad_norm[name] == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("scale", [1e-43, 1e-40, 1e-30, 1e-24, 1e-20, 1.0, 1e18])
def test_layer_grad_norms_do_not_underflow(scale):
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    for p in net.parameters():
        p.grad = torch.full_like(p, scale)
    expected = {"0": math.sqrt(64) * torch.tensor(scale).item(), "1": math.sqrt(16) * torch.tensor(scale).item()}
    got = layer_grad_norms(net)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-3)
        assert got[name] > 0


def test_monitor_grad_norm_and_update_ratio_do_not_underflow():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=1e-30)
    with GradientMonitor(net) as monitor:
        (net(torch.randn(8, 4)).sum() * 1e-25).backward()
        opt.step()
        record = monitor.step()
    assert all(v > 0 for v in record.grad_norm.values())
    assert list(record.grad_norm) == list(layer_grad_norms(net))


class _GRUHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(2, 6, batch_first=True)
        self.head = nn.Parameter(torch.randn(6, 1) * 0.1)

    def forward(self, x):
        out, _ = self.gru(x)
        return out[:, -1] @ self.head


def test_monitor_watches_recurrent_weights_and_checkup_works():
    from helpers.data import adding_problem

    torch.manual_seed(0)
    X, y = adding_problem(128, 10, seed=0)
    net = _GRUHead()
    assert list(watched_weights(net)) == ["gru.weight_ih_l0", "gru.weight_hh_l0"]
    monitor = GradientMonitor(net)
    history = fit(net, (X, y), epochs=2, optimizer=torch.optim.Adam(net.parameters(), 1e-2),
                  loss_fn=nn.functional.mse_loss, monitor=monitor, progress=False)
    assert len(monitor.records) == history.steps
    assert set(monitor.records[-1].grad_norm) == {"gru.weight_ih_l0", "gru.weight_hh_l0"}
    report = checkup(monitor, history)
    assert report.findings


def test_monitor_watches_the_course_recurrent_cells():
    from helpers.recurrent import SequenceModel

    net = SequenceModel("lstm", 2, 5, 1)
    names = list(watched_weights(net))
    assert any(n.endswith("weight_hh") for n in names) and any(n.endswith("weight_ih") for n in names)


def test_monitor_on_a_model_with_nothing_to_watch_says_so():
    with pytest.raises(ValueError, match="nothing GradientMonitor can watch.*ConvTranspose.*got Sequential"):
        GradientMonitor(nn.Sequential())


def test_monitor_attached_without_hooks_still_steps():
    net = nn.Sequential(nn.Tanh())  # an activation but no weight
    with GradientMonitor(net) as monitor:
        net(torch.randn(3, 2))
        record = monitor.step()
    assert record.grad_norm == {} and list(record.act_mean) == ["0"]


def test_monitor_std_is_exact_when_the_mean_dwarfs_the_spread():
    from helpers.activations import Identity, Sigmoid

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 64), Identity(), nn.Linear(64, 64), Sigmoid())
    with torch.no_grad():
        net[0].weight.mul_(1e-4)
        net[0].bias.fill_(1000.0)   # outputs ~1000 with a spread ~1e-4: one-pass variance cancels
    x = torch.randn(32, 4)
    with GradientMonitor(net) as monitor:
        net(x).sum().backward()
        record = monitor.step()
    out = net[:2](x)
    assert record.act_mean["1"] == pytest.approx(out.mean().item(), rel=1e-6)
    assert record.act_std["1"] == pytest.approx(out.std().item(), rel=1e-3)
    assert record.act_std["3"] == pytest.approx(net(x).std().item(), rel=1e-4)
