"""Exercises of notebook 12, mixed precision."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from helpers.amp import DynamicLossScaler
from helpers.exercises._core import NotYet, attempt, exercise, one_number, seeded

__all__ = ["check_float_spacing", "check_scale_update", "check_amp_step"]


def _next_up(w: float, dtype: torch.dtype) -> float:
    """The next number of ``dtype`` above the positive finite ``w``, read off the bit pattern."""
    as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[torch.finfo(dtype).bits // 8]
    return float((torch.tensor(w, dtype=dtype).view(as_int) + 1).view(dtype))


@exercise("12.1", "the gap to the next number of a float format")
def check_float_spacing(fn: Callable) -> None:
    r"""Exercise 12.1: ``fn(w, exponent_bits, mantissa_bits)`` returns the gap between the positive
    number ``w`` of the format and the next larger number of the format.

    .. math:: 2^{\,\max(\lfloor \log_2 w \rfloor,\, E_{min}) - m}, \qquad E_{min} = 2 - 2^{e-1}

    A normal :math:`w = 1.b_1\dots b_m \cdot 2^E` moves by one unit of its last mantissa bit, :math:`2^{E-m}`;
    below the smallest normal number (subnormals) the exponent stays at :math:`E_{min}`. An increase
    smaller than half this gap leaves ``w`` unchanged (a decrease at a power of two meets a gap half
    as wide). The reference is the next bit pattern, for float16, bfloat16 and float32, at normal
    numbers, powers of two and subnormals.
    """
    for dtype, e, m in ((torch.float16, 5, 10), (torch.bfloat16, 8, 7), (torch.float32, 8, 23)):
        info = torch.finfo(dtype)
        for raw in (1.0, 3.0, 0.1, 2.0**-3, 1000.0, info.max / 4, info.smallest_normal, info.smallest_normal / 4):
            w = float(torch.tensor(raw, dtype=dtype))        # a number of the format
            expected = _next_up(w, dtype) - w
            value = one_number(attempt(fn, w, e, m), errors=(TypeError, ValueError, OverflowError))
            if math.isclose(value, expected, rel_tol=1e-12):
                continue
            where = f"for w = {w:.6g} in {dtype} ({e} exponent bits, {m} mantissa bits)"
            if w < info.smallest_normal:
                raise NotYet(f"Wrong {where}, a subnormal number: below the smallest normal "
                             "number 2^(2 − 2^(e−1)) the exponent stops at its minimum, so the gap stops shrinking.")
            raise NotYet(f"Wrong {where}. ε = 2^(−m) is the gap just above 1 only; write "
                         "w = 1.b₁…bₘ · 2^E and ask what one unit in the last mantissa bit is worth.")


def _reference_scale_update(scale, tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    if found_inf:
        return scale * backoff_factor, 0
    tracker += 1
    if tracker == growth_interval:
        return scale * growth_factor, 0
    return scale, tracker


@exercise("12.2", "the dynamic scale's update rule")
def check_scale_update(fn: Callable) -> None:
    r"""Exercise 12.2: ``fn(scale, tracker, found_inf, growth_factor, backoff_factor, growth_interval)``.

    Returns ``(new_scale, new_tracker)``: back off and reset on overflow; otherwise count the
    clean step and grow (and reset) when the count reaches ``growth_interval``.
    """
    events = [False, False, True, False, False, False, False, True, True, False, False, False]
    for growth_factor, backoff_factor, interval in ((2.0, 0.5, 3), (1.5, 0.25, 2), (2.0, 0.5, 1)):
        theirs = (1024.0, 0)
        for found_inf in events:
            answer = attempt(fn, theirs[0], theirs[1], found_inf, growth_factor, backoff_factor, interval)
            ours = _reference_scale_update(*theirs, found_inf, growth_factor, backoff_factor, interval)
            try:
                scale, tracker = float(answer[0]), int(answer[1])
            except (TypeError, ValueError, IndexError):
                raise NotYet("Return a pair (new_scale, new_tracker).") from None
            if not (math.isclose(scale, ours[0], rel_tol=1e-9) and tracker == ours[1]):
                raise NotYet("On overflow: scale × backoff_factor and tracker 0. Otherwise the "
                             "tracker counts clean steps; when it REACHES growth_interval the scale is "
                             "multiplied by growth_factor and the tracker goes back to 0.")
            theirs = (scale, tracker)


def _reference_amp_step(model, x, y, optimizer, scaler, max_norm):
    loss = nn.functional.mse_loss(model(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()


def _amp_trace(step: Callable) -> list[tuple[list[torch.Tensor], float]]:
    """The weights and the scale after each of three calls of ``step`` on the same fresh model and data."""
    with seeded(123):
        model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    g = torch.Generator().manual_seed(124)
    x, y = torch.randn(16, 5, generator=g), torch.randn(16, 2, generator=g)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = DynamicLossScaler(init_scale=2.0**12, growth_interval=2)
    trace = []
    for _ in range(3):
        optimizer.zero_grad()
        step(model, x, y, optimizer, scaler, 0.05)
        trace.append(([p.detach().clone() for p in model.parameters()], scaler.get_scale()))
    return trace


@exercise("12.3", "a mixed-precision step in the right order")
def check_amp_step(fn: Callable) -> None:
    r"""Exercise 12.3: ``fn(model, x, y, optimizer, scaler, max_norm)`` does one mixed-precision step.

    Mean squared error loss; the order scale → backward → unscale → clip → step → update.
    Checked over three steps against the reference (weights and the scale after each).
    """
    def learner_step(*args):
        try:
            attempt(fn, *args)
        except RuntimeError as error:
            raise NotYet(f"The scaler refused a call ({error}) Every step calls "
                         "scale → backward → unscale_ → clip → step → update, each once.") from None

    for (want, want_scale), (got, got_scale) in zip(_amp_trace(_reference_amp_step), _amp_trace(learner_step)):
        if got_scale != want_scale:
            raise NotYet("The scale did not change as expected: call scaler.update() once "
                         "at the end of every step.")
        if not all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(got, want)):
            raise NotYet("The weights differ from the reference: compute the MSE loss, "
                         "scaler.scale(loss).backward(), scaler.unscale_(optimizer), THEN clip_grad_norm_ with "
                         "max_norm, then scaler.step(optimizer) and scaler.update().")
