"""Properties of helpers.schedulers for random settings, searched with hypothesis."""

import copy
import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from helpers.schedulers import CosineAnnealing, ExponentialDecay, LinearDecay, StepDecay, WarmupCosine

BASE_LR = st.floats(1e-4, 10.0)  # above every eta_min drawn below


@st.composite
def schedules(draw):
    """(name, factory(optimizer), eta_min, monotone non-increasing?) for a random schedule."""
    kind = draw(st.sampled_from(["step", "exponential", "linear", "cosine", "warmup_cosine"]))
    total = draw(st.integers(1, 60))
    if kind == "step":
        step_size, gamma = draw(st.integers(1, 10)), draw(st.floats(0.01, 1.0))
        return kind, (lambda o: StepDecay(o, step_size, gamma)), 0.0, True
    if kind == "exponential":
        gamma = draw(st.floats(0.5, 1.0))
        return kind, (lambda o: ExponentialDecay(o, gamma)), 0.0, True
    if kind == "linear":
        end = draw(st.floats(0.0, 1.0))
        return kind, (lambda o: LinearDecay(o, total, end_factor=end)), None, True
    eta_min = draw(st.floats(0.0, 1e-5))
    if kind == "cosine":
        return kind, (lambda o: CosineAnnealing(o, total, eta_min=eta_min)), eta_min, True
    warmup = draw(st.integers(0, total))
    total += 1  # total_steps > warmup_steps
    start = draw(st.floats(0.01, 1.0))
    # the warm-up starts at start_factor * base, which may sit below eta_min
    return kind, (lambda o: WarmupCosine(o, warmup, total, eta_min=eta_min, start_factor=start)), 0.0, False


def _optimizer(lr):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def _trajectory(scheduler, optimizer, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@given(schedules(), BASE_LR, st.integers(1, 120))
def test_learning_rate_stays_between_eta_min_and_the_base_rate(schedule, base, steps):
    _, make, eta_min, _ = schedule
    optimizer = _optimizer(base)
    lrs = _trajectory(make(optimizer), optimizer, steps)
    low = 0.0 if eta_min is None else min(eta_min, base)
    assert all(low * (1 - 1e-12) <= lr <= base * (1 + 1e-12) for lr in lrs)
    assert all(math.isfinite(lr) for lr in lrs)


@given(schedules(), BASE_LR, st.integers(2, 120))
def test_decaying_schedules_never_increase(schedule, base, steps):
    _, make, _, monotone = schedule
    optimizer = _optimizer(base)
    lrs = _trajectory(make(optimizer), optimizer, steps)
    if monotone:
        assert all(b <= a * (1 + 1e-12) for a, b in zip(lrs, lrs[1:]))


@given(st.integers(0, 20), st.integers(1, 40), st.floats(0.01, 1.0), BASE_LR)
def test_warmup_rises_then_the_cosine_falls(warmup, extra, start, base):
    total = warmup + extra
    optimizer = _optimizer(base)
    lrs = _trajectory(WarmupCosine(optimizer, warmup, total, start_factor=start), optimizer, total + 5)
    rise, fall = lrs[:warmup + 1], lrs[warmup:]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(rise, rise[1:]))
    assert all(b <= a * (1 + 1e-12) for a, b in zip(fall, fall[1:]))
    assert math.isclose(lrs[warmup], base, rel_tol=1e-12)


@given(schedules(), BASE_LR, st.integers(0, 60), st.integers(1, 60))
def test_state_dict_round_trip_mid_schedule_gives_the_same_continuation(schedule, base, done, more):
    _, make, _, _ = schedule
    optimizer = _optimizer(base)
    scheduler = make(optimizer)
    _trajectory(scheduler, optimizer, done)
    states = copy.deepcopy((optimizer.state_dict(), scheduler.state_dict()))
    expected = _trajectory(scheduler, optimizer, more)

    # a fresh optimizer and scheduler, built the same way, resumed from the saved states
    # (the optimizer's state holds the current lr, the scheduler's the step count)
    fresh_optimizer = _optimizer(base * 3)
    fresh = make(fresh_optimizer)
    fresh_optimizer.load_state_dict(states[0])
    fresh.load_state_dict(states[1])
    assert _trajectory(fresh, fresh_optimizer, more) == expected
