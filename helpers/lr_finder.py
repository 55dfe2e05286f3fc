r"""The LR range test (Smith 2017): :func:`lr_finder` raises the learning rate exponentially, one
step per batch, and reads a good rate off the loss curve (:func:`suggest_lr`).

It trains like :func:`helpers.training.fit` (its batching and data checks come from
:mod:`helpers.data`), then puts the model and the optimizer back exactly as they were.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from helpers._checks import (
    check_callable,
    check_choice,
    check_int,
    check_module,
    check_optimizer,
    check_real,
    check_trainable,
)
from helpers._modes import kept_modes
from helpers.data import check_data, is_xy, shuffled_batches

__all__ = ["LRFinderResult", "lr_finder", "suggest_lr"]


@dataclass
class LRFinderResult:
    """What :func:`lr_finder` measured.

    ``lrs`` and ``losses`` hold one entry per step taken; ``smoothed`` is the
    bias-corrected moving average of the losses. ``min_loss_lr`` is where the smoothed
    loss is lowest and ``steepest_lr`` where it falls fastest against :math:`\\log \\eta`
    (:func:`suggest_lr`). ``suggested_lr`` is the one chosen by the ``suggestion`` rule of
    :func:`lr_finder`. ``diverged`` says whether the sweep stopped early because the loss
    blew up; ``data_exhausted`` whether it stopped because a one-shot iterable of batches
    (e.g. a generator) ran out before ``num_steps``.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float
    min_loss_lr: float
    steepest_lr: float
    diverged: bool
    data_exhausted: bool = False


def suggest_lr(lrs, smoothed, skip_start: int = 0) -> float:
    r"""The learning rate where the smoothed loss falls fastest with :math:`\log\eta`.

    Takes the slope :math:`dL/d\log\eta` by finite differences (``numpy.gradient``) over
    the points before the minimum of the curve (after the minimum the loss is rising
    towards divergence) and returns the learning rate where it is most negative.

    Args:
        lrs: increasing learning rates.
        smoothed: the (smoothed) loss at each.
        skip_start: points to ignore at the start (the moving average is noisy there).

    Raises:
        ValueError: if ``lrs`` and ``smoothed`` differ in shape or are not 1-D, or ``lrs`` is not
            finite, positive and strictly increasing.

    Example:
        >>> lrs = np.geomspace(1e-4, 1.0, 41)
        >>> loss = 1 - np.tanh(np.log10(lrs) + 2)          # falls fastest at 1e-2
        >>> float(suggest_lr(lrs, loss))
        0.01
    """
    lrs, smoothed = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float)
    if lrs.shape != smoothed.shape or lrs.ndim != 1:
        raise ValueError(f"lrs and smoothed must be 1-D and of equal length, got shapes {lrs.shape} and "
                         f"{smoothed.shape}")
    if lrs.size and not (np.isfinite(lrs).all() and (lrs > 0).all() and (np.diff(lrs) > 0).all()):
        raise ValueError(f"lrs must be finite, > 0 and strictly increasing, got {lrs.tolist()[:8]}"
                         f"{' …' if lrs.size > 8 else ''}")
    check_int("skip_start", skip_start, minimum=0)
    end = int(np.nanargmin(smoothed)) + 1 if np.isfinite(smoothed).any() else len(smoothed)
    lo = min(skip_start, max(end - 2, 0))
    if end - lo < 2:
        return float(lrs[lo])
    slopes = np.gradient(smoothed[lo:end], np.log(lrs[lo:end]))
    return float(lrs[lo + int(np.argmin(slopes))])


