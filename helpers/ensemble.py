r"""Train many independent copies of one network at once: the course's engine for seeds.

On a small CPU a single small network is overhead-bound: a 20-layer, width-64 MLP at
batch 64 spends most of each step launching tiny kernels. Stacking :math:`N` copies
on a leading *model axis* turns :math:`N` small matrix products into one batched
product (``torch.baddbmm``), so five seeds × four learning rates cost little more than
one run. Each member stays an independent network:

.. math::
    \theta^{(i)}_{t+1} = \theta^{(i)}_t - \eta^{(i)}_t\, u\big(g^{(i)}_t\big),\qquad
    g^{(i)}_t = \nabla_{\theta^{(i)}} L^{(i)}\big(\theta^{(i)}_t\big),\quad i = 1..N

with its own initial weights (built by the caller, any seed or scheme), learning rate
:math:`\eta^{(i)}`, optimizer state, clipping threshold and divergence flag. The sum
:math:`\sum_i L^{(i)}` is differentiated once; since no parameter is shared, its
gradient with respect to member :math:`i` is member :math:`i`'s own gradient.

Two forward paths compute the same function:

* ``"stacked"`` for :class:`~helpers.models.MLP` and any ``nn.Sequential`` of Linear,
  batch/layer norm and parameter-free layers (batched matrix products, per-member
  batch statistics), and for :class:`~helpers.recurrent.SequenceModel` (RNN, LSTM, GRU,
  either backend: one batched matrix product per time step for all members);
* ``"vmap"`` for every other module (conv nets, recurrent nets, Transformers):
  :func:`torch.func.vmap` over :func:`torch.func.functional_call`.

A chain of ``nn.Linear`` layers, each followed by nothing or by one of PyTorch's
elementwise activations (ReLU, tanh, sigmoid, leaky ReLU, ELU, SELU, GELU, SiLU, Mish: an
:class:`~helpers.models.MLP` without norm, residual blocks, dropout or from-scratch layers),
skips autograd's graph: :mod:`helpers._stacked_chain` runs its backward pass by hand, with
autograd's own kernels (the same numbers, bit for bit; about 5 % faster on 2 cores, ~10 %
for the activations whose derivative needs their input). On that path the parameters, their
gradients and the optimizer's state are views of flat buffers (:mod:`helpers._flat`): a step
in which every member has the same rate updates all tensors in one call each, not one per tensor.

The tests prove that each member equals the same model trained alone by
:func:`helpers.training.fit` (same initial weights, same batches): SGD, momentum,
Adam, AdamW, batch and layer norm, residual blocks, clipping, per-member learning rates.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from helpers import _fused, activations
from helpers._checks import (
    check_callable,
    check_choice,
    check_int,
    check_int_sequence,
    check_module,
    check_real,
    check_trainable,
)
from helpers._flat import Layout, chunks
from helpers._modes import kept_modes
from helpers._stacked_chain import chain_forward_backward, chain_plan
from helpers.data import check_data, is_xy
from helpers.device import keep_freed_memory
from helpers.models import _ResidualSequential
from helpers.normalization import BatchNorm1d, LayerNorm
from helpers.progress import progress
from helpers.recurrent import SequenceModel
from helpers.regularization import Dropout
from helpers.training import History

__all__ = ["Ensemble", "EnsembleHistory", "fit_ensemble", "from_seeds"]

_LINEAR = (nn.Linear,)
_BATCH_NORM = (BatchNorm1d, nn.BatchNorm1d)
_LAYER_NORM = (LayerNorm, nn.LayerNorm)
# layers the stacked path may apply to (N, B, features) as they are: elementwise, no parameters
_ELEMENTWISE = (activations.Activation, Dropout, nn.Dropout, nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU,
                nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Hardtanh)


def from_seeds(build: Callable[[], nn.Module], seeds: Sequence[int]) -> Ensemble:
    """Build one model per seed (``torch.manual_seed(seed)`` then ``build()``) and stack them.

    Args:
        build: called with no argument; returns a fresh model (initialise it inside).
        seeds: one int >= 0 per member.

    Example:
        >>> from helpers.models import MLP
        >>> ens = from_seeds(lambda: MLP(64, 10, width=16, depth=2), seeds=range(5))
        >>> ens.n, ens.backend
        (5, 'stacked')
    """
    check_callable("build", build)
    seeds = check_int_sequence("seeds", seeds, minimum=0, what="seed")
    with torch.random.fork_rng(devices=[]):
        models = []
        for s in seeds:
            torch.manual_seed(s)
            models.append(build())
    return Ensemble(models)


class Ensemble:
    r"""``N`` models of one architecture, their parameters stacked on a leading model axis.

    ``params[name]`` has shape ``(N, *shape)`` where ``shape`` is the shape of
    ``name`` in one model's ``state_dict`` (on the stacked path a Linear weight is kept
    transposed, (N, in, out)); so do ``buffers`` (running statistics). :meth:`member`
    returns one member as an ordinary module.
    Calling the ensemble on a batch ``x`` of shape (B, …), which every member sees, or
    (N, B, …), one batch per member, returns the outputs (N, B, …).

    Args:
        models: a non-empty sequence of models of the same class with the same
            parameter and buffer names, shapes, dtype and device. They are copied;
            the originals are not modified.
        backend: ``"auto"`` (``"stacked"`` where every layer is supported, else
            ``"vmap"``), ``"stacked"`` or ``"vmap"``. A model with its own
            ``stacked_forward(params, buffers, x)`` method (e.g.
            :class:`helpers.transformer.TinyCausalLM`) runs the stacked path through it.

    Raises:
        TypeError: ``models`` is not a sequence of modules.
        ValueError: the models differ in architecture, or ``backend="stacked"`` for a
            layer it does not support.

    Example:
        >>> from helpers.models import MLP
        >>> ens = Ensemble([MLP(8, 3, width=4, depth=2) for _ in range(4)])
        >>> ens(torch.zeros(5, 8)).shape
        torch.Size([4, 5, 3])
    """

    def __init__(self, models: Sequence[nn.Module], backend: str = "auto"):
        models, states = _check_models(models)
        check_choice("backend", backend, ("auto", "stacked", "vmap"))
        unsupported = _unsupported_layer(models[0])
        if backend == "stacked" and unsupported is not None:
            raise ValueError(f"backend='stacked' does not support layer {unsupported}; use backend='vmap'")
        self.backend = backend if backend != "auto" else ("stacked" if unsupported is None else "vmap")
        self.n = len(models)
        self.base = copy.deepcopy(models[0])
        trainable = {name for name, p in models[0].named_parameters() if p.requires_grad}
        # the stacked path keeps Linear weights as (N, in, out), so that x @ W needs no transpose
        # in the forward or the backward pass; member() transposes them back
        self._transposed = _transposed_names(self.base) if self.backend == "stacked" else set()
        # in the model's own order (input to output), never a set's: first_weight / last_weight
        # and grad_ratio depend on it, and a set's order changes with PYTHONHASHSEED
        self.params = {name: self._stack([s[name] for s in states], name).requires_grad_(True)
                       for name in states[0] if name in trainable}
        self.buffers = {name: torch.stack([s[name].detach() for s in states])
                        for name in states[0] if name not in self.params}
        self._per_member_input = False   # fit_ensemble sets it while each member has its own batches
        # first and last weight in the model's own order (input to output), not the set's order above
        weights = [name for name, _ in models[0].named_parameters()
                   if name in self.params and name.endswith("weight") and self.params[name].dim() >= 3]
        self.first_weight = weights[0] if weights else None
        self.last_weight = weights[-1] if weights else None
        # Linear/activation chains train without autograd's graph (helpers._stacked_chain)
        self._chain = (chain_plan(self.base, set(self.params))
                       if self.backend == "stacked" and not _own_stacked_forward(self.base) else None)

    def _stack(self, tensors, name):
        stacked = torch.stack([t.detach() for t in tensors])    # a copy: it shares no memory with the models
        return stacked.transpose(1, 2).contiguous() if name in self._transposed else stacked

    @property
    def training(self) -> bool:
        """Whether the ensemble is in training mode: the mode of its architecture's root module. Each
        sub-module has its own (``self.base``'s, copied from ``models[0]``): a BatchNorm put in eval mode
        before stacking keeps its running statistics while the rest trains, as in the model alone."""
        return self.base.training

    def train(self, mode: bool = True) -> Ensemble:
        """Training mode (batch statistics, dropout on) or evaluation mode for every module, as
        :meth:`torch.nn.Module.train`; returns ``self``."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be a bool, got {type(mode).__name__}")
        self.base.train(mode)
        return self

    def eval(self) -> Ensemble:
        """Evaluation mode: running statistics, no dropout."""
        return self.train(False)

    def parameters(self) -> list[torch.Tensor]:
        """The stacked trainable tensors, each (N, …)."""
        return list(self.params.values())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        if self.backend == "stacked":
            if _own_stacked_forward(self.base):
                return self.base.stacked_forward(self.params, self.buffers, x)
            return _stacked_forward(self, x)
        return _vmap_forward(self, x)

    def member(self, i: int) -> nn.Module:
        """A standalone copy of member ``i`` with its current weights and buffers."""
        check_int("i", i, minimum=0)
        if i >= self.n:
            raise ValueError(f"i must be < n = {self.n}, got {i}")
        model = copy.deepcopy(self.base)
        state = {name: (t[i].t() if name in self._transposed else t[i]).detach().clone()
                 for name, t in {**self.params, **self.buffers}.items()}
        model.load_state_dict(state, strict=True)
        return model                     # in the ensemble's modes, module by module (a deep copy of base)

    @torch.no_grad()
    def evaluate(self, data, loss: str | Callable = "cross_entropy", batch_size: int = 512):
        """Per-member mean loss and accuracy (NaN unless a classification) on ``(X, y)``, in eval mode.

        Returns:
            ``(loss, accuracy)``, two float64 numpy arrays of shape (N,).
        """
        X, y = _check_xy("data", data)
        loss_fn = _loss_function(loss)
        check_int("batch_size", batch_size, minimum=1)
        per_member = self._per_member_input
        self._per_member_input = False            # every member sees the same evaluation data
        total, hits, count = 0.0, 0.0, 0
        try:
            with kept_modes(self.base):           # afterwards each module is back in its own mode
                self.eval()
                for start in range(0, len(X), batch_size):
                    xb, yb = X[start:start + batch_size], y[start:start + batch_size]
                    out = self(xb)
                    total = total + loss_fn(out, yb).double() * len(xb)
                    correct = _hits(out, yb)
                    hits = hits + (correct.double() if correct is not None else math.nan)
                    count += len(xb)
        finally:
            self._per_member_input = per_member
        return (total / count).cpu().numpy(), np.asarray((hits / count).cpu() if torch.is_tensor(hits) else
                                                         np.full(self.n, math.nan))


