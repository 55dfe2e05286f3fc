"""helpers._layers: the one registry of weighted layers, checked on every kind it holds
(init equals torch, fans, scale_init_, lsuv_, the monitor), norms without underflow, and the
monitor on recurrent models (issue 16, kinds 6, 7 and 11)."""

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import _layers, diagnostics, init, models
from helpers.checkup import checkup
from helpers.diagnostics import GradientMonitor, layer_grad_norms, watched_weights
from helpers.training import fit

# One example per kind of the registry, ``{kind: factory}``; a factory returns ``(layer, batch)``,
# a layer with a bias where the kind allows one plus an input batch it accepts. Adding a kind to
# ``_layers.WEIGHTED_LAYERS`` fails ``test_every_kind_has_an_example`` until it has a line here,
# and then every test below runs on it.
EXAMPLES = {
    nn.Linear: lambda: (nn.Linear(5, 7), torch.randn(64, 5)),
    nn.Conv1d: lambda: (nn.Conv1d(4, 6, 3), torch.randn(64, 4, 7)),
    nn.Conv2d: lambda: (nn.Conv2d(4, 6, (3, 2), groups=2), torch.randn(64, 4, 6, 5)),
    nn.Conv3d: lambda: (nn.Conv3d(2, 3, 2), torch.randn(64, 2, 4, 4, 4)),
    nn.ConvTranspose1d: lambda: (nn.ConvTranspose1d(4, 6, 3), torch.randn(64, 4, 5)),
    nn.ConvTranspose2d: lambda: (nn.ConvTranspose2d(4, 6, (3, 2), groups=2), torch.randn(64, 4, 5, 5)),
    nn.ConvTranspose3d: lambda: (nn.ConvTranspose3d(2, 3, 2), torch.randn(64, 2, 3, 3, 3)),
}
KINDS = pytest.mark.parametrize("kind", list(EXAMPLES), ids=lambda k: k.__name__)


def _example(kind, seed=0):
    torch.manual_seed(seed)
    return EXAMPLES[kind]()


def test_every_kind_has_an_example():
    assert set(EXAMPLES) == set(_layers.WEIGHTED_LAYERS), (
        "tests/test_layers.py EXAMPLES must hold one factory per kind of helpers._layers.WEIGHTED_LAYERS")


def test_one_registry_everywhere():
    assert diagnostics.WEIGHTED_LAYERS is init.WEIGHTED_LAYERS is models.WEIGHTED_LAYERS is _layers.WEIGHTED_LAYERS
    for path in sorted(Path(_layers.__file__).parent.rglob("*.py")):   # no second copy of the tuple
        if path.name != "_layers.py":
            assert "nn.Linear, nn.Conv1d" not in path.read_text(encoding="utf-8"), path.name


@KINDS
@pytest.mark.parametrize("scheme, ours, theirs", [
    ("xavier_uniform", {}, nn.init.xavier_uniform_), ("xavier_normal", {}, nn.init.xavier_normal_),
    ("kaiming_uniform", {"nonlinearity": "relu"}, lambda w, **k: nn.init.kaiming_uniform_(w, nonlinearity="relu", **k)),
    ("kaiming_normal", {"mode": "fan_out"}, lambda w, **k: nn.init.kaiming_normal_(w, mode="fan_out", **k)),
    ("orthogonal", {}, nn.init.orthogonal_),
])
def test_init_weights_equals_torch(kind, scheme, ours, theirs):
    layer, _ = _example(kind)
    a, b = copy.deepcopy(layer), copy.deepcopy(layer)
    if a.bias is not None:
        nn.init.constant_(a.bias, 3.0)
    init.init_weights_(a, scheme, generator=torch.Generator().manual_seed(0), **ours)
    theirs(b.weight, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.weight, b.weight)
    assert a.bias is None or torch.equal(a.bias, torch.zeros_like(a.bias))


@KINDS
def test_fans_follow_torch(kind):
    layer, _ = _example(kind)
    assert init.fans(layer.weight) == nn.init._calculate_fan_in_and_fan_out(layer.weight)


@KINDS
def test_scale_init_and_lsuv_reach_every_kind(kind):
    layer, x = _example(kind)
    net = nn.Sequential(layer, nn.Tanh())
    before = [p.detach().clone() for p in net.parameters()]
    models.scale_init_(net, gain=1.0, bias=0.5)
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert torch.equal(layer.bias, torch.full_like(layer.bias, 0.5))
    steps = init.lsuv_(net, x)
    assert list(steps) == ["0"]
    assert layer(x).std().item() == pytest.approx(1.0, abs=0.1)


@KINDS
def test_layer_grad_norms_and_monitor_see_every_kind(kind):
    layer, x = _example(kind)
    net = nn.Sequential(layer, nn.ReLU())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net) as monitor:
        net(x).square().mean().backward()
        norms = layer_grad_norms(net)
        opt.step()
        record = monitor.step()
    assert list(norms) == ["0"] and norms["0"] > 0
    assert list(record.grad_norm) == ["0"] and list(record.update_ratio) == ["0"]
    assert record.grad_norm["0"] == pytest.approx(norms["0"], rel=1e-6)
    assert list(record.act_mean) == ["1"]


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
