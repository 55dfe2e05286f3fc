"""A small training loop that records what the course needs and survives divergence,
interruption (Ctrl-C / the notebook's stop button) and restarts (checkpoints)."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import math
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from helpers import _fused
from helpers._checks import check_callable, check_int, check_module, check_optimizer, check_trainable
from helpers._modes import kept_modes
from helpers.data import check_data, is_xy, ordered_batches, shuffled_batches
from helpers.device import keep_freed_memory
from helpers.progress import progress_enabled

__all__ = ["History", "evaluate", "fit", "save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]


def _per_step():
    """A :class:`History` list with one entry per completed optimisation step."""
    return field(default_factory=list, metadata={"per": "step"})


def _per_epoch():
    """A :class:`History` list with one entry per completed epoch."""
    return field(default_factory=list, metadata={"per": "epoch"})


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

    ``interrupted`` is True when a ``KeyboardInterrupt`` stopped training;
    ``interrupted_at`` is then the number of completed steps. Every per-step list then has
    exactly that many entries and the model holds the weights after the last of them; the
    epoch in progress has no entry in the per-epoch lists.

    To add a recorded list, declare it with ``_per_step()`` or ``_per_epoch()`` (an interrupted
    run cuts each list to the completed steps or epochs by that declaration) and fill it in
    :meth:`helpers.ensemble.EnsembleHistory.member` too.
    """

    loss: list[float] = _per_step()
    accuracy: list[float] = _per_step()
    lr: list[float] = _per_step()
    grad_norm: list[float] = _per_step()
    epoch_loss: list[float] = _per_epoch()
    val_loss: list[float] = _per_epoch()
    val_accuracy: list[float] = _per_epoch()
    clipped: list[bool] = _per_step()
    clipped_grad_norm: list[float] = _per_step()
    diverged: bool = False
    diverged_at: int | None = None
    interrupted: bool = False
    interrupted_at: int | None = None

    def to_dict(self) -> dict:
        """The recorded values as plain lists and numbers (what a checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> History:
        """The inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        if not isinstance(values, dict):
            raise TypeError(f"values must be a dict, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"values has keys History does not know: {unknown}")
        return cls(**{k: (list(v) if isinstance(v, list) else v) for k, v in values.items()})

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
        values = getattr(self, metric, None) if isinstance(metric, str) else None
        if not isinstance(values, list):
            raise ValueError(f"metric must name a list of History, got {metric!r}")
        check_int("last", last, minimum=1)
        tail = values[-last:]
        return sum(tail) / len(tail) if tail else math.nan


def _correct(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    if output.dim() == 2 and output.shape[1] > 1 and not target.is_floating_point() and target.dim() == 1:
        return (output.argmax(dim=1) == target).sum()
    return None


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn: Callable, batch_size: int = 512,
             device=None) -> tuple[float, float]:
    """Mean loss and accuracy (NaN when not a classification) of ``model`` on ``data``, in eval mode.

    Afterwards every module is back in its own mode (:func:`helpers._modes.kept_modes`): a layer
    kept in eval mode inside a training model stays in eval mode. Batches without examples are skipped.

    Args:
        model: the network.
        data: ``(X, y)`` tensors (cut into batches of ``batch_size``, in order) or an iterable of
            ``(x, y)`` batches of tensors.
        loss_fn: maps (output, target) to a scalar mean loss.
        batch_size: examples per batch of tensor data, >= 1.
        device: where to evaluate; default: where the model's parameters (or buffers) are. A model
            with neither is run where the batches are.

    Raises:
        TypeError: a bad argument, or a batch of ``data`` that is not an ``(x, y)`` pair of tensors.
        ValueError: ``data`` holds no example (an empty evaluation set has no mean loss).

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> loss, accuracy = evaluate(net, (torch.randn(8, 3), torch.randint(0, 2, (8,))),
        ...                           torch.nn.functional.cross_entropy)
        >>> 0.0 <= accuracy <= 1.0
        True
    """
    check_module("model", model)
    check_data("data", data, required=True)
    check_callable("loss_fn", loss_fn)
    check_int("batch_size", batch_size, minimum=1)
    device = device or _model_device(model)
    batches = ordered_batches(data, batch_size) if is_xy(data) else data  # in order: nothing to shuffle
    with kept_modes(model):
        model.eval()
        total_loss, correct, count, classification = _evaluate_batches(model, batches, loss_fn, device)
    if count == 0:
        raise ValueError(f"data holds no example (the {type(data).__name__} gave no batch, or only empty ones): "
                         "an empty evaluation set has no mean loss")
    return total_loss / count, (correct / count if classification else math.nan)


def _model_device(model: nn.Module) -> torch.device | None:
    """Where the model's first parameter (or buffer) is; None for a model with neither."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else None


def _evaluate_batches(model: nn.Module, batches, loss_fn: Callable, device) -> tuple[float, int, int, bool]:
    """Summed loss, correct predictions, examples, and whether every batch was a classification."""
    total_loss, correct, count, classification = 0.0, 0, 0, True
    for index, batch in enumerate(batches):
        if not (isinstance(batch, tuple | list) and len(batch) == 2
                and all(isinstance(t, torch.Tensor) for t in batch)):
            kinds = [type(t).__name__ for t in batch] if isinstance(batch, tuple | list) else type(batch).__name__
            raise TypeError(f"data must give (x, y) pairs of tensors; batch {index} is {kinds}")
        x, y = batch
        if len(x) == 0:
            continue
        if device is not None:
            x, y = x.to(device), y.to(device)
        out = model(x)
        total_loss += float(loss_fn(out, y)) * len(x)
        hits = _correct(out, y)
        classification &= hits is not None
        correct += int(hits) if hits is not None else 0
        count += len(x)
    return total_loss, correct, count, classification


def fit(model: nn.Module, train_data, *, epochs: int, optimizer: torch.optim.Optimizer,
        loss_fn: Callable, scheduler=None, clip: Callable | None = None, monitor=None,
        val_data=None, device=None, progress: bool = True, batch_size: int = 64,
        seed: int = 0, checkpoint_path: str | os.PathLike | None = None,
        resume_from: str | os.PathLike | None = None) -> History:
    r"""Train ``model`` and return a :class:`History`; stop cleanly if training diverges or is interrupted.

    One step: forward, ``loss_fn``, backward, record the global gradient norm
    :math:`\lVert g \rVert_2 = (\sum_p \lVert g_p \rVert_2^2)^{1/2}`, ``clip(parameters)``
    if given, ``optimizer.step()``, ``scheduler.step()`` if given (so schedulers count
    *steps*, not epochs), ``monitor.step()`` if given.

    Divergence guard: before each step the weights (and buffers) that produced a finite
    loss are kept; when a loss or a gradient entry is NaN or infinite, the step is not
    taken, the kept weights are restored, and ``History.diverged`` /
    ``History.diverged_at`` say where it happened. The gradient norm is taken in the
    gradients' dtype; where its squares may have underflowed or overflowed (float32
    gradients of :math:`10^{19}` are finite, their float32 norm is not) it is taken again in
    float64, and that norm is recorded: huge but finite gradients are no divergence.

    Interruption: a ``KeyboardInterrupt`` (Ctrl-C, or the notebook's stop button) does
    not escape: ``fit`` returns the :class:`History` so far with ``interrupted=True``.
    A step is applied whole or not at all: an interrupt that arrives while the
    optimizer, scheduler and monitor are stepping and the step is recorded is held back
    until they are done (in the main thread, where Python delivers signals); one
    that arrives earlier in the step (forward, backward, clipping) abandons that step
    before it has changed any weight (batch norm's running statistics, which the forward
    pass updates, do keep that pass's update). Autograd is left enabled. A batch without
    examples is skipped: no step, nothing recorded.

    Modes: a model in eval mode as a whole (``model.training`` false, e.g. after an
    evaluation) is put in training mode, every module of it. A model in training mode trains
    in the modes its modules have, as a plain PyTorch loop would: a BatchNorm put in eval
    mode to freeze its running statistics stays frozen. Evaluations of ``val_data`` leave every
    module in its own mode.

    Checkpoints: with ``checkpoint_path``, a checkpoint (:func:`save_checkpoint`) is
    written at the end of every epoch, replacing the previous one atomically. With
    ``resume_from``, training continues from such a checkpoint: weights, optimizer and
    scheduler states, the ``History``, the shuffling generator and the global torch
    random state are restored, and training runs from the saved epoch up to ``epochs``.
    With the same arguments the result equals an uninterrupted run's, bit for bit. An
    optimizer or scheduler of another kind than the checkpoint's is refused with
    ``ValueError`` before anything is modified; for a ``ChainedScheduler`` or ``SequentialLR``
    the kinds of its inner schedulers count too, their number and order included.

    Args:
        model: the network; moved to ``device``.
        train_data: ``(X, y)`` tensors, shuffled into mini-batches of ``batch_size`` by a
            private generator seeded with ``seed`` (the split is never redone), or any
            iterable of ``(x, y)`` batches such as a DataLoader.
        epochs: number of passes over ``train_data``, >= 1 (in all, counting the epochs
            of a checkpoint resumed from).
        optimizer: a :class:`torch.optim.Optimizer` over the model's parameters.
        loss_fn: maps (output, target) to a scalar loss.
        scheduler: an ``LRScheduler`` stepped once per optimisation step.
        clip: called as ``clip(parameters)`` between backward and step, e.g.
            ``functools.partial(helpers.clipping.clip_grad_norm_, max_norm=1.0)`` or
            ``lambda p: torch.nn.utils.clip_grad_value_(p, 0.5)``. Its return value is
            ignored; ``fit`` measures the global gradient norm again after it and records
            in ``History.clipped`` whether the norm went down (the clip fired) and in
            ``History.clipped_grad_norm`` the norm after clipping.
        monitor: a :class:`helpers.diagnostics.GradientMonitor` (attached here if it is not;
            its records are not part of a checkpoint).
        val_data: evaluated at the end of every epoch, like ``train_data``.
        device: where to train; default: where the model's parameters are.
        progress: draw a progress bar over the steps (see :mod:`helpers.progress`).
        batch_size: mini-batch size for tensor data.
        seed: seed of the shuffling generator for tensor data.
        checkpoint_path: file to write a checkpoint to at the end of every epoch.
        resume_from: a checkpoint written by ``fit`` to continue from.

    Example:
        >>> from helpers.models import MLP
        >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> net = MLP(4, 3, width=16, depth=2)
        >>> h = fit(net, (X, y), epochs=2, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        ...         loss_fn=torch.nn.functional.cross_entropy, progress=False, batch_size=16)
        >>> h.steps, h.epochs, h.diverged, h.interrupted
        (8, 2, False, False)
    """
    checkpoint_path, resumed = _check_fit(model, train_data, val_data, epochs=epochs, optimizer=optimizer,
                                          loss_fn=loss_fn, scheduler=scheduler, clip=clip, monitor=monitor,
                                          batch_size=batch_size, seed=seed, checkpoint_path=checkpoint_path,
                                          resume_from=resume_from)
    if device is not None:
        model.to(device)
    history, start_epoch, generator = _resume(resumed, model, optimizer, scheduler, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    keep_freed_memory()
    if monitor is not None and hasattr(monitor, "attach"):
        monitor.attach()
    bar = _progress_bar(progress, train_data, batch_size, epochs - start_epoch)
    run = _Run(model, optimizer, loss_fn, scheduler, clip, monitor, val_data, checkpoint_path, train_data,
               batch_size, seed, generator, history, params, bar)
    return run.train(range(start_epoch, epochs))


# --------------------------------------------------------------------------- fit's stages

def _check_scheduler(scheduler) -> None:
    """fit calls ``scheduler.step()`` with no argument after every step: a scheduler that needs one
    (``ReduceLROnPlateau``'s metric) is refused here, not after the first step has changed the weights."""
    if scheduler is None:
        return
    step = getattr(scheduler, "step", None)
    if not callable(step):
        raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
    try:
        needed = [p.name for p in inspect.signature(step).parameters.values()
                  if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):      # a builtin without a signature: let it run
        return
    if needed:
        raise TypeError(f"scheduler must step without arguments (fit calls scheduler.step() after each step), "
                        f"but {type(scheduler).__name__}.step needs {', '.join(needed)}; step it yourself, e.g. "
                        "ReduceLROnPlateau with a validation loss after each fit(epochs=1) call")


def _check_fit(model, train_data, val_data, *, epochs, optimizer, loss_fn, scheduler, clip, monitor, batch_size,
               seed, checkpoint_path, resume_from) -> tuple[Path | None, dict | None]:
    """Check :func:`fit`'s arguments; return the checkpoint path and the checkpoint to resume from (or None)."""
    check_module("model", model)
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    check_optimizer("optimizer", optimizer)
    check_callable("loss_fn", loss_fn)
    check_callable("clip", clip, optional=True)
    _check_scheduler(scheduler)
    if monitor is not None and not hasattr(monitor, "step"):
        raise TypeError(f"monitor must have a step() method, got {type(monitor).__name__}")
    check_data("train_data", train_data, required=True)
    check_data("val_data", val_data, required=False)
    if checkpoint_path is not None:
        checkpoint_path = _check_path("checkpoint_path", checkpoint_path)
    resumed = None
    if resume_from is not None:
        resumed = _read_checkpoint(_check_path("resume_from", resume_from, must_exist=True))
    check_trainable("model", model)
    if resumed is not None:
        _check_resumable(resumed, is_xy(train_data), epochs=epochs, seed=seed, batch_size=batch_size)
        _check_checkpoint_fits(resumed, model, optimizer, scheduler, "resume_from")  # before model.to(device)
    return checkpoint_path, resumed


def _check_resumable(resumed: dict, tensors: bool, *, epochs: int, seed: int, batch_size: int) -> None:
    """Raise if resuming from ``resumed`` with these arguments cannot continue its run."""
    for name, value in (("seed", seed), ("batch_size", batch_size)):
        if tensors and resumed[name] is not None and resumed[name] != value:
            raise ValueError(f"resume_from was written by a run with {name}={resumed[name]}, "
                             f"but fit got {name}={value}; the batches would differ")
    if resumed["epoch"] > epochs:
        raise ValueError(f"epochs must be >= the {resumed['epoch']} epochs already done in resume_from, "
                         f"got {epochs}")


def _resume(resumed: dict | None, model: nn.Module, optimizer, scheduler,
            seed: int) -> tuple[History, int, torch.Generator]:
    """The history, first epoch and shuffling generator to train with: new ones, or those of the checkpoint
    ``resumed``, whose weights, optimizer and scheduler states and random state are loaded."""
    generator = torch.Generator().manual_seed(seed)
    if resumed is None:
        return History(), 0, generator
    _apply_checkpoint(resumed, model, optimizer, scheduler, "resume_from")
    history = History.from_dict(resumed["history"]) if resumed["history"] is not None else History()
    history.interrupted, history.interrupted_at = False, None
    if resumed["generator"] is not None:
        generator.set_state(resumed["generator"])
    return history, resumed["epoch"], generator


def _progress_bar(progress: bool, train_data, batch_size: int, epochs: int):
    """A bar over the steps of ``epochs`` epochs, or None when bars are off (:func:`progress_enabled`)."""
    steps_per_epoch = math.ceil(len(train_data[0]) / batch_size) if is_xy(train_data) else _length(train_data)
    total = steps_per_epoch * epochs if steps_per_epoch is not None else None
    if not progress_enabled(progress):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="training", leave=False)


@dataclass(eq=False)
class _Run:
    """One call of :func:`fit`, in stages: :meth:`train` runs the epochs, :meth:`_epoch` their steps,
    :meth:`_end_epoch` records each epoch; the two guards (divergence, interruption) wrap them."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    scheduler: object
    clip: Callable | None
    monitor: object
    val_data: object
    checkpoint_path: Path | None
    train_data: object            # (X, y) tensors, shuffled by ``generator``, or an iterable of batches
    batch_size: int
    seed: int
    generator: torch.Generator
    history: History
    params: list[torch.Tensor]    # those that require a gradient
    bar: object                   # a tqdm bar or None
    device: torch.device = field(init=False)
    tensors: bool = field(init=False)
    state: list[torch.Tensor] = field(init=False)
    kept: list[torch.Tensor] = field(init=False)
    guard: _InterruptGuard = field(init=False)

    def __post_init__(self):
        self.device = self.params[0].device
        self.tensors = is_xy(self.train_data)
        # the divergence guard keeps a copy of the floating-point state: parameters and buffers
        # such as running statistics (integer counters are not worth restoring)
        self.state = [t for t in self.model.state_dict().values() if t.is_floating_point() or t.is_complex()]
        self.kept = [t.detach().clone() for t in self.state]
        self.guard = _InterruptGuard()

    def train(self, epochs: range) -> History:
        """Train for ``epochs``; stop early when training diverges or a ``KeyboardInterrupt`` arrives."""
        if not self.model.training:     # left in eval mode as a whole (e.g. after an evaluation): train it all
            self.model.train()          # otherwise every module keeps the mode its user gave it
        grad_enabled = torch.is_grad_enabled()
        try:
            with self.guard:
                for _epoch in epochs:
                    batches = (shuffled_batches(self.train_data, self.batch_size, self.generator) if self.tensors
                               else self.train_data)
                    losses = self._epoch(batches)
                    if losses is None:  # diverged
                        break
                    self._end_epoch(losses)
        except KeyboardInterrupt:
            # a step or an epoch's end cut short has undone itself (_epoch, _end_epoch); every list,
            # a resumed history's too, is cut to the completed steps and epochs
            history = self.history
            _truncate(history, history.steps, history.epochs)
            self.optimizer.zero_grad(set_to_none=True)
            torch.set_grad_enabled(grad_enabled)  # an interrupt inside a no_grad block's exit could leave it off
            history.interrupted, history.interrupted_at = True, history.steps
        finally:
            if self.bar is not None:
                self.bar.close()
        return self.history

    def _epoch(self, batches) -> list[float] | None:
        """One step per batch; the steps' losses, or None when training diverged (the history says where)."""
        # locals, not attributes, in the loop: this is the per-step path that benchmarks/overhead.py times
        model, optimizer, loss_fn, clip = self.model, self.optimizer, self.loss_fn, self.clip
        scheduler, monitor, history, guard, bar = self.scheduler, self.monitor, self.history, self.guard, self.bar
        params, device, state, kept = self.params, self.device, self.state, self.kept
        losses = []
        for x, y in batches:
            if x.dim() and x.shape[0] == 0:     # no examples: no step (their mean loss is NaN, which is no divergence)
                continue
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            output = model(x)
            loss = loss_fn(output, y)
            loss.backward()
            loss_value, norm_value, accuracy = _measure(loss, output, y, params, device)
            del output, loss  # free the graph's buffers now, so the allocator reuses them
            if not math.isfinite(loss_value) or not math.isfinite(norm_value) and not _finite_grads(params):
                self._stop_diverged(loss_finite=math.isfinite(loss_value))
                return None
            _fused.copy_(kept, state)  # the weights of a finite loss (state_dict's: detached); the ones to go back to
            lr = optimizer.param_groups[0]["lr"]
            clipped = None
            if clip is not None:
                clip(params)
                # a second transfer, only when clipping
                clipped = _refined(float(_global_norm(params, device)), params)
            with guard.critical():
                steps = history.steps
                try:
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    if monitor is not None:
                        monitor.step()
                    history.loss.append(loss_value)
                    history.lr.append(float(lr))
                    history.grad_norm.append(norm_value)
                    if accuracy is not None:
                        history.accuracy.append(accuracy)
                    if clipped is not None:
                        history.clipped.append(clipped < norm_value)
                        history.clipped_grad_norm.append(clipped)
                    losses.append(loss_value)
                except KeyboardInterrupt:  # raised inside the step itself, not by a signal: undo the part applied
                    _restore(state, kept)
                    _truncate(history, steps, history.epochs)
                    raise
            if bar is not None:
                bar.update(1)
        return losses

    def _stop_diverged(self, loss_finite: bool) -> None:
        """Put back the kept weights if the loss itself is not finite, and record the divergence."""
        if loss_finite:  # only the gradient is not: these weights are the last good ones
            _record_divergence(self.history)
            return
        with self.guard.critical():  # these weights blew up: back to the kept ones
            _restore(self.state, self.kept)
            _record_divergence(self.history)

    def _end_epoch(self, losses: list[float]) -> None:
        """Record the epoch's mean loss and validation, write the checkpoint: all of it or none."""
        history = self.history
        with self.guard.critical():
            epochs = history.epochs
            try:
                history.epoch_loss.append(sum(losses) / max(len(losses), 1))
                if self.val_data is not None:
                    val_loss, val_acc = evaluate(self.model, self.val_data, self.loss_fn, device=self.device)
                    history.val_loss.append(val_loss)
                    history.val_accuracy.append(val_acc)
                if self.checkpoint_path is not None:
                    save_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.scheduler, history,
                                    epoch=history.epochs, generator=self.generator if self.tensors else None,
                                    seed=self.seed, batch_size=self.batch_size)
            except KeyboardInterrupt:  # raised inside, not by a signal: the epoch is not complete
                _truncate(history, history.steps, epochs)
                raise
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{history.epoch_loss[-1]:.3g}")


def _measure(loss: torch.Tensor, output: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor],
             device) -> tuple[float, float, float | None]:
    """A step's loss, global gradient norm and accuracy (None unless classifying): one transfer to the host."""
    grad_norm = _global_norm(params, device)
    hits = _correct(output.detach(), y)
    numbers = torch.stack([loss.detach().float(), grad_norm.float(),
                           hits.float() if hits is not None else grad_norm.new_zeros(())]).tolist()
    loss_value, norm_value, hit_count = numbers
    if not math.isfinite(loss_value):  # the rare path: a float64 loss beyond float32's range is finite
        loss_value = float(loss.detach())
    norm_value = _refined(norm_value, params)
    if hits is None:
        return loss_value, norm_value, None
    return loss_value, norm_value, (hit_count / len(y) if len(y) else math.nan)  # an empty batch: no accuracy