# ---------------------------------------------------------------------------- validation

def _check_models(models) -> tuple[list[nn.Module], list[dict[str, torch.Tensor]]]:
    """The models as a list, and their state dicts (read once: a deep model's is not free)."""
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise TypeError(f"models must be a sequence of torch.nn.Module, got {type(models).__name__}")
    models = list(models)
    if not models:
        raise ValueError("models must hold at least one model, got an empty sequence")
    for i, m in enumerate(models):
        check_module(f"models[{i}]", m)
    first = models[0]
    states = [m.state_dict() for m in models]
    shapes = {k: (tuple(v.shape), v.dtype, v.device) for k, v in states[0].items()}
    layout = repr(first) if len(models) > 1 else ""     # once: a deep model's repr is not free
    first_modes = [(name, sub.training) for name, sub in first.named_modules()]
    check_trainable("models[0]", first)
    for i, m in enumerate(models[1:], start=1):
        if type(m) is not type(first):
            raise ValueError(f"models[{i}] is a {type(m).__name__}, models[0] a {type(first).__name__}; "
                             "an ensemble holds copies of one architecture")
        other = {k: (tuple(v.shape), v.dtype, v.device) for k, v in states[i].items()}
        if other != shapes:
            diff = sorted(set(other.items()) ^ set(shapes.items()))[:3]
            raise ValueError(f"models[{i}] differs from models[0] in parameters or buffers: {diff}")
        if repr(m) != layout:
            raise ValueError(f"models[{i}] is configured differently from models[0] (same tensors, other layers or "
                             f"settings): {repr(m)[:200]!r} vs {layout[:200]!r}")
        if first_modes != (mine := [(name, sub.training) for name, sub in m.named_modules()]):
            name, training = next(a for a, b in zip(mine, first_modes) if a != b)
            raise ValueError(f"models[{i}]'s module {name or '(root)'!r} is in {'training' if training else 'eval'} "
                             "mode, the same module of models[0] is not: an ensemble runs every member in "
                             "models[0]'s modes, module by module")
    return models, states


def _check_xy(name: str, data):
    """An ``(X, y)`` pair of tensors (an ensemble batches the tensors itself: no DataLoader)."""
    if not is_xy(data):
        raise TypeError(f"{name} must be a (X, y) tuple of two tensors, got {type(data).__name__}")
    check_data(name, data, required=True)
    return data[0], data[1]


def _own_stacked_forward(model: nn.Module) -> bool:
    """Whether the model runs N members itself: a ``stacked_forward(params, buffers, x)`` method
    taking the stacked tensors under their ``state_dict`` names (e.g. helpers.transformer.TinyCausalLM)."""
    return callable(getattr(model, "stacked_forward", None))


def _transposed_names(model: nn.Module) -> set[str]:
    """The weights the stacked path keeps as (N, in, out): every matrix that multiplies from the right."""
    if _own_stacked_forward(model):
        return set()
    if isinstance(model, SequenceModel):
        return {name for name, p in model.named_parameters() if p.dim() == 2}
    return {f"{name}.weight" for name, m in model.named_children() if isinstance(m, _LINEAR)}


def _unsupported_layer(model: nn.Module) -> str | None:
    """Name and type of the first layer the stacked path cannot run, or None."""
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        return f"{frozen[0]} (a frozen parameter: the stacked path trains every parameter)"
    if isinstance(model, SequenceModel) or _own_stacked_forward(model):
        return None
    if not isinstance(model, nn.Sequential):
        return f"{type(model).__name__} (not an nn.Sequential)"
    # the stacked path applies the children in order (or MLP's residual plan): another forward would differ
    if type(model).forward not in (nn.Sequential.forward, _ResidualSequential.forward):
        return f"{type(model).__name__} (an nn.Sequential with a forward of its own)"
    if len(dict(model.named_children())) != len(model._modules):
        return f"{type(model).__name__} (one module used at two places: the stacked path would apply it once)"
    for name, module in model.named_children():
        if isinstance(module, _LINEAR + _BATCH_NORM + _ELEMENTWISE):
            continue
        if isinstance(module, _LAYER_NORM) and len(module.normalized_shape) == 1:
            continue
        return f"{name} ({type(module).__name__})"
    return None


# ---------------------------------------------------------------------------- forward paths

def _stacked_forward(ens: Ensemble, x: torch.Tensor) -> torch.Tensor:
    base, n = ens.base, ens.n
    if isinstance(base, SequenceModel):
        return _sequence_forward(ens, x)
    if x.dim() < 2 or (x.dim() == 3 and x.shape[0] != n) or x.dim() > 3:
        raise ValueError(f"x must be (B, features) or (N={n}, B, features), got shape {tuple(x.shape)}")
    h = x.expand(n, *x.shape) if x.dim() == 2 else x
    if getattr(base, "residual", False):
        return _walk_plan(ens, h)
    fresh = False       # whether h is an intermediate result nobody else holds (may be changed in place)
    for name, module in base.named_children():
        h = _layer(ens, name, module, h, fresh)
        fresh = isinstance(module, _LINEAR + _BATCH_NORM + _LAYER_NORM) or (fresh and type(module) is nn.ReLU)
    return h


