r"""Learning-rate schedules from scratch (the LR range test is :func:`helpers.lr_finder.lr_finder`).

Each schedule is a :class:`torch.optim.lr_scheduler.LRScheduler` subclass with a
closed form, a function of the step count :math:`t` (``last_epoch``) and of each
parameter group's initial learning rate :math:`\eta` (``lr_at(t, eta)``, and
``_get_closed_form_lr()`` as in torch, used by ``step(epoch)``). Like torch's own
schedulers, ``step()`` does not overwrite the rate with that formula: it multiplies the
optimizer's *current* rate by the ratio of two consecutive values of the formula (the
recursive, "chainable" form). So the schedules compose with each other and with torch's
(``ChainedScheduler``, ``SequentialLR``), keep a rate changed by hand, and resume from
``state_dict()``; alone, they follow the closed form. :class:`OneCycle` evaluates its formula
directly while the rate is the formula's previous value (bit-equal to ``OneCycleLR``) and
falls back to the ratio once the rate was changed from outside; :class:`WarmupCosine` sets its
closed form once, at the end of the warm-up, as ``SequentialLR`` does at its milestone.
Built with ``last_epoch`` :math:`= k \ge 0`, a schedule takes torch's "initial step" to
:math:`k + 1` as its torch counterpart does: it keeps the optimizer's rate, except
:class:`StepDecay` (times :math:`\gamma` when :math:`k + 1` is a multiple of the step size,
as ``StepLR``) and :class:`OneCycle` (the formula's rate, as ``OneCycleLR``). Learning rates
may be Python floats or one-element tensors (then updated in place), as in ``torch.optim``.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

from helpers._checks import check_choice, check_int, check_optimizer, check_real
from helpers._moved import moved

__all__ = ["StepDecay", "ExponentialDecay", "LinearDecay", "cosine", "CosineAnnealing", "WarmupCosine", "OneCycle",
           "WarmupStableDecay"]
# moved by the layering (issue 19): importing them from here says where they are now
__getattr__ = moved(__name__, {name: "helpers.lr_finder" for name in ("lr_finder", "LRFinderResult", "suggest_lr")})


def _copy(lr):
    """A learning rate that does not alias the optimizer's (tensors are cloned, as torch does)."""
    return lr.clone() if isinstance(lr, torch.Tensor) else lr


