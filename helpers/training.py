"""A small training loop that records what the course needs and survives divergence."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from helpers._checks import check_int
from helpers.progress import progress_enabled


@dataclass
class History:
    """What :func:`fit` recorded.

    Per optimisation step: ``loss``, ``accuracy`` (classification only: targets are
    integer labels and outputs have one column per class), ``lr`` (of the first
    parameter group, before the step), ``grad_norm`` (global 2-norm of all
    gradients, before any clipping) and, when ``fit`` was given a ``clip``, ``clipped``
    (whether clipping changed the gradient: its global norm went down) and
    ``clipped_grad_norm`` (the global 2-norm after clipping). Per epoch: ``epoch_loss`` (mean training loss),
    ``val_loss`` and ``val_accuracy`` (when ``val_data`` is given).

    ``diverged`` is True when a non-finite loss or gradient stopped training;
    ``diverged_at`` is then the index of that step and the model holds the weights of
    the last step whose loss was finite.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    clipped: list[bool] = field(default_factory=list)
    clipped_grad_norm: list[float] = field(default_factory=list)
    diverged: bool = False
    diverged_at: int | None = None

    @property
    def steps(self) -> int:
        """Number of completed optimisation steps."""
        return len(self.loss)

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.epoch_loss)

    @property
    def clip_fraction(self) -> float:
        """Fraction of the steps at which clipping fired (NaN if ``fit`` had no ``clip``)."""
        return sum(self.clipped) / len(self.clipped) if self.clipped else math.nan

    def final(self, metric: str = "loss", last: int = 10) -> float:
        """Mean of the last ``last`` values of a per-step or per-epoch list (NaN if empty)."""
        values = getattr(self, metric)
        if not isinstance(values, list):
            raise ValueError(f"metric must name a list of History, got {metric!r}")
        tail = values[-last:]
        return sum(tail) / len(tail) if tail else math.nan


def _batches(data, batch_size: int, generator: torch.Generator) -> Iterable:
    X, y = data
    order = torch.randperm(len(X), generator=generator)
    for start in range(0, len(X), batch_size):
        index = order[start:start + batch_size]
        yield X[index], y[index]


def _check_data(name: str, data, required: bool) -> None:
    if data is None:
        if required:
            raise TypeError(f"{name} must be a (X, y) tuple of tensors or a DataLoader, got None")
        return
    if isinstance(data, tuple | list):
        if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
            raise TypeError(f"{name} as a tuple must be (X, y), two tensors; got {len(data)} items "
                            f"of types {[type(t).__name__ for t in data]}")
        if len(data[0]) != len(data[1]):
            raise ValueError(f"{name}: X and y must have the same length, got {len(data[0])} and {len(data[1])}")
        if len(data[0]) == 0:
            raise ValueError(f"{name} is empty")
    elif not isinstance(data, Iterable):
        raise TypeError(f"{name} must be a (X, y) tuple of tensors or an iterable of batches, "
                        f"got {type(data).__name__}")


def _correct(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    if output.dim() == 2 and output.shape[1] > 1 and not target.is_floating_point() and target.dim() == 1:
        return (output.argmax(dim=1) == target).sum()
    return None


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn: Callable, batch_size: int = 512,
             device=None) -> tuple[float, float]:
    """Mean loss and accuracy (NaN when not a classification) of ``model`` on ``data``, in eval mode."""
    _check_data("data", data, required=True)
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count, classification = 0.0, 0, 0, True
    try:
        batches = (_batches(data, batch_size, torch.Generator().manual_seed(0))
                   if isinstance(data, tuple | list) else data)
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            out = model(x)
            total_loss += float(loss_fn(out, y)) * len(x)
            hits = _correct(out, y)
            classification &= hits is not None
            correct += int(hits) if hits is not None else 0
            count += len(x)
    finally:
        model.train(was_training)
    return total_loss / count, (correct / count if classification else math.nan)


