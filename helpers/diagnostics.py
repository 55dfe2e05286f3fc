"""Measuring gradient flow: per-layer and per-block gradient norms, activation statistics, Jacobians."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from helpers import _fused, activations
from helpers._checks import check_callable, check_choice, check_int, check_module, check_real
from helpers._layers import WEIGHTED_LAYERS, describe_kinds, recurrent_weights
from helpers.normalization import WeightNormLinear

__all__ = ["ACTIVATION_LAYERS", "GradientMonitor", "MonitorRecord", "activation_grad_norms", "block_grad_norms",
           "capture_activations", "grad_norms_for_batch", "jacobian_singular_values", "layer_grad_norms",
           "trained_weight", "watched_weights", "weighted_layers"]

# the layers whose weight the diagnostics report: the registry's, and weight-normed ones (their direction v)
_REPORTED_LAYERS = (*WEIGHTED_LAYERS, WeightNormLinear)
ACTIVATION_LAYERS = (activations.Activation, *activations.TORCH_ACTIVATIONS, nn.Softplus, nn.Hardtanh, nn.PReLU)
# the activations with a saturation (sigmoid, tanh) or dead-unit (relu) measure
_MEASURED = ("sigmoid", "tanh", "relu")


def _kind(module: nn.Module) -> str | type:
    """'sigmoid', 'tanh' or 'relu' for PyTorch's and the course's versions alike, else the class."""
    name = activations.name_of(module)
    return name if name in _MEASURED else type(module)


def weighted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every layer of ``model`` of a kind in :data:`helpers._layers.WEIGHTED_LAYERS`, by name, from input to output.

    "From input to output" is the order in which the layers were registered, which is
    the order of the forward pass for the sequential models of the course.
    :class:`helpers.normalization.WeightNormLinear` layers count too (see :func:`trained_weight`).
    """
    check_module("model", model)
    return {name: m for name, m in model.named_modules() if isinstance(m, _REPORTED_LAYERS)}


def trained_weight(layer: nn.Module) -> torch.Tensor:
    r"""The weight parameter of a layer that the diagnostics report: ``layer.weight``.

    A :class:`helpers.normalization.WeightNormLinear` layer has no ``weight``
    parameter: its weight :math:`g\,v/\lVert v \rVert` is computed from a gain ``g``
    and a direction ``v``. The diagnostics report its direction ``v``, the matrix the
    optimizer updates (``g`` holds one number per unit).

    Example:
        >>> from helpers.normalization import WeightNormLinear
        >>> trained_weight(WeightNormLinear(3, 2)).shape
        torch.Size([2, 3])
    """
    check_module("layer", layer)
    if isinstance(layer, WeightNormLinear):
        return layer.v
    if not isinstance(getattr(layer, "weight", None), torch.Tensor):
        raise ValueError(f"layer must have a weight tensor (or be a WeightNormLinear), got {type(layer).__name__}")
    return layer.weight


