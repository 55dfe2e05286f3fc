"""The from-scratch components on the course's device (helpers.device.get_device(): the CPU in
`make test`, the GPU in `make test-gpu`, which sets COURSE_DEVICE=cuda): same results as
torch's own on that device, nothing silently moved to another device, checkpoints that
move between devices. Marked `device`: `pytest -m device` runs only these, `-m "not device"` all but these."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import clipping, init, optim
from helpers.device import get_device
from helpers.training import fit, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.device

DEVICE = get_device()
RTOL = 1e-6 if DEVICE.type == "cpu" else 1e-5


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    ours, theirs = [], []
    for shape in [(4, 3, 3, 3), (5, 4), (5,)]:
        w, grad = torch.randn(shape, generator=g), 100 * torch.randn(shape, generator=g)
        a, b = nn.Parameter(w.to(DEVICE)), nn.Parameter(w.clone().to(DEVICE))
        a.grad, b.grad = grad.to(DEVICE), grad.clone().to(DEVICE)
        ours.append(a)
        theirs.append(b)
    return ours, theirs


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_on_the_device_equals_torch(norm_type):
    ours, theirs = _pair()
    total = clipping.clip_grad_norm_(ours, 1.0, norm_type=norm_type)
    expected = nn.utils.clip_grad_norm_(theirs, 1.0, norm_type=norm_type)
    assert total.device == expected.device
    torch.testing.assert_close(total, expected, rtol=RTOL, atol=0)
    for a, b in zip(ours, theirs):
        assert a.grad.device.type == DEVICE.type
        torch.testing.assert_close(a.grad, b.grad, rtol=RTOL, atol=1e-7)


def test_value_and_adaptive_clipping_stay_on_the_device():
    ours, theirs = _pair()
    clipping.clip_grad_value_(ours, 0.5)
    nn.utils.clip_grad_value_(theirs, 0.5)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs))
    fraction = clipping.adaptive_clip_grad_(ours, clipping=0.01)
    assert fraction.device.type == DEVICE.type and 0 < float(fraction) <= 1


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("Adam", {"lr": 1e-2, "weight_decay": 1e-3}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 1e-2}),
    ("RAdam", {"lr": 1e-2}),
])
def test_optimizers_on_the_device_equal_torch(name, kwargs):
    ours, theirs = _pair()
    mine, reference = getattr(optim, name)(ours, **kwargs), getattr(torch.optim, name)(theirs, **kwargs)
    for step in range(8):
        for a, b in zip(ours, theirs):
            grad = torch.randn(a.shape, generator=torch.Generator().manual_seed(step)).to(DEVICE)
            a.grad, b.grad = grad, grad.clone()
        mine.step()
        reference.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"])
def test_init_on_the_device_with_a_device_generator_equals_torch(name):
    a, b = torch.empty(64, 32, device=DEVICE), torch.empty(64, 32, device=DEVICE)
    getattr(init, name)(a, generator=torch.Generator(device=DEVICE).manual_seed(0))
    getattr(nn.init, name)(b, generator=torch.Generator(device=DEVICE).manual_seed(0))
    assert torch.equal(a, b)


def test_fit_on_the_device_and_a_checkpoint_that_moves_to_the_cpu(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    X, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    optimizer = optim.Adam(net.parameters(), lr=1e-2)
    history = fit(net, (X, y), epochs=2, optimizer=optimizer, loss_fn=F.cross_entropy, device=DEVICE,
                  clip=functools.partial(clipping.clip_grad_norm_, max_norm=1.0), progress=False, batch_size=16,
                  checkpoint_path=tmp_path / "c.pt")
    assert history.steps == 8 and all(math.isfinite(v) for v in history.loss)
    assert all(p.device.type == DEVICE.type for p in net.parameters())
    cpu_net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    info = load_checkpoint(tmp_path / "c.pt", cpu_net, optim.Adam(cpu_net.parameters(), lr=1e-2))
    assert info["epoch"] == 2
    for a, b in zip(cpu_net.parameters(), net.parameters()):
        assert torch.equal(a, b.detach().cpu())
    save_checkpoint(tmp_path / "d.pt", cpu_net)  # and back: loads onto the device's model
    load_checkpoint(tmp_path / "d.pt", net)
    assert all(p.device.type == DEVICE.type for p in net.parameters())
