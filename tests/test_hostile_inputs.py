"""Every public function of helpers.init, activations, clipping, optim, schedulers and lr_finder, given
wrong types, shapes and values, raises TypeError/ValueError naming the argument, and
modifies nothing: the tensors, parameters, gradients and optimizer it was given are
compared before and after the failed call."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import activations, clipping, init, lr_finder, optim, schedulers

NAN, INF = float("nan"), float("inf")


def _world():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    F.mse_loss(net(torch.randn(8, 3)), torch.randn(8, 2)).backward()
    opt.step()  # so that the optimizer has state (momentum buffers) to protect
    F.mse_loss(net(torch.randn(8, 3)), torch.randn(8, 2)).backward()
    data = (torch.randn(32, 3), torch.randn(32, 2))
    return SimpleNamespace(t=torch.randn(4, 3), v=torch.randn(5), net=net, params=params, opt=opt, data=data)


def _snapshot(w):
    return {
        "t": w.t.clone(), "v": w.v.clone(),
        "params": [p.detach().clone() for p in w.params],
        "grads": [p.grad.clone() for p in w.params],
        "opt": copy.deepcopy(w.opt.state_dict()),
        "data": [d.clone() for d in w.data],
    }


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def _sched(cls, *args, **kwargs):
    return lambda w: cls(w.opt, *args, **kwargs)


CASES = {
    # helpers.init
    "calculate_gain: nonlinearity not a str": (lambda w: init.calculate_gain(3), TypeError, "nonlinearity"),
    "calculate_gain: unknown nonlinearity": (lambda w: init.calculate_gain("relu6"), ValueError, "nonlinearity"),
    "calculate_gain: param not a number": (lambda w: init.calculate_gain("leaky_relu", "0.1"), ValueError, "param"),
    "calculate_gain: param NaN": (lambda w: init.calculate_gain("leaky_relu", NAN), ValueError, "param"),
    "fans: a list": (lambda w: init.fans([[1.0]]), TypeError, "tensor"),
    "fans: 1-D": (lambda w: init.fans(w.v), ValueError, "tensor"),
    "xavier_uniform_: a list": (lambda w: init.xavier_uniform_(w.t.tolist()), TypeError, "tensor"),
    "xavier_uniform_: 1-D (a bias)": (lambda w: init.xavier_uniform_(w.v), ValueError, "tensor"),
    "xavier_uniform_: gain a str": (lambda w: init.xavier_uniform_(w.t, gain="1"), TypeError, "gain"),
    "xavier_uniform_: gain inf": (lambda w: init.xavier_uniform_(w.t, gain=INF), ValueError, "gain"),
    "xavier_normal_: generator an int": (lambda w: init.xavier_normal_(w.t, generator=0), TypeError, "generator"),
    "xavier_normal_: 0-D": (lambda w: init.xavier_normal_(torch.tensor(1.0)), ValueError, "tensor"),
    "kaiming_uniform_: bad mode": (lambda w: init.kaiming_uniform_(w.t, mode="fan_avg"), ValueError, "mode"),
    "kaiming_uniform_: mode an int": (lambda w: init.kaiming_uniform_(w.t, mode=1), TypeError, "mode"),
    "kaiming_uniform_: 1-D": (lambda w: init.kaiming_uniform_(w.v), ValueError, "tensor"),
    "kaiming_normal_: bad nonlinearity": (lambda w: init.kaiming_normal_(w.t, nonlinearity="relu6"), ValueError,
                                          "nonlinearity"),
    "kaiming_normal_: a None": (lambda w: init.kaiming_normal_(w.t, a=None), TypeError, "^a must"),
    "kaiming_normal_: a NaN": (lambda w: init.kaiming_normal_(w.t, a=NAN), ValueError, "^a must"),
    "orthogonal_: 1-D": (lambda w: init.orthogonal_(w.v), ValueError, "tensor"),
    "orthogonal_: gain a str": (lambda w: init.orthogonal_(w.t, gain="x"), TypeError, "gain"),
    "orthogonal_: a numpy array": (lambda w: init.orthogonal_(w.t.numpy()), TypeError, "tensor"),
    "init_weights_: model a str": (lambda w: init.init_weights_("net", "xavier_uniform"), TypeError, "model"),
    "init_weights_: unknown scheme": (lambda w: init.init_weights_(w.net, "xavier"), ValueError, "scheme"),
    "init_weights_: scheme None": (lambda w: init.init_weights_(w.net, None), TypeError, "scheme"),
    "init_weights_: bad mode": (lambda w: init.init_weights_(w.net, "kaiming_normal", mode="bad"), ValueError,
                                "mode"),
    "init_weights_: misspelt kwarg": (lambda w: init.init_weights_(w.net, "xavier_uniform", gian=2.0), TypeError,
                                      "gian"),
    "init_weights_: no layer": (lambda w: init.init_weights_(nn.Tanh(), "orthogonal"), ValueError, "model"),
    "lsuv_: model a str": (lambda w: init.lsuv_("net", w.data[0]), TypeError, "model"),
    "lsuv_: x a list": (lambda w: init.lsuv_(w.net, w.data[0].tolist()), ValueError, "x"),
    "lsuv_: one example": (lambda w: init.lsuv_(w.net, w.data[0][:1]), ValueError, "x"),
    "lsuv_: x of the wrong width": (lambda w: init.lsuv_(w.net, torch.randn(8, 5)), ValueError, "x of shape"),
    "lsuv_: target_std 0": (lambda w: init.lsuv_(w.net, w.data[0], target_std=0), ValueError, "target_std"),
    "lsuv_: tol negative": (lambda w: init.lsuv_(w.net, w.data[0], tol=-1.0), ValueError, "tol"),
    "lsuv_: max_iter 0": (lambda w: init.lsuv_(w.net, w.data[0], max_iter=0), ValueError, "max_iter"),
    "lsuv_: generator a seed": (lambda w: init.lsuv_(w.net, w.data[0], generator=1), TypeError, "generator"),
    "lsuv_: a layer with zero output": (lambda w: init.lsuv_(w.net, torch.zeros(8, 3)), ValueError, "std"),
    # helpers.activations
    "get_activation: name an int": (lambda w: activations.get_activation(3), TypeError, "activation"),
    "get_activation: unknown name": (lambda w: activations.get_activation("relu6"), ValueError, "activation"),
    "get_activation: bad kwarg": (lambda w: activations.get_activation("leaky_relu", slope=0.1), TypeError,
                                  "slope"),
    "make_activation: name an int": (lambda w: activations.make_activation(3), TypeError, "activation"),
    "make_activation: unknown name": (lambda w: activations.make_activation("relu6"), ValueError, "activation"),
    "make_activation: bad kwarg": (lambda w: activations.make_activation("leaky_relu", slope=0.1), TypeError,
                                   "slope"),
    "make_activation: bad kwarg, from scratch": (
        lambda w: activations.make_activation("elu", from_scratch=True, beta=1.0), TypeError, "beta"),
    "name_of: a str": (lambda w: activations.name_of("relu"), TypeError, "module"),
    "LeakyReLU: slope a str": (lambda w: activations.LeakyReLU("0.1"), TypeError, "negative_slope"),
    "LeakyReLU: slope inf": (lambda w: activations.LeakyReLU(INF), ValueError, "negative_slope"),
    "ELU: alpha NaN": (lambda w: activations.ELU(alpha=NAN), ValueError, "alpha"),
    "GELU: unknown approximation": (lambda w: activations.GELU(approximate="fast"), ValueError, "approximate"),
    **{f"{name}: input a list": ((lambda cls: lambda w: cls()(w.t.tolist()))(getattr(activations, name)), TypeError,
                                 "tensor")
       for name in ("Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "Swish", "Mish", "SELU")},
    # helpers.clipping
    "clip_grad_norm_: max_norm negative": (lambda w: clipping.clip_grad_norm_(w.params, -1.0), ValueError,
                                           "max_norm"),
    "clip_grad_norm_: max_norm a str": (lambda w: clipping.clip_grad_norm_(w.params, "1"), TypeError, "max_norm"),
    "clip_grad_norm_: max_norm NaN": (lambda w: clipping.clip_grad_norm_(w.params, NAN), ValueError, "max_norm"),
    "clip_grad_norm_: norm_type 0": (lambda w: clipping.clip_grad_norm_(w.params, 1.0, norm_type=0), ValueError,
                                     "norm_type"),
    "clip_grad_norm_: norm_type a word": (lambda w: clipping.clip_grad_norm_(w.params, 1.0, norm_type="two"),
                                          TypeError, "norm_type"),
    "clip_grad_norm_: a non-tensor among tensors": (lambda w: clipping.clip_grad_norm_([*w.params, 3.0], 1e-3),
                                                    TypeError, "parameters"),
    "clip_grad_norm_: an int": (lambda w: clipping.clip_grad_norm_(5, 1.0), TypeError, "parameters"),
    "clip_grad_norm_: a str": (lambda w: clipping.clip_grad_norm_("weights", 1.0), TypeError, "parameters"),
    "clip_grad_norm_: non-finite norm": (lambda w: clipping.clip_grad_norm_([*w.params, _inf_grad()], 1e-3,
                                                                            error_if_nonfinite=True),
                                         RuntimeError, "non-finite"),
    "clip_grad_value_: clip_value negative": (lambda w: clipping.clip_grad_value_(w.params, -1.0), ValueError,
                                              "clip_value"),
    "clip_grad_value_: clip_value None": (lambda w: clipping.clip_grad_value_(w.params, None), TypeError,
                                          "clip_value"),
    "clip_grad_value_: a non-tensor among tensors": (lambda w: clipping.clip_grad_value_([*w.params, "g"], 1e-3),
                                                     TypeError, "parameters"),
    "adaptive_clip_grad_: clipping 0": (lambda w: clipping.adaptive_clip_grad_(w.params, clipping=0), ValueError,
                                        "clipping"),
    "adaptive_clip_grad_: eps negative": (lambda w: clipping.adaptive_clip_grad_(w.params, eps=-1e-3), ValueError,
                                          "eps"),
    "adaptive_clip_grad_: a non-tensor among tensors": (lambda w: clipping.adaptive_clip_grad_([*w.params, 1]),
                                                        TypeError, "parameters"),
    "grad_norms: a str": (lambda w: clipping.grad_norms("abc"), TypeError, "grads"),
    "grad_norms: norm_type negative": (lambda w: clipping.grad_norms([w.t], norm_type=-2), ValueError, "norm_type"),
    "total_norm_from_norms: floats": (lambda w: clipping.total_norm_from_norms([1.0, 2.0]), TypeError, "norms"),
    "get_total_norm: norm_type NaN": (lambda w: clipping.get_total_norm([w.t], norm_type=NAN), ValueError,
                                      "norm_type"),
    "get_total_norm: a str among tensors": (lambda w: clipping.get_total_norm([w.t, "x"]), TypeError, "grads"),
    "clip_grads_with_norm_: max_norm negative": (lambda w: clipping.clip_grads_with_norm_(
        w.params, -1.0, torch.tensor(1.0)), ValueError, "max_norm"),
    "clip_grads_with_norm_: total_norm a float": (lambda w: clipping.clip_grads_with_norm_(w.params, 1e-3, 3.0),
                                                  TypeError, "total_norm"),
    "clip_grads_with_norm_: total_norm a vector": (lambda w: clipping.clip_grads_with_norm_(
        w.params, 1e-3, torch.ones(3)), TypeError, "total_norm"),
    "unitwise_norm: a list": (lambda w: clipping.unitwise_norm([1.0, 2.0]), TypeError, "x"),
    # helpers.optim
    **{f"{cls.__name__}: {arg} {value!r}": ((lambda c, a, v: lambda w: c(w.params, **{a: v}))(cls, arg, value),
                                           error, arg)
       for cls in (optim.SGD, optim.Adam, optim.AdamW, optim.RAdam)
       for arg, value, error in (("lr", -0.1, ValueError), ("lr", "0.1", TypeError), ("lr", NAN, ValueError),
                                 ("weight_decay", -1.0, ValueError), ("weight_decay", None, TypeError))},
    "SGD: momentum negative": (lambda w: optim.SGD(w.params, lr=0.1, momentum=-0.5), ValueError, "momentum"),
    "SGD: dampening above 1": (lambda w: optim.SGD(w.params, lr=0.1, dampening=2.0), ValueError, "dampening"),
    "SGD: nesterov without momentum": (lambda w: optim.SGD(w.params, lr=0.1, nesterov=True), ValueError,
                                       "nesterov"),
    "SGD: no parameters": (lambda w: optim.SGD([], lr=0.1), ValueError, "param"),
    "SGD: a str for the parameters": (lambda w: optim.SGD("weights", lr=0.1), TypeError, "param"),
    "Adam: one beta": (lambda w: optim.Adam(w.params, betas=(0.9,)), TypeError, "betas"),
    "Adam: beta1 = 1": (lambda w: optim.Adam(w.params, betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    "Adam: beta2 a str": (lambda w: optim.Adam(w.params, betas=(0.9, "0.999")), TypeError, r"betas\[1\]"),
    "Adam: eps negative": (lambda w: optim.Adam(w.params, eps=-1e-8), ValueError, "eps"),
    "AdamW: betas a float": (lambda w: optim.AdamW(w.params, betas=0.9), TypeError, "betas"),
    "RAdam: eps inf": (lambda w: optim.RAdam(w.params, eps=INF), ValueError, "eps"),
    # helpers.schedulers
    "StepDecay: optimizer a str": (lambda w: schedulers.StepDecay("sgd", 3), TypeError, "optimizer"),
    "StepDecay: step_size 0": (_sched(schedulers.StepDecay, 0), ValueError, "step_size"),
    "StepDecay: step_size a float": (_sched(schedulers.StepDecay, 2.5), TypeError, "step_size"),
    "StepDecay: gamma 0": (_sched(schedulers.StepDecay, 2, gamma=0.0), ValueError, "gamma"),
    "ExponentialDecay: gamma negative": (_sched(schedulers.ExponentialDecay, -0.5), ValueError, "gamma"),
    "ExponentialDecay: gamma a str": (_sched(schedulers.ExponentialDecay, "0.9"), TypeError, "gamma"),
    "ExponentialDecay: optimizer a model": (lambda w: schedulers.ExponentialDecay(w.net, 0.9), TypeError,
                                            "optimizer"),
    "LinearDecay: total_steps 0": (_sched(schedulers.LinearDecay, 0), ValueError, "total_steps"),
    "LinearDecay: end_factor above 1": (_sched(schedulers.LinearDecay, 10, end_factor=1.5), ValueError,
                                        "end_factor"),
    "CosineAnnealing: eta_min negative": (_sched(schedulers.CosineAnnealing, 10, eta_min=-1.0), ValueError,
                                          "eta_min"),
    "CosineAnnealing: total_steps a float": (_sched(schedulers.CosineAnnealing, 2.5), TypeError, "total_steps"),
    "WarmupCosine: total_steps not after the warm-up": (_sched(schedulers.WarmupCosine, 10, 5), ValueError,
                                                        "total_steps"),
    "WarmupCosine: warmup_steps negative": (_sched(schedulers.WarmupCosine, -1, 5), ValueError, "warmup_steps"),
    "WarmupCosine: start_factor 0": (_sched(schedulers.WarmupCosine, 2, 5, start_factor=0.0), ValueError,
                                     "start_factor"),
    "OneCycle: total_steps 1": (_sched(schedulers.OneCycle, 1), ValueError, "total_steps"),
    "OneCycle: pct_start above 1": (_sched(schedulers.OneCycle, 10, pct_start=1.5), ValueError, "pct_start"),
    "OneCycle: anneal_strategy unknown": (_sched(schedulers.OneCycle, 10, anneal_strategy="exp"), ValueError,
                                          "anneal_strategy"),
    "OneCycle: div_factor 0": (_sched(schedulers.OneCycle, 10, div_factor=0.0), ValueError, "div_factor"),
    "OneCycle: cycle_momentum a str": (_sched(schedulers.OneCycle, 10, cycle_momentum="yes"), TypeError,
                                       "cycle_momentum"),
    "WarmupStableDecay: decay_steps 0": (_sched(schedulers.WarmupStableDecay, 2, 0, 10), ValueError, "decay_steps"),
    "WarmupStableDecay: total_steps too short": (_sched(schedulers.WarmupStableDecay, 5, 6, 10), ValueError,
                                                 "total_steps"),
    "WarmupStableDecay: unknown decay": (_sched(schedulers.WarmupStableDecay, 2, 3, 10, decay="step"), ValueError,
                                         "decay"),
    "WarmupStableDecay: warmup_steps a float": (_sched(schedulers.WarmupStableDecay, 2.5, 3, 10), TypeError,
                                                "warmup_steps"),
    "cosine: t a str": (lambda w: schedulers.cosine("a", 10, 1.0), TypeError, "t"),
    "cosine: total 0": (lambda w: schedulers.cosine(1, 0, 1.0), ValueError, "total"),
    "cosine: eta_max NaN": (lambda w: schedulers.cosine(1, 10, NAN), ValueError, "eta_max"),
    "suggest_lr: lengths differ": (lambda w: lr_finder.suggest_lr([1e-3, 1e-2], [1.0]), ValueError, "lrs"),
    "suggest_lr: skip_start negative": (lambda w: lr_finder.suggest_lr([1e-3, 1e-2], [1.0, 0.5], skip_start=-1),
                                        ValueError, "skip_start"),
    **{f"lr_finder: {arg} {value!r}": ((lambda a, v: lambda w: lr_finder.lr_finder(
        w.net, w.data, F.mse_loss, w.opt, **{"num_steps": 5, a: v}))(arg, value), error, arg)
       for arg, value, error in (("start_lr", 0.0, ValueError), ("end_lr", 1e-7, ValueError),
                                 ("num_steps", 1, ValueError), ("beta", 1.0, ValueError),
                                 ("diverge_factor", 1.0, ValueError), ("suggestion", "max", ValueError),
                                 ("batch_size", 0, ValueError), ("seed", -1, ValueError),
                                 ("skip_start", "5", TypeError))},
    "lr_finder: model a str": (lambda w: lr_finder.lr_finder("net", w.data, F.mse_loss, w.opt), TypeError, "model"),
    "lr_finder: optimizer a str": (lambda w: lr_finder.lr_finder(w.net, w.data, F.mse_loss, "sgd"), TypeError,
                                   "optimizer"),
    "lr_finder: loss_fn a str": (lambda w: lr_finder.lr_finder(w.net, w.data, "mse", w.opt), TypeError, "loss_fn"),
    "lr_finder: train_data an int": (lambda w: lr_finder.lr_finder(w.net, 42, F.mse_loss, w.opt), TypeError,
                                     "train_data"),
    "lr_finder: X and y of different lengths": (lambda w: lr_finder.lr_finder(
        w.net, (w.data[0], w.data[1][:5]), F.mse_loss, w.opt), ValueError, "train_data"),
}

# issue 16: the new error paths
CASES.update({
    "SGD: lr a tensor of two elements": (lambda w: optim.SGD(w.params, lr=torch.tensor([0.1, 0.2])), ValueError,
                                         r"lr as a tensor must have one .*shape \(2,\)"),
    "Adam: lr a negative tensor": (lambda w: optim.Adam(w.params, lr=torch.tensor(-0.1)), ValueError, "lr must be >="),
    "RAdam: lr an integer tensor": (lambda w: optim.RAdam(w.params, lr=torch.tensor(1)), ValueError,
                                    "lr as a tensor .*torch.int64"),
    "lr_finder: an all-frozen model": (lambda w: lr_finder.lr_finder(
        _frozen(w.net), w.data, F.mse_loss, w.opt), ValueError, "no parameter that requires a gradient"),
    "lr_finder: an empty generator": (lambda w: lr_finder.lr_finder(w.net, (b for b in []), F.mse_loss, w.opt),
                                      ValueError, "train_data yielded no batch"),
    "lr_finder: a list of neither tensors nor batches": (lambda w: lr_finder.lr_finder(
        w.net, [1, 2, 3], F.mse_loss, w.opt), TypeError, r"train_data .*list of \(x, y\) batches"),
})

# the reviewer's defects: non-floating activations (OneCycle past its end: tests/test_schedulers.py)
CASES.update({
    "SELU: an integer tensor": (lambda w: activations.SELU()(torch.tensor([-2, 0, 3])), TypeError,
                                r"SELU got x of dtype torch.int64.*accepted: floating"),
    "ELU: a bool tensor": (lambda w: activations.ELU()(torch.tensor([True])), TypeError, r"ELU .*torch.bool"),
    "ReLU: a bool tensor": (lambda w: activations.ReLU()(torch.tensor([True])), TypeError,
                            r"ReLU .*torch.bool.*integer dtypes \(not bool\)"),
    "Sigmoid: a complex tensor": (lambda w: activations.Sigmoid()(torch.tensor([1j])), TypeError,
                                  r"Sigmoid takes real tensors.*complex64"),
})


def test_reviewer_errors_of_amp_ensemble_and_rms_norm_modify_nothing():
    """micro_batches an iterator / a bad micro-batch late in the list; clip_rule None; RMSNorm on integers."""
    from helpers.amp import DynamicLossScaler, accumulation_step
    from helpers.ensemble import Ensemble, fit_ensemble
    from helpers.normalization import RMSNorm

    w = _world()
    before = _snapshot(w)
    chunks = [(torch.randn(4, 3), torch.randn(4, 2))] * 2
    for batches, error, text in ((iter(chunks), TypeError, "micro_batches must be a list or tuple"),
                                 (chunks + [("x", None)], TypeError, r"micro_batches\[2\] x must be a tensor")):
        with pytest.raises(error, match=text):
            accumulation_step(w.net, w.opt, DynamicLossScaler(), batches, F.mse_loss, dtype=None)
    assert all(_same(before[k], v) for k, v in _snapshot(w).items())
    ens = Ensemble([nn.Linear(3, 2), nn.Linear(3, 2)])
    params = {k: v.detach().clone() for k, v in ens.params.items()}
    with pytest.raises(TypeError, match=r"clip_rule must be one of .*got None of type NoneType"):
        fit_ensemble(ens, w.data, epochs=1, lr=0.1, clip=1.0, clip_rule=None, loss="mse", progress_bar=False)
    assert _same(params, {k: v.detach() for k, v in ens.params.items()})
    with pytest.raises(TypeError, match=r"RMSNorm needs a floating or complex input.*torch.int64"):
        RMSNorm(3)(torch.ones(2, 3, dtype=torch.long))


def _frozen(net):
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def test_new_errors_of_other_modules_are_clear_and_modify_nothing():
    """Issue 16: the mixed-dtype normalization error and the monitor on a model with nothing to watch."""
    from helpers.diagnostics import GradientMonitor
    from helpers.normalization import BatchNorm1d, BatchNorm2d, LayerNorm

    for layer, x in ((BatchNorm1d(3), torch.randn(4, 3, dtype=torch.float64)),
                     (BatchNorm2d(3), torch.randn(4, 3, 2, 2, dtype=torch.float64)),
                     (LayerNorm(3), torch.randn(4, 3, dtype=torch.float64)),
                     (BatchNorm1d(3).double(), torch.randn(4, 3).bfloat16())):
        before = copy.deepcopy(layer.state_dict())
        with pytest.raises(TypeError, match=r"input of dtype torch\.\w+ does not match .* accepted: "):
            layer(x)
        assert _same(before, layer.state_dict())
    with pytest.raises(ValueError, match=r"nothing GradientMonitor can watch: .*ConvTranspose3d.*got ModuleList"):
        GradientMonitor(nn.ModuleList())


def _inf_grad():
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([INF, 1.0])
    return p


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_a_clear_error_and_modifies_nothing(case):
    call, error, pattern = CASES[case]
    w = _world()
    before = _snapshot(w)
    with pytest.raises(error, match=pattern):
        call(w)
    after = _snapshot(w)
    for key in before:
        assert _same(before[key], after[key]), f"{case}: {key} was modified by a call that failed"
    assert not any("initial_lr" in g for g in w.opt.param_groups), f"{case}: a scheduler attached itself"


def test_the_table_covers_every_public_function():
    """A new public function must get hostile cases here too."""
    covered = {case.split(":")[0] for case in CASES}
    public = set()
    for module in (init, activations, clipping, optim, schedulers, lr_finder):
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if callable(obj) and not isinstance(obj, type) or isinstance(obj, type) and name != "Activation":
                public.add(name)
    exempt = {
        "Identity",            # takes no argument
        "LRFinderResult",      # a record returned by lr_finder
        "distributed_clip_grad_norm_",  # needs a process group: tests/test_distributed_clipping.py
    }
    missing = public - covered - exempt
    assert not missing, f"no hostile-input case for {sorted(missing)}"
