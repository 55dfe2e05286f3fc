"""helpers.ensemble: every member equals the same model trained alone by fit."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.ensemble import _NOT_RECORDED, Ensemble, fit_ensemble, from_seeds
from helpers.models import MLP, ConvNet, scale_init_
from helpers.training import History, fit

torch.set_num_threads(1)


def _data(n=150, features=12, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=g)
    y = (X[:, :classes].argmax(dim=1) + (torch.rand(n, generator=g) < 0.1).long()) % classes
    return X, y


_TOLERANCE = {"grad_norm": dict(rtol=1e-3, atol=1e-6), "lr": dict(rtol=1e-12, atol=0.0),
              "accuracy": dict(rtol=1e-7, atol=1e-9), "val_accuracy": dict(rtol=1e-7, atol=1e-9)}


def _assert_same_history(mine: History, alone: History, note: str = "") -> None:
    """Every field of member(i)'s History equals fit's (a History field added later included)."""
    for f in dataclasses.fields(History):
        a, b = getattr(mine, f.name), getattr(alone, f.name)
        if f.name in _NOT_RECORDED:
            assert a == [], f"{note} member(i).{f.name} is documented as empty"
        elif isinstance(b, list):
            assert len(a) == len(b), f"{note} {f.name}: {len(a)} entries in member(i), {len(b)} in fit's History"
            if b:
                np.testing.assert_allclose(a, b, **_TOLERANCE.get(f.name, dict(rtol=1e-4, atol=1e-5)),
                                           err_msg=f"{note} {f.name}")
        else:
            assert a == b, f"{note} {f.name}: {a!r} in member(i), {b!r} in fit's History"


def _torch_optimizer(kind, params, lr, **kw):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=kw.get("momentum", 0.0), nesterov=kw.get("nesterov", False),
                               weight_decay=kw.get("weight_decay", 0.0))
    if kind == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=kw.get("weight_decay", 0.0))
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=kw.get("weight_decay", 0.0 if kind == "adam" else 0.01))


CASES = {
    "sgd": (dict(), "sgd", dict()),
    "momentum": (dict(), "sgd", dict(momentum=0.9)),
    "nesterov-wd": (dict(), "sgd", dict(momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": (dict(activation="tanh"), "adam", dict()),
    "adamw": (dict(), "adamw", dict(weight_decay=0.01)),
    "radam": (dict(), "radam", dict()),
    "radam-wd": (dict(activation="tanh"), "radam", dict(weight_decay=1e-3)),
    "batch-norm": (dict(norm="batch"), "sgd", dict(momentum=0.9)),
    "layer-norm": (dict(norm="layer", activation="gelu"), "adam", dict()),
    "residual": (dict(residual=True, norm="batch"), "sgd", dict(momentum=0.9)),
    "residual-scaled": (dict(residual=True, residual_scale=0.5), "sgd", dict()),
    "rezero": (dict(residual=True, residual_scale=0.0, learn_residual_scale=True), "adam", dict()),
    "rms-norm": (dict(norm="rms"), "adam", dict()),      # not on the stacked path: through vmap
}


def _models(arch, n, seed0=0):
    models = []
    for i in range(n):
        torch.manual_seed(seed0 + i)
        models.append(MLP(12, 4, width=16, depth=4, **arch))
    return models


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("clip", [None, [0.5, math.inf, 2.0]])
def test_each_member_equals_fit(case, clip):
    arch, kind, kw = CASES[case]
    X, y = _data()
    Xv, yv = _data(60, seed=1)
    lrs = [0.01, 0.05, 0.002] if kind == "sgd" else [0.001, 0.003, 0.01]
    models = _models(arch, 3)
    ens = Ensemble(copy.deepcopy(models))
    h = fit_ensemble(ens, (X, y), epochs=3, lr=lrs, optimizer=kind, clip=clip, val_data=(Xv, yv),
                     progress_bar=False, batch_size=32, seed=7, **kw)
    for i, model in enumerate(models):
        opt = _torch_optimizer(kind, model.parameters(), lrs[i], **kw)
        c = None
        if clip is not None and math.isfinite(clip[i]):
            def c(p, m=clip[i]):
                return torch.nn.utils.clip_grad_norm_(p, m)
        alone = fit(model, (X, y), epochs=3, optimizer=opt, loss_fn=F.cross_entropy, clip=c,
                    val_data=(Xv, yv), progress=False, batch_size=32, seed=7)
        _assert_same_history(h.member(i), alone, f"member {i}:")
        member = ens.member(i)
        for (name, a), b in zip(member.state_dict().items(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def _clip_alone(rule, c):
    from helpers.clipping import adaptive_clip_grad_, clip_grad_norm_, clip_grad_value_

    if rule == "norm":
        return lambda p: clip_grad_norm_(p, c)
    if rule == "value":
        return lambda p: clip_grad_value_(p, c)
    if rule == "per_tensor":
        return lambda p: [clip_grad_norm_([q], c) for q in p]
    if rule == "agc":
        return lambda p: adaptive_clip_grad_(p, clipping=c)
    return lambda p: adaptive_clip_grad_(list(p)[:-2], clipping=c)     # agc_but_last: not the output layer


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_each_clip_rule_equals_fit_with_that_rule(kind):
    X, y = _data()
    rules = ["norm", "value", "per_tensor", "agc", "agc_but_last", "value"]
    clips = [0.1, 0.02, 0.05, 0.01, 0.01, math.inf]
    models = _models(dict(), len(rules))
    ens = Ensemble(copy.deepcopy(models))
    lr = 0.05 if kind == "sgd" else 0.003
    kw = dict(momentum=0.9) if kind == "sgd" else dict()
    h = fit_ensemble(ens, (X, y), epochs=2, lr=lr, optimizer=kind, clip=clips, clip_rule=rules,
                     progress_bar=False, batch_size=32, seed=7, **kw)
    for i, model in enumerate(models):
        c = _clip_alone(rules[i], clips[i]) if math.isfinite(clips[i]) else None
        alone = fit(model, (X, y), epochs=2, optimizer=_torch_optimizer(kind, model.parameters(), lr, **kw),
                    loss_fn=F.cross_entropy, clip=c, progress=False, batch_size=32, seed=7)
        mine = h.member(i)
        np.testing.assert_allclose(mine.loss, alone.loss, rtol=1e-4, atol=1e-5, err_msg=rules[i])
        if c is not None:
            assert h.clipped[:, i].tolist() == alone.clipped, rules[i]
        else:
            assert not h.clipped[:, i].any()
        for (name, a), b in zip(ens.member(i).state_dict().items(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{rules[i]} {name}")
    assert h.clipped[:, :5].mean(axis=0).min() > 0.2            # every rule fired at these thresholds


@pytest.mark.parametrize("arch", ["linear", "mlp"])
def test_agc_but_last_leaves_the_last_layers_weight_and_bias_like_fit(arch):
    """The last layer's bias was named "weight.bias" for a bare Linear, so its real "bias" was clipped."""
    X, y = _data()
    torch.manual_seed(3)
    model = nn.Linear(12, 4) if arch == "linear" else MLP(12, 4, width=16, depth=3)
    ens = Ensemble([copy.deepcopy(model)])
    h = fit_ensemble(ens, (X, y), epochs=2, lr=0.3, clip=0.001, clip_rule="agc_but_last",
                     progress_bar=False, batch_size=32, seed=7)
    alone = fit(model, (X, y), epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.3),
                loss_fn=F.cross_entropy, clip=_clip_alone("agc_but_last", 0.001), progress=False,
                batch_size=32, seed=7)
    np.testing.assert_allclose(h.member(0).loss, alone.loss, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(ens.member(0).state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    if arch == "linear":  # nothing but the last layer: agc_but_last clips nothing, like no clipping at all
        assert not h.clipped.any()


@pytest.mark.parametrize("clip_rule", [None, 3, [None, "norm"]])
def test_a_clip_rule_of_the_wrong_type_is_a_type_error_before_anything_changes(clip_rule):
    X, y = _data()
    ens = Ensemble(_models(dict(), 2))
    before = {k: v.detach().clone() for k, v in ens.params.items()}
    with pytest.raises(TypeError, match=r"clip_rule.*one of \('norm'.*got (None|3)"):
        fit_ensemble(ens, (X, y), epochs=1, lr=0.1, clip=1.0, clip_rule=clip_rule, progress_bar=False)
    for k, v in ens.params.items():
        assert torch.equal(v, before[k])


def test_a_bad_clip_rule_is_refused_before_anything_changes():
    X, y = _data()
    ens = Ensemble(_models(dict(), 2))
    before = {k: v.detach().clone() for k, v in ens.params.items()}
    with pytest.raises(ValueError, match="clip_rule entries must be one of"):
        fit_ensemble(ens, (X, y), epochs=1, lr=0.1, clip=1.0, clip_rule=["norm", "tensor"], progress_bar=False)
    with pytest.raises(ValueError, match="clip_rule must be one of"):
        fit_ensemble(ens, (X, y), epochs=1, lr=0.1, clip=1.0, clip_rule=["norm"], progress_bar=False)
    for k, v in ens.params.items():
        assert torch.equal(v, before[k])


def test_per_member_shuffles_and_schedule_equal_fit():
    X, y = _data()
    models = _models(dict(), 3)
    ens = Ensemble(copy.deepcopy(models))
    steps = 3 * math.ceil(len(X) / 32)
    factors = np.array([[0.5 * (1 + math.cos(math.pi * t / steps))] * 3 for t in range(steps)])
    factors[:, 2] = 1.0
    h = fit_ensemble(ens, (X, y), epochs=3, lr=0.05, momentum=0.9, lr_factors=factors, seed=[3, 4, 5],
                     progress_bar=False, batch_size=32)
    for i, model in enumerate(models):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t, i=i: factors[min(t, steps - 1), i])
        alone = fit(model, (X, y), epochs=3, optimizer=opt, scheduler=sched, loss_fn=F.cross_entropy,
                    progress=False, batch_size=32, seed=3 + i)
        np.testing.assert_allclose(h.member(i).loss, alone.loss, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(h.member(i).lr, alone.lr, rtol=1e-12)


def test_a_diverging_member_is_frozen_like_fit_and_the_others_go_on():
    X, y = _data()
    models = []
    for i in range(3):
        torch.manual_seed(i)
        models.append(scale_init_(MLP(12, 4, width=16, depth=6), gain=math.sqrt(2)))
    lrs = [0.01, 3.0, 0.02]
    ens = Ensemble(copy.deepcopy(models))
    h = fit_ensemble(ens, (X, y), epochs=4, lr=lrs, momentum=0.9, progress_bar=False, batch_size=32)
    assert h.diverged.tolist() == [False, True, False]
    for i, model in enumerate(models):
        alone = fit(model, (X, y), epochs=4, optimizer=torch.optim.SGD(model.parameters(), lr=lrs[i], momentum=0.9),
                    loss_fn=F.cross_entropy, progress=False, batch_size=32)
        _assert_same_history(h.member(i), alone, f"member {i}:")
        for a, b in zip(ens.member(i).state_dict().values(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert np.isnan(h.loss[h.diverged_at[1]:, 1]).all()
    assert np.isfinite(h.loss[:, [0, 2]]).all()


def test_vmap_backend_equals_fit_for_a_conv_net_with_batch_norm():
    X, y = _data(96, features=64)
    models = []
    for i in range(2):
        torch.manual_seed(i)
        models.append(ConvNet(channels=(4, 4), norm="batch"))
    ens = Ensemble(copy.deepcopy(models))
    assert ens.backend == "vmap"
    h = fit_ensemble(ens, (X, y % 10), epochs=2, lr=[0.01, 0.03], momentum=0.9, progress_bar=False, batch_size=32)
    for i, model in enumerate(models):
        alone = fit(model, (X, y % 10), epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=[0.01, 0.03][i],
                                                                        momentum=0.9),
                    loss_fn=F.cross_entropy, progress=False, batch_size=32)
        np.testing.assert_allclose(h.member(i).loss, alone.loss, rtol=1e-4, atol=1e-5)
        for a, b in zip(ens.member(i).state_dict().values(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_both_backends_compute_the_same_function():
    models = _models(dict(norm="batch", residual=True), 3)
    x = torch.randn(20, 12)
    a, b = Ensemble(models, backend="stacked"), Ensemble(models, backend="vmap")
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a.buffers["norm2.running_mean"], b.buffers["norm2.running_mean"])
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))


def test_regression_loss_and_from_seeds():
    X = torch.randn(64, 5)
    y = X.sum(dim=1, keepdim=True)
    ens = from_seeds(lambda: MLP(5, 1, width=8, depth=1), seeds=[0, 1, 2, 3, 4])
    h = fit_ensemble(ens, (X, y), epochs=20, lr=0.05, loss="mse", progress_bar=False, batch_size=16)
    assert h.loss.shape == (80, 5) and np.isnan(h.accuracy).all()
    assert (h.final("epoch_loss") < h.epoch_loss[0]).all()
    torch.manual_seed(3)
    torch.testing.assert_close(ens.member(3).state_dict()["fc1.weight"].shape, torch.Size([8, 5]))


@pytest.mark.parametrize("build", [lambda: MLP(12, 4, width=8, depth=5, norm="batch", residual=True),
                                   lambda: ConvNet(channels=(4,) * 5, norm=None)])
def test_grad_ratio_is_first_over_last_weight_in_model_order(build):
    # grad_ratio at step 0 = |dL/dW_first| / |dL/dW_last| of the untouched model on the first batch
    X, y = _data(n=32, features=64 if build().__class__ is ConvNet else 12)
    ens = from_seeds(build, seeds=[0, 1])
    alone = ens.member(1)
    h = fit_ensemble(ens, (X, y), epochs=1, lr=0.01, batch_size=32, progress_bar=False)
    F.cross_entropy(alone(X), y).backward()        # one batch of all 32: its order does not matter
    weights = [p for name, p in alone.named_parameters() if name.endswith("weight") and p.dim() >= 2]
    expected = (weights[0].grad.norm() / weights[-1].grad.norm()).item()
    assert h.grad_ratio[0, 1] == pytest.approx(expected, rel=1e-4)


def test_grad_ratio_is_first_over_last_layer_in_model_order():
    from helpers.diagnostics import grad_norms_for_batch

    X, y = _data(n=64)
    ens = from_seeds(lambda: MLP(12, 4, width=8, depth=12, norm="batch"), seeds=[0, 1])
    assert (ens.first_weight, ens.last_weight) == ("fc1.weight", "out.weight")
    assert list(ens.params) == [n for n, _ in MLP(12, 4, width=8, depth=12, norm="batch").named_parameters()]
    expected = []
    for i in range(2):
        norms = grad_norms_for_batch(ens.member(i), X, y)
        expected.append(norms["fc1"] / norms["out"])
    h = fit_ensemble(ens, (X, y), epochs=1, lr=0.0, batch_size=64, progress_bar=False)
    np.testing.assert_allclose(h.grad_ratio[0], expected, rtol=1e-4)


def test_from_seeds_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    from_seeds(lambda: MLP(5, 2, width=4, depth=1), seeds=[0, 1])
    assert torch.equal(torch.rand(3), expected)


def test_dropout_masks_differ_between_members():
    ens = Ensemble([MLP(6, 2, width=32, depth=1, dropout=0.5)] * 2)
    out = ens(torch.ones(1, 6))
    assert not torch.equal(out[0], out[1])
    ens.eval()
    out = ens(torch.ones(1, 6))
    torch.testing.assert_close(out[0], out[1])


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(lr=[0.1, 0.2]), ValueError, "lr must be one number or 3 numbers"),
    (dict(lr=-1.0), ValueError, "lr entries must be >= 0.0"),
    (dict(lr=0.1, optimizer="rmsprop"), ValueError, "optimizer must be one of"),
    (dict(lr=0.1, clip=0.0), ValueError, "clip entries must be > 0.0"),
    (dict(lr=0.1, epochs=0), ValueError, "epochs must be an int >= 1"),
    (dict(lr=0.1, seed=[1, 2]), TypeError, "seed must be an int or a sequence of 3 ints"),
    (dict(lr=0.1, lr_factors=np.ones(2)), ValueError, "lr_factors must be a callable or an array"),
    (dict(lr=0.1, nesterov=True), ValueError, "nesterov=True needs"),
    (dict(lr=0.1, loss="hinge"), ValueError, "loss must be one of"),
])
def test_bad_arguments_raise_before_anything_changes(kwargs, error, words):
    X, y = _data()
    ens = Ensemble(_models(dict(), 3))
    before = {k: v.detach().clone() for k, v in ens.params.items()}
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises(error, match=words):
        fit_ensemble(ens, (X, y), progress_bar=False, **kwargs)
    for k, v in ens.params.items():
        assert torch.equal(v, before[k])


