r"""Dynamic loss scaling from scratch, step for step the algorithm of :class:`torch.amp.GradScaler`.

In float16 a gradient below :math:`2^{-24} \approx 6 \cdot 10^{-8}` rounds to 0 and one
above 65504 becomes ``inf``. Multiplying the loss by a scale :math:`S` multiplies every
gradient by :math:`S` (the chain rule is linear in the loss), lifting small gradients
out of the underflow range; the optimizer must then see :math:`g/S`. A *dynamic* scale
starts large, halves whenever a step produced ``inf``/``NaN`` (that step is skipped), and
doubles after ``growth_interval`` clean steps in a row, so it hovers just below overflow.

The right order in a training step::

    scaler.scale(loss).backward()   # gradients are S·g
    scaler.unscale_(optimizer)      # gradients are g again, overflow recorded
    clip_grad_norm_(params, max_norm)   # clip the *true* gradients
    scaler.step(optimizer)          # optimizer.step(), unless a gradient was inf/NaN
    scaler.update()                 # back off or grow the scale
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from helpers._checks import check_callable, check_int, check_module, check_optimizer, check_real

__all__ = ["DynamicLossScaler", "overflow_fraction", "AccumulatedStep", "accumulation_step"]

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class DynamicLossScaler:
    r"""Scale the loss, unscale the gradients, skip non-finite steps and adapt the scale.

    The scale :math:`S` (a float32 number, as in torch) changes once per :meth:`update`:

    .. math::
        S \leftarrow \begin{cases}
        S \cdot \text{backoff\_factor}, \ \text{tracker} \leftarrow 0
            & \text{if a gradient of this step was } \pm\infty \text{ or NaN} \\
        S \cdot \text{growth\_factor}, \ \text{tracker} \leftarrow 0
            & \text{else, if this is the } \text{growth\_interval}\text{-th clean step in a row} \\
        S, \ \text{tracker} \leftarrow \text{tracker} + 1 & \text{otherwise}
        \end{cases}

    (a grown scale that would be ``inf`` in float32 is not taken). The same calls and
    arguments as :class:`torch.amp.GradScaler`, which it reproduces exactly: same scale
    after every update, same steps skipped, same unscaled gradients.

    Args:
        init_scale: the first scale, > 0.
        growth_factor: multiplier after ``growth_interval`` clean steps, > 1.
        backoff_factor: multiplier after an overflow, in (0, 1).
        growth_interval: clean steps in a row before the scale grows, >= 1.
        enabled: if ``False`` every method is a pass-through (``step`` just steps) and
            :meth:`get_scale` is 1.0: handy when the dtype is bfloat16 or float32.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> scaler = DynamicLossScaler(init_scale=1024.0, growth_interval=1)
        >>> scaler.scale(model(torch.ones(1, 2)).sum()).backward()
        >>> scaler.step(optimizer)
        >>> scaler.update()
        >>> scaler.get_scale()
        2048.0
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        check_real("init_scale", init_scale, minimum=0.0, strict_minimum=True)
        check_real("growth_factor", growth_factor, minimum=1.0, strict_minimum=True)
        check_real("backoff_factor", backoff_factor, minimum=0.0, maximum=1.0,
                   strict_minimum=True, strict_maximum=True)
        check_int("growth_interval", growth_interval, minimum=1)
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {type(enabled).__name__} ({enabled!r})")
        self._init_scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._enabled = enabled
        self._scale: torch.Tensor | None = None  # created on the device of the first loss
        self._growth_tracker = 0
        self._per_optimizer: dict[int, dict] = {}

    # -- the four calls of a training step --------------------------------------------------

    def is_enabled(self) -> bool:
        return self._enabled

    def scale(self, outputs):
        r"""Return ``outputs`` times :math:`S` (a tensor, or tensors nested in lists/tuples)."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, torch.Tensor):
            if self._scale is None:
                self._scale = torch.full((), self._init_scale, dtype=torch.float32, device=outputs.device)
            return outputs * self._scale.to(outputs.device)
        if isinstance(outputs, list | tuple):
            return type(outputs)(self.scale(o) for o in outputs)
        raise TypeError(f"outputs must be a tensor or a list/tuple of tensors, got {type(outputs).__name__}")

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        r"""Divide the gradients of ``optimizer``'s parameters by :math:`S`, in place, once per step.

        Records whether any gradient was non-finite *before* the division; the division
        multiplies by :math:`1/S` rounded to float32 (as torch does). Call it before clipping.

        Raises:
            RuntimeError: called twice, or after :meth:`step`, before the next :meth:`update`.
            ValueError: a gradient is float16 (unscaling in float16 would underflow again) or sparse.
        """
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        grads = list(_gradients(optimizer))
        for g in grads:
            if g.dtype == torch.float16:
                raise ValueError("cannot unscale float16 gradients: keep the parameters in float32 "
                                 "(autocast computes in float16, the master weights stay float32)")
            if g.is_sparse:
                raise ValueError("sparse gradients are not supported; use torch.amp.GradScaler for them")
        scale = self._require_scale()
        inv_scale = scale.double().reciprocal().float()
        found_inf = False
        for g in grads:
            found_inf = found_inf or not bool(torch.isfinite(g).all())
            g.mul_(inv_scale.to(g.device))
        state["found_inf"] = found_inf
        state["stage"] = _UNSCALED

    def step(self, optimizer: torch.optim.Optimizer, *args, **kwargs):
        """Unscale (if not done yet), then ``optimizer.step()`` unless a gradient was inf/NaN.

        Returns what ``optimizer.step`` returned, or ``None`` when the step was skipped.
        """
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("closure is not supported: a closure would recompute the loss unscaled")
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        result = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = _STEPPED
        return result

    def update(self, new_scale: float | torch.Tensor | None = None) -> None:
        """Back off or grow the scale from this step's overflow record, then start a new step.

        Args:
            new_scale: set the scale to this value instead (the growth tracker is kept).
        """
        if not self._enabled:
            return
        scale = self._require_scale()
        if new_scale is not None:
            if isinstance(new_scale, torch.Tensor):
                if new_scale.numel() != 1:
                    raise ValueError(f"new_scale must hold one number, got shape {tuple(new_scale.shape)}")
                new_scale = float(new_scale)
            check_real("new_scale", new_scale, minimum=0.0, strict_minimum=True)
            scale.fill_(new_scale)
        else:
            records = [s["found_inf"] for s in self._per_optimizer.values() if s["found_inf"] is not None]
            if not records:
                raise RuntimeError("no overflow record for this step: call unscale_() or step() before update()")
            self._update_scale(any(records))
        self._per_optimizer.clear()

    def _update_scale(self, found_inf: bool) -> None:
        # products in float64, rounded once to the float32 scale (as torch's kernel does)
        scale = self._scale
        if found_inf:
            scale.copy_(scale.double() * self._backoff_factor)
            self._growth_tracker = 0
            return
        clean_steps = self._growth_tracker + 1
        if clean_steps == self._growth_interval:
            grown = (scale.double() * self._growth_factor).float()
            if torch.isfinite(grown):
                scale.copy_(grown)
            clean_steps = 0
        self._growth_tracker = clean_steps

    # -- inspection and checkpoints ---------------------------------------------------------

    def get_scale(self) -> float:
        """The current scale as a Python float (1.0 when disabled)."""
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(self._scale)

    def get_growth_tracker(self) -> int:
        """Clean steps in a row since the last change of the scale."""
        return self._growth_tracker

    def state_dict(self) -> dict:
        """The scale and the growth settings, as torch's GradScaler stores them."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` (or a GradScaler's ``state_dict()``) returned."""
        if not self._enabled:
            return
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict lacks {sorted(missing)}; got keys {sorted(state_dict)}")
        self._init_scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])
        if self._scale is not None:
            self._scale.fill_(self._init_scale)

    # -- internals --------------------------------------------------------------------------

    def _state(self, optimizer) -> dict:
        check_optimizer("optimizer", optimizer)
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    def _require_scale(self) -> torch.Tensor:
        if self._scale is None:
            raise RuntimeError("no scale yet: call scale(loss) (and backward) before unscale_/step/update")
        return self._scale


def _gradients(optimizer: torch.optim.Optimizer) -> Iterable[torch.Tensor]:
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                yield p.grad


def overflow_fraction(values: torch.Tensor, dtype: torch.dtype = torch.float16) -> tuple[float, float]:
    r"""Shares of the nonzero entries of ``values`` that become 0 and :math:`\pm\infty` in ``dtype``.

    A value underflows when its magnitude rounds below the smallest subnormal of the
    format (:math:`2^{-24}` for float16) and overflows above the largest finite one
    (65504 for float16).

    Args:
        values: a floating tensor (computed in a wider type, e.g. float32 gradients).
        dtype: the narrower floating type, e.g. ``torch.float16`` or ``torch.bfloat16``.

    Returns:
        ``(underflow, overflow)`` as fractions of the nonzero finite entries.

    Example:
        >>> overflow_fraction(torch.tensor([1e-9, 1.0, 1e5, 0.0]))
        (0.3333333333333333, 0.3333333333333333)
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise TypeError(f"values must be a floating-point tensor, got {type(values).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    values = values.detach()
    values = values[(values != 0) & torch.isfinite(values)]
    if values.numel() == 0:
        return 0.0, 0.0
    cast = values.to(dtype)
    n = values.numel()
    return float((cast == 0).sum()) / n, float(torch.isinf(cast).sum()) / n


@dataclass
class AccumulatedStep:
    """What :func:`accumulation_step` did: the mean loss over the micro-batches, the
    gradient norm before clipping (``nan`` when not clipped), whether the step was skipped
    for an ``inf``/``NaN`` gradient, and the scale used for the backward passes."""

    loss: float
    grad_norm: float
    skipped: bool
    scale: float


def _step_skipped(scaler, optimizer, params) -> bool:
    """Whether ``scaler.step(optimizer)`` will skip the step, by the scaler's own record (after ``unscale_``)."""
    if hasattr(scaler, "is_enabled") and not scaler.is_enabled():
        return False  # a disabled scaler always steps, inf or not
    if isinstance(scaler, DynamicLossScaler):
        return bool(scaler._state(optimizer)["found_inf"])
    if isinstance(scaler, torch.amp.GradScaler):
        return sum(float(v) for v in scaler._found_inf_per_device(optimizer).values()) > 0
    # another scaler with the same methods: it skips on a non-finite gradient, as both above
    return not all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)