class _Chainable(LRScheduler):
    """A schedule with a closed form ``lr_at(t, base_lr)`` and a recursive ``_next_lr(lr, t)``.

    ``get_lr`` applies ``_next_lr`` to each group's current rate (chainable, as torch's
    schedulers); ``_get_closed_form_lr`` evaluates the closed form from ``base_lrs``.
    """

    def __init__(self, optimizer, last_epoch: int = -1):
        # torch's LRScheduler compares last_epoch with -1 and otherwise looks for 'initial_lr' (a KeyError about
        # the optimizer for 'a', 2.5 or -5): say what is wrong with last_epoch itself, before the optimizer changes
        check_int("last_epoch", last_epoch, minimum=-1)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float) -> float:
        raise NotImplementedError

    def _next_lr(self, lr, t: int):
        raise NotImplementedError

    def get_lr(self) -> list:
        t = self.last_epoch
        return [_copy(self._next_lr(group["lr"], t)) for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list:
        t = max(self.last_epoch, 0)
        return [self.lr_at(t, base) for base in self.base_lrs]


class StepDecay(_Chainable):
    r"""Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    .. math:: \eta_t = \eta\,\gamma^{\lfloor t / s \rfloor}

    Equals ``torch.optim.lr_scheduler.StepLR``.

    Args:
        optimizer: the wrapped optimizer.
        step_size: :math:`s \ge 1`, steps between decays.
        gamma: :math:`\gamma > 0`, the factor.
        last_epoch: the step to resume from (-1: start).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = StepDecay(opt, step_size=2, gamma=0.5)
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(sched.get_last_lr()[0]); opt.step(); sched.step()
        >>> lrs
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        check_optimizer("optimizer", optimizer)
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = check_real("gamma", gamma, minimum=0.0, strict_minimum=True)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (t // self.step_size)

    def _next_lr(self, lr, t):
        return lr if t == 0 or t % self.step_size else lr * self.gamma


class ExponentialDecay(_Chainable):
    r"""Multiply the learning rate by ``gamma`` every step.

    .. math:: \eta_t = \eta\,\gamma^{t}

    Equals ``torch.optim.lr_scheduler.ExponentialLR``.

    Args:
        optimizer: the wrapped optimizer.
        gamma: :math:`\gamma > 0`.
        last_epoch: the step to resume from (-1: start).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = ExponentialDecay(opt, gamma=0.5)
        >>> opt.step(); sched.step(); opt.step(); sched.step(); sched.get_last_lr()
        [0.25]
    """

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        check_optimizer("optimizer", optimizer)
        self.gamma = check_real("gamma", gamma, minimum=0.0, strict_minimum=True)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * self.gamma ** t

    def _next_lr(self, lr, t):
        return lr if self._is_initial else lr * self.gamma


class LinearDecay(_Chainable):
    r"""Decrease the learning rate linearly to ``end_factor`` times its start over ``total_steps``.

    .. math:: \eta_t = \eta\Big(1 - (1 - f)\,\frac{\min(t, T)}{T}\Big)

    Constant at :math:`f\eta` after :math:`T`. Equals
    ``torch.optim.lr_scheduler.LinearLR(start_factor=1.0, end_factor=f, total_iters=T)``.

    Args:
        optimizer: the wrapped optimizer.
        total_steps: :math:`T \ge 1`.
        end_factor: :math:`f` in [0, 1].
        last_epoch: the step to resume from (-1: start).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = LinearDecay(opt, total_steps=4)
        >>> [sched.lr_at(t, 1.0) for t in range(6)]
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    def __init__(self, optimizer, total_steps: int, end_factor: float = 0.0, last_epoch: int = -1):
        check_optimizer("optimizer", optimizer)
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.end_factor = check_real("end_factor", end_factor, minimum=0.0, maximum=1.0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * (1 - (1 - self.end_factor) * min(t, self.total_steps) / self.total_steps)

    def _next_lr(self, lr, t):
        return _linear_ratio(lr, t, self.total_steps, 1.0, self.end_factor, self._is_initial)


def cosine(t: float, total: float, eta_max: float, eta_min: float = 0.0) -> float:
    r"""Cosine annealing from :math:`\eta_{max}` at :math:`t=0` to :math:`\eta_{min}` at :math:`t=T`.

    .. math:: \eta_t = \eta_{min} + \tfrac12(\eta_{max} - \eta_{min})\Big(1 + \cos\frac{\pi \min(t, T)}{T}\Big)

    The :math:`\tfrac12` makes :math:`\eta_0 = \eta_{max}`; without it the schedule would
    start at twice the chosen rate.

    Example:
        >>> cosine(0, 10, 1.0), cosine(5, 10, 1.0), cosine(10, 10, 1.0, 0.1)
        (1.0, 0.5, 0.1)
    """
    t = check_real("t", t, minimum=0.0)
    total = check_real("total", total, minimum=0.0, strict_minimum=True)
    eta_max = check_real("eta_max", eta_max)
    eta_min = check_real("eta_min", eta_min)
    return _cosine(t, total, eta_max, eta_min)


def _cosine(t, total, eta_max, eta_min):
    """:func:`cosine` without the checks (``eta_max`` may be a tensor), in the order of torch's closed form."""
    t = min(t, total)
    return eta_min + (eta_max - eta_min) * (1 + math.cos(math.pi * t / total)) / 2


def _cosine_ratio(lr, t: int, total: int, eta_min: float):
    r"""One recursive step of cosine annealing from the current rate: step :math:`t-1 \to t`, :math:`1 \le t \le T`."""
    if t > total:
        return lr
    return ((1 + math.cos(math.pi * t / total)) / (1 + math.cos(math.pi * (t - 1) / total))
            * (lr - eta_min) + eta_min)


def _linear_ratio(lr, t: int, total: int, start: float, end: float, initial: bool):
    r"""One recursive step of a linear ramp from ``start``·η to ``end``·η over ``total`` steps (``LinearLR``)."""
    if t == 0:
        return lr * start
    if initial or t > total:
        return lr
    return lr * (1.0 + (end - start) / (total * start + (t - 1) * (end - start)))


class CosineAnnealing(_Chainable):
    r"""Cosine annealing to ``eta_min`` over ``total_steps``, then constant.

    .. math:: \eta_t = \eta_{min} + \tfrac12(\eta - \eta_{min})\Big(1 + \cos\frac{\pi \min(t, T)}{T}\Big)

    Up to :math:`T` this equals ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T,
    eta_min=eta_min)``, which after :math:`T` goes up again (a period of :math:`2T`);
    this one stays at :math:`\eta_{min}`.

    Args:
        optimizer: the wrapped optimizer.
        total_steps: :math:`T \ge 1`.
        eta_min: :math:`\eta_{min} \ge 0`.
        last_epoch: the step to resume from (-1: start).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = CosineAnnealing(opt, total_steps=4)
        >>> [round(sched.lr_at(t, 1.0), 4) for t in range(6)]
        [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """

    def __init__(self, optimizer, total_steps: int, eta_min: float = 0.0, last_epoch: int = -1):
        check_optimizer("optimizer", optimizer)
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.eta_min = check_real("eta_min", eta_min, minimum=0.0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float) -> float:
        return _cosine(t, self.total_steps, base_lr, self.eta_min)

    def _next_lr(self, lr, t):
        return lr if self._is_initial else _cosine_ratio(lr, t, self.total_steps, self.eta_min)


class WarmupCosine(_Chainable):
    r"""Linear warm-up from ``start_factor``·η to η, then cosine annealing to ``eta_min``.

    With :math:`W` warm-up steps and :math:`T` steps in all:

    .. math::
        \eta_t = \begin{cases}
        \eta\big(f + (1-f)\,t/W\big) & t < W \\
        \eta_{min} + \tfrac12(\eta - \eta_{min})\Big(1 + \cos\dfrac{\pi\,(\min(t,T) - W)}{T - W}\Big) & t \ge W
        \end{cases}

    Up to :math:`T` this equals ``SequentialLR`` of ``LinearLR(start_factor=f,
    total_iters=W)`` and ``CosineAnnealingLR(T_max=T-W, eta_min)`` with milestone :math:`W`,
    bit for bit, alone and composed: like ``SequentialLR``, step :math:`W` sets the rate to
    the closed form :math:`\eta` (the cosine's ``step(0)``), so what another scheduler
    (``ChainedScheduler`` with ``ExponentialLR``) or a hand did to the rate during the warm-up
    is undone there; from then on the cosine steps are chainable ratios, as
    ``CosineAnnealingLR``'s. Built with ``last_epoch`` :math:`= k \ge 0` it keeps the
    optimizer's rate and goes on from step :math:`k + 1`, as torch's schedulers do
    (``SequentialLR`` itself has no working ``last_epoch``: it resets the rate to
    ``initial_lr`` and restarts its first scheduler).

    Args:
        optimizer: the wrapped optimizer.
        warmup_steps: :math:`W \ge 0`.
        total_steps: :math:`T > W`.
        eta_min: :math:`\eta_{min} \ge 0`.
        start_factor: :math:`f` in (0, 1].
        last_epoch: the step to resume from (-1: start).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = WarmupCosine(opt, warmup_steps=2, total_steps=6, start_factor=0.5)
        >>> [round(sched.lr_at(t, 1.0), 3) for t in range(7)]
        [0.5, 0.75, 1.0, 0.854, 0.5, 0.146, 0.0]
    """

    def __init__(self, optimizer, warmup_steps: int, total_steps: int, eta_min: float = 0.0,
                 start_factor: float = 0.1, last_epoch: int = -1):
        check_optimizer("optimizer", optimizer)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps must be > warmup_steps ({warmup_steps}), got {total_steps}")
        self.eta_min = check_real("eta_min", eta_min, minimum=0.0)
        self.start_factor = check_real("start_factor", start_factor, minimum=0.0, maximum=1.0,
                                       strict_minimum=True)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float) -> float:
        w = self.warmup_steps
        if t < w:
            return base_lr * (self.start_factor + (1 - self.start_factor) * t / w)
        return _cosine(t - w, self.total_steps - w, base_lr, self.eta_min)

    def get_lr(self) -> list:
        if self.last_epoch == self.warmup_steps > 0 and not self._is_initial:
            # SequentialLR's milestone: it calls CosineAnnealingLR.step(0), which sets the closed form
            return self._get_closed_form_lr()
        return super().get_lr()

    def _next_lr(self, lr, t):
        w = self.warmup_steps
        if t == 0:  # the first scheduler's construction step: LinearLR's start factor (none without warm-up)
            return lr * self.start_factor if w else lr
        if self._is_initial:  # built with last_epoch = t - 1 >= 0: the rate is kept, as by torch's schedulers
            return lr
        if t < w:
            return _linear_ratio(lr, t, w, self.start_factor, 1.0, False)
        return _cosine_ratio(lr, t - w, self.total_steps - w, self.eta_min)


def _anneal(start, end, x: float, strategy: str):
    """From ``start`` at x = 0 to ``end`` at x = 1: cosine or linear, in the order of torch's OneCycleLR."""
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * x) + 1)
    return (end - start) * x + start