def _walk_plan(ens: Ensemble, h: torch.Tensor) -> torch.Tensor:
    modules = ens.base._modules
    for step in ens.base._plan:
        if isinstance(step, str):
            h = _layer(ens, step, modules[step], h)
            continue
        index, branch_names, projection = step
        branch = h
        for name in branch_names:
            branch = _layer(ens, name, modules[name], branch)
        skip = h if projection is None else _layer(ens, projection, modules[projection], h)
        if ens.base.learn_residual_scale:
            h = skip + ens.params[f"alpha{index}"].view(-1, 1, 1) * branch
        elif ens.base.residual_scale == 1.0:
            h = skip + branch
        else:
            h = skip + ens.base.residual_scale * branch
    return h


def _layer(ens: Ensemble, name: str, module: nn.Module, h: torch.Tensor, fresh: bool = False) -> torch.Tensor:
    p = ens.params
    if isinstance(module, _LINEAR):
        weight = p[f"{name}.weight"]
        bias = p.get(f"{name}.bias")
        return torch.bmm(h, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), h, weight)
    if isinstance(module, _BATCH_NORM):
        return _batch_norm(ens, name, module, h)
    if isinstance(module, _LAYER_NORM):
        y = F.layer_norm(h, module.normalized_shape, eps=module.eps)
        weight, bias = p.get(f"{name}.weight"), p.get(f"{name}.bias")
        if weight is not None and bias is not None:
            return torch.addcmul(bias.unsqueeze(1), y, weight.unsqueeze(1))
        return y if weight is None else y * weight.unsqueeze(1)
    if fresh and type(module) is nn.ReLU:
        return torch.relu_(h)   # in place on a fresh product: saves an allocation per layer
    return module(h)  # parameter-free and elementwise: activations, dropout, identity