class _InterruptGuard:
    """Holds SIGINT back while a step is applied, and delivers it when the step is complete.

    Outside :meth:`critical` a SIGINT is handled as before (``KeyboardInterrupt``). The
    handler is only installed from the main thread, the only one Python delivers signals to.
    """

    def __init__(self):
        self.depth, self.pending, self.previous, self.installed = 0, None, None, False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous) or previous == signal.SIG_DFL:
                self.previous = previous
                signal.signal(signal.SIGINT, self._handler)
                self.installed = True
        return self

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
            self.installed = False
        return False

    def _deliver(self, signum, frame):
        if callable(self.previous):
            self.previous(signum, frame)
        else:
            raise KeyboardInterrupt

    def _handler(self, signum, frame):
        if self.depth:
            self.pending = (signum, frame)
        else:
            self._deliver(signum, frame)

    @contextlib.contextmanager
    def critical(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.pending is not None and not self.depth:
            signum, frame = self.pending
            self.pending = None
            self._deliver(signum, frame)


def _truncate(history: History, steps: int, epochs: int) -> None:
    """Cut every per-step list to ``steps`` entries and every per-epoch list to ``epochs``."""
    for name in _PER_STEP:
        del getattr(history, name)[steps:]
    for name in _PER_EPOCH:
        del getattr(history, name)[epochs:]


def _lists(per: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(History) if f.metadata.get("per") == per)


_PER_STEP, _PER_EPOCH = _lists("step"), _lists("epoch")
_undeclared = [f.name for f in dataclasses.fields(History) if "list" in str(f.type) and "per" not in f.metadata]
if _undeclared:  # at import: a list nobody cuts would make an interrupted run's history inconsistent
    raise TypeError(f"History lists {_undeclared} must be declared with _per_step() or _per_epoch()")


# --------------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = 1
_CHECKPOINT_KEYS = {"format", "epoch", "model", "optimizer", "scheduler", "history", "generator",
                    "torch_rng", "cuda_rng", "seed", "batch_size"}
_KIND_KEYS = {"optimizer_kind", "scheduler_kind"}  # recorded since issue 16; older checkpoints lack them


def _check_path(name: str, path, must_exist: bool = False) -> Path:
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__} ({path!r})")
    path = Path(path)
    if must_exist and not path.is_file():
        raise ValueError(f"{name} must name an existing checkpoint file, got {str(path)!r}")
    if not must_exist and not path.parent.is_dir():
        raise ValueError(f"{name} must be in an existing directory, got {str(path)!r}")
    return path


