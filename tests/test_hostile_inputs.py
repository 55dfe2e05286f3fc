"""Every public function and class of every helpers module (each name in a module's ``__all__``), given
wrong types, shapes and values, raises TypeError/ValueError naming the argument, and
modifies nothing: the tensors, parameters, gradients and optimizer it was given are
compared before and after the failed call. The few names without a case here are listed
below with a pointer to the test that gives them bad arguments, or take no argument, or are records."""

import ast
import copy
import dataclasses
import importlib
import inspect
import math
import pkgutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import helpers
from helpers import (
    activations,
    amp,
    checkup,
    claims,
    clipping,
    data,
    device,
    diagnostics,
    ensemble,
    exercises,
    init,
    lr_finder,
    models,
    normalization,
    optim,
    plotting,
    progress,
    recurrent,
    regularization,
    schedulers,
    sharding,
    solutions,
    theory,
    training,
    transformer,
)

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
    # F7: checked for every layer before the first one changes
    "init_weights_: a lazy layer": (
        lambda w: init.init_weights_(nn.Sequential(nn.Linear(3, 4), nn.LazyLinear(2)), "xavier_uniform"),
        ValueError, "model has a lazy layer"),
    "lsuv_: a lazy layer": (lambda w: init.lsuv_(nn.Sequential(nn.Linear(3, 4), nn.LazyLinear(2)), w.t),
                            ValueError, "model has a lazy layer"),
    "scale_init_: a lazy layer": (lambda w: models.scale_init_(nn.Sequential(nn.Linear(3, 4), nn.LazyLinear(2))),
                                  ValueError, "model has a lazy layer"),
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
       for name in ("Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "Swish", "Mish", "SELU",
                    "Identity", "Activation")},
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
    # F7: a clip_value the gradients' dtype cannot hold, refused before the first gradient is clamped
    "clip_grad_value_: clip_value beyond float32": (lambda w: clipping.clip_grad_value_(w.params, 1e39), ValueError,
                                                    "clip_value must fit every gradient's dtype, got 1e\\+39"),
    "clip_grad_value_: beyond a float16 gradient": (
        lambda w: clipping.clip_grad_value_([*w.params, _half_grad()], 1e5), ValueError, "torch.float16"),
    "clip_grad_value_: a complex gradient": (lambda w: clipping.clip_grad_value_([*w.params, _complex_grad()], 1.0),
                                             TypeError, "complex64"),
    # F9: torch's foreach keyword and its spellings of numbers, and what is still refused
    "clip_grad_value_: foreach a str": (lambda w: clipping.clip_grad_value_(w.params, 1.0, foreach="yes"), TypeError,
                                        "foreach must be None, True or False"),
    "clip_grad_value_: clip_value two numbers": (lambda w: clipping.clip_grad_value_(w.params, torch.ones(2)),
                                                 TypeError, "clip_value as a tensor must hold one real number"),
    "clip_grad_norm_: foreach 1": (lambda w: clipping.clip_grad_norm_(w.params, 1.0, foreach=1), TypeError,
                                   "foreach"),
    "clip_grad_norm_: foreach True on meta": (lambda w: clipping.clip_grad_norm_(_meta_param(), 1.0, foreach=True),
                                              ValueError, "foreach=True needs torch's foreach kernels"),
    "clip_grad_norm_: max_norm two numbers": (lambda w: clipping.clip_grad_norm_(w.params, torch.ones(2)), TypeError,
                                              "max_norm as a tensor"),
    "clip_grad_norm_: norm_type a complex tensor": (
        lambda w: clipping.clip_grad_norm_(w.params, 1.0, norm_type=torch.tensor(2j)), TypeError, "norm_type"),
    "get_total_norm: foreach a str": (lambda w: clipping.get_total_norm([p.grad for p in w.params], foreach="no"),
                                      TypeError, "foreach"),
    "clip_grads_with_norm_: foreach a str": (
        lambda w: clipping.clip_grads_with_norm_(w.params, 1.0, torch.tensor(2.0), foreach="no"), TypeError,
        "foreach"),
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
    # F9: torch's implementation options: foreach taken, the others refused by name when on
    "SGD: fused on": (lambda w: optim.SGD(w.params, lr=0.1, fused=True), ValueError, "fused=True is not supported"),
    "SGD: foreach a str": (lambda w: optim.SGD(w.params, lr=0.1, foreach="yes"), TypeError, "foreach"),
    "Adam: capturable on": (lambda w: optim.Adam(w.params, capturable=True), ValueError, "capturable=True"),
    "AdamW: differentiable on": (lambda w: optim.AdamW(w.params, differentiable=True), ValueError,
                                 "differentiable=True"),
    "RAdam: differentiable a str": (lambda w: optim.RAdam(w.params, differentiable="no"), TypeError,
                                    "differentiable must be a bool"),
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
    # F8: last_epoch named (torch's KeyError about initial_lr said nothing about it)
    "StepDecay: last_epoch a str": (_sched(schedulers.StepDecay, 2, last_epoch="a"), TypeError, "last_epoch"),
    "CosineAnnealing: last_epoch -5": (_sched(schedulers.CosineAnnealing, 10, last_epoch=-5), ValueError,
                                       "last_epoch must be an int >= -1"),
    "OneCycle: last_epoch 2.5": (_sched(schedulers.OneCycle, 10, last_epoch=2.5), TypeError, "last_epoch"),
    "WarmupStableDecay: last_epoch None": (_sched(schedulers.WarmupStableDecay, 2, 3, 10, last_epoch=None),
                                           TypeError, "last_epoch"),
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


# issue 19: every other module's public functions and classes
_NEVER_WRITTEN = str(Path(tempfile.gettempdir()) / "hostile-inputs-never-written.pt")


def _two_linears():
    return ensemble.Ensemble([nn.Linear(3, 2), nn.Linear(3, 2)])


