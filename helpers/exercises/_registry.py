"""The exercises' shared state: the registry, what was attempted, and the verdict exceptions.

Kept apart from :mod:`helpers.exercises._core`, which holds the logic, so that reloading
``_core`` after an edit (IPython's autoreload) keeps what the notebook modules registered
and the exception classes their checkers raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ATTEMPTED", "EXERCISES", "Exercise", "NotAttempted", "NotYet"]


@dataclass(frozen=True)
class Exercise:
    """One registered exercise: its id ("3.1" is the first of notebook 03), title and checker."""

    number: str
    title: str
    checker: Callable[[Callable], None]


EXERCISES: dict[str, Exercise] = {}
"""Every exercise of the course by id, filled by ``@exercise`` (:mod:`helpers.exercises._core`) as the modules load."""

ATTEMPTED: set[str] = set()
"""The ids whose checker has checked an attempt (right or wrong) in this session."""


class NotYet(Exception):
    """Raised by a checker's body: the answer is wrong, and the message is the hint printed after "not yet."."""


class NotAttempted(Exception):
    """The learner's function still raises ``NotImplementedError``."""