def accumulation_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler, micro_batches,
                      loss_fn, *, max_norm: float | None = None, dtype: torch.dtype | None = torch.float16,
                      ) -> AccumulatedStep:
    r"""One optimizer step from gradients accumulated over ``k`` micro-batches, with loss scaling.

    For each micro-batch :math:`(x_j, y_j)`: forward under ``torch.autocast(dtype)`` and
    backward of :math:`S \cdot L_j / k`, so the ``.grad`` fields sum to
    :math:`S \cdot \tfrac1k \sum_j \nabla L_j` — the gradient of the mean loss, as one batch
    of all the examples would give (micro-batches of equal size). Then, **once** per
    optimizer step: unscale (divide by :math:`S`, record overflow from any micro-batch),
    clip the accumulated true gradient to ``max_norm``, step (skipped on overflow) and
    update the scale::

        for x, y in micro_batches:
            with autocast: loss = loss_fn(model(x), y) / k
            scaler.scale(loss).backward()        # gradients add up, still times S
        scaler.unscale_(optimizer)               # once, after the last micro-batch
        clip_grad_norm_(params, max_norm)        # clip the accumulated, unscaled gradient
        scaler.step(optimizer); scaler.update(); optimizer.zero_grad()

    Unscaling or clipping per micro-batch would be wrong: ``unscale_`` may run once per
    step, and a clip threshold is chosen for the full gradient, not for a :math:`1/k` part
    of it. This is the recipe of PyTorch's AMP examples ("gradient accumulation" with
    "gradient clipping"); the tests check it gives the same weights, scales and skipped
    steps with :class:`DynamicLossScaler` as with ``torch.amp.GradScaler``.

    Args:
        model: the network; its parameters get their gradients accumulated.
        optimizer: the optimizer of ``model``'s parameters; its gradients are zeroed after the step.
        scaler: a :class:`DynamicLossScaler` or ``torch.amp.GradScaler`` (anything with
            ``scale``, ``unscale_``, ``step``, ``update``, ``get_scale``).
        micro_batches: a non-empty list or tuple of ``(x, y)`` tensor pairs (equal sizes for
            the mean to be exact); an iterator is refused (``TypeError``): pass ``list(it)``.
        loss_fn: ``loss_fn(output, y)`` → a scalar mean loss.
        max_norm: clip the accumulated gradient's global 2-norm to this (> 0); ``None``: no clipping.
        dtype: autocast type (``torch.float16``, ``torch.bfloat16``), or ``None`` for no autocast.

    Returns:
        :class:`AccumulatedStep`.

    ``skipped`` is the scaler's own decision: a disabled scaler (``enabled=False``) always
    steps, even on inf/NaN gradients, so ``skipped`` is then ``False``.

    Raises:
        TypeError, ValueError: on a bad argument — every micro-batch is checked (an (x, y) pair
            of tensors holding as many examples) before any gradient is computed. Whatever a
            forward or backward pass raises midway is re-raised after the gradients (and the
            model's buffers) are put back as they were before the call.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> scaler = DynamicLossScaler(init_scale=2.0**8)
        >>> chunks = [(torch.ones(4, 3), torch.zeros(4, 1))] * 2
        >>> out = accumulation_step(model, optimizer, scaler, chunks, torch.nn.functional.mse_loss,
        ...                         max_norm=1.0, dtype=None)
        >>> out.skipped, out.scale
        (False, 256.0)

    Source: PyTorch documentation, "CUDA Automatic Mixed Precision examples", sections
    "Gradient accumulation" and "Gradient clipping".
    """
    _check_accumulation(model, optimizer, scaler, micro_batches, loss_fn, max_norm, dtype)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    scale = float(scaler.get_scale())
    total = _accumulate(model, scaler, micro_batches, loss_fn, params, dtype)
    scaler.unscale_(optimizer)
    skipped = _step_skipped(scaler, optimizer, params)
    grad_norm = math.nan
    if max_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad()
    return AccumulatedStep(loss=total, grad_norm=grad_norm, skipped=skipped, scale=scale)


