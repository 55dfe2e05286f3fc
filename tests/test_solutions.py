"""helpers.solutions: a worked solution for every exercise, each one passing its checker."""

import pytest

from helpers import exercises as ex
from helpers import solutions
from helpers.exercises import _registry, show_solution
from helpers.solutions import SOLUTIONS


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch):
    monkeypatch.setattr(_registry, "ATTEMPTED", set())


def test_every_exercise_has_exactly_one_solution_in_notebook_order():
    assert list(SOLUTIONS) == list(ex.EXERCISES)
    assert all(s.exercise == key for key, s in SOLUTIONS.items())


@pytest.mark.parametrize("key", list(SOLUTIONS))
def test_every_solution_is_named_for_its_checker(key):
    """A solution ``f`` is checked by ``check_f``: the name that show_solution prints is the registry's."""
    assert ex.EXERCISES[key].checker.__name__ == f"check_{SOLUTIONS[key].function.__name__}"


@pytest.mark.parametrize("key", list(SOLUTIONS))
def test_every_solution_passes_its_checker(key, capsys):
    solution = SOLUTIONS[key]
    ex.EXERCISES[key].checker(solution.function)
    assert capsys.readouterr().out.strip() == f"Exercise {key} ({ex.EXERCISES[key].title}): correct."
    assert solution.explanation and solution.code.startswith("def ")


def test_show_solution_asks_to_try_first_then_shows_after_an_attempt(capsys):
    show_solution("3.1")
    out = capsys.readouterr().out
    assert "try first" in out and "def xavier_std" not in out
    ex.check_xavier_std(lambda shape: 1.0)       # a wrong attempt counts as trying
    capsys.readouterr()
    show_solution("3.1")
    out = capsys.readouterr().out
    assert "def xavier_std(shape):\n" in out and "return math.sqrt(2 / (fan_in + fan_out))" in out
    assert "Why: " in out and "passes exercises.check_xavier_std" in out


def test_not_attempted_is_not_trying(capsys):
    def mine(shape):
        raise NotImplementedError

    ex.check_xavier_std(mine)
    show_solution("3.1")
    assert "try first" in capsys.readouterr().out


def test_force_shows_it_at_once_and_ids_are_accepted_as_written(capsys):
    show_solution("10.2", force=True)
    assert "def half_life_gamma(k):" in capsys.readouterr().out
    show_solution(4.1, force=True)
    assert "def leaky_relu(x, a):" in capsys.readouterr().out
    ex.show_solution("Exercise 14.1", force=True)
    assert "def split_once" in capsys.readouterr().out


@pytest.mark.parametrize("bad, error", [("3.9", ValueError), ("", ValueError), (None, TypeError), (True, TypeError)])
def test_unknown_exercise_is_refused_with_the_accepted_ids(bad, error):
    with pytest.raises(error, match="exercise"):
        show_solution(bad)


def test_solutions_live_outside_the_tests():
    assert solutions.__file__.endswith("helpers/solutions.py")