class OneCycle(_Chainable):
    r"""One cycle (Smith & Topin 2019): up from η/``div_factor`` to η, then down far below the start.

    With :math:`T` steps in all, :math:`p` = ``pct_start``, :math:`a(s, e, x)` the annealing
    from :math:`s` to :math:`e` as :math:`x` goes from 0 to 1 (cosine
    :math:`e + \tfrac12(s - e)(1 + \cos\pi x)`, or linear), :math:`t_1 = pT - 1` and
    :math:`\eta_{lo} = \eta / d`, :math:`\eta_{end} = \eta_{lo} / d_{final}`:

    .. math::
        \eta_t = \begin{cases}
        a\big(\eta_{lo}, \eta, \, t / t_1\big) & t \le t_1 \\
        a\big(\eta, \eta_{end}, \, (\min(t, T-1) - t_1) / (T - 1 - t_1)\big) & t > t_1
        \end{cases}

    The optimizer's learning rate is the peak η (torch's ``max_lr``). With
    ``cycle_momentum`` the momentum (or Adam's :math:`\beta_1`) runs the other way, from
    ``max_momentum`` down to ``base_momentum`` at the peak and back: a large rate with a
    small momentum. It is *set* at every step (an absolute value, as torch does), so a
    chained scheduler can change the rate but not the momentum. Up to step :math:`T` this
    equals ``torch.optim.lr_scheduler.OneCycleLR(max_lr=η, total_steps=T, ...)`` (two
    phases) bit for bit, rates and momenta, also through ``step(epoch)``; for a tensor rate η is that
    tensor (``max_lr=`` the tensor: the formula runs in its dtype, as torch's does; ``max_lr=0.1`` next to a
    float32 rate of 0.1 is another peak, and its rates can differ in the last bit). As in torch, step
    :math:`T` (the ``step()`` after the last of :math:`T` training steps, whose rate is never
    used) extrapolates the second phase past :math:`\eta_{end}` (with ``"linear"`` the rate
    is then negative), and stepping to :math:`T + 1` raises ``ValueError``.

    Alone, each step evaluates the formula directly (as torch does), and built with
    ``last_epoch`` :math:`= k \ge 0` it sets the formula's rate for step :math:`k + 1` (as
    ``OneCycleLR`` does). Composed, it differs from ``OneCycleLR`` on purpose: when the
    optimizer's rate is not the formula's previous value (another scheduler or a hand changed
    it), the step multiplies it by :math:`\eta_t / \eta_{t-1}` (the chainable form), so a
    factor applied from outside is kept, as by the other schedules here; ``OneCycleLR`` sets
    the formula's rate at every step and drops it. In a ``ChainedScheduler`` with
    ``ExponentialLR(gamma)`` after it, the rate at step :math:`t \ge 1` is
    :math:`\eta_t\gamma^t` here and :math:`\eta_t\gamma` with ``OneCycleLR``.

    Args:
        optimizer: the wrapped optimizer (its lr is the peak).
        total_steps: :math:`T`, steps in the cycle.
        pct_start: :math:`p` in (0, 1), share of the steps spent rising; :math:`1 < pT < T`.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        cycle_momentum: cycle the momentum / :math:`\beta_1` too (the optimizer must have one).
        base_momentum: momentum at the peak rate, in [0, 1).
        max_momentum: momentum at the ends, in [``base_momentum``, 1).
        div_factor: :math:`d > 0`, the start is η/d.
        final_div_factor: :math:`d_{final} > 0`, the end is η/(d·d_final).
        last_epoch: the step to resume from (-1: start).

    Raises:
        TypeError, ValueError: on a bad argument, before the optimizer is touched; ValueError
            when stepped past step :math:`T`, or ``lr_at`` asked for :math:`t > T`.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)
        >>> sched = OneCycle(opt, total_steps=10, pct_start=0.5, anneal_strategy="linear", div_factor=10.0)
        >>> [round(sched.lr_at(t, 1.0), 3) for t in (0, 2, 4, 9)]   # up to the peak at step 4, then down
        [0.1, 0.55, 1.0, 0.0]

    Source: L. N. Smith, N. Topin, "Super-convergence: very fast training of neural networks
    using large learning rates", 2019, §3 (the 1cycle policy).
    """

    def __init__(self, optimizer, total_steps: int, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, last_epoch: int = -1):
        check_optimizer("optimizer", optimizer)
        self.total_steps = check_int("total_steps", total_steps, minimum=2)
        self.pct_start = check_real("pct_start", pct_start, minimum=0.0, maximum=1.0,
                                    strict_minimum=True, strict_maximum=True)
        if not 1 < self.pct_start * self.total_steps < self.total_steps:
            raise ValueError(f"pct_start * total_steps must lie in (1, total_steps), got pct_start={pct_start} "
                             f"with total_steps={total_steps}")
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        if not isinstance(cycle_momentum, bool):
            raise TypeError(f"cycle_momentum must be a bool, got {type(cycle_momentum).__name__}")
        self.base_momentum = check_real("base_momentum", base_momentum, minimum=0.0, maximum=1.0,
                                        strict_maximum=True)
        self.max_momentum = check_real("max_momentum", max_momentum, minimum=self.base_momentum, maximum=1.0,
                                       strict_maximum=True)
        self.div_factor = check_real("div_factor", div_factor, minimum=0.0, strict_minimum=True)
        self.final_div_factor = check_real("final_div_factor", final_div_factor, minimum=0.0, strict_minimum=True)
        if cycle_momentum and "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
            raise ValueError(f"cycle_momentum=True needs an optimizer with momentum or betas, got "
                             f"{type(optimizer).__name__}; pass cycle_momentum=False")
        self.cycle_momentum = cycle_momentum
        self._use_beta1 = "betas" in optimizer.defaults
        self._peak_end = self.pct_start * self.total_steps - 1
        super().__init__(optimizer, last_epoch)

    def _phase(self, t: int):
        """(phase 0 or 1, x) at step t, as torch's OneCycleLR splits the cycle (x > 1 at t = T)."""
        if t <= self._peak_end:
            return 0, (t - 0.0) / (self._peak_end - 0.0)
        return 1, (t - self._peak_end) / (self.total_steps - 1 - self._peak_end)

    def _check_step(self, t: int) -> None:
        if t > self.total_steps:
            raise ValueError(f"OneCycle has total_steps={self.total_steps} steps; step {t} lies past it "
                             f"(accepted: 0 <= t <= total_steps, as torch's OneCycleLR)")

    def lr_at(self, t: int, base_lr: float) -> float:
        self._check_step(t)
        phase, x = self._phase(t)
        low = base_lr / self.div_factor
        if phase == 0:
            return _anneal(low, base_lr, x, self.anneal_strategy)
        return _anneal(base_lr, low / self.final_div_factor, x, self.anneal_strategy)

    def momentum_at(self, t: int) -> float:
        """The momentum (or :math:`\\beta_1`) at step ``t``: max → base over the rise, base → max after."""
        self._check_step(t)
        phase, x = self._phase(t)
        if phase == 0:
            return _anneal(self.max_momentum, self.base_momentum, x, self.anneal_strategy)
        return _anneal(self.base_momentum, self.max_momentum, x, self.anneal_strategy)

    def _next(self, lr, base, t):
        """The rate at step t from the current ``lr``: the formula itself when ``lr`` is the formula's
        value at t - 1 (bit-equal to torch), else the chainable ratio (a rate changed from outside)."""
        if t == 0:
            return self.lr_at(0, base) if float(lr) == float(base) else lr * self.lr_at(0, 1.0)
        if self._is_initial:  # built with last_epoch = t - 1: OneCycleLR sets the formula's rate
            return self.lr_at(t, base)
        if float(lr) == float(self.lr_at(t - 1, base)):
            return self.lr_at(t, base)
        return lr * (self.lr_at(t, 1.0) / self.lr_at(t - 1, 1.0))

    def _set_momentum(self, t: int) -> None:
        if self.cycle_momentum:
            m = self.momentum_at(max(t, 0))
            for group in self.optimizer.param_groups:
                if self._use_beta1:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    group["momentum"] = m

    def step(self, epoch=None) -> None:
        # refuse before last_epoch moves, so a refused step changes nothing
        self._check_step(self.last_epoch + 1 if epoch is None else epoch)
        super().step(epoch)

    def get_lr(self) -> list:
        t = self.last_epoch
        self._check_step(t)
        lrs = [_copy(self._next(group["lr"], base, t)) for group, base in zip(self.optimizer.param_groups,
                                                                               self.base_lrs)]
        self._set_momentum(t)
        return lrs

    def _get_closed_form_lr(self) -> list:
        lrs = super()._get_closed_form_lr()
        self._set_momentum(self.last_epoch)  # step(epoch) sets the momentum too, as torch's OneCycleLR
        return lrs