def _no_examples(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == 0


def _batch_stream(data, batch_size: int, seed: int):
    """Batches without end: tensors reshuffled, re-iterable data re-iterated; a one-shot iterator ends the stream."""
    generator = torch.Generator().manual_seed(seed)
    yielded = False
    while True:
        empty = True
        batches = shuffled_batches(data, batch_size, generator) if is_xy(data) else data
        for batch in batches:
            if isinstance(batch, tuple | list) and batch and _no_examples(batch[0]):
                continue        # no examples: their mean loss is NaN, which says nothing about the rate
            empty, yielded = False, True
            yield batch
        if empty:
            if yielded:
                return  # a one-shot iterator (a generator) is used up: the sweep ends with what it has
            raise ValueError("train_data yielded no batch with examples")


def lr_finder(model: torch.nn.Module, train_data, loss_fn: Callable, optimizer: torch.optim.Optimizer, *,
              start_lr: float = 1e-6, end_lr: float = 10.0, num_steps: int = 100, beta: float = 0.9,
              diverge_factor: float = 4.0, suggestion: str = "min/10", batch_size: int = 64, seed: int = 0,
              skip_start: int = 5, device=None) -> LRFinderResult:
    r"""LR range test (Smith 2017): raise the learning rate exponentially, one step per batch.

    Step :math:`i` of :math:`N` uses

    .. math:: \eta_i = \eta_{start}\,\big(\eta_{end}/\eta_{start}\big)^{i/(N-1)}

    and records the training loss; the smoothed loss is the bias-corrected moving average
    :math:`\bar L_i = \frac{a_i}{1-\beta^{i+1}}`, :math:`a_i = \beta a_{i-1} + (1-\beta)L_i`. The
    sweep stops early once the loss is not finite or
    :math:`\bar L_i > \text{diverge\_factor}\cdot\min_{j\le i}\bar L_j`. Afterwards the
    model's and the optimizer's states are restored exactly, so training can start from the
    same weights. The sweep trains in the modes :func:`helpers.training.fit` would (a model in eval
    mode as a whole in training mode; otherwise each module in its own, a frozen BatchNorm
    frozen); afterwards every module is back in its own mode.

    Two rules suggest a learning rate: ``"min/10"`` (default), a tenth of the rate at the
    lowest smoothed loss, and ``"steepest"``, the rate where the smoothed loss falls fastest
    against :math:`\log\eta` (:func:`suggest_lr`). Both are returned; ``suggestion`` picks
    ``suggested_lr``. ``"min/10"`` is the default because on a short sweep the loss often
    starts to fall only a few steps before it blows up, which puts the steepest point
    close to divergence (notebook 10 measures this).

    Args:
        model: the network (trained in place during the sweep, then restored).
        train_data: ``(X, y)`` tensors (shuffled into batches, reshuffled when exhausted)
            or an iterable of ``(x, y)`` batches: a list or a DataLoader is re-iterated when
            exhausted; a one-shot iterator (a generator) ends the sweep early, keeping its results.
        loss_fn: maps (output, target) to a scalar loss.
        optimizer: an optimizer over the model's parameters; its ``lr`` is overwritten
            during the sweep and restored afterwards.
        start_lr, end_lr: the range, :math:`0 < \eta_{start} < \eta_{end}`.
        num_steps: :math:`N \ge 2`.
        beta: smoothing factor in [0, 1).
        diverge_factor: > 1, see above.
        suggestion: ``"min/10"`` or ``"steepest"``.
        batch_size, seed: batching of tensor data.
        skip_start: first points ignored by the steepest-descent rule.
        device: where to compute (default: where the model's parameters are).

    Example:
        >>> _ = torch.manual_seed(0)  # the sweep below depends on the initial weights and the data
        >>> net = torch.nn.Linear(3, 1)
        >>> X = torch.randn(256, 3); y = X @ torch.tensor([[1.0], [-2.0], [0.5]])
        >>> before = copy.deepcopy(net.state_dict())
        >>> result = lr_finder(net, (X, y), torch.nn.functional.mse_loss, torch.optim.SGD(net.parameters()),
        ...                    start_lr=1e-4, end_lr=100.0, num_steps=60, batch_size=32)
        >>> result.diverged, result.suggested_lr == result.min_loss_lr / 10, 1e-3 < result.steepest_lr < 1.0
        (True, True, True)
        >>> all(torch.equal(before[k], v) for k, v in net.state_dict().items())
        True
    """
    start_lr, end_lr, num_steps, beta, diverge_factor = _check_arguments(
        model, train_data, loss_fn, optimizer, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, beta=beta,
        diverge_factor=diverge_factor, suggestion=suggestion, batch_size=batch_size, seed=seed,
        skip_start=skip_start)
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    stream = _batch_stream(train_data, batch_size, seed)
    stream = itertools.chain([next(stream)], stream)  # no batch at all: ValueError before anything changes
    with _restored(model, optimizer):
        lrs, losses, smoothed, diverged, exhausted = _sweep(
            model, optimizer, loss_fn, stream, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, beta=beta,
            diverge_factor=diverge_factor, device=device)
    if not lrs:
        raise RuntimeError(f"the loss was not finite at the first learning rate {start_lr}; lower start_lr")
    steepest = suggest_lr(lrs, smoothed, skip_start=min(skip_start, len(lrs) - 1))
    min_loss_lr = float(lrs[int(np.argmin(smoothed))])
    return LRFinderResult(lrs=lrs, losses=losses, smoothed=smoothed,
                          suggested_lr=min_loss_lr / 10 if suggestion == "min/10" else steepest,
                          min_loss_lr=min_loss_lr, steepest_lr=steepest, diverged=diverged,
                          data_exhausted=exhausted)


def _check_arguments(model, train_data, loss_fn, optimizer, *, start_lr, end_lr, num_steps, beta, diverge_factor,
                     suggestion, batch_size, seed, skip_start) -> tuple[float, float, int, float, float]:
    """Check :func:`lr_finder`'s arguments; return the range, the step count and the two factors as numbers."""
    check_module("model", model)
    check_optimizer("optimizer", optimizer)
    check_callable("loss_fn", loss_fn)
    start_lr = check_real("start_lr", start_lr, minimum=0.0, strict_minimum=True)
    end_lr = check_real("end_lr", end_lr, minimum=start_lr, strict_minimum=True)
    num_steps = check_int("num_steps", num_steps, minimum=2)
    beta = check_real("beta", beta, minimum=0.0, maximum=1.0, strict_maximum=True)
    diverge_factor = check_real("diverge_factor", diverge_factor, minimum=1.0, strict_minimum=True)
    check_choice("suggestion", suggestion, ("min/10", "steepest"))
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    check_int("skip_start", skip_start, minimum=0)
    check_data("train_data", train_data, required=True)
    check_trainable("model", model, why=" (all frozen); the LR range test needs at least one trainable parameter")
    return start_lr, end_lr, num_steps, beta, diverge_factor


@contextlib.contextmanager
def _restored(model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """Put the model's and the optimizer's states and every module's own mode back on leaving, whatever happened."""
    model_state = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    with kept_modes(model):
        try:
            yield
        finally:
            model.load_state_dict(model_state)
            optimizer.load_state_dict(optimizer_state)
            optimizer.zero_grad(set_to_none=True)


def _sweep(model, optimizer, loss_fn, stream, *, start_lr: float, end_lr: float, num_steps: int, beta: float,
           diverge_factor: float, device) -> tuple[list[float], list[float], list[float], bool, bool]:
    """One training step per learning rate of the range, until it ends, the loss diverges or a one-shot
    ``stream`` runs out: the rates, losses and smoothed losses of the steps taken, diverged, exhausted."""
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    if not model.training:   # as fit: a model in eval mode as a whole trains; else each module keeps its mode
        model.train()
    for i in range(num_steps):
        lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(stream, None)
        if batch is None:
            return lrs, losses, smoothed, False, True
        x, y = batch
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        value = float(loss.detach())
        if not math.isfinite(value):
            return lrs, losses, smoothed, True, False
        loss.backward()
        optimizer.step()
        average = beta * average + (1 - beta) * value
        current = average / (1 - beta ** (i + 1))  # bias-corrected moving average
        lrs.append(lr)
        losses.append(value)
        smoothed.append(current)
        best = min(best, current)
        if current > diverge_factor * best:
            return lrs, losses, smoothed, True, False
    return lrs, losses, smoothed, False, False
