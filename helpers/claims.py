"""Checked claims: a notebook states a measured fact, the code asserts it.

A claim prints a stable sentence (no raw number), so regression runs compare the
sentence while the tolerance absorbs the last-digit differences between machines.
Print the measured number itself in a cell marked ``# NBVAL_IGNORE_OUTPUT``.
"""

from __future__ import annotations

import math


def claim(statement: str, value: float, *, low: float | None = None, high: float | None = None) -> None:
    """Assert ``low <= value <= high`` and print ``✓ statement``.

    Args:
        statement: the fact, in words, as the learner should read it.
        value: the measured number.
        low, high: the accepted range (either may be omitted, not both).

    Raises:
        AssertionError: naming the statement, the value and the range.

    Example:
        >>> claim("the loss went down", 0.3, high=1.0)
        ✓ the loss went down
    """
    if low is None and high is None:
        raise ValueError("claim needs low, high or both")
    value = float(value)
    inside = not math.isnan(value) and (low is None or value >= low) and (high is None or value <= high)
    if not inside:
        raise AssertionError(f"claim failed: {statement}: measured {value!r}, accepted [{low}, {high}]")
    print(f"✓ {statement}")


def claim_close(statement: str, value: float, expected: float, *, rel: float = 0.0, abs: float = 0.0) -> None:
    """Assert ``|value - expected| <= max(rel·max(|value|, |expected|), abs)`` and print ``✓ statement``.

    ``abs`` makes a claim about an expected 0 possible (a relative tolerance alone never
    accepts anything but 0 there).

    Example:
        >>> claim_close("the slope equals the depth", 9.98, 10, rel=0.01)
        ✓ the slope equals the depth
        >>> claim_close("the mean is zero", 3e-9, 0.0, abs=1e-6)
        ✓ the mean is zero
    """
    if not math.isclose(float(value), float(expected), rel_tol=rel, abs_tol=abs):
        raise AssertionError(f"claim failed: {statement}: measured {value!r}, expected {expected!r} "
                             f"± {rel:.0%} (relative) or ± {abs!r} (absolute)")
    print(f"✓ {statement}")


def claim_true(statement: str, condition: bool) -> None:
    """Assert ``condition`` and print ``✓ statement``."""
    if not condition:
        raise AssertionError(f"claim failed: {statement}")
    print(f"✓ {statement}")
