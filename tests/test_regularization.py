import pytest
import torch
from torch import nn

from helpers.regularization import Dropout, l1_penalty, l2_penalty


def test_penalties_values_and_gradients():
    w = torch.tensor([[1.0, -2.0], [0.0, 3.0]], requires_grad=True)
    b = torch.tensor([-0.5], requires_grad=True)
    l1 = l1_penalty([w, b], coefficient=0.1)
    assert torch.isclose(l1, torch.tensor(0.65))
    l1.backward()
    assert torch.equal(w.grad, 0.1 * torch.sign(w.detach()))       # sign(0) = 0: the subgradient 0
    w.grad = None
    l2 = l2_penalty(w, coefficient=0.2)
    assert torch.isclose(l2, torch.tensor(0.1 * 14.0))
    l2.backward()
    torch.testing.assert_close(w.grad, 0.2 * w.detach())


def test_penalties_accept_generators_and_empty_lists():
    net = nn.Linear(3, 2)
    expected = sum(p.abs().sum() for p in net.parameters())
    torch.testing.assert_close(l1_penalty(net.parameters()), expected)
    assert float(l1_penalty([])) == 0.0 and float(l2_penalty([], 3.0)) == 0.0


def test_l2_penalty_with_sgd_equals_weight_decay():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3).double(), nn.Linear(4, 3).double()
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, weight_decay=0.05)
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    for _ in range(5):
        for net, opt, extra in ((a, opt_a, True), (b, opt_b, False)):
            opt.zero_grad()
            loss = (net(x) - y).square().mean()
            if extra:
                loss = loss + l2_penalty(net.parameters(), 0.05)
            loss.backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [l1_penalty, l2_penalty])
@pytest.mark.parametrize("args, error, text", [
    ((nn.Linear(2, 2),), TypeError, "got a Module; pass model.parameters()"),
    (([1.0, 2.0],), TypeError, r"parameters\[0\] must be a tensor, got float"),
    ((3,), TypeError, "parameters must be a tensor or an iterable of tensors, got int"),
    (([torch.ones(2)], -1.0), ValueError, "coefficient must be >= 0.0, got -1.0"),
    (([torch.ones(2)], float("nan")), ValueError, "coefficient must be finite"),
])
def test_penalties_bad_arguments(fn, args, error, text):
    with pytest.raises(error, match=text):
        fn(*args)


def test_penalty_of_non_finite_weights_is_non_finite():
    assert torch.isinf(l2_penalty([torch.tensor([float("inf")])]))


def test_dropout_same_mask_as_torch_under_the_same_seed():
    x = torch.randn(200, 30)
    for p in (0.1, 0.5, 0.9):
        torch.manual_seed(3)
        ours = Dropout(p)(x)
        torch.manual_seed(3)
        ref = nn.Dropout(p)(x)
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_keeps_the_expected_value(p):
    torch.manual_seed(0)
    x = torch.full((400_000,), 3.0)
    y = Dropout(p)(x)
    assert abs(float(y.mean()) - 3.0) < 0.03
    kept = y != 0
    assert abs(float(kept.float().mean()) - (1 - p)) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 3.0 / (1 - p)))


def test_dropout_gradient_is_the_mask_over_keep():
    torch.manual_seed(0)
    x = torch.randn(50, 4, requires_grad=True)
    y = Dropout(0.3)(x)
    y.sum().backward()
    mask = (y.detach() != 0).float()
    torch.testing.assert_close(x.grad, mask / 0.7)


def test_dropout_eval_and_p_zero_are_the_identity():
    x = torch.randn(10, 5)
    drop = Dropout(0.7).eval()
    assert drop(x) is x
    assert Dropout(0.0)(x) is x


def test_dropout_p_one_drops_everything_but_keeps_the_graph():
    x = torch.randn(6, 3, requires_grad=True)
    y = Dropout(1.0)(x)
    assert torch.equal(y, torch.zeros(6, 3))
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros(6, 3))
    torch.testing.assert_close(nn.Dropout(1.0)(x), y)


def test_dropout_draws_a_new_mask_every_call():
    drop = Dropout(0.5)
    x = torch.ones(1000)
    assert not torch.equal(drop(x), drop(x))


@pytest.mark.parametrize("p, error", [(-0.1, ValueError), (1.1, ValueError), (float("nan"), ValueError),
                                      ("0.5", TypeError), (True, TypeError)])
def test_dropout_bad_p(p, error):
    with pytest.raises(error, match="p must"):
        Dropout(p)