def test_models_must_share_one_architecture():
    with pytest.raises(ValueError, match="differs from models\\[0\\]"):
        Ensemble([MLP(4, 2, 8, 1), MLP(4, 2, 8, 2)])
    with pytest.raises(ValueError, match="is a Linear"):
        Ensemble([MLP(4, 2, 8, 1), nn.Linear(4, 2)])
    with pytest.raises(TypeError, match="sequence of torch.nn.Module"):
        Ensemble(MLP(4, 2, 8, 1))
    with pytest.raises(ValueError, match="at least one model"):
        Ensemble([])
    with pytest.raises(ValueError, match="backend='stacked' does not support"):
        Ensemble([ConvNet(channels=(2,))], backend="stacked")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("backend", ["torch", "course"])
def test_sequence_models_equal_fit(cell, backend):
    from helpers.data import adding_problem
    from helpers.recurrent import SequenceModel

    X, y = adding_problem(96, 7, seed=0)
    models = []
    for i in range(3):
        torch.manual_seed(i)
        models.append(SequenceModel(cell, 2, 6, 1, backend=backend, num_layers=2,
                                    forget_bias=None if cell == "rnn" else 1.0))
    ens = Ensemble(copy.deepcopy(models))
    assert ens.backend == "stacked"
    h = fit_ensemble(ens, (X, y), epochs=2, lr=[0.01, 0.02, 0.005], optimizer="adam", loss="mse", clip=1.0,
                     progress_bar=False, batch_size=32)
    for i, model in enumerate(models):
        alone = fit(model, (X, y), epochs=2, optimizer=torch.optim.Adam(model.parameters(), lr=[0.01, 0.02, 0.005][i]),
                    loss_fn=F.mse_loss, clip=lambda p: torch.nn.utils.clip_grad_norm_(p, 1.0), progress=False,
                    batch_size=32)
        np.testing.assert_allclose(h.member(i).loss, alone.loss, rtol=1e-4, atol=1e-6)
        for a, b in zip(ens.member(i).state_dict().values(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_eval_every_records_held_out_metrics_at_those_steps():
    X, y = _data()
    Xv, yv = _data(40, seed=3)
    ens = Ensemble(_models(dict(), 2))
    h = fit_ensemble(ens, (X, y), epochs=2, lr=0.05, val_data=(Xv, yv), eval_every=4, batch_size=32,
                     progress_bar=False)
    assert h.val_steps == [4, 8, 10] and h.val_accuracy.shape == (3, 2)
    loss, acc = ens.evaluate((Xv, yv))
    np.testing.assert_allclose(h.val_loss[-1], loss)
    with pytest.raises(ValueError, match="eval_every needs val_data"):
        fit_ensemble(ens, (X, y), epochs=1, lr=0.05, eval_every=4, progress_bar=False)


def test_layers_the_stacked_path_cannot_run_go_through_vmap_and_stay_right():
    torch.manual_seed(0)
    frozen = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    frozen[2].bias.data.fill_(5.0)
    frozen[2].bias.requires_grad_(False)
    softmax = nn.Sequential(nn.Linear(6, 3), nn.LogSoftmax(dim=1))
    x = torch.randn(4, 6)
    for model in (frozen, softmax):
        ens = Ensemble([model, copy.deepcopy(model)])
        assert ens.backend == "vmap"
        torch.testing.assert_close(ens(x)[1], model(x))
    with pytest.raises(ValueError, match="frozen parameter"):
        Ensemble([frozen], backend="stacked")


def test_rms_norm_mlps_fall_back_to_vmap():
    ens = Ensemble(_models(dict(norm="rms"), 2))
    assert ens.backend == "vmap"
    with pytest.raises(ValueError, match="RMSNorm"):
        Ensemble(_models(dict(norm="rms"), 2), backend="stacked")


def test_models_configured_differently_are_refused():
    with pytest.raises(ValueError, match="configured differently"):
        Ensemble([nn.Sequential(nn.Linear(4, 2), nn.ReLU()), nn.Sequential(nn.Linear(4, 2), nn.Tanh())])
    with pytest.raises(ValueError, match="configured differently"):
        Ensemble([MLP(4, 2, 8, 2, residual=True), MLP(4, 2, 8, 2, residual=True, residual_scale=0.1)])


def test_a_frozen_members_running_statistics_stay_as_fit_leaves_them():
    X, y = _data()
    models = _models(dict(norm="batch"), 2)
    ens = Ensemble(copy.deepcopy(models))
    h = fit_ensemble(ens, (X, y), epochs=3, lr=[0.05, 1e38], progress_bar=False, batch_size=8)
    assert h.diverged.tolist() == [False, True]
    alone = fit(models[1], (X, y), epochs=3, optimizer=torch.optim.SGD(models[1].parameters(), lr=1e38),
                loss_fn=F.cross_entropy, progress=False, batch_size=8)
    assert alone.diverged and alone.diverged_at == h.diverged_at[1]
    for a, b in zip(ens.member(1).state_dict().values(), models[1].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs, data, words", [
    (dict(loss="mse"), "labels", "loss='mse' needs targets shaped like"),
    (dict(), "float", "needs integer class labels"),
    (dict(), "column", "needs integer class labels"),
    (dict(lr_factors=lambda t: -1.0), "labels", "lr_factors\\(0\\) must return a finite number >= 0"),
    (dict(lr_factors=lambda t: "x"), "labels", "must return a number"),
    (dict(lr_factors=lambda t: [1.0, 1.0, 1.0]), "labels", "must return a finite number"),
    (dict(loss=lambda out, y: out.sum()), "labels", "one mean loss per member"),
])
def test_bad_targets_and_schedules_raise_before_any_running_statistic_moves(kwargs, data, words):
    X, y = _data()
    y = {"labels": y, "float": y.float(), "column": y[:, None]}[data]
    ens = Ensemble(_models(dict(norm="batch"), 2))
    before = {k: v.clone() for k, v in {**ens.params, **ens.buffers}.items()}
    with pytest.raises(ValueError, match=words):
        fit_ensemble(ens, (X, y), epochs=1, lr=0.1, progress_bar=False, **kwargs)
    for k, v in {**ens.params, **ens.buffers}.items():
        assert torch.equal(v, before[k]), k
    assert ens._per_member_input is False


def test_member_history_keeps_every_evaluation_and_numpy_seeds_work():
    X, y = _data()
    ens = Ensemble(_models(dict(), 2))
    h = fit_ensemble(ens, (X, y), epochs=1, lr=0.1, val_data=(X, y), eval_every=2, batch_size=32,
                     seed=np.int64(3), progress_bar=False)
    assert len(h.member(0).val_loss) == len(h.val_steps) == 3


class _Doubled(nn.Sequential):
    def forward(self, x):
        return 2 * super().forward(x)


def _shared_activation():
    act = nn.Tanh()
    return nn.Sequential(nn.Linear(6, 5), act, nn.Linear(5, 5), act, nn.Linear(5, 3))


@pytest.mark.parametrize("build, reason", [
    (lambda: _Doubled(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), "a forward of its own"),
    (_shared_activation, "one module used at two places"),
])
def test_sequentials_the_stacked_path_would_misread_take_vmap(build, reason):
    # found by a hostile review: both ran on the stacked path and gave other numbers than each member
    torch.manual_seed(0)
    models = [build() for _ in range(3)]
    ens = Ensemble(models)
    assert ens.backend == "vmap"
    x = torch.randn(4, 6)
    for i, model in enumerate(models):
        torch.testing.assert_close(ens(x)[i], model(x))
    with pytest.raises(ValueError, match=reason):
        Ensemble(models, backend="stacked")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("nesterov, weight_decay", [(False, 0.0), (True, 1e-3)])
def test_the_momentum_buffer_equals_torchs_sgd_bit_for_bit(dtype, nesterov, weight_decay):
    # the buffer is updated in one pass (addcmul) where that rounds as torch's mul_ then add_ does
    from helpers.ensemble import _Optimizer
    g = torch.Generator().manual_seed(0)
    start = (torch.randn(3, 5, 4, generator=g) * 10.0 ** torch.randint(-3, 3, (3, 5, 4), generator=g)).to(dtype)
    ours, theirs = start.clone(), start.clone().requires_grad_()
    optimizer = _Optimizer("sgd", [ours], 0.9, nesterov, (0.9, 0.999), 1e-8, weight_decay)
    reference = torch.optim.SGD([theirs], lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay,
                                foreach=False)
    for _ in range(4):
        grad = (torch.randn(3, 5, 4, generator=g) * 10.0 ** torch.randint(-3, 3, (3, 5, 4), generator=g)).to(dtype)
        out = torch.empty_like(ours)
        optimizer.step([grad], torch.full((3,), 0.1, dtype=dtype), out=[out])
        ours = out
        optimizer.params = [ours]
        theirs.grad = grad.clone()
        reference.step()
        assert torch.equal(optimizer.state[0][0], reference.state[theirs]["momentum_buffer"])


def test_a_member_with_huge_finite_gradients_goes_on_like_fit():
    # F1: float32 gradients of ~1e19 have a finite norm whose float32 squares overflow; fit goes on, so must a member
    torch.manual_seed(0)
    X, y = torch.randn(32, 16), torch.zeros(32, 16)
    models = [nn.Linear(16, 16), nn.Linear(16, 16)]
    scales = torch.tensor([1.0, 1e19])

    def loss(out, target):
        return (out - target).flatten(1).sum(dim=1) * scales

    h = fit_ensemble(Ensemble(copy.deepcopy(models)), (X, y), epochs=2, lr=1e-30, loss=loss, progress_bar=False,
                     batch_size=32)
    assert h.diverged.tolist() == [False, False]
    for i, model in enumerate(models):
        alone = fit(model, (X, y), epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=1e-30),
                    loss_fn=lambda out, target, s=float(scales[i]): (out - target).sum() * s, progress=False,
                    batch_size=32)
        assert not alone.diverged and alone.grad_norm[0] > (1e21 if i else 0)
        _assert_same_history(h.member(i), alone, f"member {i}:")


