"""Checked claims: a notebook states a measured fact, the code asserts it.

A claim prints a stable sentence (no raw number), so regression runs compare the
sentence while the tolerance absorbs the last-digit differences between machines.
Print the measured number itself in a cell tagged ``nbval-ignore-output``.

Claims about training are made over seeds (:func:`claim_seeds`, :func:`claim_gap`): a
quantity measured on one run is one draw from a distribution, and a threshold tuned to
one draw fails on the next CPU. The statement says what is asserted (the median, every
seed, or k of n seeds), and a comparison must clear the measured spread between seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from helpers._checks import check_real

__all__ = ["claim", "claim_close", "claim_true", "MIN_SEEDS", "seed_spread", "claim_seeds", "claim_gap",
           "describe_seeds"]


def _number(name: str, value) -> float:
    """``value`` as a float: a real number, or a tensor or array holding one. A string, None or several
    numbers are refused (TypeError naming ``name``), even where ``float()`` would take them."""
    if value is None or isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())  # numpy's float() takes only a 0-d array; torch's takes any one element
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as error:  # float()'s message names neither argument nor value
        shape = getattr(value, "shape", None)
        what = f"of shape {tuple(shape)}" if shape is not None else f"({value!r})"
        raise TypeError(f"{name} must be one number (a float, or a tensor or array of one element), got "
                        f"{type(value).__name__} {what}") from error


def _check_bounds(low, high) -> tuple[float | None, float | None]:
    """``low`` and ``high`` as floats or None: at least one given, neither NaN, ``low <= high``."""
    if low is None and high is None:
        raise ValueError("a claim needs low, high or both")
    bounds = {}
    for bound_name, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool):
            raise TypeError(f"{bound_name} must be a real number or None, got {bound!r}")
        bounds[bound_name] = None if bound is None else _number(bound_name, bound)
        if bounds[bound_name] is not None and math.isnan(bounds[bound_name]):
            raise ValueError(f"{bound_name} must be a real number or None, got {bound!r}")
    if low is not None and high is not None and bounds["low"] > bounds["high"]:
        raise ValueError(f"low must be <= high, got low={low!r}, high={high!r}")
    return bounds["low"], bounds["high"]


def claim(statement: str, value: float, *, low: float | None = None, high: float | None = None) -> None:
    """Assert ``low <= value <= high`` and print ``✓ statement``.

    Args:
        statement: the fact, in words, as the learner should read it.
        value: the measured number (a real number, or a tensor or array holding one).
        low, high: the accepted range (either may be omitted, not both).

    Raises:
        AssertionError: naming the statement, the value and the range.
        TypeError: ``value``, ``low`` or ``high`` is not a number (a string, None, several numbers).
        ValueError: no bound, a NaN bound, or ``low > high`` (a range nothing satisfies).

    Example:
        >>> claim("the loss went down", 0.3, high=1.0)
        ✓ the loss went down
    """
    low, high = _check_bounds(low, high)
    value = _number("value", value)
    inside = not math.isnan(value) and (low is None or value >= low) and (high is None or value <= high)
    if not inside:
        raise AssertionError(f"claim failed: {statement}: measured {value!r}, accepted [{low}, {high}]")
    print(f"✓ {statement}")


def claim_close(statement: str, value: float, expected: float, *, rel: float = 0.0, abs: float = 0.0) -> None:
    """Assert ``|value - expected| <= max(rel·max(|value|, |expected|), abs)`` and print ``✓ statement``.

    ``abs`` makes a claim about an expected 0 possible (a relative tolerance alone never
    accepts anything but 0 there). ``value`` and ``expected`` are real numbers, or tensors or
    arrays holding one; ``rel`` and ``abs`` finite real numbers >= 0.

    Raises:
        AssertionError: naming the statement, the two numbers and the tolerances.
        TypeError: an argument is not a number (a string, None, a tensor of several numbers).
        ValueError: a negative or non-finite tolerance.

    Example:
        >>> claim_close("the slope equals the depth", 9.98, 10, rel=0.01)
        ✓ the slope equals the depth
        >>> claim_close("the mean is zero", 3e-9, 0.0, abs=1e-6)
        ✓ the mean is zero
    """
    rel, abs = check_real("rel", rel, minimum=0.0), check_real("abs", abs, minimum=0.0)
    value, expected = _number("value", value), _number("expected", expected)
    if not math.isclose(value, expected, rel_tol=rel, abs_tol=abs):
        raise AssertionError(f"claim failed: {statement}: measured {value!r}, expected {expected!r} "
                             f"± {rel:.0%} (relative) or ± {abs!r} (absolute)")
    print(f"✓ {statement}")


def claim_true(statement: str, condition: bool) -> None:
    """Assert ``condition`` and print ``✓ statement``."""
    try:
        condition = bool(condition)
    except (RuntimeError, ValueError) as error:  # a tensor or array of several values: torch/numpy's message
        raise TypeError(f"condition must be one truth value, got {type(condition).__name__} "
                        f"of {getattr(condition, 'shape', '?')} values; reduce it first (.all(), .any())") from error
    if not condition:
        raise AssertionError(f"claim failed: {statement}")
    print(f"✓ {statement}")


MIN_SEEDS = 5


def _as_array(values, name: str = "values") -> np.ndarray:
    try:
        return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    except (TypeError, ValueError) as error:  # numpy's message names neither the argument nor the value
        raise TypeError(f"{name} must be numbers, one per seed (a sequence, array or tensor), "
                        f"got {values!r}") from error


def _seed_values(name: str, values) -> np.ndarray:
    array = _as_array(values, name)
    if sum(d > 1 for d in array.shape) > 1:
        raise ValueError(f"{name} must hold one value per seed (a 1-D sequence), got shape {array.shape}")
    array = array.reshape(-1)
    if array.size < MIN_SEEDS:
        raise ValueError(f"{name} must hold one value per seed, at least {MIN_SEEDS} seeds, got {array.size}")
    return array


def seed_spread(values) -> dict:
    """Median, quartiles and range of per-seed values (NaN counts as a failed seed and is dropped).

    Example:
        >>> seed_spread([0.9, 0.8, 0.85, 0.95, 0.7])["median"]
        0.85
    """
    array = _as_array(values).reshape(-1)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return {"n": array.size, "finite": 0, "median": math.nan, "q1": math.nan, "q3": math.nan,
                "min": math.nan, "max": math.nan}
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return {"n": array.size, "finite": finite.size, "median": float(median), "q1": float(q1), "q3": float(q3),
            "min": float(finite.min()), "max": float(finite.max())}


def claim_seeds(statement: str, values, *, low: float | None = None, high: float | None = None,
                require: str | int = "median") -> None:
    """Assert a claim about a quantity measured over seeds and print ``✓ statement (what was asserted)``.

    Args:
        statement: the fact, in words.
        values: one number per seed (at least 5); NaN (a diverged run) never satisfies a bound
            (for the median it counts as the worst value).
        low, high: the accepted range (either may be omitted, not both).
        require: ``"median"`` (the median over seeds is in range), ``"all"`` (every seed
            is) or an int k (at least k of the n seeds are).

    Raises:
        AssertionError: naming the statement, the per-seed values and the range.
        TypeError: ``low`` or ``high`` is not a number.
        ValueError: fewer than 5 seeds, no bound, a NaN bound, ``low > high``, or a bad ``require``.

    Example:
        >>> claim_seeds("the deep net trains", [0.91, 0.93, 0.9, 0.95, 0.92], low=0.85, require="all")
        ✓ the deep net trains (all 5 seeds)
        >>> claim_seeds("it beats chance", [0.5, 0.2, 0.6, 0.7, 0.4], low=0.3, require=4)
        ✓ it beats chance (at least 4 of 5 seeds)
    """
    low, high = _check_bounds(low, high)
    array = _seed_values("values", values)
    n = array.size
    inside = np.isfinite(array) & (array >= (-math.inf if low is None else low)) & \
        (array <= (math.inf if high is None else high))
    if require == "median":
        # a NaN (diverged) seed counts as the worst value: below low, or above high when only high is given
        filled = np.where(np.isfinite(array), array, -math.inf if low is not None else math.inf)
        median = float(np.median(filled))
        ok = (low is None or median >= low) and (high is None or median <= high)
        what = f"median of {n} seeds"
    elif require == "all":
        ok, what = bool(inside.all()), f"all {n} seeds"
    elif isinstance(require, int) and not isinstance(require, bool) and 1 <= require <= n:
        ok, what = int(inside.sum()) >= require, f"at least {require} of {n} seeds"
    else:
        raise ValueError(f"require must be 'median', 'all' or an int k in 1..{n}, got {require!r}")
    if not ok:
        raise AssertionError(f"claim failed: {statement}: per-seed values {np.round(array, 6).tolist()}, "
                             f"accepted [{low}, {high}] for the {what}")
    print(f"✓ {statement} ({what})")


def claim_gap(statement: str, better, worse, *, margin: float | None = None) -> None:
    """Assert that ``better`` beats ``worse`` by more than the spread between seeds; print ``✓ statement``.

    The gap is the difference of the medians; it must exceed ``margin``, by default the
    larger of the two interquartile ranges (so a gap that one unlucky seed could close
    does not count). Use values where higher is better (negate a loss). A NaN (a diverged
    seed) counts as the worst value in either group.

    Raises:
        AssertionError: the gap is not larger than the margin (or a median is NaN).

    Example:
        >>> claim_gap("He beats the default init", [0.9, 0.92, 0.91, 0.93, 0.9], [0.1, 0.12, 0.1, 0.11, 0.1])
        ✓ He beats the default init (median gap over 5 seeds beyond their spread)
    """
    a, b = _seed_values("better", better), _seed_values("worse", worse)
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int | float)
                               or not margin >= 0):
        raise ValueError(f"margin must be a number >= 0 or None (the seeds' spread), got {margin!r}")
    sa, sb = seed_spread(a), seed_spread(b)
    spread = max(sa["q3"] - sa["q1"], sb["q3"] - sb["q1"])
    margin = spread if margin is None else float(margin)
    worst = np.where(np.isfinite(a), a, -math.inf), np.where(np.isfinite(b), b, -math.inf)
    gap = float(np.median(worst[0]) - np.median(worst[1]))
    if not (gap > margin):
        raise AssertionError(f"claim failed: {statement}: median gap {gap!r} not above margin {margin!r} "
                             f"(better {np.round(a, 6).tolist()}, worse {np.round(b, 6).tolist()})")
    print(f"✓ {statement} (median gap over {min(a.size, b.size)} seeds beyond their spread)")


def describe_seeds(values: Sequence[float], fmt: str = ".3f") -> str:
    """``median [min, max] over n seeds`` — for the output-ignored cell next to a ✓ sentence.

    Example:
        >>> describe_seeds([0.9, 0.8, 0.85, 0.95, 0.7], ".2f")
        'median 0.85 [0.70, 0.95] over 5 seeds'
    """
    s = seed_spread(values)
    failed = f", {s['n'] - s['finite']} diverged" if s["finite"] < s["n"] else ""
    return f"median {s['median']:{fmt}} [{s['min']:{fmt}}, {s['max']:{fmt}}] over {s['n']} seeds{failed}"
