"""helpers.data: the digits and two-spirals data sets and the adding problem."""

import math
import os
import subprocess
import sys

import pytest
import torch

from helpers.data import adding_problem, digits, two_spirals


def test_digits_shapes_and_types():
    data = digits()
    assert data.X_train.shape == (1347, 64) and data.X_test.shape == (450, 64)
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.num_features == 64 and data.num_classes == 10
    assert data.train[0] is data.X_train and data.test[1] is data.y_test


def test_digits_standardised_with_training_statistics():
    X = digits().X_train
    varying = X.std(dim=0) > 0
    assert torch.allclose(X.mean(dim=0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(X.std(dim=0, unbiased=False)[varying], torch.ones(int(varying.sum())), atol=1e-4)


def test_digits_split_is_stratified_and_seeded():
    a, b, c = digits(seed=0), digits(seed=0), digits(seed=1)
    assert torch.equal(a.X_train, b.X_train) and not torch.equal(a.X_train, c.X_train)
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47


def test_digits_small_training_set():
    data = digits(n_train=100)
    assert len(data.X_train) == 100 and len(data.X_test) == 450


@pytest.mark.parametrize("kwargs, error, text", [
    ({"test_fraction": 0.0}, ValueError, "test_fraction"),
    ({"test_fraction": 1.0}, ValueError, "test_fraction"),
    ({"test_fraction": "a"}, TypeError, "test_fraction"),
    ({"seed": -1}, ValueError, "seed"),
    ({"n_train": 0}, ValueError, "n_train"),
    ({"n_train": 5000}, ValueError, "n_train must be <= 1347"),
])
def test_digits_bad_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        digits(**kwargs)


def test_digits_to_device():
    data = digits().to("cpu")
    assert data.X_train.device.type == "cpu"


def test_two_spirals_shapes_balance_and_range():
    X, y = two_spirals(201, noise=0.0)
    assert X.shape == (201, 2) and y.shape == (201,)
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(int(y.sum()) - 100) <= 1
    radius = X.norm(dim=1)
    assert radius.min() >= 0.05 - 1e-6 and radius.max() <= 1 + 1e-6


def test_two_spirals_points_lie_on_their_spiral():
    X, y = two_spirals(400, noise=0.0, seed=3, turns=1.5)
    radius = X.double().norm(dim=1)
    angle = torch.atan2(X[:, 1].double(), X[:, 0].double())
    expected = 2 * math.pi * 1.5 * radius + math.pi * y
    # equal modulo 2*pi
    assert torch.allclose(torch.cos(angle - expected), torch.ones(400, dtype=torch.float64), atol=1e-4)


def test_two_spirals_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = two_spirals(50, noise=0.1, seed=7)
    assert torch.equal(state, torch.get_rng_state())
    b = two_spirals(50, noise=0.1, seed=7)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], two_spirals(50, noise=0.1, seed=8)[0])


@pytest.mark.parametrize("kwargs, error", [
    ({"n": 0}, ValueError), ({"n": 2.5}, TypeError), ({"n": 10, "noise": -0.1}, ValueError),
    ({"n": 10, "turns": 0}, ValueError), ({"n": 10, "noise": float("nan")}, ValueError),
])
def test_two_spirals_bad_arguments(kwargs, error):
    with pytest.raises(error):
        two_spirals(**kwargs)


# ---- adding_problem

def test_shapes_types_and_markers():
    X, y = adding_problem(50, 11, seed=3)
    assert X.shape == (50, 11, 2) and y.shape == (50, 1)
    assert X.dtype == torch.float32 and y.dtype == torch.float32
    markers = X[:, :, 1]
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(markers.sum(dim=1), torch.full((50,), 2.0))
    # one marker in each half (the first half is t < T // 2)
    assert torch.equal(markers[:, :5].sum(dim=1), torch.ones(50))
    values = X[:, :, 0]
    assert values.min() >= 0 and values.max() < 1


def test_target_is_the_sum_of_the_marked_values():
    X, y = adding_problem(20, 7, seed=1)
    assert torch.allclose((X[:, :, 0] * X[:, :, 1]).sum(dim=1, keepdim=True), y)


def test_mean_predictor_has_mse_one_sixth():
    _, y = adding_problem(200_000, 4, seed=0)
    assert abs(float(y.mean()) - 1.0) < 0.005
    assert abs(float(((y - 1.0) ** 2).mean()) - 1 / 6) < 0.003