def fit(model: nn.Module, train_data, *, epochs: int, optimizer: torch.optim.Optimizer,
        loss_fn: Callable, scheduler=None, clip: Callable | None = None, monitor=None,
        val_data=None, device=None, progress: bool = True, batch_size: int = 64,
        seed: int = 0) -> History:
    r"""Train ``model`` and return a :class:`History`; stop cleanly if training diverges.

    One step: forward, ``loss_fn``, backward, record the global gradient norm
    :math:`\lVert g \rVert_2 = (\sum_p \lVert g_p \rVert_2^2)^{1/2}`, ``clip(parameters)``
    if given, ``optimizer.step()``, ``scheduler.step()`` if given (so schedulers count
    *steps*, not epochs), ``monitor.step()`` if given.

    Divergence guard: before each step the weights (and buffers) that produced a finite
    loss are kept; when a loss or the gradient norm is NaN or infinite, the step is not
    taken, the kept weights are restored, and ``History.diverged`` /
    ``History.diverged_at`` say where it happened.

    Args:
        model: the network; moved to ``device``.
        train_data: ``(X, y)`` tensors, shuffled into mini-batches of ``batch_size`` by a
            private generator seeded with ``seed`` (the split is never redone), or any
            iterable of ``(x, y)`` batches such as a DataLoader.
        epochs: number of passes over ``train_data``, >= 1.
        optimizer: a :class:`torch.optim.Optimizer` over the model's parameters.
        loss_fn: maps (output, target) to a scalar loss.
        scheduler: an ``LRScheduler`` stepped once per optimisation step.
        clip: called as ``clip(parameters)`` between backward and step, e.g.
            ``functools.partial(helpers.clipping.clip_grad_norm_, max_norm=1.0)`` or
            ``lambda p: torch.nn.utils.clip_grad_value_(p, 0.5)``. Its return value is
            ignored; ``fit`` measures the global gradient norm again after it and records
            in ``History.clipped`` whether the norm went down (the clip fired) and in
            ``History.clipped_grad_norm`` the norm after clipping.
        monitor: a :class:`helpers.diagnostics.GradientMonitor` (attached here if it is not).
        val_data: evaluated at the end of every epoch, like ``train_data``.
        device: where to train; default: where the model's parameters are.
        progress: draw a progress bar over the steps (see :mod:`helpers.progress`).
        batch_size: mini-batch size for tensor data.
        seed: seed of the shuffling generator for tensor data.

    Example:
        >>> from helpers.models import MLP
        >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> net = MLP(4, 3, width=16, depth=2)
        >>> h = fit(net, (X, y), epochs=2, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        ...         loss_fn=torch.nn.functional.cross_entropy, progress=False, batch_size=16)
        >>> h.steps, h.epochs, h.diverged
        (8, 2, False)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if clip is not None and not callable(clip):
        raise TypeError(f"clip must be callable or None, got {type(clip).__name__}")
    if scheduler is not None and not hasattr(scheduler, "step"):
        raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
    if monitor is not None and not hasattr(monitor, "step"):
        raise TypeError(f"monitor must have a step() method, got {type(monitor).__name__}")
    _check_data("train_data", train_data, required=True)
    _check_data("val_data", val_data, required=False)

    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no parameter that requires a gradient")
    if device is not None:
        model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    if monitor is not None and hasattr(monitor, "attach"):
        monitor.attach()

    tensors = isinstance(train_data, tuple | list)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(train_data[0]) / batch_size) if tensors else _length(train_data)
    total = steps_per_epoch * epochs if steps_per_epoch is not None else None
    bar = None
    if progress_enabled(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="training", leave=False)

    # the divergence guard keeps a copy of the floating-point state: parameters and buffers
    # such as running statistics (integer counters are not worth restoring)
    state = [t for t in model.state_dict().values() if t.is_floating_point() or t.is_complex()]
    kept = [t.detach().clone() for t in state]
    history = History()
    model.train()
    try:
        for _epoch in range(epochs):
            epoch_losses = []
            batches = _batches(train_data, batch_size, generator) if tensors else train_data
            for x, y in batches:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad(set_to_none=True)
                output = model(x)
                loss = loss_fn(output, y)
                loss.backward()
                grad_norm = _global_norm(params, device)
                hits = _correct(output.detach(), y)
                # one transfer to the host per step
                numbers = torch.stack([loss.detach().float(), grad_norm.float(),
                                       hits.float() if hits is not None else grad_norm.new_zeros(())]).tolist()
                loss_value, norm_value, hit_count = numbers
                del output, loss  # free the graph's buffers now, so the allocator reuses them
                if not math.isfinite(loss_value):      # these weights blew up: back to the kept ones
                    _restore(state, kept)
                    _mark_diverged(history)
                    return history
                if not math.isfinite(norm_value):      # finite loss, so these weights are the last good ones
                    _mark_diverged(history)
                    return history
                with torch.no_grad():
                    torch._foreach_copy_(kept, state)
                lr = optimizer.param_groups[0]["lr"]
                if clip is not None:
                    clip(params)
                    after = _global_norm(params, device)
                    clipped_norm = float(after)  # a second transfer, only when clipping
                    history.clipped.append(clipped_norm < norm_value)
                    history.clipped_grad_norm.append(clipped_norm)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if monitor is not None:
                    monitor.step()
                history.loss.append(loss_value)
                history.lr.append(float(lr))
                history.grad_norm.append(norm_value)
                if hits is not None:
                    history.accuracy.append(hit_count / len(y))
                epoch_losses.append(loss_value)
                if bar is not None:
                    bar.update(1)
            history.epoch_loss.append(sum(epoch_losses) / max(len(epoch_losses), 1))
            if val_data is not None:
                val_loss, val_acc = evaluate(model, val_data, loss_fn, device=device)
                history.val_loss.append(val_loss)
                history.val_accuracy.append(val_acc)
            if bar is not None:
                bar.set_postfix(loss=f"{history.epoch_loss[-1]:.3g}")
    finally:
        if bar is not None:
            bar.close()
    return history


def _global_norm(params: list[torch.Tensor], device) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _length(data) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


@torch.no_grad()
def _restore(state: list[torch.Tensor], kept: list[torch.Tensor]) -> None:
    torch._foreach_copy_(state, kept)


def _mark_diverged(history: History) -> None:
    history.diverged = True
    history.diverged_at = history.steps