def _check_checkpoint_objects(model, optimizer, scheduler, scheduler_method: str) -> None:
    check_module("model", model)
    check_optimizer("optimizer", optimizer, optional=True)
    if scheduler is not None and not hasattr(scheduler, scheduler_method):
        raise TypeError(f"scheduler must have a {scheduler_method}() method or be None, "
                        f"got {type(scheduler).__name__}")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, history: History | None = None, epoch: int = 0, *,
                    generator: torch.Generator | None = None, seed: int | None = None,
                    batch_size: int | None = None) -> Path:
    r"""Write everything needed to continue training to ``path`` (atomically) and return the path.

    The file holds only tensors, numbers, strings, lists and dicts, so it can be read back
    with ``torch.load(path, weights_only=True)``, which cannot run code hidden in a file:
    the model's, optimizer's and scheduler's ``state_dict()``, the :class:`History` as a
    dict, ``epoch`` (epochs completed), the state of the shuffling ``generator`` and of the
    global torch random generators (CPU, and CUDA when it is in use). It is written to
    ``path.tmp`` first and then renamed, so an interrupted save never leaves half a file.

    Args:
        path: the file to write; its directory must exist.
        model: the network.
        optimizer: its optimizer (momentum buffers, Adam's moments and step counts), or None.
        scheduler: an ``LRScheduler`` (anything with ``state_dict()``), or None.
        history: what :func:`fit` recorded so far, or None.
        epoch: the number of completed epochs, >= 0.
        generator: the generator that shuffles the batches, or None.
        seed, batch_size: recorded so that resuming can check it uses the same batches.

    Example:
        >>> import tempfile, os
        >>> net = torch.nn.Linear(2, 1)
        >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "ckpt.pt"), net, epoch=3)
        >>> sorted(torch.load(path, weights_only=True)["model"])
        ['bias', 'weight']
    """
    path = _check_path("path", path)
    _check_checkpoint_objects(model, optimizer, scheduler, "state_dict")
    if history is not None and not isinstance(history, History):
        raise TypeError(f"history must be a History or None, got {type(history).__name__}")
    check_int("epoch", epoch, minimum=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "optimizer_kind": type(optimizer).__name__ if optimizer is not None else None,
        "scheduler_kind": _scheduler_kind(scheduler) if scheduler is not None else None,
        "history": history.to_dict() if history is not None else None,
        "generator": generator.get_state() if generator is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": cuda_rng,
        "seed": seed,
        "batch_size": batch_size,
    }
    partial = path.with_name(path.name + ".tmp")
    torch.save(payload, partial)
    os.replace(partial, path)
    return path