def _check_accumulation(model, optimizer, scaler, micro_batches, loss_fn, max_norm, dtype) -> None:
    check_module("model", model)
    check_optimizer("optimizer", optimizer)
    missing = [m for m in ("scale", "unscale_", "step", "update", "get_scale") if not hasattr(scaler, m)]
    if missing:
        raise TypeError(f"scaler must be a DynamicLossScaler or torch.amp.GradScaler, got "
                        f"{type(scaler).__name__} (lacks {missing})")
    _check_micro_batches(micro_batches)
    check_callable("loss_fn", loss_fn)
    if max_norm is not None:
        check_real("max_norm", max_norm, minimum=0.0, strict_minimum=True)
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")


def _check_micro_batches(micro_batches) -> None:
    """Every micro-batch, before the first backward pass: an (x, y) pair of tensors holding as many examples."""
    if not isinstance(micro_batches, list | tuple):
        raise TypeError(f"micro_batches must be a list or tuple of (x, y) pairs (k is its length; pass "
                        f"list(...) for an iterator), got {type(micro_batches).__name__}")
    if not micro_batches:
        raise ValueError(f"micro_batches must be a non-empty list or tuple of (x, y) pairs, got {micro_batches!r}")
    for j, pair in enumerate(micro_batches):
        if not isinstance(pair, list | tuple):
            raise TypeError(f"micro_batches[{j}] must be an (x, y) pair of tensors, got {type(pair).__name__}")
        if len(pair) != 2:
            raise ValueError(f"micro_batches[{j}] must be an (x, y) pair of tensors, got {len(pair)} items")
        for name, v in zip(("x", "y"), pair):
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"micro_batches[{j}] {name} must be a tensor, got {type(v).__name__}")
            if v.dim() == 0:
                raise ValueError(f"micro_batches[{j}] {name} must have a batch dimension, got a 0-d tensor")
        if len(pair[0]) != len(pair[1]):
            raise ValueError(f"micro_batches[{j}] x and y must hold as many examples, got {len(pair[0])} "
                             f"and {len(pair[1])}")


def _accumulate(model, scaler, micro_batches, loss_fn, params: list[torch.Tensor], dtype) -> float:
    """Backward of S·L_j/k for every micro-batch j of k, under autocast; return the mean loss.

    A forward or backward pass that raises midway (a shape error, a loss_fn bug) would leave the
    earlier micro-batches' scaled gradients in ``.grad``: the gradients and the model's buffers are
    put back as they were, then the error is re-raised.
    """
    k = len(micro_batches)
    device_type = params[0].device.type if params else "cpu"
    total = 0.0
    saved_grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
    saved_buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        for x, y in micro_batches:
            with torch.autocast(device_type=device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = loss_fn(model(x), y) / k
            scaler.scale(loss).backward()
            total += float(loss.detach())
    except BaseException:
        with torch.no_grad():
            for p, g in zip(params, saved_grads):
                p.grad = g
            buffers = dict(model.named_buffers())
            for name, b in saved_buffers.items():
                buffers[name].copy_(b)
        raise
    return total