def _fit(w, **overrides):
    kwargs = {"model": w.net, "train_data": w.data, "epochs": 1, "optimizer": w.opt, "loss_fn": F.mse_loss,
              "progress": False} | overrides
    return training.fit(kwargs.pop("model"), kwargs.pop("train_data"), **kwargs)


def _fit_ensemble(w, **overrides):
    """fit_ensemble on two linear models; a failed call must leave the ensemble's parameters as they were."""
    kwargs = {"ensemble": _two_linears(), "train_data": w.data, "epochs": 1, "lr": 0.1, "loss": "mse",
              "progress_bar": False} | overrides
    ens = kwargs.pop("ensemble")
    before = {k: v.detach().clone() for k, v in getattr(ens, "params", {}).items()}
    try:
        return ensemble.fit_ensemble(ens, kwargs.pop("train_data"), **kwargs)
    finally:
        assert _same(before, {k: v.detach() for k, v in getattr(ens, "params", {}).items()})


def _accumulate(w, **overrides):
    kwargs = {"model": w.net, "optimizer": w.opt, "scaler": amp.DynamicLossScaler(), "micro_batches": [w.data],
              "loss_fn": F.mse_loss, "dtype": None} | overrides
    positional = [kwargs.pop(k) for k in ("model", "optimizer", "scaler", "micro_batches", "loss_fn")]
    return amp.accumulation_step(*positional, **kwargs)