def _read_checkpoint(path: Path) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with code in it, a truncated file, not a checkpoint at all
        raise ValueError(f"{str(path)!r} is not a checkpoint that loads with weights_only=True: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT \
            or not _CHECKPOINT_KEYS <= set(payload) <= _CHECKPOINT_KEYS | _KIND_KEYS:
        raise ValueError(f"{str(path)!r} is not a checkpoint written by save_checkpoint "
                         f"(format {CHECKPOINT_FORMAT})")
    return payload


def _apply_checkpoint(payload: dict, model: nn.Module, optimizer, scheduler, name: str) -> None:
    # check everything first, so that a mismatch leaves model, optimizer and scheduler untouched
    _check_checkpoint_fits(payload, model, optimizer, scheduler, name)
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])


def _check_checkpoint_fits(payload: dict, model: nn.Module, optimizer, scheduler, name: str) -> None:
    """Raise ``ValueError`` if the checkpoint does not fit the model, or the optimizer or scheduler kind differs."""
    own, saved = model.state_dict(), payload["model"]
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise ValueError(f"{name} does not fit the model: missing keys {missing}, unexpected keys {unexpected}")
    shapes = [k for k in own if tuple(own[k].shape) != tuple(saved[k].shape)]
    if shapes:
        raise ValueError(f"{name} does not fit the model: shapes differ for {shapes}")
    if optimizer is not None:
        _check_optimizer_fits(payload, optimizer, name)
    _check_scheduler_fits(payload, scheduler, name)


