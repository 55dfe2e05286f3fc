import pytest
import torch

from helpers.data import adding_problem


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
