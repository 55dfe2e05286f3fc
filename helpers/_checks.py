"""Argument validation shared by the helpers.

Every check raises before anything is modified, and its message names the argument,
the value received and what is accepted, in the manner of PyTorch's own messages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

import torch

__all__ = ["check_int", "check_bool", "check_real", "check_choice", "check_lr", "check_int_sequence",
           "check_module", "check_optimizer", "check_callable", "check_trainable"]


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """Return ``value`` if it is a bool (True or False); 0/1 and strings are refused."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
    return value


def check_real(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        relation = ">" if strict_minimum else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, got {value!r}")
    if maximum is not None and (value >= maximum if strict_maximum else value > maximum):
        relation = "<" if strict_maximum else "<="
        raise ValueError(f"{name} must be {relation} {maximum}, got {value!r}")
    return value


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of the strings in ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_lr(name: str, value):
    """Return ``value`` (a real number or a one-element real tensor, as torch.optim accepts) if it is >= 0.

    A tensor is returned unchanged, so that it can be updated in place (as schedulers do)
    and enters the arithmetic as a tensor, exactly as in ``torch.optim``.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or not value.is_floating_point():
            raise ValueError(f"{name} as a tensor must have one real floating-point element, got a tensor of "
                             f"shape {tuple(value.shape)} and dtype {value.dtype}")
        check_real(name, float(value), minimum=0.0)
        return value
    check_real(name, value, minimum=0.0)
    return value


def check_int_sequence(name: str, values, *, minimum: int, what: str) -> tuple[int, ...]:
    """Return ``values`` as a non-empty tuple of ints, each at least ``minimum``; ``what`` names one entry."""
    if isinstance(values, int | str) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}")
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must name at least one {what}, got ()")
    return tuple(check_int(f"{name} entries", v, minimum=minimum) for v in values)


def check_module(name: str, value) -> torch.nn.Module:
    """Return ``value`` if it is a ``torch.nn.Module``."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
    return value


def check_optimizer(name: str, value, *, optional: bool = False) -> torch.optim.Optimizer | None:
    """Return ``value`` if it is a ``torch.optim.Optimizer`` (or ``None``, when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, torch.optim.Optimizer):
        accepted = "a torch.optim.Optimizer or None" if optional else "a torch.optim.Optimizer"
        raise TypeError(f"{name} must be {accepted}, got {type(value).__name__}")
    return value


def check_callable(name: str, value, *, optional: bool = False):
    """Return ``value`` if it is callable (or ``None``, when ``optional``)."""
    if value is None and optional:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be callable{' or None' if optional else ''}, got {type(value).__name__}")
    return value


def check_trainable(name: str, model: torch.nn.Module, *, why: str = "") -> torch.nn.Module:
    """Return ``model`` if at least one of its parameters requires a gradient.

    ``why``, when given, is appended to the message (what the caller needs the parameter for).
    """
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{name} has no parameter that requires a gradient{why}")
    return model