def _check_optimizer_fits(payload: dict, optimizer, name: str) -> None:
    if payload["optimizer"] is None:
        raise ValueError(f"{name} holds no optimizer state, but an optimizer was given")
    groups = payload["optimizer"]["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in optimizer.param_groups]:
        raise ValueError(f"{name} holds an optimizer state for other parameter groups")
    saved_kind, own = payload.get("optimizer_kind"), type(optimizer).__name__
    _check_kind(name, "optimizer", own, saved_kind, saved_kind == own if saved_kind is not None
                else _same_optimizer_kind(optimizer, payload["optimizer"]))


def _check_scheduler_fits(payload: dict, scheduler, name: str) -> None:
    saved_kind = payload.get("scheduler_kind")
    if scheduler is not None and payload["scheduler"] is None:
        raise ValueError(f"{name} holds no scheduler state, but a scheduler was given")
    if scheduler is None and payload.get("scheduler") is not None:
        raise ValueError(f"{name} holds the state of {saved_kind or 'a scheduler'}, but scheduler=None; the learning "
                         f"rate would stay frozen where it was saved. Pass a scheduler of that kind to continue "
                         f"the schedule")
    if scheduler is not None:
        _check_kind(name, "scheduler", _scheduler_kind(scheduler), saved_kind,
                    _same_scheduler_kind(scheduler, saved_kind, payload["scheduler"]))


def _same_optimizer_kind(optimizer, saved: dict) -> bool:
    """For checkpoints without a recorded kind: the saved groups hold every hyper-parameter this optimizer reads."""
    needed = {k for k, v in optimizer.defaults.items() if not isinstance(v, bool) and v is not None}
    return all(needed <= set(group) for group in saved["param_groups"])


def _scheduler_kind(scheduler) -> str:
    """The class name; a ``ChainedScheduler``'s or ``SequentialLR``'s with its inner kinds, in order.

    Example:
        >>> o = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> L = torch.optim.lr_scheduler
        >>> _scheduler_kind(L.ChainedScheduler([L.StepLR(o, 3), L.ExponentialLR(o, 0.9)]))
        'ChainedScheduler[StepLR, ExponentialLR]'
    """
    inner = getattr(scheduler, "_schedulers", None)
    if not isinstance(inner, list | tuple):
        return type(scheduler).__name__
    return f"{type(scheduler).__name__}[{', '.join(_scheduler_kind(s) for s in inner)}]"


def _same_scheduler_kind(scheduler, saved_kind: str | None, saved_state: dict) -> bool:
    """Whether ``scheduler`` is of the kind that saved ``saved_state``, inner schedulers included.

    Checkpoints record :func:`_scheduler_kind`; older ones recorded the outer class name only
    (or nothing): then the state-dict keys must match, level by level.
    """
    own = _scheduler_kind(scheduler)
    if saved_kind is not None and ("[" in saved_kind or "[" not in own):
        return saved_kind == own
    return saved_kind in (None, type(scheduler).__name__) and _same_structure(scheduler.state_dict(), saved_state)


def _same_structure(own: dict, saved) -> bool:
    """The same state-dict keys, and as many inner schedulers' states (``_schedulers``), each alike."""
    if not isinstance(saved, dict) or set(own) != set(saved):
        return False
    inner, saved_inner = own.get("_schedulers"), saved.get("_schedulers")
    if not isinstance(inner, list):
        return True
    return (isinstance(saved_inner, list) and len(inner) == len(saved_inner)
            and all(_same_structure(a, b) for a, b in zip(inner, saved_inner)))


def _check_kind(name: str, what: str, own: str, saved_kind: str | None, same: bool) -> None:
    """Raise before anything is loaded if the object (of kind ``own``) is not of the kind whose state was saved."""
    if not same:
        raise ValueError(f"{name} holds the state of {what} {saved_kind or 'of another kind'}, but fit got "
                         f"{what} {own}; pass a {what} of the kind that wrote the checkpoint")


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None) -> dict:
    r"""Load a checkpoint written by :func:`save_checkpoint` into ``model`` (and optimizer, scheduler).

    The file is read with ``torch.load(weights_only=True)`` (no code in the file can run)
    and checked against the model (same keys and shapes) and the optimizer (same groups)
    before anything is loaded, so a mismatch raises ``ValueError`` and modifies nothing.
    The global torch random state is restored as well.

    Args:
        path: the checkpoint file.
        model: a network of the same architecture; its weights and buffers are replaced.
        optimizer: an optimizer over its parameters, of the same kind as the saved one, or None.
        scheduler: a scheduler of the same kind as the saved one (a composite's inner
            schedulers of the same kinds, in the same order), or None.

    Returns:
        A dict with ``"epoch"`` (completed epochs), ``"history"`` (a :class:`History` or
        None), ``"generator"`` (the shuffling generator's state or None), ``"seed"`` and
        ``"batch_size"``.

    Example:
        >>> import tempfile, os
        >>> net = torch.nn.Linear(2, 1)
        >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "ckpt.pt"), net, history=History(loss=[1.0]),
        ...                        epoch=1)
        >>> other = torch.nn.Linear(2, 1)
        >>> info = load_checkpoint(path, other)
        >>> info["epoch"], info["history"].loss, torch.equal(other.weight, net.weight)
        (1, [1.0], True)
    """
    path = _check_path("path", path, must_exist=True)
    _check_checkpoint_objects(model, optimizer, scheduler, "load_state_dict")
    payload = _read_checkpoint(path)
    _apply_checkpoint(payload, model, optimizer, scheduler, "path")
    history = History.from_dict(payload["history"]) if payload["history"] is not None else None
    return {"epoch": payload["epoch"], "history": history, "generator": payload["generator"],
            "seed": payload["seed"], "batch_size": payload["batch_size"]}