CASES.update({
    "DynamicLossScaler: init_scale 0": (lambda w: amp.DynamicLossScaler(init_scale=0.0), ValueError, "init_scale"),
    "DynamicLossScaler: growth_factor 1": (lambda w: amp.DynamicLossScaler(growth_factor=1.0),
                                           ValueError, "growth_factor"),
    "DynamicLossScaler: backoff_factor 1.5": (lambda w: amp.DynamicLossScaler(backoff_factor=1.5),
                                              ValueError, "backoff_factor"),
    "DynamicLossScaler: growth_interval 0": (lambda w: amp.DynamicLossScaler(growth_interval=0),
                                             ValueError, "growth_interval"),
    "DynamicLossScaler: enabled a str": (lambda w: amp.DynamicLossScaler(enabled="yes"), TypeError, "enabled"),
    "overflow_fraction: a list": (lambda w: amp.overflow_fraction([1.0, 2.0]), TypeError, "values"),
    "overflow_fraction: dtype a str": (lambda w: amp.overflow_fraction(w.t, dtype="float16"), TypeError, "dtype"),
    "overflow_fraction: dtype an integer type": (lambda w: amp.overflow_fraction(w.t, dtype=torch.int8),
                                                 TypeError, "dtype"),
    "accumulation_step: model a str": (lambda w: _accumulate(w, model="net"), TypeError, "model"),
    "accumulation_step: max_norm negative": (lambda w: _accumulate(w, max_norm=-1.0), ValueError, "max_norm"),
    "accumulation_step: scaler a float": (lambda w: _accumulate(w, scaler=1024.0), TypeError, "scaler"),
    "checkup: monitor a str": (lambda w: checkup.checkup("monitor"), TypeError, "monitor"),
    "checkup: vanishing negative": (lambda w: checkup.checkup(diagnostics.GradientMonitor(w.net), vanishing=-1.0),
                                    ValueError, "vanishing"),
    "checkup: history a list": (lambda w: checkup.checkup(diagnostics.GradientMonitor(w.net), history=[1.0]),
                                TypeError, "history"),
    "checkup: max_spikes negative": (lambda w: checkup.checkup(diagnostics.GradientMonitor(w.net), max_spikes=-1),
                                     ValueError, "max_spikes"),
    "loss_spikes: a str": (lambda w: checkup.loss_spikes("abc"), TypeError, "losses"),
    "loss_spikes: factor 0.5": (lambda w: checkup.loss_spikes([1.0, 2.0, 3.0], factor=0.5), ValueError, "factor"),
    "loss_spikes: window 0": (lambda w: checkup.loss_spikes([1.0, 2.0, 3.0], window=0), ValueError, "window"),
    "claim: value a word": (lambda w: claims.claim("x", "one", low=0.0), TypeError, "value"),
    # F8: TypeError/ValueError naming the argument, never AssertionError or float()'s message
    "claim: value a numeric str": (lambda w: claims.claim("x", "1.0", low=0.0), TypeError, "value must be a number"),
    "claim: low a str": (lambda w: claims.claim("x", 1.0, low="a"), TypeError, "low must be a number"),
    "claim: low above high": (lambda w: claims.claim("x", 1.0, low=2, high=0), ValueError, "low must be <= high"),
    "claim: low NaN": (lambda w: claims.claim("x", 1.0, low=NAN), ValueError, "low must be a real number"),
    "claim_close: rel a str": (lambda w: claims.claim_close("x", 1.0, 1.0, rel="0.1"), TypeError, "rel"),
    "claim_close: abs None": (lambda w: claims.claim_close("x", 1.0, 1.0, abs=None), TypeError, "abs"),
    "claim_close: value None": (lambda w: claims.claim_close("x", None, 1), TypeError, "value must be a number"),
    "claim_close: value two numbers": (lambda w: claims.claim_close("x", w.v[:2], 1.0), TypeError,
                                       "value must be one number"),
    "claim_close: value a str": (lambda w: claims.claim_close("x", "1.0", 1.0), TypeError, "value must be a number"),
    "claim: neither low nor high": (lambda w: claims.claim("x", 1.0), ValueError, "low, high"),
    "claim_close: rel negative": (lambda w: claims.claim_close("x", 1.0, 1.0, rel=-1.0), ValueError, "rel"),
    "describe_seeds: a str": (lambda w: claims.describe_seeds("abc"), TypeError, "values"),
    "seed_spread: a str": (lambda w: claims.seed_spread("abc"), TypeError, "values"),
    "claim_seeds: too few seeds": (lambda w: claims.claim_seeds("x", [1.0], low=0.0), ValueError, "values"),
    "claim_seeds: require unknown": (
        lambda w: claims.claim_seeds("x", [1.0, 2.0, 3.0, 4.0, 5.0], low=0.0, require="mean"),
        ValueError, "require"),
    "claim_gap: worse a str": (lambda w: claims.claim_gap("x", [1.0, 2.0, 3.0, 4.0, 5.0], "abcde"), TypeError, "worse"),
    "claim_gap: margin negative": (
        lambda w: claims.claim_gap("x", [3.0, 4.0, 5.0, 6.0, 7.0], [1.0, 2.0, 3.0, 4.0, 5.0], margin=-1.0),
        ValueError, "margin"),
    "digits: test_fraction 1.5": (lambda w: data.digits(test_fraction=1.5), ValueError, "test_fraction"),
    "digits: n_train 0": (lambda w: data.digits(n_train=0), ValueError, "n_train"),
    "digits: seed a str": (lambda w: data.digits(seed="0"), TypeError, "seed"),
    "two_spirals: n 0": (lambda w: data.two_spirals(0), ValueError, "n"),
    "two_spirals: noise negative": (lambda w: data.two_spirals(10, noise=-1.0), ValueError, "noise"),
    "two_spirals: n a float": (lambda w: data.two_spirals(10.5), TypeError, "n"),
    "adding_problem: n 0": (lambda w: data.adding_problem(0, 10), ValueError, "n"),
    "adding_problem: seq_len 1": (lambda w: data.adding_problem(8, 1), ValueError, "seq_len"),
    "copy_task: vocab 1": (lambda w: data.copy_task(8, vocab=1), ValueError, "vocab"),
    "copy_task: length 0": (lambda w: data.copy_task(8, length=0), ValueError, "length"),
    "shuffled_batches: batch_size 0": (lambda w: list(data.shuffled_batches(w.data, 0, torch.Generator())),
                                       ValueError, "batch_size"),
    "shuffled_batches: generator an int": (lambda w: list(data.shuffled_batches(w.data, 4, 0)), TypeError, "generator"),
    "ordered_batches: batch_size a float": (lambda w: list(data.ordered_batches(w.data, 2.5)), TypeError, "batch_size"),
    "ordered_batches: data an int": (lambda w: list(data.ordered_batches(42, 4)), TypeError, "data"),
    "check_data: an int": (lambda w: data.check_data("train_data", 42, True), TypeError, "train_data"),
    "check_data: None when required": (lambda w: data.check_data("train_data", None, True), TypeError, "train_data"),
    "get_device: unknown name": (lambda w: device.get_device("tpu"), ValueError, "prefer"),
    "get_device: an int": (lambda w: device.get_device(3), TypeError, "prefer"),
    "seed_everything: a str": (lambda w: device.seed_everything("0"), TypeError, "seed"),
    "seed_everything: negative": (lambda w: device.seed_everything(-1), ValueError, "seed"),
    "GradientMonitor: model a str": (lambda w: diagnostics.GradientMonitor("net"), TypeError, "model"),
    "GradientMonitor: every 0": (lambda w: diagnostics.GradientMonitor(w.net, every=0), ValueError, "every"),
    "GradientMonitor: saturation_level 2": (lambda w: diagnostics.GradientMonitor(w.net, saturation_level=2.0),
                                            ValueError, "saturation_level"),
    "activation_grad_norms: model a str": (lambda w: diagnostics.activation_grad_norms("net", *w.data, F.mse_loss),
                                           TypeError, "model"),
    "activation_grad_norms: x of the wrong width": (
        lambda w: diagnostics.activation_grad_norms(w.net, torch.randn(8, 5), w.data[1][:8], F.mse_loss),
        RuntimeError, "shapes cannot be multiplied"),
    "block_grad_norms: model a str": (lambda w: diagnostics.block_grad_norms("net"), TypeError, "model"),
    "capture_activations: model a str": (lambda w: diagnostics.capture_activations("net", w.data[0]),
                                         TypeError, "model"),
    "capture_activations: x a list": (lambda w: diagnostics.capture_activations(w.net, w.data[0].tolist()),
                                      TypeError, "x"),
    "grad_norms_for_batch: model a str": (lambda w: diagnostics.grad_norms_for_batch("net", *w.data, F.mse_loss),
                                          TypeError, "model"),
    "grad_norms_for_batch: y a list": (
        lambda w: diagnostics.grad_norms_for_batch(w.net, w.data[0], w.data[1].tolist(), F.mse_loss),
        TypeError, "y"),
    "jacobian_singular_values: fn a str": (lambda w: diagnostics.jacobian_singular_values("f", w.v), TypeError, "fn"),
    "jacobian_singular_values: x a list": (lambda w: diagnostics.jacobian_singular_values(torch.tanh, [1.0, 2.0]),
                                           ValueError, "x must be a 1-D tensor"),
    "layer_grad_norms: model a str": (lambda w: diagnostics.layer_grad_norms("net"), TypeError, "model"),
    "trained_weight: layer a str": (lambda w: diagnostics.trained_weight("layer"), TypeError, "layer"),
    "trained_weight: a layer without weight": (lambda w: diagnostics.trained_weight(nn.Tanh()), ValueError, "layer"),
    "watched_weights: model a str": (lambda w: diagnostics.watched_weights("net"), TypeError, "model"),
    "weighted_layers: model a str": (lambda w: diagnostics.weighted_layers("net"), TypeError, "model"),
    "Ensemble: no model": (lambda w: ensemble.Ensemble([]), ValueError, "models"),
    "Ensemble: a str": (lambda w: ensemble.Ensemble("abc"), TypeError, "models"),
    "Ensemble: backend unknown": (lambda w: ensemble.Ensemble([nn.Linear(3, 2)] * 2, backend="gpu"),
                                  ValueError, "backend"),
    "Ensemble: models of different shapes": (lambda w: ensemble.Ensemble([nn.Linear(3, 2), nn.Linear(3, 4)]),
                                             ValueError, "models"),
    "fit_ensemble: ensemble a model": (lambda w: _fit_ensemble(w, ensemble=w.net), TypeError, "ensemble"),
    "fit_ensemble: epochs 0": (lambda w: _fit_ensemble(w, epochs=0), ValueError, "epochs"),
    "fit_ensemble: lr negative": (lambda w: _fit_ensemble(w, lr=-0.1), ValueError, "lr"),
    "fit_ensemble: optimizer unknown": (lambda w: _fit_ensemble(w, optimizer="lbfgs"), ValueError, "optimizer"),
    "fit_ensemble: loss unknown": (lambda w: _fit_ensemble(w, loss="hinge"), ValueError, "loss"),
    "fit_ensemble: train_data an int": (lambda w: _fit_ensemble(w, train_data=42), TypeError, "train_data"),
    "fit_ensemble: batch_size 0": (lambda w: _fit_ensemble(w, batch_size=0), ValueError, "batch_size"),
    "from_seeds: build a str": (lambda w: ensemble.from_seeds("mlp", [0, 1]), TypeError, "build"),
    "from_seeds: no seed": (lambda w: ensemble.from_seeds(lambda: nn.Linear(3, 2), []), ValueError, "seeds"),
    "from_seeds: a str of seeds": (lambda w: ensemble.from_seeds(lambda: nn.Linear(3, 2), "01"), TypeError, "seeds"),
    "show_solution: unknown exercise": (lambda w: exercises.show_solution("99.9"), ValueError, "exercise"),
    "show_solution: a list": (lambda w: exercises.show_solution([3, 1]), TypeError, "exercise"),
    "exercise_id: unknown": (lambda w: solutions.exercise_id("99.9"), ValueError, "exercise"),
    "exercise_id: a list": (lambda w: solutions.exercise_id([3, 1]), TypeError, "exercise"),
    "MLP: depth negative": (lambda w: models.MLP(3, 2, 4, -1), ValueError, "depth"),
    "MLP: in_features 0": (lambda w: models.MLP(0, 2, 4, 2), ValueError, "in_features"),
    "MLP: width a float": (lambda w: models.MLP(3, 2, 4.5, 2), TypeError, "width"),
    "MLP: activation unknown": (lambda w: models.MLP(3, 2, 4, 2, activation="relu6"), ValueError, "activation"),
    "MLP: norm unknown": (lambda w: models.MLP(3, 2, 4, 2, norm="group"), ValueError, "norm"),
    "MLP: dropout 1.5": (lambda w: models.MLP(3, 2, 4, 2, dropout=1.5), ValueError, "dropout"),
    "ConvNet: no channel": (lambda w: models.ConvNet(channels=()), ValueError, "channels"),
    "ConvNet: out_features 0": (lambda w: models.ConvNet(out_features=0), ValueError, "out_features"),
    "ConvNet: norm unknown": (lambda w: models.ConvNet(norm="group"), ValueError, "norm"),
    "DenseBlock: growth 0": (lambda w: models.DenseBlock(3, 0, 2), ValueError, "growth"),
    "DenseBlock: layers a str": (lambda w: models.DenseBlock(3, 4, "2"), TypeError, "layers"),
    "scale_init_: model a str": (lambda w: models.scale_init_("net"), TypeError, "model"),
    "scale_init_: gain NaN": (lambda w: models.scale_init_(w.net, gain=NAN), ValueError, "gain"),
    "with_torch_layers: model a str": (lambda w: models.with_torch_layers("net"), TypeError, "model"),
    "BatchNorm1d: num_features 0": (lambda w: normalization.BatchNorm1d(0), ValueError, "num_features"),
    "BatchNorm1d: eps 0": (lambda w: normalization.BatchNorm1d(3, eps=0.0), ValueError, "eps"),
    "BatchNorm1d: momentum 2": (lambda w: normalization.BatchNorm1d(3, momentum=2.0), ValueError, "momentum"),
    "BatchNorm1d: input of the wrong width": (lambda w: normalization.BatchNorm1d(3)(torch.randn(4, 5)),
                                              ValueError, "expects 3 channels"),
    "BatchNorm2d: num_features a str": (lambda w: normalization.BatchNorm2d("3"), TypeError, "num_features"),
    "BatchNorm2d: a 2-D input": (lambda w: normalization.BatchNorm2d(3)(w.t), ValueError, "input"),
    "LayerNorm: normalized_shape 0": (lambda w: normalization.LayerNorm(0), ValueError, "normalized_shape"),
    "LayerNorm: normalized_shape a str": (lambda w: normalization.LayerNorm("3"), TypeError, "normalized_shape"),
    "LayerNorm: input of the wrong width": (lambda w: normalization.LayerNorm(5)(w.t), ValueError, "input"),
    "RMSNorm: eps negative": (lambda w: normalization.RMSNorm(3, eps=-1.0), ValueError, "eps"),
    "RMSNorm: normalized_shape 0": (lambda w: normalization.RMSNorm(0), ValueError, "normalized_shape"),
    "WeightNormLinear: in_features 0": (lambda w: normalization.WeightNormLinear(0, 2), ValueError, "in_features"),
    "WeightNormLinear: bias a str": (lambda w: normalization.WeightNormLinear(3, 2, bias="yes"), TypeError, "bias"),
    "plot_layer_grad_norms: a str": (lambda w: plotting.plot_layer_grad_norms("abc"), ValueError, "norms"),
    "plot_layer_grad_norms: empty": (lambda w: plotting.plot_layer_grad_norms({}), ValueError, "norms"),
    "plot_activation_histograms: bins 0": (lambda w: plotting.plot_activation_histograms({"a": w.v}, bins=0),
                                           ValueError, "bins"),
    "plot_activation_histograms: unknown layer": (
        lambda w: plotting.plot_activation_histograms({"a": w.v}, layers=["b"]),
        ValueError, "layers"),
    "plot_training_curves: metric unknown": (
        lambda w: plotting.plot_training_curves({"a": training.History()}, metric="bogus"),
        ValueError, "metric"),
    "plot_training_curves: smooth 0": (lambda w: plotting.plot_training_curves({"a": training.History()}, smooth=0),
                                       ValueError, "smooth"),
    "plot_contour_trajectories: fn a str": (lambda w: plotting.plot_contour_trajectories("f", {}), TypeError, "fn"),
    "plot_contour_trajectories: levels 0": (
        lambda w: plotting.plot_contour_trajectories(lambda x, y: x * y, {}, levels=0),
        ValueError, "levels"),
    "plot_lr_schedules: a str": (lambda w: plotting.plot_lr_schedules("abc"), ValueError, "schedules"),
    "plot_lr_finder: a str": (lambda w: plotting.plot_lr_finder("result"), TypeError, "result"),
    "plot_seed_curves: band unknown": (lambda w: plotting.plot_seed_curves({"a": torch.ones(3, 4).numpy()}, band="sd"),
                                       ValueError, "band"),
    "plot_seed_curves: a 1-D curve": (lambda w: plotting.plot_seed_curves({"a": torch.ones(4).numpy()}),
                                      ValueError, "curves"),
    "plot_seed_points: a str": (lambda w: plotting.plot_seed_points("abc"), ValueError, "groups"),
    "progress: an int": (lambda w: progress.progress(5), TypeError, "iterable"),
    "RNNCell: input_size 0": (lambda w: recurrent.RNNCell(0, 4), ValueError, "input_size"),
    "RNNCell: nonlinearity unknown": (lambda w: recurrent.RNNCell(3, 4, nonlinearity="sigmoid"),
                                      ValueError, "nonlinearity"),
    "LSTMCell: hidden_size 0": (lambda w: recurrent.LSTMCell(3, 0), ValueError, "hidden_size"),
    "GRUCell: input_size a str": (lambda w: recurrent.GRUCell("3", 4), TypeError, "input_size"),
    "GRUCell: input of the wrong width": (lambda w: recurrent.GRUCell(5, 4)(w.t), ValueError, "input"),
    "set_forget_bias_: module a str": (lambda w: recurrent.set_forget_bias_("net"),
                                       TypeError, "module must be an LSTM or GRU"),
    "set_forget_bias_: value NaN": (lambda w: recurrent.set_forget_bias_(recurrent.LSTMCell(3, 4), NAN),
                                    ValueError, "value"),
    "set_forget_bias_: no LSTM": (lambda w: recurrent.set_forget_bias_(w.net),
                                  TypeError, "module must be an LSTM or GRU .*Sequential"),
    "SequenceModel: cell unknown": (lambda w: recurrent.SequenceModel("transformer", 3, 4, 2), ValueError, "cell"),
    "SequenceModel: backend unknown": (lambda w: recurrent.SequenceModel("gru", 3, 4, 2, backend="cuda"),
                                       ValueError, "backend"),
    "SequenceModel: num_layers 0": (lambda w: recurrent.SequenceModel("gru", 3, 4, 2, num_layers=0),
                                    ValueError, "num_layers"),
    "l1_penalty: a str": (lambda w: regularization.l1_penalty("abc"), TypeError, "parameters"),
    "l1_penalty: coefficient negative": (lambda w: regularization.l1_penalty(w.params, -1.0),
                                         ValueError, "coefficient"),
    "l2_penalty: coefficient NaN": (lambda w: regularization.l2_penalty(w.params, NAN), ValueError, "coefficient"),
    "l2_penalty: a non-tensor among tensors": (lambda w: regularization.l2_penalty([*w.params, 3.0]),
                                               TypeError, "parameters"),
    "Dropout: p 1.5": (lambda w: regularization.Dropout(1.5), ValueError, "p"),
    "Dropout: p a str": (lambda w: regularization.Dropout("0.5"), TypeError, "p"),
    "compare_sharded_clipping: max_norm negative": (lambda w: sharding.compare_sharded_clipping(max_norm=-1.0),
                                                    ValueError, "max_norm"),
    "compare_sharded_clipping: world_size 0": (lambda w: sharding.compare_sharded_clipping(world_size=0),
                                               ValueError, "world_size"),
    "chi: activation unknown": (lambda w: theory.chi("relu6", 1.0), ValueError, "activation"),
    "chi: sigma_w negative": (lambda w: theory.chi("tanh", -1.0), ValueError, "sigma_w"),
    "chi: sigma_b negative, q given": (lambda w: theory.chi("tanh", 1.0, -0.1, q=1.0), ValueError, "sigma_b"),
    "chi: the variance map overflows": (lambda w: theory.chi("relu", 10.0), ValueError, "pass q"),
    "preactivation_variances: sigma_w NaN": (lambda w: theory.preactivation_variances("tanh", NAN),
                                             ValueError, "sigma_w"),
    "gaussian_expectation: fn a str": (lambda w: theory.gaussian_expectation("tanh", 1.0), TypeError, "fn"),
    "gaussian_expectation: variance negative": (lambda w: theory.gaussian_expectation(math.tanh, -1.0),
                                                ValueError, "variance"),
    "preactivation_variances: depth 0": (lambda w: theory.preactivation_variances("tanh", 1.0, depth=0),
                                         ValueError, "depth"),
    "preactivation_variances: q0 NaN": (lambda w: theory.preactivation_variances("tanh", 1.0, q0=NAN),
                                        ValueError, "q0"),
    "variance_map: q negative": (lambda w: theory.variance_map("tanh", -1.0, 1.0), ValueError, "q"),
    "variance_map: sigma_b a str": (lambda w: theory.variance_map("tanh", 1.0, 1.0, "0"), TypeError, "sigma_b"),
    "variance_preserving_gain: unknown": (lambda w: theory.variance_preserving_gain("relu6"), ValueError, "activation"),
    "variance_preserving_gain: an int": (lambda w: theory.variance_preserving_gain(3), TypeError, "activation"),
    "evaluate: model a str": (lambda w: training.evaluate("net", w.data, F.mse_loss), TypeError, "model"),
    "evaluate: batch_size 0": (lambda w: training.evaluate(w.net, w.data, F.mse_loss, batch_size=0),
                               ValueError, "batch_size"),
    "evaluate: data an int": (lambda w: training.evaluate(w.net, 42, F.mse_loss), TypeError, "data"),
    "evaluate: loss_fn a str": (lambda w: training.evaluate(w.net, w.data, "mse"), TypeError, "loss_fn"),
    # F3: an empty evaluation set, a dict, a batch that is not a pair: clear errors, not ZeroDivisionError / unpacking
    "evaluate: an empty list": (lambda w: training.evaluate(w.net, [], F.mse_loss), ValueError, "data is empty"),
    "evaluate: an empty generator": (lambda w: training.evaluate(w.net, (b for b in []), F.mse_loss), ValueError,
                                     "data holds no example"),
    "evaluate: only empty batches": (lambda w: training.evaluate(w.net, [(w.data[0][:0], w.data[1][:0])], F.mse_loss),
                                     ValueError, "data holds no example"),
    "evaluate: a dict": (lambda w: training.evaluate(w.net, {"val": w.data}, F.mse_loss), TypeError,
                         "data .*got dict"),
    "evaluate: a batch not a pair": (lambda w: training.evaluate(w.net, iter([w.data, w.data[0]]), F.mse_loss),
                                     TypeError, "data must give .x, y. pairs of tensors; batch 1 is Tensor"),
    "fit: train_data a dict": (lambda w: _fit(w, train_data={"train": w.data}), TypeError, "train_data .*got dict"),
    "fit: train_data an empty list": (lambda w: _fit(w, train_data=[]), ValueError, "train_data is empty"),
    "lr_finder: train_data a str": (lambda w: lr_finder.lr_finder(w.net, "xy", F.mse_loss, w.opt), TypeError,
                                    "train_data .*got str"),
    "fit: epochs 0": (lambda w: _fit(w, epochs=0), ValueError, "epochs"),
    "fit: optimizer a str": (lambda w: _fit(w, optimizer="sgd"), TypeError, "optimizer"),
    "fit: loss_fn a str": (lambda w: _fit(w, loss_fn="mse"), TypeError, "loss_fn"),
    "fit: model a str": (lambda w: _fit(w, model="net"), TypeError, "model"),
    "fit: batch_size 0": (lambda w: _fit(w, batch_size=0), ValueError, "batch_size"),
    "fit: train_data an int": (lambda w: _fit(w, train_data=42), TypeError, "train_data"),
    "fit: clip a float": (lambda w: _fit(w, clip=1.0), TypeError, "clip"),
    "fit: monitor a str": (lambda w: _fit(w, monitor="yes"), TypeError, "monitor"),
    "save_checkpoint: model a str": (lambda w: training.save_checkpoint(_NEVER_WRITTEN, "net"), TypeError, "model"),
    "save_checkpoint: epoch negative": (lambda w: training.save_checkpoint(_NEVER_WRITTEN, w.net, epoch=-1),
                                        ValueError, "epoch"),
    "load_checkpoint: no such file": (lambda w: training.load_checkpoint(_NEVER_WRITTEN, w.net),
                                      ValueError, "path must name an existing"),
    "load_checkpoint: path an int": (lambda w: training.load_checkpoint(3, w.net), TypeError, "path"),
    "causal_mask: length 0": (lambda w: transformer.causal_mask(0), ValueError, "length"),
    "causal_mask: length a float": (lambda w: transformer.causal_mask(2.5), TypeError, "length"),
    "attention_logits: key of another width": (
        lambda w: transformer.attention_logits(torch.randn(2, 4, 8), torch.randn(2, 4, 6)),
        ValueError, "key"),
    "attention_logits: query a list": (lambda w: transformer.attention_logits([[1.0]], torch.randn(1, 1)),
                                       TypeError, "query"),
    "scaled_dot_product_attention: value of another length": (
        lambda w: transformer.scaled_dot_product_attention(*torch.randn(2, 2, 4, 8), torch.randn(2, 5, 8)),
        ValueError, "value"),
    "MultiheadSelfAttention: embed_dim not divisible": (lambda w: transformer.MultiheadSelfAttention(10, 3),
                                                        ValueError, "num_heads"),
    "MultiheadSelfAttention: norm unknown": (lambda w: transformer.MultiheadSelfAttention(8, 2, norm="batch"),
                                             ValueError, "norm"),
    "deepnorm_constants: num_layers 0": (lambda w: transformer.deepnorm_constants(0), ValueError, "num_layers"),
    "TransformerBlock: norm_position unknown": (lambda w: transformer.TransformerBlock(8, 2, norm_position="mid"),
                                                ValueError, "norm_position"),
    "TransformerBlock: d_model not divisible": (lambda w: transformer.TransformerBlock(8, 3), ValueError, "num_heads"),
    "TransformerBlock: activation unknown": (lambda w: transformer.TransformerBlock(8, 2, activation="relu6"),
                                             ValueError, "activation"),
    "TinyCausalLM: vocab_size 0": (lambda w: transformer.TinyCausalLM(0), ValueError, "vocab_size"),
    "TinyCausalLM: residual unknown": (lambda w: transformer.TinyCausalLM(10, residual="dense"),
                                       ValueError, "residual"),
    "TinyCausalLM: tokens longer than max_len": (
        lambda w: transformer.TinyCausalLM(10, max_len=4)(torch.zeros(1, 6, dtype=torch.long)),
        ValueError, "max_len"),
    "lm_loss: targets of another shape": (
        lambda w: transformer.lm_loss(torch.randn(2, 4, 10), torch.zeros(2, 5, dtype=torch.long)),
        ValueError, "targets"),
    "lm_loss: z_loss negative": (
        lambda w: transformer.lm_loss(torch.randn(2, 4, 10), torch.zeros(2, 4, dtype=torch.long), z_loss=-1.0),
        ValueError, "z_loss"),
    "ensemble_lm_loss: z_loss negative": (lambda w: transformer.ensemble_lm_loss(z_loss=-1.0), ValueError, "z_loss"),
    "ensemble_lm_loss: z_loss a str": (lambda w: transformer.ensemble_lm_loss(z_loss="0"), TypeError, "z_loss"),
    "attention_stats: model a str": (lambda w: transformer.attention_stats("net", torch.zeros(1, 4, dtype=torch.long)),
                                     TypeError, "model"),
    "attention_stats: no attention": (lambda w: transformer.attention_stats(w.net, torch.zeros(1, 4, dtype=torch.long)),
                                      ValueError, "model"),
    "distributed_clip_grad_norm_: max_norm negative": (lambda w: clipping.distributed_clip_grad_norm_(
        w.params, -1.0), ValueError, "max_norm"),
    "distributed_clip_grad_norm_: norm_type 0": (lambda w: clipping.distributed_clip_grad_norm_(
        w.params, 1.0, norm_type=0), ValueError, "norm_type"),
    "distributed_clip_grad_norm_: a str": (lambda w: clipping.distributed_clip_grad_norm_("weights", 1.0), TypeError,
                                           "parameters"),
    "claim_true: a tensor of two truth values": (lambda w: claims.claim_true("x", torch.tensor([True, False])),
                                                 TypeError, "condition must be one truth value"),
    "progress_enabled: an array of two truth values": (lambda w: progress.progress_enabled(torch.ones(2)), TypeError,
                                                       "requested"),
})