def _batch_norm(ens: Ensemble, name: str, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    if h.dim() != 3:
        raise ValueError(f"{name}: the stacked path normalises (N, B, features) only, got {tuple(h.shape)}")
    buffers = ens.buffers
    mean_buf, var_buf = buffers.get(f"{name}.running_mean"), buffers.get(f"{name}.running_var")
    if module.training or mean_buf is None:          # the module's own mode (a frozen one keeps its statistics)
        count = h.shape[1]
        if count <= 1:
            raise ValueError(f"batch norm needs more than 1 value per channel in training mode, got {tuple(h.shape)}")
        var, mean = torch.var_mean(h, dim=1, correction=0, keepdim=True)
        if module.training and mean_buf is not None:
            with torch.no_grad():
                tracked = buffers[f"{name}.num_batches_tracked"]
                tracked.add_(1)
                factor = (module.momentum if module.momentum is not None
                          else (1.0 / tracked.to(mean_buf.dtype)).view(-1, 1))
                mean_buf.lerp_(mean.squeeze(1), factor)
                var_buf.lerp_(var.squeeze(1) * (count / (count - 1)), factor)
    else:
        mean, var = mean_buf.unsqueeze(1), var_buf.unsqueeze(1)
    scale = torch.rsqrt(var + module.eps)
    weight, bias = ens.params.get(f"{name}.weight"), ens.params.get(f"{name}.bias")
    if weight is not None:
        scale = scale * weight.unsqueeze(1)
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.unsqueeze(1)
    return torch.addcmul(shift, h, scale)


def _recurrent_weights(base: SequenceModel, k: int) -> tuple[str, ...]:
    """Names of layer ``k``'s W_ih, W_hh, b_ih, b_hh in either backend's state_dict."""
    if base.backend == "course":
        return tuple(f"layers.{k}.{w}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    return tuple(f"rnn.{w}_l{k}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def _sequence_forward(ens: Ensemble, x: torch.Tensor) -> torch.Tensor:
    """All members' :class:`SequenceModel` at once: the input projections of every step in one
    batched product, then one batched product per step for the recurrent part, as fused RNNs do."""
    base, n, p = ens.base, ens.n, ens.params
    if x.dim() not in (3, 4) or (x.dim() == 4 and x.shape[0] != n):
        raise ValueError(f"x must be (B, T, features) or (N={n}, B, T, features), got shape {tuple(x.shape)}")
    seq = x.expand(n, *x.shape) if x.dim() == 3 else x
    batch, steps = seq.shape[1], seq.shape[2]
    for k in range(base.num_layers):
        w_ih, w_hh, b_ih, b_hh = (p.get(name) for name in _recurrent_weights(base, k))
        projected = torch.bmm(seq.reshape(n, batch * steps, -1), w_ih)
        if b_ih is not None:
            projected = projected + b_ih.unsqueeze(1)
        # unbind, not projected[:, :, t]: one slice's backward would write a full-size gradient per step
        projected = projected.view(n, batch, steps, -1).unbind(2)
        h = seq.new_zeros(n, batch, base.hidden_size)
        c = torch.zeros_like(h) if base.cell == "lstm" else None
        outputs = []
        for t in range(steps):
            gh = torch.bmm(h, w_hh) if b_hh is None else torch.baddbmm(b_hh.unsqueeze(1), h, w_hh)
            h, c = _cell_step(base, projected[t], gh, h, c)
            outputs.append(h)
        seq = torch.stack(outputs, dim=2)
    return torch.baddbmm(p["head.bias"].unsqueeze(1), h, p["head.weight"])


def _cell_step(base: SequenceModel, gi, gh, h, c):
    if base.cell == "rnn":
        pre = gi + gh
        return (torch.tanh(pre) if base.nonlinearity == "tanh" else torch.relu(pre)), None
    if base.cell == "lstm":
        a_i, a_f, a_g, a_o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
        return torch.sigmoid(a_o) * torch.tanh(c), c
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h, None


def _vmap_forward(ens: Ensemble, x: torch.Tensor) -> torch.Tensor:
    from torch.func import functional_call, vmap

    base = ens.base

    def one(params, buffers, xb):
        return functional_call(base, (params, buffers), (xb,))

    x_dim = 0 if (x.dim() >= 2 and x.shape[0] == ens.n and ens._per_member_input) else None
    with warnings.catch_warnings():
        # functorch has no batching rule for some in-place updates (lerp_ of running statistics)
        # and falls back to a loop over members, saying so each time: correct, only slower
        warnings.filterwarnings("ignore", message="There is a performance drop")
        return vmap(one, in_dims=(0, 0, x_dim), randomness="different")(ens.params, ens.buffers, x)


# ---------------------------------------------------------------------------- losses

def _loss_function(loss) -> Callable:
    """A function (output (N, B, …), target (B, …) or (N, B, …)) -> per-member mean loss (N,)."""
    if callable(loss):
        return loss
    check_choice("loss", loss, ("cross_entropy", "mse"))
    return _cross_entropy if loss == "cross_entropy" else _mse


def _cross_entropy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    n, b = out.shape[:2]
    target = target.expand(n, *target.shape) if target.dim() == 1 else target
    losses = F.cross_entropy(out.reshape(n * b, -1), target.reshape(n * b), reduction="none")
    return losses.view(n, b).mean(dim=1)


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if tuple(target.shape[-(out.dim() - 1):]) != tuple(out.shape[1:]) and tuple(target.shape) != tuple(out.shape):
        raise ValueError(f"loss='mse' needs targets shaped like one member's output {tuple(out.shape[1:])}, "
                         f"got {tuple(target.shape)}")
    return (out - target).square().flatten(1).mean(dim=1)


def _hits(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    if out.dim() != 3 or out.shape[-1] < 2 or target.is_floating_point() or target.dim() not in (1, 2):
        return None
    # max's indices are argmax's (the first maximum; NaN counts as the maximum), 3x faster on CPU for few classes
    return (out.max(dim=-1).indices == target).sum(dim=1)


# ---------------------------------------------------------------------------- training

@dataclass
class EnsembleHistory:
    """What :func:`fit_ensemble` recorded, one column per member.

    Per step, arrays of shape (steps, N): ``loss``, ``accuracy`` (classification only),
    ``lr`` (before the step), ``grad_norm`` (global 2-norm before clipping),
    ``grad_ratio`` (norm of the first weight's gradient over the last weight's: < 1 when
    the gradient shrinks toward the input) and ``clipped`` (whether clipping fired).
    Per epoch, (epochs, N): ``epoch_loss`` and, with ``val_data``, ``val_loss`` and
    ``val_accuracy`` (one row per evaluation: per epoch, or every ``eval_every`` steps,
    at the step counts ``val_steps``). A member that diverged has NaN from ``diverged_at[i]`` on, as
    :func:`~helpers.training.fit` stops there; ``diverged[i]`` says whether it did.
    """

    loss: np.ndarray
    accuracy: np.ndarray
    lr: np.ndarray
    grad_norm: np.ndarray
    grad_ratio: np.ndarray
    clipped: np.ndarray
    epoch_loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    diverged: np.ndarray
    diverged_at: list = field(default_factory=list)
    val_steps: list = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of members."""
        return self.diverged.shape[0]

    def final(self, metric: str = "loss", last: int = 1) -> np.ndarray:
        """Per-member mean of the last ``last`` finite values of ``metric`` (N,); NaN where none."""
        values = getattr(self, metric, None)
        if not isinstance(values, np.ndarray) or values.ndim != 2:
            raise ValueError(f"metric must name a per-step or per-epoch array, got {metric!r}")
        check_int("last", last, minimum=1)
        out = np.full(values.shape[1], math.nan)
        for i in range(values.shape[1]):
            column = values[:, i][np.isfinite(values[:, i])]
            if column.size:
                out[i] = column[-last:].mean()
        return out

    def member(self, i: int):
        """Member ``i``'s record as a :class:`helpers.training.History`, as ``fit`` would return it.

        Every field of ``History`` is set here; the lists ``clipped`` and ``clipped_grad_norm`` stay empty
        (``clipped`` is in this history per member, but ``fit``'s list exists only when it was
        given a ``clip``, which this record does not say).
        """
        check_int("i", i, minimum=0)
        if i >= self.n:
            raise ValueError(f"i must be < n = {self.n}, got {i}")
        stop = self.diverged_at[i] if self.diverged[i] else self.loss.shape[0]
        epochs = int(np.isfinite(self.epoch_loss[:, i]).sum())
        evaluations = int(np.isfinite(self.val_loss[:, i]).sum()) if self.val_loss.size else 0

        def col(a, k=stop):
            return [float(v) for v in a[:k, i]] if a.size else []

        values = dict(loss=col(self.loss), accuracy=col(self.accuracy) if np.isfinite(self.accuracy).any() else [],
                      lr=col(self.lr), grad_norm=col(self.grad_norm), epoch_loss=col(self.epoch_loss, epochs),
                      val_loss=col(self.val_loss, evaluations), val_accuracy=col(self.val_accuracy, evaluations),
                      diverged=bool(self.diverged[i]),
                      diverged_at=self.diverged_at[i] if self.diverged[i] else None,
                      interrupted=False, interrupted_at=None,  # fit_ensemble is not interruptible
                      **{name: [] for name in _NOT_RECORDED})
        missing = {f.name for f in fields(History)} - set(values)
        if missing:  # a field added to History must be filled here, not left at its default
            raise NotImplementedError(f"EnsembleHistory.member does not fill History's {sorted(missing)}")
        return History(**values)


_NOT_RECORDED = ("clipped", "clipped_grad_norm")
"""The :class:`~helpers.training.History` lists that :meth:`EnsembleHistory.member` leaves empty."""


def _per_member(name: str, value, n: int, *, minimum: float, strict: bool = False,
                allow_inf: bool = False) -> torch.Tensor:
    """A float64 tensor (n,) from a number or a sequence of n numbers."""
    values = value.tolist() if torch.is_tensor(value) or isinstance(value, np.ndarray) else value
    values = [values] * n if not isinstance(values, Sequence) else list(values)
    if len(values) != n:
        raise ValueError(f"{name} must be one number or {n} numbers (one per member), got {len(values)}")
    out = []
    for v in values:
        if allow_inf and isinstance(v, Real) and not isinstance(v, bool) and v == math.inf:
            out.append(math.inf)
        else:
            out.append(check_real(f"{name} entries", v, minimum=minimum, strict_minimum=strict))
    return torch.tensor(out, dtype=torch.float64)


def _lr_factors(lr_factors, steps: int, n: int) -> torch.Tensor | None:
    """The factors of every step, (steps, n) float64, checked before training starts: a callable is
    called for every step here, so a bad value at a late step is refused before any step is taken."""
    if lr_factors is None:
        return None
    if callable(lr_factors):
        return torch.stack([_factor_of_step(lr_factors, t, n) for t in range(steps)])
    try:
        factors = torch.as_tensor(np.asarray(lr_factors, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise ValueError(f"lr_factors must be a callable or an array of numbers, got {type(lr_factors).__name__} "
                         f"({error})") from None
    if factors.dim() == 1:
        factors = factors.unsqueeze(1).expand(-1, n)
    if factors.dim() != 2 or factors.shape[1] != n or factors.shape[0] < steps:
        raise ValueError(f"lr_factors must be a callable or an array of shape (steps >= {steps},) or "
                         f"({steps}, {n}), got shape {tuple(factors.shape)}")
    if not torch.isfinite(factors).all() or (factors < 0).any():
        raise ValueError("lr_factors must be finite and >= 0")
    return factors


def _factor_of_step(lr_factors: Callable, t: int, n: int) -> torch.Tensor:
    """``lr_factors(t)`` as (n,) float64: one number for every member, or one each."""
    f = lr_factors(t)
    try:
        f = torch.as_tensor(f, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"lr_factors({t}) must return a number or {n} numbers, got {f!r}") from None
    if f.shape not in ((), (n,)) or not torch.isfinite(f).all() or (f < 0).any():
        raise ValueError(f"lr_factors({t}) must return a finite number >= 0 or {n} of them, got {f.tolist()}")
    return f.expand(n)


def _nonfinite_members(suspects: torch.Tensor, grads: list[torch.Tensor], numbers: torch.Tensor) -> torch.Tensor:
    """Of the members whose global gradient norm is not finite, those with a non-finite gradient entry.

    As :func:`helpers.training.fit` does: float32 gradients of 1e19 are finite while their float32
    norm is not; such a member is no divergence, and its exact norm (float64, per tensor, combined
    by ``math.hypot``) replaces the inf in ``numbers[1]`` (the recorded norms).
    """
    diverged = suspects.clone()
    for i in torch.nonzero(suspects).flatten().tolist():
        member = [g[i] for g in grads]
        if all(bool(torch.isfinite(g).all()) for g in member):
            diverged[i] = False
            numbers[1, i] = math.hypot(*_fused.exact_norms(member))
    return diverged


def _exact_ratios(live: torch.Tensor, pair: list[torch.Tensor], numbers: torch.Tensor) -> None:
    """Recompute ``numbers[3]`` (grad_ratio) exactly where either norm (``numbers[4:6]``) is not finite or below
    :data:`helpers._fused.TINY`: float32 squares of 1e19 overflow (inf / inf is NaN), of 1e-23 underflow."""
    first, last = numbers[4], numbers[5]
    doubtful = live & ~((first >= _fused.TINY) & (last >= _fused.TINY) & torch.isfinite(first + last))
    if not doubtful.any():
        return
    members = torch.nonzero(doubtful).flatten().tolist()
    exact = torch.tensor(_fused.exact_norms([g[i] for i in members for g in pair]), dtype=torch.float64)
    numbers[3, members] = exact[0::2] / exact[1::2]     # a zero norm gives inf or NaN, as torch's division


def _one_value(t: torch.Tensor) -> bool:
    """Whether every entry of a 1-D float tensor is the same number, to the bit (so 0.0 and -0.0 differ)."""
    bits = t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])
    return bool((bits == bits[0]).all())


# where addcmul's rounding equals mul_ then add_ (checked on every CPU float path by
# tests/test_ensemble.py); in bfloat16/float16 it rounds once, in float32, where torch rounds twice
_ONE_PASS_DTYPES = (torch.float32, torch.float64)


class _Optimizer:
    """SGD (momentum, Nesterov, weight decay), Adam/AdamW or RAdam, each member with its own rate.

    The update rules and their order of operations are torch.optim's single-tensor ones. The
    new values are written into ``out`` (one tensor per parameter), not into the parameters:
    the caller swaps the two, so that the weights before the step are kept without a copy.
    With a :class:`helpers._flat.Layout` the state lives in flat buffers too, and a step
    whose members all have one rate may update every tensor in one call (``step(flat=...)``).
    """

    def __init__(self, kind, params, momentum, nesterov, betas, eps, weight_decay):
        self.kind, self.params = kind, params
        self.layout: Layout | None = None                    # set by the run that lays out flat buffers
        self.momentum, self.nesterov, self.betas, self.eps, self.wd = momentum, nesterov, betas, eps, weight_decay
        self.state: list[list[torch.Tensor]] | None = None   # per parameter: [buf] or [m, v]
        self.flat_state: list[torch.Tensor] = []              # the same, whole, with a layout
        self.t = 0
        self._ones: dict = {}

    def _one(self, like: torch.Tensor) -> torch.Tensor:
        """A 1 that broadcasts against ``like`` (same dtype and device), made once."""
        key = (like.dtype, like.device, like.dim())
        if key not in self._ones:
            self._ones[key] = torch.ones((1,) * like.dim(), dtype=like.dtype, device=like.device)
        return self._ones[key]

    def _make_state(self) -> None:
        # every step updates every parameter, so all the state starts at the first step (t == 1)
        count = (1 if self.momentum else 0) if self.kind == "sgd" else 2
        if self.layout is None:
            make = torch.empty_like if self.kind == "sgd" else torch.zeros_like    # SGD's buffer starts as a copy
            self.state = [[make(p) for _ in range(count)] for p in self.params]
            return
        pairs = [self.layout.empty() if self.kind == "sgd" else self.layout.zeros() for _ in range(count)]
        self.flat_state = [flat for flat, _ in pairs]
        self.state = [list(views) for views in zip(*(views for _, views in pairs))] or [[] for _ in self.params]

    @torch.no_grad()
    def step(self, grads, lr: torch.Tensor, out: list[torch.Tensor], flat=None):
        """One step. ``flat``: (parameters, gradients, out) as flat buffers, every member at rate ``lr[0]``."""
        self.t += 1
        if self.state is None:
            self._make_state()
        update = {"sgd": self._sgd, "radam": self._radam}.get(self.kind, self._adam)
        if flat is not None:
            rate = lr[:1]
            for p, g, o, *state in chunks(*flat, *self.flat_state):
                update(state, p, g, rate, o)
            return
        for state, p, g, o in zip(self.state, self.params, grads, out):
            update(state, p, g, lr.view(-1, *[1] * (p.dim() - 1)), o)

    def _sgd(self, state, p, g, rate, out):
        if self.wd:
            g = g.add(p, alpha=self.wd)
        if self.momentum:
            buf, = state
            if self.t == 1:
                buf.copy_(g)
            elif buf.device.type == "cpu" and buf.dtype in _ONE_PASS_DTYPES:
                # torch's buf.mul_(momentum).add_(g) in one pass over buf instead of two, the same
                # roundings: momentum * buf rounded, times 1 exact, plus g rounded
                torch.addcmul(g, buf, self._one(buf), value=self.momentum, out=buf)
            else:
                buf.mul_(self.momentum).add_(g)                      # in torch's order: the same roundings
            g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
        torch.addcmul(p, g, rate, value=-1.0, out=out)

    def _adam(self, state, p, g, rate, out):
        m, v = state
        beta1, beta2 = self.betas
        if self.wd and self.kind == "adamw":
            p = p * (1 - rate * self.wd)
        elif self.wd:
            g = g.add(p, alpha=self.wd)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = rate / (1 - beta1 ** self.t)
        denom = (v.sqrt() / math.sqrt(1 - beta2 ** self.t)).add_(self.eps)
        torch.addcmul(p, m / denom, step_size, value=-1.0, out=out)

    def _radam(self, state, p, g, rate, out):
        # torch.optim.RAdam's single-tensor rule (L2 weight decay): a momentum step while the
        # variance estimate is unreliable (rho_t <= 5), then Adam's step times the rectifier r_t
        m, v = state
        beta1, beta2 = self.betas
        if self.wd:
            g = g.add(p, alpha=self.wd)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        corrected = m / (1 - beta1 ** self.t)
        bias2 = 1 - beta2 ** self.t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * self.t * (beta2 ** self.t) / bias2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            adaptive = math.sqrt(bias2) / v.sqrt().add_(self.eps)
            torch.sub(p, corrected * rate * adaptive * rect, out=out)
        else:
            torch.sub(p, corrected * rate, out=out)


_CLIP_RULES = ("norm", "value", "per_tensor", "agc", "agc_but_last")


def _clip_rules(clip_rule, n: int) -> list[str]:
    """One clip rule per member, from a string or a sequence of n strings."""
    if not isinstance(clip_rule, (str, Sequence)):
        raise TypeError(f"clip_rule must be one of {_CLIP_RULES} or a sequence of {n} of them, got "
                        f"{clip_rule!r} of type {type(clip_rule).__name__}")
    rules = [clip_rule] * n if isinstance(clip_rule, str) else list(clip_rule)
    if len(rules) != n:
        raise ValueError(f"clip_rule must be one of {_CLIP_RULES} or a sequence of {n} of them, got {clip_rule!r}")
    for r in rules:
        if not isinstance(r, str):
            raise TypeError(f"clip_rule entries must be one of {_CLIP_RULES}, got {r!r} of type {type(r).__name__}")
        if r not in _CLIP_RULES:
            raise ValueError(f"clip_rule entries must be one of {_CLIP_RULES}, got {r!r}")
    return rules


def _clip_plan(run, device):
    """Index tensors of the members each rule applies to (finite thresholds only), computed once per run."""
    finite = torch.isfinite(run.thresholds).cpu().tolist()

    def members(*names):
        return torch.tensor([i for i, r in enumerate(run.rules) if r in names and finite[i]], dtype=torch.long,
                            device=device)

    ens = run.ens
    last = ens.last_weight
    prefix = last.rpartition(".")[0] if last is not None else ""  # "" for a bare Linear: its bias is "bias"
    last_layer = {last, f"{prefix}.bias" if prefix else "bias"} if last is not None else set()
    is_norm = torch.tensor([r == "norm" and f for r, f in zip(run.rules, finite)], device=device)
    is_tensor = torch.tensor([r == "per_tensor" and f for r, f in zip(run.rules, finite)], device=device)
    agc_all, agc_most = members("agc"), members("agc", "agc_but_last")
    agc = [agc_all if name in last_layer else agc_most for name in ens.params]
    return is_norm, is_tensor, agc, members("value")


@torch.no_grad()
def _apply_clip_rules(run, grads, norms, norm) -> torch.Tensor:
    """Clip each member's gradient by its own rule, in place; return (N,) bool: did the rule change it?

    Norm and per-tensor rules scale each member's tensor by one number; the unit-wise (AGC) and
    entry-wise (value) rules work on the members that use them only.
    """
    ens = run.ens
    device, dtype = grads[0].device, grads[0].dtype
    if getattr(run, "_plan", None) is None:
        run._plan = _clip_plan(run, device)
    is_norm, is_tensor, agc_members, by_value = run._plan
    c = run.thresholds
    coef_norm = (c / (norm + 1e-6)).clamp(max=1.0)
    own = (c / (torch.stack(norms) + 1e-6)).clamp(max=1.0)                       # (tensors, N)
    fired = (is_norm & (coef_norm < 1.0)) | (is_tensor & (own < 1.0).any(dim=0))
    coefs = torch.where(is_norm, coef_norm, torch.where(is_tensor, own, torch.ones_like(own))).to(dtype)
    for (name, g), agc in zip(zip(ens.params, grads), agc_members):
        shape = (-1, *[1] * (g.dim() - 1))
        if agc.numel():
            sub, w = g.index_select(0, agc), ens.params[name].detach().index_select(0, agc)
            if g.dim() <= 2:                  # a bias or gain (N, out), or a scalar (N,): one unit per member
                dims = tuple(range(1, g.dim()))
            elif name in ens._transposed:     # a Linear weight kept as (N, in, out): a unit is a column
                dims = (1,)
            else:
                dims = tuple(range(2, g.dim()))
            w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True) if dims else w.abs()
            g_norm = torch.linalg.vector_norm(sub, dim=dims, keepdim=True) if dims else sub.abs()
            max_norm = w_norm.clamp(min=1e-3) * c.index_select(0, agc).to(dtype).view(shape)
            trigger = g_norm > max_norm
            unit = torch.where(trigger, max_norm / g_norm.clamp(min=1e-6), torch.ones_like(g_norm))
            g.index_copy_(0, agc, sub * unit)
            fired.index_fill_(0, agc[trigger.reshape(len(agc), -1).any(dim=1)], True)
        if by_value.numel():
            sub = g.index_select(0, by_value)
            v = c.index_select(0, by_value).to(dtype).view(shape)
            fired.index_fill_(0, by_value[(sub.abs() > v).reshape(len(by_value), -1).any(dim=1)], True)
            g.index_copy_(0, by_value, torch.maximum(torch.minimum(sub, v), -v))
    _fused.mul_(grads, [coefs[k].view(-1, *[1] * (g.dim() - 1)) for k, g in enumerate(grads)])
    return fired.cpu()


def _index_batches(n_items: int, batch_size: int, generators: list[torch.Generator]):
    """Index batches: (B,) shared by all members, or (N, B) with one shuffle per member."""
    orders = [torch.randperm(n_items, generator=g) for g in generators]
    order = orders[0] if len(orders) == 1 else torch.stack(orders)
    for start in range(0, n_items, batch_size):
        yield order[..., start:start + batch_size]


def fit_ensemble(ensemble: Ensemble, train_data, *, epochs: int, lr, optimizer: str = "sgd",
                 momentum: float = 0.0, nesterov: bool = False, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, clip=None, clip_rule="norm", lr_factors=None,
                 loss="cross_entropy", batch_size: int = 64, seed=0, val_data=None, eval_every: int | None = None,
                 progress_bar: bool = True, desc: str = "ensemble") -> EnsembleHistory:
    r"""Train every member of ``ensemble`` at once, as :func:`helpers.training.fit` would train each alone.

    One step, for every member :math:`i` at once: forward, loss :math:`L^{(i)}`, backward,
    record the global gradient norm :math:`\lVert g^{(i)}\rVert_2`, clip it to
    ``clip[i]`` (:math:`g \leftarrow g\min(1, c/(\lVert g\rVert + 10^{-6}))`, as
    ``torch.nn.utils.clip_grad_norm_``), update with rate
    :math:`\eta^{(i)}_t = \text{lr}[i]\cdot\text{lr\_factors}(t)[i]`.

    A member whose loss or a gradient entry is not finite is *frozen*: its weights go back
    to the last ones with a finite loss (as ``fit``'s divergence guard does), it takes
    no further step, and ``diverged[i]`` / ``diverged_at[i]`` record it; the others go on.
    A gradient norm that overflows while every entry is finite is no divergence (as in ``fit``):
    its float64 value is recorded.

    Args:
        ensemble: the :class:`Ensemble` to train (in place).
        train_data: ``(X, y)`` tensors, X (n, …), y (n,) class labels or (n, k) targets.
        epochs: passes over the data, >= 1.
        lr: learning rate, one number or one per member (N,), >= 0.
        optimizer: ``"sgd"`` (with ``momentum``, ``nesterov``), ``"adam"``, ``"adamw"`` or
            ``"radam"`` (``betas``, ``eps``), each with ``weight_decay`` as in ``torch.optim``.
        clip: ``None``, or a global-norm threshold > 0 per member (one number or (N,);
            ``math.inf`` leaves that member unclipped). With another ``clip_rule`` it is
            that rule's number: the value :math:`v`, the per-tensor threshold or AGC's :math:`\lambda`.
        clip_rule: how ``clip`` is applied, one string or one per member:
            ``"norm"`` (global 2-norm, as ``torch.nn.utils.clip_grad_norm_``), ``"value"``
            (every entry into :math:`[-v, v]`, as ``clip_grad_value_``), ``"per_tensor"``
            (each tensor by its own norm, as ``clip_grad_norm_([p], c)`` for every ``p``),
            ``"agc"`` (unit-wise adaptive clipping of every parameter, as
            :func:`helpers.clipping.adaptive_clip_grad_` with ``eps=1e-3``) or
            ``"agc_but_last"`` (AGC on every parameter except the last Linear layer's
            weight and bias — ``weight`` and ``bias`` themselves for a bare ``nn.Linear`` — as
            Brock et al. 2021, §4.1, advise). ``History.clipped`` records
            whether the rule changed the gradient.
        lr_factors: ``None``, a callable ``step -> factor`` (a float or (N,); called for every
            step before the first, so that a bad value is refused before training), or an
            array (steps,) or (steps, N) of factors: a schedule, e.g. read off
            a ``helpers.schedulers`` scheduler.
        loss: ``"cross_entropy"``, ``"mse"`` or a callable (output (N, B, …), target) -> (N,).
        batch_size: mini-batch size.
        seed: an int — every member sees the same batches, shuffled as ``fit(seed=seed)``
            does — or one int per member, each member shuffled as ``fit(seed=seed[i])``.
        val_data: ``(X, y)`` evaluated at the end of every epoch, per member.
        eval_every: evaluate ``val_data`` every this many steps instead (and after the
            last step); the step counts are in ``EnsembleHistory.val_steps``.
        progress_bar: draw a progress bar over the steps (see :mod:`helpers.progress`).
        desc: the progress bar's label.

    Returns:
        :class:`EnsembleHistory`.

    Raises:
        TypeError, ValueError: on a bad argument, before anything is modified.

    Example:
        >>> from helpers.models import MLP
        >>> X, y = torch.randn(96, 4), torch.randint(0, 3, (96,))
        >>> ens = from_seeds(lambda: MLP(4, 3, width=8, depth=2), seeds=range(3))
        >>> h = fit_ensemble(ens, (X, y), epochs=2, lr=[0.01, 0.1, 1.0], progress_bar=False)
        >>> h.loss.shape, h.epoch_loss.shape
        ((4, 3), (2, 3))
    """
    if not isinstance(ensemble, Ensemble):
        raise TypeError(f"ensemble must be an Ensemble, got {type(ensemble).__name__}")
    n = ensemble.n
    X, y = _check_xy("train_data", train_data)
    if val_data is not None:
        _check_xy("val_data", val_data)
    if eval_every is not None:
        check_int("eval_every", eval_every, minimum=1)
        if val_data is None:
            raise ValueError("eval_every needs val_data")
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_choice("optimizer", optimizer, ("sgd", "adam", "adamw", "radam"))
    momentum = check_real("momentum", momentum, minimum=0.0)
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
    if nesterov and (optimizer != "sgd" or momentum == 0):
        raise ValueError("nesterov=True needs optimizer='sgd' with momentum > 0")
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    betas = tuple(check_real("betas entries", b, minimum=0.0, maximum=1.0, strict_maximum=True) for b in betas)
    eps = check_real("eps", eps, minimum=0.0)
    weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)
    rates = _per_member("lr", lr, n, minimum=0.0)
    thresholds = None if clip is None else _per_member("clip", clip, n, minimum=0.0, strict=True, allow_inf=True)
    rules = _clip_rules(clip_rule, n)
    loss_fn = _loss_function(loss)
    if isinstance(seed, torch.Tensor | np.ndarray) and seed.ndim <= 1:
        seed = seed.tolist()            # ints stay ints; a float is refused below, by name
    seeds = [seed] if isinstance(seed, Integral) else list(seed) if isinstance(seed, Sequence) else None
    if seeds is None or len(seeds) not in (1, n):
        raise TypeError(f"seed must be an int or a sequence of {n} ints (one per member), got {seed!r}")
    seeds = [check_int("seed", s, minimum=0) for s in seeds]
    steps_per_epoch = math.ceil(len(X) / batch_size)
    factors = _lr_factors(lr_factors, steps_per_epoch * epochs, n)

    _check_targets(ensemble, X, y, loss_fn)
    keep_freed_memory()
    run = _Run(ensemble, loss_fn, _Optimizer(optimizer, ensemble.parameters(), momentum, nesterov, betas, eps,
                                             weight_decay), rates, thresholds, factors, rules)
    run.val_data, run.eval_every = val_data, eval_every
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    ensemble._per_member_input = len(seeds) > 1
    bar = progress(range(epochs * steps_per_epoch), desc=desc, enabled=progress_bar)
    try:
        _train(run, ensemble, X, y, epochs, batch_size, generators, iter(bar))
    finally:
        ensemble._per_member_input = False
        run.unflatten()
        if hasattr(bar, "close"):
            bar.close()
    return run.history()


def _check_targets(ens: Ensemble, X, y, loss_fn) -> None:
    """One forward pass on two examples in eval mode (nothing changes): do targets and loss fit?"""
    if loss_fn is _cross_entropy and (y.dim() != 1 or y.is_floating_point() or y.is_complex()):
        raise ValueError(f"loss='cross_entropy' needs integer class labels of shape (n,), got {tuple(y.shape)} "
                         f"{y.dtype}")
    with kept_modes(ens.base), torch.no_grad():
        ens.eval()
        losses = loss_fn(ens(X[:2]), y[:2])
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (ens.n,):
        got = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(f"loss must give one mean loss per member, shape ({ens.n},), got {got}")


def _train(run, ensemble, X, y, epochs, batch_size, generators, ticks) -> None:
    if not ensemble.training:    # as fit: a model in eval mode as a whole trains; else each module keeps its mode
        ensemble.train()
    for _ in range(epochs):
        for index in _index_batches(len(X), batch_size, generators):
            xb, yb = X[index], y[index]
            run.step(xb, yb)
            next(ticks, None)
            if run.eval_every is not None and run.t % run.eval_every == 0:
                run.evaluate()
            if not run.active.any():
                break
        run.end_epoch()
        if not run.active.any():
            break
    if run.eval_every is not None and run.t % run.eval_every != 0:
        run.evaluate()


class _Run:
    """The state of one :func:`fit_ensemble` call: optimizer, guard copies and records."""

    def __init__(self, ens, loss_fn, optimizer, rates, thresholds, factors, rules=None):
        self.ens, self.loss_fn, self.optimizer = ens, loss_fn, optimizer
        self.rules = rules if rules is not None else ["norm"] * ens.n
        self.params = ens.parameters()
        device, dtype = self.params[0].device, self.params[0].dtype
        self.rates = rates.to(device)
        self.thresholds = None if thresholds is None else thresholds.to(device=device, dtype=dtype)
        self.factors = factors
        # the weights before the last step (fit's divergence guard keeps the same): the optimizer writes
        # the new weights into these and the two are swapped, so keeping them costs no copy
        self.layout = self.flat = None
        if ens._chain is not None and Layout.fits(self.params):
            self._lay_flat()
        else:
            self.previous = [p.detach().clone() for p in self.params]
        self.float_buffers = [b for b in ens.buffers.values() if b.is_floating_point()]
        self.kept_buffers = [b.clone() for b in self.float_buffers]
        self.all_buffers = list(ens.buffers.values())
        self.frozen_buffers = [b.clone() for b in self.all_buffers]   # as each member froze
        self.active = torch.ones(ens.n, dtype=torch.bool)
        self.diverged_at = [None] * ens.n
        self.t = 0
        self.records = {k: [] for k in ("loss", "accuracy", "lr", "grad_norm", "grad_ratio", "clipped")}
        self.epoch_losses, self.epochs = [], {"epoch_loss": [], "val_loss": [], "val_accuracy": []}
        self.val_data, self.eval_every, self.val_steps = None, None, []
        first, last = ens.first_weight, ens.last_weight
        self.ratio_names = (first, last) if first is not None else None

    def _lay_flat(self) -> None:
        """Parameters, the weights before the step, gradients and optimizer state in flat buffers
        (helpers._flat): the hand-written backward pass writes its gradients there, and a step at one
        rate for every member updates everything in a few calls."""
        self.layout = self.optimizer.layout = Layout(self.params)
        weights, views = self.layout.gather(self.params)
        for p, view in zip(self.params, views):
            p.data = view
        before, self.previous = self.layout.gather(self.params)
        grads, self.grad_views = self.layout.empty()
        self.flat = [weights, grads, before]      # what the params view, the gradients, the weights before
        # views of the weights' two buffers (objects of their own: a swap changes p.data, not these), to
        # check that the parameters still view the first
        self.views = [self.layout.views(weights), self.layout.views(before)]

    def _still_flat(self) -> bool:
        """Whether the parameters still view the flat buffer (a caller may have set ``p.data``); if
        not, the run goes on tensor by tensor, as it would have without the buffers."""
        if self.flat is not None and not all(p.data_ptr() == v.data_ptr() and p.shape == v.shape
                                             for p, v in zip(self.params, self.views[0])):
            self.flat = None
        return self.flat is not None

    def unflatten(self) -> None:
        """At the end of the run, give each parameter its own memory again (saving or copying one must
        not carry all of them), after letting go of the other buffers (the weights before the last step,
        gradients, optimizer state), so that the copies raise no peak."""
        if self.layout is not None:
            self.previous = self.grad_views = self.views = self.flat = None
            self.optimizer.state, self.optimizer.flat_state = None, []
            for p in self.params:
                p.data = p.data.clone()
            self.layout = None

    def _rate(self) -> torch.Tensor:
        rate = self.rates
        if self.factors is not None:     # checked for every step before the first (_lr_factors)
            rate = rate * self.factors[self.t].to(rate.device)
        return rate

    def step(self, xb, yb):
        n = self.ens.n
        rate = self._rate()                     # validated before this step changes anything
        out, losses, grads = self._forward_backward(xb, yb)
        norms = [g.abs() if g.dim() == 1 else torch.linalg.vector_norm(g, dim=tuple(range(1, g.dim())))
                 for g in grads]
        norm = torch.linalg.vector_norm(torch.stack(norms), dim=0)
        hits = _hits(out.detach(), yb)
        accuracy = hits.to(norm.dtype) / len(yb) if hits is not None else torch.full_like(norm, math.nan)
        rows = [losses.detach(), norm, accuracy]
        if self.ratio_names is not None:
            index = list(self.ens.params).index
            pair = [index(name) for name in self.ratio_names]
            rows += [norms[pair[0]] / norms[pair[1]], norms[pair[0]], norms[pair[1]]]
        numbers = torch.stack([r.detach().to(torch.float64) for r in rows]).cpu()
        loss_v, norm_v = numbers[0], numbers[1]
        bad_loss = self.active & ~torch.isfinite(loss_v)
        bad_norm = self.active & ~bad_loss & ~torch.isfinite(norm_v)
        if bad_norm.any():  # the rare path: fit's rule, a norm that overflowed with finite entries goes on
            bad_norm = _nonfinite_members(bad_norm, grads, numbers)
        if self.ratio_names is not None:
            _exact_ratios(self.active & ~bad_loss & ~bad_norm, [grads[i] for i in pair], numbers)
            numbers = numbers[:4]
        with torch.no_grad():
            if bad_loss.any():       # these members' weights produced a non-finite loss: back to the kept ones
                mask = bad_loss.to(self.params[0].device)
                for t, k in zip(self.params + self.float_buffers, self.previous + self.kept_buffers):
                    t.copy_(torch.where(mask.view(-1, *[1] * (t.dim() - 1)), k, t))
            for i in torch.nonzero(bad_loss | bad_norm).flatten().tolist():
                self.diverged_at[i] = self.t
            if (bad_loss | bad_norm).any():
                self._freeze_buffers(bad_loss | bad_norm)
            self.active &= ~(bad_loss | bad_norm)
            if self.float_buffers:
                _fused.copy_(self.kept_buffers, self.float_buffers)
            lr_record = rate.clone()
            if not self.active.all():
                keep = self.active.to(grads[0].device)
                grads = [torch.where(keep.view(-1, *[1] * (g.dim() - 1)), g, torch.zeros((), dtype=g.dtype))
                         for g in grads]
                rate = torch.where(keep, rate, torch.zeros_like(rate))
                norm = torch.where(keep, norm, torch.zeros_like(norm))
            clipped = torch.zeros(n, dtype=torch.bool)
            if self.thresholds is not None and all(r == "norm" for r in self.rules):
                coef = (self.thresholds / (norm + 1e-6)).clamp(max=1.0)
                # inf: that member unclipped, even where its float norm overflowed (inf / inf would be NaN)
                coef = torch.where(torch.isinf(self.thresholds), torch.ones((), dtype=coef.dtype), coef)
                clipped = (coef < 1.0).cpu()
                _fused.mul_(grads, [coef.view(-1, *[1] * (g.dim() - 1)) for g in grads])
            elif self.thresholds is not None:
                clipped = _apply_clip_rules(self, grads, norms, norm)
            rate = rate.to(self.params[0].dtype)
            whole = (self._still_flat() and self.active.all() and _one_value(rate)
                     and all(g is v for g, v in zip(grads, self.grad_views)))
            self.optimizer.step(grads, rate, out=self.previous, flat=self.flat if whole else None)
            for p, new in zip(self.params, self.previous):
                p.data, new.data = new.data, p.data          # now previous holds the weights before the step
            if self.flat is not None:
                self.flat[0], self.flat[2] = self.flat[2], self.flat[0]
                self.views.reverse()
        self._record(numbers, lr_record.cpu(), clipped)
        self.t += 1

    def _forward_backward(self, xb, yb) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        ens = self.ens
        if self._by_hand(xb):
            into = dict(zip(ens.params, self.grad_views)) if self._still_flat() else None
            out, losses, by_name = chain_forward_backward(ens._chain, ens.params, xb, yb, self.loss_fn, into)
            return out, losses, [by_name[name] for name in ens.params]
        out = ens(xb)
        self._hold_frozen_buffers()
        losses = self.loss_fn(out, yb)
        grads = torch.autograd.grad(losses.sum(), self.params, allow_unused=True)
        return out, losses, [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]

    def _by_hand(self, xb) -> bool:
        """Whether this step may skip autograd (helpers._stacked_chain) and give the same numbers."""
        ens = self.ens
        return (ens._chain is not None and xb.dim() == 2 + ens._per_member_input
                and self.loss_fn in (_cross_entropy, _mse)       # a loss of the caller's may read the weights
                and torch.is_grad_enabled()                       # autograd would refuse: so does this path
                and all(p.requires_grad and not p._backward_hooks for p in self.params)   # frozen later, hooks
                # what only autograd's path would apply: autocast (float32 gradients of float32 weights),
                # anomaly checks, saved-tensor hooks, torch-function modes, global module hooks
                and not torch.is_autocast_enabled(xb.device.type) and not torch.is_anomaly_enabled()
                and not _fused.graph_is_observed()
                and chain_plan(ens.base, set(ens.params)) == ens._chain)  # an activation changed since

    @torch.no_grad()
    def _freeze_buffers(self, newly: torch.Tensor) -> None:
        for b, frozen in zip(self.all_buffers, self.frozen_buffers):
            frozen.copy_(torch.where(newly.to(b.device).view(-1, *[1] * (b.dim() - 1)), b, frozen))

    @torch.no_grad()
    def _hold_frozen_buffers(self) -> None:
        """A frozen member's forward pass still runs (in the batch): put back its running statistics."""
        if self.active.all():
            return
        dead = (~self.active).to(self.params[0].device)
        for b, frozen in zip(self.all_buffers, self.frozen_buffers):
            b.copy_(torch.where(dead.view(-1, *[1] * (b.dim() - 1)), frozen, b))

    def _record(self, numbers, lr, clipped):
        if self.active.all():    # nothing to blank out (rows of this step's own tensors: nobody changes them)
            rows = [*numbers, lr, clipped]
        else:
            dead, nan = ~self.active, torch.tensor(math.nan, dtype=torch.float64)
            rows = [torch.where(dead, nan, row) for row in (*numbers, lr)] + [clipped & self.active]
        if len(numbers) < 4:
            rows.insert(3, torch.full((self.ens.n,), math.nan, dtype=torch.float64))
        for key, row in zip(("loss", "grad_norm", "accuracy", "grad_ratio", "lr", "clipped"), rows):
            self.records[key].append(row)
        self.epoch_losses.append(self.records["loss"][-1])

    def end_epoch(self):
        if self.epoch_losses:
            mean = torch.stack(self.epoch_losses).mean(dim=0)
            nan = torch.tensor(math.nan, dtype=torch.float64)
            self.epochs["epoch_loss"].append(torch.where(self.active, mean, nan))
        self.epoch_losses = []
        if self.val_data is not None and self.eval_every is None:
            self.evaluate()

    def evaluate(self):
        val_loss, val_acc = self.ens.evaluate(self.val_data, self.loss_fn)
        dead = (~self.active).numpy()
        self.epochs["val_loss"].append(torch.from_numpy(np.where(dead, math.nan, val_loss)))
        self.epochs["val_accuracy"].append(torch.from_numpy(np.where(dead, math.nan, val_acc)))
        self.val_steps.append(self.t)

    def history(self) -> EnsembleHistory:
        def arr(rows, n_cols=self.ens.n):
            return torch.stack(rows).numpy() if rows else np.zeros((0, n_cols))

        return EnsembleHistory(
            loss=arr(self.records["loss"]), accuracy=arr(self.records["accuracy"]), lr=arr(self.records["lr"]),
            grad_norm=arr(self.records["grad_norm"]), grad_ratio=arr(self.records["grad_ratio"]),
            clipped=arr(self.records["clipped"]).astype(bool), epoch_loss=arr(self.epochs["epoch_loss"]),
            val_loss=arr(self.epochs["val_loss"]), val_accuracy=arr(self.epochs["val_accuracy"]),
            diverged=(~self.active).numpy().copy(), diverged_at=list(self.diverged_at), val_steps=list(self.val_steps))
