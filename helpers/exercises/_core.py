"""The registry of the exercises and what every checker shares.

A checker is written once, as the body of its exercise, and registered with
:func:`exercise`::

    @exercise("2.3", "how fast the input gradient explodes")
    def check_exploding_exponent(fn):
        for depth in (3, 7, 12):
            value = one_number(attempt(fn, depth))    # "Return one number." unless float() takes it
            if value != depth + 1:
                raise NotYet("Count the weight matrices between x and the loss.")

The decorator adds what every checker has in common: the learner's answer must be a
function; the body runs inside :func:`torch.random.fork_rng`, so no checker moves the
learner's global random state; and one line is printed from what the body did:

* it called :func:`attempt` on a function that raised ``NotImplementedError`` -- "not attempted yet";
* it raised :class:`NotYet` -- "not yet." and the hint;
* it returned -- "correct.".

Most bodies compare a tensor answer with a reference; :func:`expect_close` is that check::

    expect_close(fn, (x.clone(), v), x.clamp(-v, v), tol=1e-12,
                 hint="Entries inside [−v, v] stay as they are.")
"""

from __future__ import annotations

import contextlib
import functools
import re
import textwrap
from collections.abc import Callable, Iterator

import torch

from helpers.exercises import _registry
from helpers.exercises._registry import EXERCISES, Exercise, NotAttempted, NotYet
from helpers.solutions import SOLUTIONS, exercise_id

__all__ = ["EXERCISES", "Exercise", "NotYet", "attempt", "attempted", "close", "exercise", "expect_close",
           "one_number", "seeded", "show_solution"]


def attempt(fn: Callable, *args):
    """Return ``fn(*args)``; a ``NotImplementedError`` ends the check with "not attempted yet"."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise NotAttempted from None


def one_number(answer, hint: str = "Return one number.", *,
               errors: tuple[type[Exception], ...] = (TypeError, ValueError)) -> float:
    """``float(answer)``, or :class:`NotYet` with ``hint`` when ``float`` raises one of ``errors``."""
    try:
        return float(answer)
    except errors:
        raise NotYet(hint) from None


def close(a, b, tol: float = 1e-5) -> bool:
    """Whether ``a`` is a tensor of ``b``'s shape equal to it within ``tol`` (relative and absolute), in float64."""
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(
        a.double(), b.double(), rtol=tol, atol=tol)


def expect_close(fn: Callable, args: tuple, expected: torch.Tensor, *, hint: str, tol: float = 1e-5) -> None:
    """Raise :class:`NotYet` with ``hint`` unless ``fn(*args)`` is :func:`close` to ``expected`` within ``tol``.

    The answer comes from :func:`attempt`, so a ``NotImplementedError`` still means "not attempted
    yet". ``expected`` is computed by the caller before ``fn`` runs; pass ``fn`` copies of the inputs
    it is computed from (``x.clone()``), so that an answer that writes into them changes nothing.
    """
    if not close(attempt(fn, *args), expected, tol):
        raise NotYet(hint)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global CPU generator for a block that needs it (module inits), then restore it.

    Only the CPU generator is seeded: ``torch.manual_seed`` would also queue a seed for CUDA,
    which :func:`torch.random.fork_rng` with ``devices=[]`` does not restore.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def exercise(number: str, title: str) -> Callable[[Callable], Callable[[Callable], None]]:
    """Register the decorated body as the checker of exercise ``number`` (see the module docstring).

    The returned checker takes the learner's function, runs the body on it inside
    ``torch.random.fork_rng(devices=[])``, prints one line and returns nothing.

    Args:
        number: the exercise's id, "<notebook>.<k>" ("3.1" is the first exercise of notebook 03);
            the key of :data:`EXERCISES` and of :data:`helpers.solutions.SOLUTIONS`.
        title: a few words, printed in every line: "Exercise 3.1 (<title>): correct."

    Raises:
        ValueError: at registration, when ``number`` is not "<notebook>.<k>" (two positive integers)
            or is already registered: an id names one exercise.
        TypeError: (from the checker) when the learner's answer is not callable.
    """
    def register(body: Callable[[Callable], None]) -> Callable[[Callable], None]:
        @functools.wraps(body)
        def checker(fn: Callable) -> None:
            if not callable(fn):
                raise TypeError(f"the solution of exercise {number} must be a function, got {type(fn).__name__}")
            with torch.random.fork_rng(devices=[]):       # the learner's random state is theirs
                ok, hint = _verdict(body, fn)
            _report(number, ok, hint)

        _check_new_id(number, body.__module__, body.__qualname__)
        EXERCISES[number] = Exercise(number, title, checker)
        return checker

    return register


_ID = re.compile(r"[1-9][0-9]*\.[1-9][0-9]*")


def _check_new_id(number: str, module: str, qualname: str) -> None:
    if not (isinstance(number, str) and _ID.fullmatch(number)):
        raise ValueError(f"an exercise id is '<notebook>.<k>' with two positive integers, like '3.1'; got {number!r}")
    taken = EXERCISES[number].checker if number in EXERCISES else None
    if taken is not None and (taken.__module__, taken.__qualname__) != (module, qualname):  # not a reload
        raise ValueError(f"exercise {number} is already registered, by {taken.__module__}.{taken.__name__}; "
                         f"give the new one the next free id of its notebook")


def _verdict(body: Callable[[Callable], None], fn: Callable) -> tuple[bool | None, str]:
    try:
        body(fn)
    except NotAttempted:
        return None, ""
    except NotYet as wrong:
        return False, str(wrong)
    return True, ""


def _report(number: str, ok: bool | None, hint: str) -> None:
    title = f"Exercise {number} ({EXERCISES[number].title})"
    if ok is None:
        print(f"{title}: not attempted yet. Replace `raise NotImplementedError` with your code.")
        return
    _registry.ATTEMPTED.add(number)
    print(f"{title}: correct." if ok else f"{title}: not yet. {hint}")


def attempted() -> frozenset[str]:
    """The exercises whose checker has checked an attempt (right or wrong) in this session."""
    return frozenset(_registry.ATTEMPTED)


def show_solution(exercise, *, force: bool = False) -> None:
    """Print the worked solution of ``exercise`` (e.g. ``"3.1"``) once you have tried it.

    Shown when the exercise's checker has checked an attempt of yours in this session, or
    with ``force=True``; otherwise a note asks you to try first. Prints, returns nothing.
    """
    key = exercise_id(exercise)
    solution, registered = SOLUTIONS[key], EXERCISES[key]
    title, checker = f"Exercise {key} ({registered.title})", registered.checker.__name__
    if not force and key not in attempted():
        print(f"{title}: try first. Write your function, run its checker cell "
              f"(exercises.{checker}), then ask again; show_solution({key!r}, force=True) shows it now.")
        return
    print(f"{title}: a worked solution (it passes exercises.{checker}).\n")
    print(solution.code)
    print()
    print(textwrap.fill(f"Why: {solution.explanation}", width=100))