def _frozen_norm_models(n, frozen=True):
    models = _models(dict(norm="batch"), n)
    for model in models:
        if frozen:
            model.norm2.eval()          # a BatchNorm frozen in eval mode inside a training model
    return models


@pytest.mark.parametrize("backend", ["stacked", "vmap"])
def test_a_frozen_batch_norm_stays_frozen_and_members_equal_fit(backend):
    X, y = _data()
    models = _frozen_norm_models(2)
    ens = Ensemble(copy.deepcopy(models), backend=backend)
    before = ens.buffers["norm2.running_mean"].clone()
    h = fit_ensemble(ens, (X, y), epochs=2, lr=[0.01, 0.03], momentum=0.9, progress_bar=False, batch_size=32,
                     val_data=(X, y))
    assert torch.equal(ens.buffers["norm2.running_mean"], before)
    assert not torch.equal(ens.buffers["norm1.running_mean"], _frozen_norm_models(1)[0].norm1.running_mean)
    assert ens.training and not ens.base.norm2.training
    for i, model in enumerate(models):
        alone = fit(model, (X, y), epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=[0.01, 0.03][i],
                                                                        momentum=0.9),
                    loss_fn=F.cross_entropy, progress=False, batch_size=32, val_data=(X, y))
        np.testing.assert_allclose(h.member(i).loss, alone.loss, rtol=1e-4, atol=1e-5)
        member = ens.member(i)
        assert [m.training for m in member.modules()] == [m.training for m in model.modules()]
        for a, b in zip(member.state_dict().values(), model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_evaluate_and_an_ensemble_left_in_eval_mode():
    X, y = _data()
    ens = Ensemble(_frozen_norm_models(2))
    modes = [m.training for m in ens.base.modules()]
    ens.evaluate((X, y))
    assert [m.training for m in ens.base.modules()] == modes
    ens.eval()                          # eval mode as a whole: fit_ensemble trains every module, as fit does
    before = ens.buffers["norm2.running_mean"].clone()
    fit_ensemble(ens, (X, y), epochs=1, lr=0.01, progress_bar=False, batch_size=32)
    assert ens.training and all(m.training for m in ens.base.modules())
    assert not torch.equal(ens.buffers["norm2.running_mean"], before)


def test_members_in_other_modes_module_by_module_are_refused_by_name():
    models = _frozen_norm_models(2, frozen=False)
    models[1].norm2.eval()
    with pytest.raises(ValueError, match=r"models\[1\]'s module 'norm2' is in eval mode"):
        Ensemble(models)


def test_an_infinite_threshold_leaves_a_huge_finite_gradient_unclipped_under_every_rule():
    # float32 gradients of ~1e19: finite entries, a float32 norm that overflows; inf / inf would be NaN
    X, y = torch.full((8, 3), 1e10), torch.zeros(8, 1)

    def build():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(3, 1))

    results = []
    for rule in ("norm", ["norm", "value"]):
        ens = Ensemble([build(), build()])
        h = fit_ensemble(ens, (X, y), epochs=2, lr=1e-30, loss="mse", batch_size=8, clip=math.inf, clip_rule=rule,
                         progress_bar=False)
        assert not h.diverged.any() and not h.clipped.any() and np.isfinite(h.loss).all()
        results.append(ens.params["0.weight"].clone())
    assert torch.equal(*results)