def watched_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight matrices the diagnostics report, by name, from input to output.

    One per weighted layer (:data:`helpers._layers.WEIGHTED_LAYERS`, named like the layer, see
    :func:`trained_weight`), and the input-to-hidden and hidden-to-hidden matrices of
    recurrent layers (``nn.RNN``/``LSTM``/``GRU``, their cells and :mod:`helpers.recurrent`'s),
    named ``"<layer>.weight_ih_l0"`` etc.

    Example:
        >>> list(watched_weights(torch.nn.ModuleDict({"rnn": torch.nn.GRU(3, 4), "head": torch.nn.Linear(4, 1)})))
        ['rnn.weight_ih_l0', 'rnn.weight_hh_l0', 'head']
    """
    check_module("model", model)
    watched: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, _REPORTED_LAYERS):
            watched[name] = trained_weight(module)
        else:
            for pname, weight in recurrent_weights(module).items():
                watched[f"{name}.{pname}" if name else pname] = weight
    return watched


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    r"""The Frobenius norm :math:`\lVert \partial L / \partial W_\ell \rVert_F` of each layer's weight gradient.

    Call it after ``loss.backward()``. A layer whose weight has no gradient yet
    (``.grad is None``) reports ``0.0``; biases are not included. The squares are summed
    in float64, so gradients as small as :math:`10^{-43}` (float32's smallest) do not
    underflow to a norm of 0, and float32 gradients of :math:`10^{19}` do not overflow to
    ``inf``; a norm that overflows even float64 (entries of :math:`10^{200}`) is taken again
    after dividing by the largest entry. ``inf`` means an entry is infinite (NaN: an entry is NaN).

    Args:
        model: a module containing layers of :data:`helpers._layers.WEIGHTED_LAYERS` or recurrent
            layers (see :func:`watched_weights`).

    Returns:
        dict {layer name: norm}, ordered from input to output.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        >>> net(torch.ones(2, 3)).sum().backward()
        >>> list(layer_grad_norms(net))
        ['0', '2']
    """
    weights = watched_weights(model)
    grads = [w.grad for w in weights.values()]
    present = [g.detach() for g in grads if g is not None]
    values = iter(_fused.exact_norms(present))  # one multi-tensor norm, one transfer to the host
    return {name: (next(values) if g is not None else 0.0) for name, g in zip(weights, grads)}


def block_grad_norms(model: nn.Module) -> dict[str, float]:
    r"""The gradient norm of each block's weight matrices together.

    .. math:: \lVert \nabla_{\text{block}} L \rVert = \sqrt{\sum_{W \in \text{block}}\lVert\nabla_W L\rVert_F^2}

    Call it after ``loss.backward()``. Reads :func:`layer_grad_norms` and groups the layers
    named ``blocks.<i>.…`` (as in :class:`helpers.transformer.TinyCausalLM`); other layers
    (the head) are left out.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no weight of any block has a gradient yet (no backward pass since the model
            was built or since ``zero_grad()``): reporting 0 would pretend the gradient vanished.

    Returns:
        dict {"blocks.0": norm, …}, from input to output.

    Example:
        >>> from helpers.transformer import TinyCausalLM
        >>> lm = TinyCausalLM(5, d_model=8, num_heads=2, num_layers=2, max_len=4)
        >>> lm(torch.zeros(2, 4, dtype=torch.long)).sum().backward()
        >>> list(block_grad_norms(lm))
        ['blocks.0', 'blocks.1']
    """
    check_module("model", model)
    in_blocks = [w for name, w in watched_weights(model).items() if name.split(".")[0] == "blocks"]
    if in_blocks and all(w.grad is None for w in in_blocks):
        raise ValueError("block_grad_norms needs gradients: no weight of model's blocks has a .grad yet "
                         "(call loss.backward() first; zero_grad() sets them to None)")
    squares: dict[str, float] = {}
    for name, norm in layer_grad_norms(model).items():
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] == "blocks":
            key = f"blocks.{parts[1]}"
            squares[key] = squares.get(key, 0.0) + norm ** 2
    return {k: math.sqrt(v) for k, v in squares.items()}


def grad_norms_for_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         loss_fn: Callable = nn.functional.cross_entropy) -> dict[str, float]:
    """Zero the gradients, back-propagate ``loss_fn(model(x), y)`` once, return :func:`layer_grad_norms`.

    The gradients are this batch's afterwards; the buffers (a BatchNorm's running statistics and
    ``num_batches_tracked``) are as they were, also on an error.
    """
    _check_batch(model, x, y, loss_fn)
    with _kept_buffers(model):      # put back after the backward pass, which may read them
        loss = loss_fn(model(x), y)
        model.zero_grad(set_to_none=True)  # after the forward pass: one that fails leaves the gradients as they were
        loss.backward()
    return layer_grad_norms(model)


@contextlib.contextmanager
def _kept_buffers(model: nn.Module) -> Iterator[None]:
    """Within the block, run ``model`` in training mode freely; on leaving, whatever happened, every buffer of it
    (a BatchNorm's running statistics, ``num_batches_tracked``) holds its values from before."""
    kept = [(module, name, buffer, buffer.clone()) for module in model.modules()
            for name, buffer in module.named_buffers(recurse=False)]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, name, buffer, values in kept:
                setattr(module, name, buffer)       # the same tensor, in case the forward pass replaced it
                buffer.copy_(values)


def _check_batch(model, x, y, loss_fn) -> None:
    check_module("model", model)
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a tensor (one batch), got {type(value).__name__}")
    check_callable("loss_fn", loss_fn)


def activation_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          loss_fn: Callable = nn.functional.cross_entropy) -> dict[str, float]:
    r"""The norm :math:`\lVert \partial L / \partial h_\ell \rVert` of the gradient reaching each activation's output.

    This is the back-propagated signal itself, the quantity the per-layer factor
    :math:`\chi` of :mod:`helpers.theory` predicts. (Weight gradients
    :math:`\partial L/\partial W_\ell = \delta_\ell h_{\ell-1}^\top` also carry the size of the
    forward activations; in a bias-free ReLU net the two effects cancel exactly.)

    Args:
        model: a module with activation modules (see :data:`ACTIVATION_LAYERS`).
        x, y: one batch; ``loss_fn(model(x), y)`` is back-propagated once.
        loss_fn: a function of (output, target) returning a scalar.

    Returns:
        dict {activation name: norm}, ordered from input to output. The model's gradients are
        this batch's afterwards; its buffers (a BatchNorm's running statistics) are as they were,
        also on an error.
    """
    _check_batch(model, x, y, loss_fn)
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, ACTIVATION_LAYERS):
            def keep(_m, _inp, out, name=name):
                out.retain_grad()
                outputs[name] = out
            handles.append(module.register_forward_hook(keep))
    try:
        with _kept_buffers(model):      # put back after the backward pass, which may read them
            loss = loss_fn(model(x), y)
            model.zero_grad(set_to_none=True)  # after the forward pass: a failed one leaves the gradients as they were
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    if not outputs:
        return {}
    norms = torch.stack([torch.linalg.vector_norm(o.grad) for o in outputs.values()]).tolist()
    return dict(zip(outputs, norms))