_WSD_SHAPES = ("linear", "cosine", "sqrt")


class WarmupStableDecay(_Chainable):
    r"""Warm-up, a long constant phase, then a short decay at the end ("WSD", trapezoidal).

    With :math:`W` warm-up steps, :math:`D` decay steps, :math:`T` steps in all, the decay
    starting at :math:`T - D`, :math:`x = (\min(t, T) - (T - D))/D` and a decay shape
    :math:`d(x)` from 1 to 0 (linear :math:`1 - x`, cosine :math:`\tfrac12(1 + \cos\pi x)`,
    or sqrt :math:`1 - \sqrt x`):

    .. math::
        \eta_t = \begin{cases}
        \eta\big(f + (1-f)\,t/W\big) & t < W \\
        \eta & W \le t < T - D \\
        \eta\big(e + (1 - e)\, d(x)\big) & t \ge T - D
        \end{cases}

    then constant at :math:`e\eta`. The stable phase needs no end date, so a run can be
    extended, or several decays branched off one stable run (Hu et al. 2024, MiniCPM §4;
    Hägele et al. 2024, who recommend the sqrt shape over ~20 % of the steps). torch has no
    WSD scheduler; with the linear shape the same rates come from ``SequentialLR`` of
    ``LinearLR(f, 1, W)``, ``ConstantLR(1.0, 0)`` and ``LinearLR(1, e, D)`` with milestones
    :math:`W, T - D`, and with any shape from ``LambdaLR`` of this closed form (tested).

    Args:
        optimizer: the wrapped optimizer.
        warmup_steps: :math:`W \ge 0`.
        decay_steps: :math:`D \ge 1`.
        total_steps: :math:`T \ge W + D`.
        start_factor: :math:`f` in (0, 1], the warm-up's first factor.
        end_factor: :math:`e` in [0, 1], the factor at the end of the decay.
        decay: ``"linear"``, ``"cosine"`` or ``"sqrt"``.
        last_epoch: the step to resume from (-1: start).

    Raises:
        TypeError, ValueError: on a bad argument, before the optimizer is touched.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = WarmupStableDecay(opt, warmup_steps=2, decay_steps=2, total_steps=8, start_factor=0.5)
        >>> [round(sched.lr_at(t, 1.0), 3) for t in range(10)]
        [0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, optimizer, warmup_steps: int, decay_steps: int, total_steps: int,
                 start_factor: float = 0.1, end_factor: float = 0.0, decay: str = "linear", last_epoch: int = -1):
        check_optimizer("optimizer", optimizer)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.decay_steps = check_int("decay_steps", decay_steps, minimum=1)
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        if self.total_steps < self.warmup_steps + self.decay_steps:
            raise ValueError(f"total_steps must be >= warmup_steps + decay_steps ({warmup_steps + decay_steps}), "
                             f"got {total_steps}")
        self.start_factor = check_real("start_factor", start_factor, minimum=0.0, maximum=1.0,
                                       strict_minimum=True)
        self.end_factor = check_real("end_factor", end_factor, minimum=0.0, maximum=1.0)
        self.decay = check_choice("decay", decay, _WSD_SHAPES)
        super().__init__(optimizer, last_epoch)

    def _shape(self, x: float) -> float:
        if self.decay == "linear":
            return 1.0 - x
        if self.decay == "cosine":
            return (1 + math.cos(math.pi * x)) / 2
        return 1.0 - math.sqrt(x)

    def lr_at(self, t: int, base_lr: float) -> float:
        w, start = self.warmup_steps, self.total_steps - self.decay_steps
        if t < w:
            return base_lr * (self.start_factor + (1 - self.start_factor) * t / w)
        if t < start:
            return base_lr
        x = (min(t, self.total_steps) - start) / self.decay_steps
        return base_lr * (self.end_factor + (1 - self.end_factor) * self._shape(x))

    def _next_lr(self, lr, t):
        if t == 0:
            return lr * self.lr_at(0, 1.0)
        if self._is_initial or t > self.total_steps:
            return lr
        return lr * (self.lr_at(t, 1.0) / self.lr_at(t - 1, 1.0))
