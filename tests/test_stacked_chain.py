"""helpers._stacked_chain: the hand-written backward pass gives autograd's gradients, bit for bit."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers._stacked_chain import chain_forward_backward, chain_plan
from helpers.ensemble import Ensemble, _cross_entropy, _mse, fit_ensemble, from_seeds
from helpers.models import MLP

torch.set_num_threads(1)


def _chain(activation, bias=True, last=False):
    layers = [nn.Linear(6, 5, bias=bias), activation(), nn.Linear(5, 4, bias=bias), activation(),
              nn.Linear(4, 3, bias=bias)]
    return nn.Sequential(*layers, *([activation()] if last else []))


def _autograd(ens, x, target, loss_fn):
    out = ens(x)
    losses = loss_fn(out, target)
    grads = torch.autograd.grad(losses.sum(), ens.parameters())
    return out.detach(), losses.detach(), dict(zip(ens.params, grads))


def _custom_loss(out, target):
    return (out - target).abs().pow(1.5).mean(dim=(1, 2)) + out.square().sum(dim=(1, 2)) * 1e-3


ACTIVATIONS = [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, lambda: nn.LeakyReLU(0.3), nn.ELU, lambda: nn.ELU(0.5),
               nn.SELU, nn.GELU, lambda: nn.GELU("tanh"), nn.SiLU, nn.Mish]
ACTIVATION_IDS = ["relu", "tanh", "sigmoid", "leaky_relu", "leaky_relu_0.3", "elu", "elu_0.5", "selu", "gelu",
                  "gelu_tanh", "silu", "mish"]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=ACTIVATION_IDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("last", [False, True])
def test_gradients_equal_autograd(activation, bias, last):
    ens = from_seeds(lambda: _chain(activation, bias, last), seeds=range(4))
    assert ens._chain is not None
    x = 3 * torch.randn(7, 6, generator=torch.Generator().manual_seed(1))     # both sides of every kink
    y = torch.randint(0, 3, (7,), generator=torch.Generator().manual_seed(2))
    mine = chain_forward_backward(ens._chain, ens.params, x, y, _cross_entropy)
    theirs = _autograd(ens, x, y, _cross_entropy)
    assert torch.equal(mine[0], theirs[0]) and torch.equal(mine[1], theirs[1])
    assert mine[2].keys() == theirs[2].keys()
    for name, grad in theirs[2].items():
        assert torch.equal(mine[2][name], grad), name


@pytest.mark.parametrize("loss_fn", [_mse, _custom_loss], ids=["mse", "custom"])
def test_per_member_inputs_and_other_losses(loss_fn):
    ens = from_seeds(lambda: _chain(nn.Tanh), seeds=range(3))
    g = torch.Generator().manual_seed(3)
    x, target = torch.randn(3, 5, 6, generator=g), torch.randn(5, 3, generator=g)
    mine = chain_forward_backward(ens._chain, ens.params, x, target, loss_fn)
    theirs = _autograd(ens, x, target, loss_fn)
    assert torch.equal(mine[1], theirs[1])
    for name, grad in theirs[2].items():
        assert torch.equal(mine[2][name], grad), name


def test_leaves_the_parameters_and_autograd_state_alone():
    ens = from_seeds(lambda: _chain(nn.ReLU), seeds=range(2))
    before = {k: v.clone() for k, v in ens.params.items()}
    out, losses, grads = chain_forward_backward(ens._chain, ens.params, torch.randn(4, 6), torch.zeros(4).long(),
                                                _cross_entropy)
    assert all(torch.equal(v, before[k]) for k, v in ens.params.items())
    assert all(p.grad is None for p in ens.params.values())
    assert not out.requires_grad and not losses.requires_grad and not any(g.requires_grad for g in grads.values())
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("build, reason", [
    (lambda: MLP(6, 3, width=5, depth=2, norm="batch"), "batch norm"),
    (lambda: MLP(6, 3, width=5, depth=2, norm="layer"), "layer norm"),
    (lambda: MLP(6, 3, width=5, depth=2, residual=True), "residual blocks"),
    (lambda: MLP(6, 3, width=5, depth=2, dropout=0.5), "dropout"),
    (lambda: nn.Sequential(nn.Linear(6, 5), nn.LeakyReLU(inplace=True), nn.Linear(5, 3)),
     "an in-place activation whose derivative autograd would take from its output"),
    (lambda: nn.Sequential(nn.Linear(6, 5), nn.Hardtanh(), nn.Linear(5, 3)), "an activation it has no derivative for"),
    (lambda: nn.Sequential(nn.Linear(6, 5), type("MyReLU", (nn.ReLU,), {})(), nn.Linear(5, 3)),
     "a subclass, which may compute something else"),
    (lambda: MLP(6, 3, width=5, depth=2, from_scratch=True), "the from-scratch layers"),
    (lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.ReLU(), nn.Linear(5, 3)), "two activations in a row"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Linear(6, 3)), "an activation before the first Linear"),
    (lambda: nn.Sequential(), "no layer at all"),
])
def test_plan_is_none_for_what_it_does_not_cover(build, reason):
    assert chain_plan(build(), {name for name, _ in build().named_parameters()}) is None, reason


def test_plan_of_an_mlp():
    model = MLP(6, 3, width=5, depth=2)
    plan = chain_plan(model, {name for name, _ in model.named_parameters()})
    assert plan == [("fc1.weight", "fc1.bias", model.act1), ("fc2.weight", "fc2.bias", model.act2),
                    ("out.weight", "out.bias", None)]
    assert chain_plan(model, {"fc1.weight"}) is None      # a parameter it would not train
    assert chain_plan(nn.Linear(6, 3), {"weight", "bias"}) is None   # not an nn.Sequential


@pytest.mark.parametrize("activation", ["tanh", "gelu", "mish", "selu"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("seed", [0, [0, 1, 2]], ids=["shared batches", "own batches"])
def test_fit_ensemble_trains_the_same_with_either_path(optimizer, seed, activation):
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    runs = []
    for chain in (True, False):
        ens = Ensemble([_seeded(s, activation) for s in range(3)])
        assert ens._chain is not None
        if not chain:
            ens._chain = None
        h = fit_ensemble(ens, (X, y), epochs=2, lr=[0.05, 0.1, 0.2], optimizer=optimizer, momentum=0.9 * (
            optimizer == "sgd"), batch_size=8, seed=seed, progress_bar=False)
        runs.append((h, ens))
    (h1, e1), (h2, e2) = runs
    np.testing.assert_array_equal(h1.loss, h2.loss)
    np.testing.assert_array_equal(h1.grad_norm, h2.grad_norm)
    for name in e1.params:
        assert torch.equal(e1.params[name], e2.params[name]), name


def _seeded(seed, activation="tanh"):
    torch.manual_seed(seed)
    return MLP(6, 3, width=5, depth=3, activation=activation)


def test_a_diverging_member_is_frozen_on_the_hand_written_path():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
    ens = from_seeds(lambda: MLP(6, 3, width=8, depth=3), seeds=range(2))
    assert ens._chain is not None
    h = fit_ensemble(ens, (X, y), epochs=3, lr=[0.01, 1e6], batch_size=16, progress_bar=False)
    assert h.diverged.tolist() == [False, True]
    assert all(torch.isfinite(p).all() for p in ens.params.values())
    np.testing.assert_array_less(h.loss[-1, :1], F.cross_entropy(torch.zeros(1, 3), torch.zeros(1).long()).item() + 1)


def test_a_loss_that_reads_the_weights_goes_to_autograd():
    # notebook 08's penalised loss: cross-entropy plus an L1 penalty on the stacked weights themselves
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    results = []
    for chain in (True, False):
        ens = from_seeds(lambda: MLP(6, 3, width=5, depth=1), seeds=range(2))
        if not chain:
            ens._chain = None
        weight = ens.params["fc1.weight"]

        def penalised(out, target, weight=weight):
            return _cross_entropy(out, target) + 0.5 * weight.abs().sum(dim=(1, 2))

        fit_ensemble(ens, (X, y), epochs=2, lr=0.1, loss=penalised, batch_size=8, progress_bar=False)
        results.append(ens.params["fc1.weight"].detach().clone())
    assert torch.equal(results[0], results[1])


def _extra_parameter_on_a_linear():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model[2].gain = nn.Parameter(torch.ones(3))
    return model


def test_a_parameter_outside_the_chain_takes_autograds_path():
    ens = Ensemble([_extra_parameter_on_a_linear() for _ in range(2)])
    assert ens._chain is None
    X, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    h = fit_ensemble(ens, (X, y), epochs=1, lr=0.1, batch_size=8, progress_bar=False)
    assert np.isfinite(h.loss).all()


def test_without_gradients_it_refuses_as_autograd_does():
    ens = from_seeds(lambda: _chain(nn.ReLU), seeds=range(2))
    X, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    with torch.no_grad(), pytest.raises(RuntimeError, match="does not require grad"):
        fit_ensemble(ens, (X, y), epochs=1, lr=0.1, batch_size=8, progress_bar=False)


def test_gradient_hooks_on_the_parameters_still_run():
    X, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    ens = from_seeds(lambda: _chain(nn.ReLU), seeds=range(2))
    before = {k: v.detach().clone() for k, v in ens.params.items()}
    calls = []
    for p in ens.parameters():
        p.register_hook(lambda g: calls.append(1) or torch.zeros_like(g))
    fit_ensemble(ens, (X, y), epochs=1, lr=0.1, batch_size=8, progress_bar=False)
    assert len(calls) == 2 * len(before)
    assert all(torch.equal(v, before[k]) for k, v in ens.params.items())