def _refined(norm_value: float, params: list[torch.Tensor]) -> float:
    """The global gradient norm ``norm_value``, or, where its float32 squares may have underflowed (below
    :data:`helpers._fused.TINY`) or overflowed (not finite), the exact one (:func:`_exact_global_norm`)."""
    if _fused.TINY <= norm_value < math.inf:
        return norm_value
    return _exact_global_norm(params)


def _exact_global_norm(params: list[torch.Tensor]) -> float:
    """The global 2-norm of the gradients, from per-tensor norms in float64 combined by ``math.hypot`` (which
    neither underflows nor overflows): ``inf`` only where an entry is infinite or the norm is beyond float64."""
    grads = [p.grad for p in params if p.grad is not None]
    return math.hypot(*_fused.exact_norms(grads)) if grads else 0.0


def _finite_grads(params: list[torch.Tensor]) -> bool:
    """Whether every gradient entry is finite (read on the rare path where the global norm is not)."""
    return all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)


def _global_norm(params: list[torch.Tensor], device) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(_fused.fast_norms(grads))


def _length(data) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


@torch.no_grad()
def _restore(state: list[torch.Tensor], kept: list[torch.Tensor]) -> None:
    _fused.copy_(state, kept)


def _record_divergence(history: History) -> None:
    history.diverged = True
    history.diverged_at = history.steps