def test_seeds_as_arrays_and_an_infinite_numpy_threshold():
    X, y = _data(40)
    histories = []
    for seed in ([1, 2], torch.tensor([1, 2]), np.array([1, 2])):
        histories.append(fit_ensemble(from_seeds(lambda: MLP(12, 4, width=8, depth=1), seeds=[0, 1]), (X, y),
                                      epochs=1, lr=0.1, seed=seed, batch_size=16, progress_bar=False,
                                      clip=np.float32(np.inf)))
    for h in histories[1:]:
        assert np.array_equal(h.loss, histories[0].loss)
    with pytest.raises(TypeError, match=r"seed must be an int, got float \(1\.0\)"):
        fit_ensemble(from_seeds(lambda: MLP(12, 4, width=8, depth=1), seeds=[0, 1]), (X, y), epochs=1, lr=0.1,
                     seed=torch.tensor([1.0, 2.0]), progress_bar=False)


def _two_layers(first, last):
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    with torch.no_grad():
        m[0].weight.fill_(first)
        m[1].weight.fill_(last)
        m[0].bias.zero_()
        m[1].bias.zero_()
    return m


@pytest.mark.parametrize("x, last", [(1e5, 1e12), (1e-25, 1.0), (1e-21, 1.0)])
def test_grad_ratio_is_exact_where_a_float32_norm_overflows_or_underflows(x, last):
    # float32 norms of finite gradients: 5e35 overflows (inf / inf was NaN), 1e-25 underflows (0 / 0 was NaN),
    # 1e-21 loses digits; a healthy member next to them keeps its ratio
    X, y = torch.full((8, 3), x), torch.ones(8, 1)
    ens = Ensemble([_two_layers(1.0, last), _two_layers(0.5, 2.0)])
    h = fit_ensemble(ens, (X, y), epochs=1, lr=0.0, loss="mse", batch_size=8, progress_bar=False)
    expected = []
    for first_value, last_value in ((1.0, last), (0.5, 2.0)):
        m = _two_layers(first_value, last_value)
        F.mse_loss(m(X), y).backward()
        assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters())
        expected.append((m[0].weight.grad.double().norm() / m[1].weight.grad.double().norm()).item())
    assert not h.diverged.any()
    np.testing.assert_allclose(h.grad_ratio[0], expected, rtol=1e-6)


def test_grad_ratio_of_a_zero_gradient_stays_zero():
    X, y = torch.ones(8, 3), torch.ones(8, 1)
    h = fit_ensemble(Ensemble([_two_layers(1.0, 0.0)]), (X, y), epochs=1, lr=0.0, loss="mse", batch_size=8,
                     progress_bar=False)
    assert h.grad_ratio[0, 0] == 0.0        # the last weight's gradient is not 0, the first's is exactly 0