CASES.update({
    # a hostile re-test (this session): argument corners that slipped through
    "Ensemble: evaluate with batch_size 0": (lambda w: ensemble.Ensemble([nn.Linear(3, 2)] * 2).evaluate(
        w.data, loss="mse", batch_size=0), ValueError, "batch_size"),
    "Ensemble: evaluate with batch_size 2.5": (lambda w: ensemble.Ensemble([nn.Linear(3, 2)] * 2).evaluate(
        w.data, loss="mse", batch_size=2.5), TypeError, "batch_size"),
    "History: final with last 0": (lambda w: training.History(loss=[1.0, 2.0]).final("loss", last=0), ValueError,
                                   "last"),
    "History: final with last 2.5": (lambda w: training.History(loss=[1.0]).final("loss", last=2.5), TypeError, "last"),
    "History: final with unknown metric": (lambda w: training.History().final("bogus"), ValueError, "metric"),
    "suggest_lr: decreasing rates": (lambda w: lr_finder.suggest_lr([1e-1, 1e-2, 1e-3], [3, 2, 1]), ValueError,
                                     "lrs must be finite, > 0 and strictly increasing"),
    "suggest_lr: a rate 0": (lambda w: lr_finder.suggest_lr([0.0, 1e-2, 1e-1], [3, 2, 1]), ValueError, "lrs"),
    "suggest_lr: an infinite rate": (lambda w: lr_finder.suggest_lr([1e-3, INF, 1e-1], [3, 2, 1]), ValueError, "lrs"),
    "SGD: a group's lr negative": (lambda w: optim.SGD([{"params": w.params, "lr": -1.0}], lr=0.1), ValueError,
                                   r"param_groups\[0\]\['lr'\] must be >= 0"),
    "SGD: a group's nesterov without momentum": (lambda w: optim.SGD([{"params": w.params, "nesterov": True}], lr=0.1),
                                                 ValueError, r"param_groups\[0\]: nesterov=True needs momentum"),
    "Adam: a group's betas above 1": (lambda w: optim.Adam([{"params": w.params, "betas": (1.5, 0.9)}]), ValueError,
                                      r"param_groups\[0\]\['betas'\]\[0\] must be < 1"),
    "AdamW: a group's lr NaN": (lambda w: optim.AdamW([{"params": w.params, "lr": NAN}]), ValueError,
                                r"param_groups\[0\]\['lr'\] must be finite"),
    "RAdam: a group's eps negative": (lambda w: optim.RAdam([{"params": w.params, "eps": -1.0}]), ValueError,
                                      r"param_groups\[0\]\['eps'\]"),
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


def test_resume_with_other_inner_schedulers_is_refused_and_modifies_nothing(tmp_path):
    """A ChainedScheduler/SequentialLR checkpoint resumed with other inner kinds, counts or order (hostile r13)."""
    L = torch.optim.lr_scheduler
    w = _world()
    path = tmp_path / "chain.pt"
    saver = torch.optim.SGD(w.net.parameters(), lr=0.1)  # not w.opt: no scheduler may attach itself to it
    training.save_checkpoint(path, w.net, saver, L.ChainedScheduler([L.StepLR(saver, 3), L.ExponentialLR(saver, 0.9)]))
    others = [lambda o: L.ChainedScheduler([L.CosineAnnealingLR(o, 20), L.LinearLR(o, 1.0, 0.5, 10)]),
              lambda o: L.ChainedScheduler([L.ExponentialLR(o, 0.9), L.StepLR(o, 3)]),
              lambda o: L.ChainedScheduler([L.StepLR(o, 3)]),
              lambda o: L.SequentialLR(o, [L.StepLR(o, 3), L.ExponentialLR(o, 0.9)], milestones=[2])]
    for make in others:
        opt = torch.optim.SGD(w.net.parameters(), lr=0.1)
        sched = make(opt)
        before, sched_before = _snapshot(w), copy.deepcopy(sched.state_dict())
        with pytest.raises(ValueError, match=r"resume_from holds the state of scheduler "
                                             r"ChainedScheduler\[StepLR, ExponentialLR\], but fit got scheduler"):
            _fit(w, optimizer=opt, scheduler=sched, resume_from=path)
        assert all(_same(before[k], v) for k, v in _snapshot(w).items())
        assert _same(sched_before, sched.state_dict())


def _half_grad():
    p = nn.Parameter(torch.zeros(2, dtype=torch.float16))
    p.grad = torch.tensor([-3.0, 6e4], dtype=torch.float16)
    return p


def _complex_grad():
    p = nn.Parameter(torch.zeros(2, dtype=torch.complex64))
    p.grad = torch.full((2,), 3 + 4j, dtype=torch.complex64)
    return p


def _meta_param():
    p = nn.Parameter(torch.zeros(2, device="meta"))
    p.grad = torch.zeros(2, device="meta")
    return [p]


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


# Public callables with no case above. A pointer names an existing test that gives them bad arguments.
EXEMPT_WITH_POINTER = {
    "is_xy": "tests/test_hostile_inputs.py::test_is_xy_says_no_to_bad_input_and_raises_nothing",  # a predicate
}
# The exercises' checkers: one kind, one wrapper (exercises._core.exercise) refuses a non-function answer.
CHECKERS_POINTER = "tests/test_exercises.py::test_a_solution_must_be_a_function"
# Public callables that take no argument, and pure records (dataclasses, named tuples): nothing to get wrong.
NO_ARGUMENTS = {"keep_freed_memory", "attempted"}
RECORDS = {"AccumulatedStep", "CheckupReport", "Finding", "Split", "MonitorRecord", "EnsembleHistory", "Erratum",
           "Question", "Exercise", "LRFinderResult", "Solution"}


def _public_callables():
    """{name: module} for every callable in the ``__all__`` of every public helpers module."""
    public = {}
    for info in pkgutil.iter_modules(helpers.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"helpers.{info.name}")
        assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj):
                owner = public.setdefault(name, module.__name__)
                assert owner == module.__name__ or obj is getattr(importlib.import_module(owner), name), \
                    f"two public callables named {name}: {owner} and {module.__name__}"
    return public


def _test_source(pointer):
    path, _, test_name = pointer.partition("::")
    file = Path(__file__).parent.parent / path
    assert file.is_file(), f"{pointer}: no such file"
    source = file.read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == test_name:
            return ast.get_source_segment(source, node)
    raise AssertionError(f"{pointer}: {path} defines no test function {test_name}")


def test_the_table_covers_every_public_function():
    """A new public function or class of any helpers module must get hostile cases here (or a pointer)."""
    public = _public_callables()
    checkers = {name for name, module in public.items() if module == "helpers.exercises" and name.startswith("check_")}
    covered = {case.split(":")[0] for case in CASES}
    missing = set(public) - covered - set(EXEMPT_WITH_POINTER) - checkers - NO_ARGUMENTS - RECORDS
    assert not missing, f"no hostile-input case (nor exemption) for {sorted(missing)}"
    assert len(public) > 150 and len(checkers) > 30
    assert covered <= set(public), f"cases for names that are not public: {sorted(covered - set(public))}"
    stale = (set(EXEMPT_WITH_POINTER) | NO_ARGUMENTS | RECORDS) - (set(public) - covered)
    assert not stale, f"exempt, yet not public or already covered by a case: {sorted(stale)}"


def test_every_exemption_points_at_a_test_that_passes_bad_input():
    for name, pointer in EXEMPT_WITH_POINTER.items():
        source = _test_source(pointer)
        assert f"{name}(" in source and ("pytest.raises" in source or "assert not" in source), pointer
    source = _test_source(CHECKERS_POINTER)
    assert "pytest.raises" in source and "check_" in source
    registered = {e.checker for e in exercises.EXERCISES.values()}
    unregistered = [name for name in exercises.__all__
                    if name.startswith("check_") and getattr(exercises, name) not in registered]
    assert not unregistered, f"checkers not made by the shared wrapper: {unregistered}"


def test_reason_only_exemptions_take_no_argument_or_are_records():
    public = _public_callables()
    for name in NO_ARGUMENTS:
        obj = getattr(importlib.import_module(public[name]), name)
        assert not inspect.signature(obj).parameters, f"{name} takes arguments: give it a case"
    for name in RECORDS:
        obj = getattr(importlib.import_module(public[name]), name)
        assert dataclasses.is_dataclass(obj) or issubclass(obj, tuple) and hasattr(obj, "_fields"), \
            f"{name} is not a record (dataclass or named tuple): give it a case"


def test_is_xy_says_no_to_bad_input_and_raises_nothing():
    for bad in (None, 42, "xy", (torch.ones(2),), (torch.ones(2), [1.0, 2.0]), [torch.ones(2)] * 3):
        assert not data.is_xy(bad)
    assert data.is_xy((torch.ones(2), torch.ones(2)))


def test_late_bad_arguments_are_refused_before_the_first_step():
    """fit's scheduler that needs a metric, fit_ensemble's lr_factors bad at a late step, a group added later."""
    w = _world()
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(w.opt)
    before = _snapshot(w)
    with pytest.raises(TypeError, match=r"scheduler must step without arguments .*ReduceLROnPlateau\.step needs "
                                        r"metrics"):
        training.fit(w.net, w.data, epochs=1, optimizer=w.opt, loss_fn=F.mse_loss, scheduler=plateau, progress=False)
    assert all(_same(before[k], v) for k, v in _snapshot(w).items())

    ens = ensemble.Ensemble([nn.Linear(3, 2), nn.Linear(3, 2)])
    params = {k: v.detach().clone() for k, v in ens.params.items()}
    with pytest.raises(ValueError, match=r"lr_factors\(2\) must return a finite number >= 0"):
        ensemble.fit_ensemble(ens, w.data, epochs=1, lr=0.1, loss="mse", batch_size=8, progress_bar=False,
                              lr_factors=lambda t: 1.0 if t < 2 else -1.0)
    assert _same(params, {k: v.detach() for k, v in ens.params.items()})
    with pytest.raises(ValueError, match=r"lr_factors must be a callable or an array of numbers"):
        ensemble.fit_ensemble(ens, w.data, epochs=1, lr=0.1, loss="mse", progress_bar=False,
                              lr_factors=[[1.0, 1.0], [1.0]])

    opt = optim.Adam([w.params[0]], lr=0.1)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['lr'\] must be finite"):
        opt.add_param_group({"params": [w.params[1]], "lr": NAN})
    assert len(opt.param_groups) == 1