def test_seeded_private_generator():
    torch.manual_seed(0)
    before = torch.rand(1)
    a, b, c = adding_problem(8, 6, seed=0), adding_problem(8, 6, seed=0), adding_problem(8, 6, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    torch.manual_seed(0)
    assert torch.equal(before, torch.rand(1))


def test_shortest_sequence_and_device():
    X, y = adding_problem(3, 2, device=torch.device("cpu"))
    assert torch.equal(X[:, :, 1], torch.ones(3, 2))
    assert torch.allclose(X[:, :, 0].sum(dim=1, keepdim=True), y)


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"n": 0, "seq_len": 5}, ValueError, "n"),
    ({"n": 2.0, "seq_len": 5}, TypeError, "n"),
    ({"n": 2, "seq_len": 1}, ValueError, "seq_len"),
    ({"n": 2, "seq_len": True}, TypeError, "seq_len"),
    ({"n": 2, "seq_len": 5, "seed": -1}, ValueError, "seed"),
])
def test_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        adding_problem(**kwargs)


def _tensors(split):
    return (split.X_train, split.y_train, split.X_test, split.y_test)


def test_digits_cache_gives_the_same_numbers_without_importing_sklearn(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", "off")
    made = digits(seed=3)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    first = digits(seed=3)                      # makes the cache file
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]
    again = digits(seed=3)                      # reads it
    for a, b, c in zip(_tensors(made), _tensors(first), _tensors(again)):
        assert a.dtype == b.dtype == c.dtype and torch.equal(a, b) and torch.equal(a, c)
    code = ("import sys; from helpers.data import digits; digits(seed=3); "
            "assert 'sklearn' not in sys.modules, 'the cache was not used'")
    env = dict(os.environ, COURSE_CACHE=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def _made_and_cached(tmp_path, monkeypatch):
    """digits() without a cache, and the path of the cache file a call with the cache in tmp_path writes."""
    monkeypatch.setenv("COURSE_CACHE", "off")
    made = digits()
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    digits()
    (cached,) = tmp_path.iterdir()
    return made, cached


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(_tensors(a), _tensors(b)))


def test_digits_cache_damaged_or_unwritable_is_skipped(tmp_path, monkeypatch):
    made, cached = _made_and_cached(tmp_path, monkeypatch)
    cached.write_bytes(b"not a zip file")      # damaged: made again, and written again
    assert _same(made, digits())
    assert cached.stat().st_size > 1000
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("COURSE_CACHE", str(blocker / "cache"))   # cannot be created: no cache, same numbers
    assert _same(made, digits())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cached.name, "a file"])


def test_digits_cache_of_other_contents_is_made_again(tmp_path, monkeypatch):
    import numpy as np

    made, cached = _made_and_cached(tmp_path, monkeypatch)
    foreign = {"X": np.zeros((10, 64), dtype=np.float32), "y": np.zeros(10, dtype=np.int32),
               "train": np.arange(5), "test": np.arange(5, 10)}
    scalar = {**foreign, "y": np.array(3)}
    for arrays in (foreign, scalar, {"X": np.zeros(3)}):
        with open(cached, "wb") as f:
            np.savez(f, **arrays)
        assert _same(made, digits())
    np.save(cached.with_suffix(""), np.arange(3))             # a bare .npy at the cache's name
    cached.with_suffix(".npy").rename(cached)
    assert _same(made, digits())
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]   # no temporary file left


@pytest.mark.parametrize("value", ["relative/cache", "0", "~"])
def test_digits_cache_folder_must_be_absolute_or_off(value, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COURSE_CACHE", value)
    if value == "~":                                          # ~ is expanded: the home folder itself
        digits()
        assert any(p.suffix == ".npz" for p in tmp_path.iterdir())
    else:
        with pytest.raises(ValueError, match="COURSE_CACHE must be an absolute folder or 'off'"):
            digits()


def test_digits_bad_device_is_refused_before_the_cache_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="device must name a torch device.*'banana'"):
        digits(device="banana")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("data, error, text", [
    ({"train": (torch.zeros(2, 3), torch.zeros(2))}, TypeError, "got dict .iterating it gives its keys, not batches"),
    ({}, TypeError, "got dict"),
    ("xy", TypeError, "got str .iterating it gives its characters"),
    (b"xy", TypeError, "got bytes"),
    ([], ValueError, "train_data is empty: an empty list holds no .x, y. batch"),
    ((), ValueError, "train_data is empty: an empty tuple"),
])
def test_check_data_refuses_iterables_that_hold_no_batches(data, error, text):
    from helpers.data import check_data

    with pytest.raises(error, match=text):
        check_data("train_data", data, required=True)
    check_data("train_data", [(torch.zeros(2, 3), torch.zeros(2))], required=True)   # a list of batches passes
    check_data("train_data", iter([]), required=True)   # an iterator's emptiness shows only when it is read
