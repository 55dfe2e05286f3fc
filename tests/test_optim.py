import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import optim
from helpers.training import fit


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def _run(make_optimizer, net, steps=100, sparse_grad=False):
    """Train ``net`` for ``steps`` full-batch steps of a regression and return its parameters."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randn(32, 2, generator=g, dtype=torch.float64)
    params = list(net.parameters())
    # one group with a different lr, to exercise parameter groups
    optimizer = make_optimizer([{"params": params[:2], "lr_scale": 1}, {"params": params[2:]}])
    for step in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(net(X[step % 4 * 8:(step % 4 + 1) * 8]), y[step % 4 * 8:(step % 4 + 1) * 8])
        loss.backward()
        if step % 7 == 3:
            params[0].grad = None  # a parameter without gradient at some steps
        optimizer.step()
    return [p.detach().clone() for p in params], optimizer


CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.05)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.0)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("RAdam", dict(lr=0.01)),
    ("RAdam", dict(lr=0.01, weight_decay=0.05)),
    ("RAdam", dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.01, betas=(0.9, 0.9))),
]


@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in CASES])
def test_100_steps_equal_torch(name, kwargs):
    ours, _ = _run(lambda p: getattr(optim, name)(p, **kwargs), _net())
    theirs, _ = _run(lambda p: getattr(torch.optim, name)(p, **kwargs), _net())
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    moved = sum(float((a - b).abs().sum()) for a, b in zip(ours, [p.detach() for p in _net().parameters()]))
    assert moved > 1e-3  # the comparison is not between two untouched networks


def test_adamw_decay_differs_from_adam_l2():
    ours, _ = _run(lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1), _net())
    l2, _ = _run(lambda p: optim.Adam(p, lr=0.01, weight_decay=0.1), _net())
    assert max(float((a - b).abs().max()) for a, b in zip(ours, l2)) > 1e-3


def test_radam_first_steps_are_momentum_sgd():
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = optim.RAdam([w], lr=0.1)
    m = 0.0
    for t in range(1, 6):
        w.grad = torch.tensor([0.5 * t], dtype=torch.float64)
        before = float(w.detach())
        opt.step()
        m = 0.9 * m + 0.1 * 0.5 * t
        assert float(w.detach()) == pytest.approx(before - 0.1 * m / (1 - 0.9 ** t), rel=1e-12)
    assert optim.RAdam.rectification(5, 0.999) is None and optim.RAdam.rectification(6, 0.999) > 0
    assert optim.RAdam.rectification(10**6, 0.999) == pytest.approx(1.0, rel=1e-3)


def test_state_dict_round_trip_resumes_identically():
    X = torch.randn(16, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def steps(net, opt, n):
        for _ in range(n):
            opt.zero_grad()
            net(X).pow(2).mean().backward()
            opt.step()

    for make in (lambda p: optim.SGD(p, lr=0.05, momentum=0.9), lambda p: optim.Adam(p, lr=0.01),
                 lambda p: optim.RAdam(p, lr=0.01)):
        straight = _net()
        opt = make(straight.parameters())
        steps(straight, opt, 20)
        first = _net()
        opt = make(first.parameters())
        steps(first, opt, 10)
        resumed = _net(seed=5)
        resumed.load_state_dict(first.state_dict())
        opt2 = make(resumed.parameters())
        opt2.load_state_dict(opt.state_dict())
        steps(resumed, opt2, 10)
        for a, b in zip(straight.parameters(), resumed.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_works_with_fit_and_a_torch_scheduler():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    history = fit(net, (X, y), epochs=2, optimizer=opt, loss_fn=F.cross_entropy, scheduler=sched,
                  progress=False, batch_size=16)
    assert history.lr == [0.1] * 4 + [0.05] * 4 and not history.diverged


def test_closure_is_evaluated_and_returned():
    w = nn.Parameter(torch.tensor([2.0]))
    for opt in (optim.SGD([w], lr=0.1), optim.Adam([w]), optim.RAdam([w])):
        def closure(opt=opt):
            opt.zero_grad()
            loss = (w ** 2).sum()
            loss.backward()
            return loss
        assert float(opt.step(closure).detach()) > 0


def test_sparse_gradient_is_refused():
    w = nn.Parameter(torch.zeros(3))
    w.grad = torch.zeros(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        optim.SGD([w], lr=0.1).step()


@pytest.mark.parametrize("make, error, text", [
    (lambda p: optim.SGD(p, lr=-0.1), ValueError, "lr"),
    (lambda p: optim.SGD(p, lr="fast"), TypeError, "lr"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), ValueError, "momentum"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "dampening"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1.0), ValueError, "weight_decay"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (lambda p: optim.Adam(p, betas=0.9), TypeError, "betas"),
    (lambda p: optim.AdamW(p, eps=-1e-8), ValueError, "eps"),
    (lambda p: optim.RAdam(p, betas=(-0.1, 0.999)), ValueError, r"betas\[0\]"),
    (lambda p: optim.RAdam(p, weight_decay=float("nan")), ValueError, "weight_decay"),
])
def test_bad_arguments(make, error, text):
    with pytest.raises(error, match=text):
        make([nn.Parameter(torch.zeros(2))])
