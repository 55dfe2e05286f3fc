"""Progress bars a learner sees in JupyterLab but regression runs never store.

Bars are drawn with :mod:`tqdm.auto` (a widget in Jupyter, text in a terminal) unless
the environment variable ``COURSE_PROGRESS`` is ``0``: ``make notebooks`` and the
nbval runs set it, because a bar's timings and widget ids differ on every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["ENV_VAR", "progress_enabled", "progress"]

ENV_VAR = "COURSE_PROGRESS"


def progress_enabled(requested: bool = True) -> bool:
    """Whether a bar should be drawn: ``requested`` and not switched off by ``COURSE_PROGRESS=0``."""
    try:
        requested = bool(requested)
    except (RuntimeError, ValueError) as error:  # a tensor or array of several values: torch/numpy's message
        raise TypeError(f"requested must be one truth value (a bool), got {type(requested).__name__}") from error
    return requested and os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def progress(iterable: Iterable, *, total: int | None = None, desc: str | None = None,
             enabled: bool = True, leave: bool = False):
    """Wrap ``iterable`` in a progress bar when :func:`progress_enabled`, else return it unchanged.

    Example:
        >>> for epoch in progress(range(3), desc="epochs", enabled=False):
        ...     pass
    """
    if not isinstance(iterable, Iterable):  # else, with the bar off, the error would come at the loop
        raise TypeError(f"iterable must be an iterable, got {type(iterable).__name__} ({iterable!r})")
    if not progress_enabled(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=leave)