@torch.no_grad()
def capture_activations(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` once and return the output of every activation module by name.

    The model is left as it was: in its mode, and with its buffers (a BatchNorm's running
    statistics, updated by a training-mode pass) put back, also on an error.

    Example:
        >>> from helpers.models import MLP
        >>> acts = capture_activations(MLP(4, 2, width=8, depth=2), torch.randn(16, 4))
        >>> {name: tuple(a.shape) for name, a in acts.items()}
        {'act1': (16, 8), 'act2': (16, 8)}
    """
    check_module("model", model)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor (one batch), got {type(x).__name__}")
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, ACTIVATION_LAYERS):
            handles.append(module.register_forward_hook(
                lambda _m, _inp, out, name=name: captured.__setitem__(name, out.detach())))
    try:
        with _kept_buffers(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def jacobian_singular_values(fn: Callable[[torch.Tensor], torch.Tensor],
                             x: torch.Tensor) -> torch.Tensor:
    r"""Singular values of the input-output Jacobian :math:`J = \partial f(x) / \partial x` at one input.

    The chain rule makes :math:`J = D_L W_L \cdots D_1 W_1` a product of per-layer
    Jacobians; its singular values say how much each direction of a small change at
    the input is stretched or shrunk on the way to the output (and, transposed, how
    gradients are on the way back). Vanishing: all of them tiny; exploding: some huge.

    Args:
        fn: a function or module mapping a 1-D tensor to a 1-D tensor.
        x: one input, a 1-D tensor.

    Returns:
        the singular values, largest first (1-D tensor of length min(out, in)).

    Example:
        >>> jacobian_singular_values(lambda v: 3 * v, torch.ones(4))
        tensor([3., 3., 3., 3.])
    """
    check_callable("fn", fn)
    if not isinstance(x, torch.Tensor) or x.dim() != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a 1-D tensor (one input), got {shape}")
    jac = torch.autograd.functional.jacobian(fn, x)
    if jac.dim() != 2:
        raise ValueError(f"fn must map a 1-D tensor to a 1-D tensor; its Jacobian has shape {tuple(jac.shape)}")
    return torch.linalg.svdvals(jac)


def _wide_mean_std(out: torch.Tensor) -> tuple[float, float]:
    """Mean and unbiased std of ``out`` in float64 (float32 on MPS), divided by the largest absolute entry
    first so that neither squares nor sums overflow: finite for finite entries."""
    x = out.detach().to(_fused._wide_dtype(out.device)).flatten()
    peak = x.abs().amax() if x.numel() else x.new_zeros(())
    scale = torch.where(torch.isfinite(peak) & (peak > 0), peak, torch.ones_like(peak))
    x = x / scale
    std = x.std() if x.numel() > 1 else x.new_zeros(())
    mean, std = (torch.stack([x.mean(), std]) * scale).tolist()
    return mean, std


@dataclass
class MonitorRecord:
    """What :class:`GradientMonitor` recorded at one training step."""

    step: int
    grad_norm: dict[str, float]
    update_ratio: dict[str, float]
    act_mean: dict[str, float]
    act_std: dict[str, float]
    saturation: dict[str, float] = field(default_factory=dict)
    dead: dict[str, float] = field(default_factory=dict)


class GradientMonitor:
    r"""Hooks that record a network's health at every training step.

    Per weight matrix :math:`\ell` (of each layer of :data:`helpers._layers.WEIGHTED_LAYERS`, and the
    ``weight_ih``/``weight_hh`` matrices of recurrent layers: :func:`watched_weights`):

    * gradient norm :math:`\lVert \partial L/\partial W_\ell \rVert_F`, read as soon as the
      gradient is accumulated, so *before* any clipping;
    * update-to-data ratio :math:`\lVert \Delta W_\ell \rVert_F / \lVert W_\ell \rVert_F` of the
      optimizer step, :math:`W_\ell` taken before the step (healthy training sits near
      :math:`10^{-3}`). Frozen layers (``requires_grad=False``) get a ratio but no gradient norm.

    Per activation module (on the last training-mode forward pass):

    * mean and standard deviation of its output;
    * saturation fraction for sigmoid and tanh: the share of outputs where the
      derivative is below ``saturation_level`` times its maximum
      (:math:`\sigma' < 0.1 \cdot \tfrac14`, :math:`\tanh' < 0.1`);
    * dead fraction for ReLU: the share of units that output 0 for every example of
      the batch (no gradient reaches their weights).

    Protocol: attach, train as usual, and call :meth:`step` after each
    ``optimizer.step()`` (:func:`helpers.training.fit` does this for you).

    The gradient norms are taken together, in one multi-tensor norm in the gradients' own
    dtype, when the last watched gradient of the backward pass has been accumulated; a step
    copies its numbers to the host once. The few norms there whose squares may have underflowed
    (below :data:`helpers._fused.TINY`) or overflowed (above :data:`helpers._fused.HUGE`, or not
    finite: float32 gradients of :math:`10^{19}`, a float16 norm above 65504) are taken again in
    float64 (:func:`helpers._fused.refine`), and so are such weight and update norms: a
    reported ``inf`` means an entry is infinite.

    Args:
        model: the network to watch.
        every: record one step in ``every`` (the hooks are idle in between).
        saturation_level: threshold of the saturation fraction, in (0, 1).

    Example:
        >>> from helpers.models import MLP
        >>> net = MLP(4, 2, width=8, depth=2, activation="tanh")
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> with GradientMonitor(net) as monitor:
        ...     net(torch.randn(16, 4)).square().mean().backward()
        ...     opt.step()
        ...     record = monitor.step()
        >>> sorted(record.saturation)
        ['act1', 'act2']
    """

    def __init__(self, model: nn.Module, every: int = 1, saturation_level: float = 0.1):
        check_module("model", model)
        check_int("every", every, minimum=1)
        check_real("saturation_level", saturation_level, minimum=0.0, maximum=1.0,
                   strict_minimum=True, strict_maximum=True)
        self.model, self.every, self.saturation_level = model, every, saturation_level
        self.layers = weighted_layers(model)
        self._weights = watched_weights(model)
        self.activations = {n: m for n, m in model.named_modules()
                            if isinstance(m, ACTIVATION_LAYERS)}
        if not self._weights and not self.activations:
            raise ValueError("model has nothing GradientMonitor can watch: it watches the weights of "
                             f"{describe_kinds()} and recurrent layers (nn.RNN/LSTM/GRU and cells), and "
                             f"activation modules; got {type(model).__name__} with none")
        self.records: list[MonitorRecord] = []
        self._step = 0
        self._attached = False
        self._handles: list = []
        self._hooked = 0                      # watched weights with a gradient hook
        self._pending: dict[str, torch.Tensor] = {}   # gradients accumulated this step, by name
        self._grad_names: list[str] = []      # ... and their norms, once all have arrived
        self._grad_values: torch.Tensor | None = None
        self._outputs: dict[str, torch.Tensor] = {}
        self._previous: list[torch.Tensor] = []

    # -- hooks ---------------------------------------------------------------------
    def _recording(self) -> bool:
        return self._step % self.every == 0

    def _on_grad(self, name: str, param: torch.Tensor) -> None:
        if self._recording():
            self._pending[name] = param.grad.detach()
            if len(self._pending) == self._hooked:  # the last one of the backward pass: norm them all at once
                self._norm_pending()

    def _norm_pending(self) -> None:
        self._grad_names = [n for n in self._weights if n in self._pending]  # from input to output
        self._grad_values = _fused.fast_norms([self._pending[n] for n in self._grad_names])

    def _on_forward(self, name: str, module: nn.Module, output: torch.Tensor) -> None:
        # keep a reference only; the statistics are computed once per step, batched
        if module.training and self._recording():
            self._outputs[name] = output.detach()

    def attach(self) -> GradientMonitor:
        """Register the hooks (idempotent)."""
        if self._attached:
            return self
        self._attached = True
        self._hooked = 0
        for name, weight in self._weights.items():
            if weight.requires_grad:
                self._hooked += 1
                self._handles.append(weight.register_post_accumulate_grad_hook(
                    lambda p, name=name: self._on_grad(name, p)))
        for name, module in self.activations.items():
            self._handles.append(module.register_forward_hook(
                lambda m, _inp, out, name=name: self._on_forward(name, m, out)))
        self._snapshot()
        return self

    def detach(self) -> None:
        """Remove the hooks; the records stay."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._attached = False

    def __enter__(self) -> GradientMonitor:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    @torch.no_grad()
    def _snapshot(self) -> None:
        weights = [w.detach() for w in self._weights.values()]
        if len(self._previous) != len(weights):
            self._previous = [w.clone() for w in weights]
        elif weights:
            _fused.copy_(self._previous, weights)

    def _activation_statistics(self) -> tuple[list[str], torch.Tensor | None]:
        r"""Names and a table [mean, std, saturation or dead fraction (NaN if neither)] per activation.

        Outputs of the same kind of activation and the same shape are stacked and reduced
        together (a few kernels for the whole network, not a few per layer), in one pass
        after the stacking copy: the sums per unit (ReLU: a unit is dead iff its sum over the
        batch is 0) and the sums of squares. The standard deviation then comes from
        :math:`\sum y^2 - n\bar y^2`; :meth:`_exact_std` redoes, on the host, the rare
        ones where that difference cancels.
        """
        groups: dict[tuple, list[str]] = {}
        for name, out in self._outputs.items():
            groups.setdefault((_kind(self.activations[name]), tuple(out.shape)), []).append(name)
        names, tables = [], []
        for (kind, _shape), members in groups.items():
            first = self._outputs[members[0]]
            batch = first.shape[0] if first.dim() > 0 else 1
            y = torch.stack([self._outputs[n] for n in members]).reshape(len(members), batch, -1)
            count = float(y[0].numel())
            per_unit = y.sum(dim=1)
            total = per_unit.sum(dim=1)
            mean = total / count
            squares = torch.linalg.vector_norm(y.reshape(len(members), -1), dim=1).square()
            variance = (squares - total * mean).clamp_min(0) / max(count - 1, 1)  # unbiased
            if kind == "relu":          # a unit is dead if it is 0 for every example of the batch
                third = (per_unit <= 0).float().mean(dim=1)
            elif kind == "sigmoid":     # sigma' = y (1 - y) below level * 1/4
                third = (y * (1 - y) < self.saturation_level / 4).float().mean(dim=(1, 2))
            elif kind == "tanh":        # tanh' = 1 - y^2 below level * 1
                third = (1 - y.square() < self.saturation_level).float().mean(dim=(1, 2))
            else:                       # no saturation measure for this activation
                third = torch.full_like(mean, float("nan"))
            names += members
            tables.append(torch.stack([mean, variance.sqrt(), third], dim=1).float())
        return names, (torch.cat(tables) if tables else None)

    def _exact_std(self, names: list[str], rows: dict[str, list[float]]) -> None:
        """Redo the doubtful statistics: where the mean dwarfs the spread (mean² > 10³·variance) the one-pass
        variance lost digits; where the mean or std is not finite, sums in the outputs' own dtype may have
        overflowed (float16 sums above 65504, float32 squares of 1e19), so both are taken again in float64."""
        for name in names:
            mean, std = rows[name][0], rows[name][1]
            out = self._outputs[name]
            if mean * mean > 1e3 * std * std:
                std = rows[name][1] = float(out.float().std()) if out.numel() > 1 else 0.0
            if not (math.isfinite(mean) and math.isfinite(std)):
                rows[name][0], rows[name][1] = _wide_mean_std(out)

    # -- per step ------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> MonitorRecord | None:
        """Close one training step: store what the hooks saw and the update ratios.

        Returns the new record, or ``None`` on a step that ``every`` skips.
        """
        if not self._attached:
            raise RuntimeError("GradientMonitor.step() called while detached; call attach() first")
        record = None
        if self._recording():
            names = list(self._weights)
            weights = [self._weights[n].detach() for n in names]
            if self._pending and (self._grad_values is None or len(self._grad_names) != len(self._pending)):
                self._norm_pending()  # some watched weight got no gradient this step
            grad_names = self._grad_names if self._pending else []
            pieces = []
            if names:
                size = _fused.fast_norms(self._previous)
                # in place: the snapshot is overwritten below anyway, and a fresh difference
                # tensor per layer costs more than the arithmetic
                _fused.sub_(self._previous, weights)
                pieces += [size.float(), _fused.fast_norms(self._previous).float()]
            if grad_names:
                pieces.append(self._grad_values.float())
            act_names, table = self._activation_statistics()
            if act_names:
                pieces.append(table.reshape(-1))
            values = torch.cat(pieces).tolist() if pieces else []      # one transfer to the host
            n = len(names)
            sizes, changes, values = values[:n], values[n:2 * n], values[2 * n:]
            grads, values = values[:len(grad_names)], values[len(grad_names):]
            # norms whose squares may have underflowed (below ~1e-12) or overflowed (huge, inf): those few
            # again, in float64; self._previous now holds the changes, so a weight before the step is new + change
            changes = _fused.refine(changes, self._previous)
            sizes = _fused.refine(sizes, lambda i: weights[i] + self._previous[i])
            grads = _fused.refine(grads, [self._pending[g] for g in grad_names])
            ratios = [c / max(z, 1e-12) for c, z in zip(changes, sizes)]
            rows = {n: values[3 * i:3 * i + 3] for i, n in enumerate(act_names)}
            self._exact_std(act_names, rows)
            kinds = {n: _kind(self.activations[n]) for n in act_names}
            record = MonitorRecord(
                step=self._step,
                grad_norm=dict(zip(grad_names, grads)),
                update_ratio=dict(zip(names, ratios)),
                act_mean={n: r[0] for n, r in rows.items()},
                act_std={n: r[1] for n, r in rows.items()},
                saturation={n: r[2] for n, r in rows.items() if kinds[n] in ("sigmoid", "tanh")},
                dead={n: r[2] for n, r in rows.items() if kinds[n] == "relu"},
            )
            self.records.append(record)
            self._pending.clear()
            self._grad_names, self._grad_values = [], None
            self._outputs.clear()
        self._step += 1
        if self._recording():
            self._snapshot()
        return record

    def history(self, quantity: str) -> dict[str, list[float]]:
        """One quantity over the recorded steps, by layer: ``{name: [value per record]}``.

        ``quantity`` is one of ``"grad_norm"``, ``"update_ratio"``, ``"act_mean"``,
        ``"act_std"``, ``"saturation"``, ``"dead"``.
        """
        check_choice("quantity", quantity, ("grad_norm", "update_ratio", "act_mean",
                                            "act_std", "saturation", "dead"))
        out: dict[str, list[float]] = {}
        for record in self.records:
            for name, value in getattr(record, quantity).items():
                out.setdefault(name, []).append(value)
        return out

    def steps(self) -> list[int]:
        """The training-step index of each record."""
        return [r.step for r in self.records]
