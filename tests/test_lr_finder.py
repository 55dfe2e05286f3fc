"""helpers.lr_finder: the LR range test and the steepest-descent suggestion."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.lr_finder import lr_finder, suggest_lr


def test_suggest_lr_is_the_steepest_descent_before_the_minimum():
    lrs = np.geomspace(1e-5, 10, 61)
    x = np.log10(lrs)
    loss = 2 - np.tanh(2 * (x + 2.5)) + np.where(x > -0.5, 20 * (x + 0.5) ** 2, 0)
    assert suggest_lr(lrs, loss) == pytest.approx(10 ** -2.5, rel=0.05)
    # the sharp rise after the minimum (divergence) is never chosen
    assert suggest_lr(lrs, loss) < lrs[np.argmin(loss)]
    assert suggest_lr([1e-3, 1e-2], [1.0, 0.5]) in (1e-3, 1e-2)
    with pytest.raises(ValueError, match="equal length"):
        suggest_lr([1, 2, 3], [1, 2])


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(512, 8, generator=g)
    y = X @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)
    return X, y


def test_lr_finder_stops_at_divergence_and_restores_model_and_optimizer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    # give the optimizer some state, which must come back unchanged
    F.mse_loss(net(_regression()[0]), _regression()[1]).backward()
    opt.step()
    before_model = copy.deepcopy(net.state_dict())
    before_opt = copy.deepcopy(opt.state_dict())
    result = lr_finder(net, _regression(), F.mse_loss, opt, start_lr=1e-5, end_lr=1e3, num_steps=120)
    assert result.diverged and len(result.lrs) < 120
    assert len(result.lrs) == len(result.losses) == len(result.smoothed)
    assert np.all(np.diff(result.lrs) > 0) and result.lrs[0] == pytest.approx(1e-5)
    assert 1e-4 < result.steepest_lr < result.min_loss_lr <= result.lrs[-1]
    assert result.suggested_lr == result.min_loss_lr / 10
    assert min(result.smoothed) < 0.5 * result.smoothed[0]
    for k, v in net.state_dict().items():
        assert torch.equal(v, before_model[k])
    after_opt = opt.state_dict()
    assert after_opt["param_groups"] == before_opt["param_groups"]
    for k, st in after_opt["state"].items():
        assert torch.equal(st["momentum_buffer"], before_opt["state"][k]["momentum_buffer"])


@pytest.mark.parametrize("rule", ["min/10", "steepest"])
def test_lr_finder_suggestion_trains_well(rule):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(net.parameters())
    result = lr_finder(net, _regression(), F.mse_loss, opt, start_lr=1e-5, end_lr=1e2, num_steps=100,
                       suggestion=rule)
    assert result.suggested_lr == (result.min_loss_lr / 10 if rule == "min/10" else result.steepest_lr)
    X, y = _regression()
    start = F.mse_loss(net(X), y).item()
    for group in opt.param_groups:
        group["lr"] = result.suggested_lr
    for _ in range(100):
        opt.zero_grad()
        F.mse_loss(net(X), y).backward()
        opt.step()
    assert F.mse_loss(net(X), y).item() < 0.1 * start


def test_lr_finder_without_divergence_runs_every_step_and_accepts_batches():
    torch.manual_seed(0)
    net = nn.Linear(8, 1)
    X, y = _regression()
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=64)  # re-iterated
    result = lr_finder(net, batches, F.mse_loss, torch.optim.SGD(net.parameters()), start_lr=1e-6,
                       end_lr=1e-2, num_steps=20)
    assert not result.diverged and len(result.lrs) == 20 and result.lrs[-1] == pytest.approx(1e-2)


@pytest.mark.parametrize("kwargs, error, text", [
    ({"start_lr": 0.0}, ValueError, "start_lr"),
    ({"start_lr": 1.0, "end_lr": 0.1}, ValueError, "end_lr"),
    ({"num_steps": 1}, ValueError, "num_steps"),
    ({"beta": 1.0}, ValueError, "beta"),
    ({"diverge_factor": 1.0}, ValueError, "diverge_factor"),
    ({"suggestion": "valley"}, ValueError, "suggestion"),
    ({"optimizer": "sgd"}, TypeError, "optimizer"),
])
def test_lr_finder_bad_arguments(kwargs, error, text):
    net = nn.Linear(8, 1)
    before = copy.deepcopy(net.state_dict())
    options = {"optimizer": torch.optim.SGD(net.parameters())}
    options.update(kwargs)
    opt = options.pop("optimizer")
    with pytest.raises(error, match=text):
        lr_finder(net, _regression(), F.mse_loss, opt, **options)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


# ---- issue 16: lr_finder on one-shot generators, lists of batches, frozen models


def _lrf_world():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    X = torch.randn(160, 3)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]])
    return net, X, y


def test_lr_finder_one_shot_generator_keeps_its_results():
    net, X, y = _lrf_world()
    batches = ((X[i:i + 32], y[i:i + 32]) for i in range(0, 160, 32))  # 5 batches, once
    result = lr_finder(net, batches, F.mse_loss, torch.optim.SGD(net.parameters()), num_steps=20,
                         start_lr=1e-4, end_lr=1e-1)
    assert len(result.lrs) == 5 and result.data_exhausted and not result.diverged


def test_lr_finder_accepts_a_list_of_batches_like_a_loader():
    net, X, y = _lrf_world()
    batches = [(X[i:i + 32], y[i:i + 32]) for i in range(0, 160, 32)]
    opt = torch.optim.SGD(net.parameters())
    a = lr_finder(net, batches, F.mse_loss, opt, num_steps=12, start_lr=1e-4, end_lr=1e-1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=32)
    b = lr_finder(net, loader, F.mse_loss, opt, num_steps=12, start_lr=1e-4, end_lr=1e-1)
    assert len(a.lrs) == 12 and not a.data_exhausted and a.losses == b.losses


def test_lr_finder_on_a_frozen_model_is_a_clear_error_that_modifies_nothing():
    net, X, y = _lrf_world()
    for p in net.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="no parameter that requires a gradient"):
        lr_finder(net, (X, y), F.mse_loss, torch.optim.SGD(net.parameters()))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_lr_finder_empty_generator_says_so():
    net, X, y = _lrf_world()
    with pytest.raises(ValueError, match="yielded no batch"):
        lr_finder(net, (b for b in []), F.mse_loss, torch.optim.SGD(net.parameters()))


@pytest.mark.parametrize("root_training", [True, False])
def test_lr_finder_puts_every_module_back_in_its_own_mode(root_training):
    # F3: model.train(was_training) set every sub-module to the root's mode (a frozen BatchNorm came back training)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 2)))
    net.train(root_training)
    net[1].train(not root_training)
    net[2].train(not root_training)
    net[2][0].train(root_training)
    modes = [m.training for m in net.modules()]
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 3, generator=g), torch.randint(0, 2, (64,), generator=g)
    lr_finder(net, (X, y), F.cross_entropy, torch.optim.SGD(net.parameters(), lr=0.1), num_steps=5)
    assert [m.training for m in net.modules()] == modes

    def failing_loss(out, target):
        raise RuntimeError("loss failed")

    with pytest.raises(RuntimeError, match="loss failed"):
        lr_finder(net, (X, y), failing_loss, torch.optim.SGD(net.parameters(), lr=0.1), num_steps=5)
    assert [m.training for m in net.modules()] == modes


def test_lr_finder_refuses_a_dict_of_batches():
    X, y = _regression()
    net = nn.Linear(8, 1)
    with pytest.raises(TypeError, match="train_data .*got dict .iterating it gives its keys"):
        lr_finder(net, {"a": (X, y)}, F.mse_loss, torch.optim.SGD(net.parameters(), lr=0.1))


def test_lr_finder_sweeps_in_the_modes_fit_would_train_in():
    seen = []
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net[1].register_forward_pre_hook(lambda module, args: seen.append(module.training))
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 3, generator=g), torch.randint(0, 2, (64,), generator=g)
    net[1].eval()                       # frozen inside a training model: stays frozen during the sweep
    lr_finder(net, (X, y), F.cross_entropy, torch.optim.SGD(net.parameters(), lr=0.1), num_steps=5)
    assert seen and not any(seen)
    seen.clear()
    net.eval()                          # eval mode as a whole: the sweep trains it all, then puts it back
    lr_finder(net, (X, y), F.cross_entropy, torch.optim.SGD(net.parameters(), lr=0.1), num_steps=5)
    assert seen and all(seen) and not any(m.training for m in net.modules())


def test_lr_finder_skips_batches_without_examples():
    torch.manual_seed(0)
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    batches = [(X[:16], y[:16]), (X[16:], y[16:])]
    results = []
    for data in (batches, [(X[:0], y[:0])] + batches):
        torch.manual_seed(1)
        net = nn.Linear(4, 3)
        results.append(lr_finder(net, data, F.cross_entropy, torch.optim.SGD(net.parameters(), lr=0.1), num_steps=5))
    assert results[0].losses == results[1].losses and not results[1].diverged
    with pytest.raises(ValueError, match="yielded no batch with examples"):
        lr_finder(nn.Linear(4, 3), [(X[:0], y[:0])], F.cross_entropy,
                  torch.optim.SGD(nn.Linear(4, 3).parameters(), lr=0.1), num_steps=5)
