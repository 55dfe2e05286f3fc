import copy

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
    # and the same state entries (SGD without momentum keeps none, as torch's)
    mine, torchs = _run(lambda p: getattr(optim, name)(p, **kwargs), _net())[1], theirs_opt(name, kwargs)
    assert mine.state_dict()["state"].keys() == torchs.state_dict()["state"].keys()


def theirs_opt(name, kwargs):
    return _run(lambda p: getattr(torch.optim, name)(p, **kwargs), _net())[1]


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


# ---- issue 16: complex parameters, tensor learning rates, torch's state dicts (exact equality)

COMPLEX_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.1)),
    ("Adam", dict(lr=0.1, weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.1, weight_decay=0.1)),
    ("AdamW", dict(lr=0.1, amsgrad=True)),
    ("RAdam", dict(lr=0.1)),
    ("RAdam", dict(lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)),
]


def _steps(module, name, kwargs, dtype, steps=12, shape=(3,)):
    g = torch.Generator().manual_seed(0)
    p = nn.Parameter(torch.randn(shape, generator=g, dtype=dtype))
    opt = getattr(module, name)([p], **kwargs)
    for _ in range(steps):
        p.grad = torch.randn(shape, generator=g, dtype=dtype)
        opt.step()
    return p.detach(), opt


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("name, kwargs", COMPLEX_CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in COMPLEX_CASES])
def test_complex_parameters_equal_torch_exactly(name, kwargs, dtype):
    # 12 steps: RAdam's adaptive phase starts after step 5
    ours, _ = _steps(optim, name, kwargs, dtype)
    theirs, _ = _steps(torch.optim, name, kwargs, dtype)
    assert torch.equal(ours, theirs)


WEIGHT_DECAY_CASES = [
    ("SGD", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
]


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("name, kwargs", WEIGHT_DECAY_CASES,
                         ids=[f"{n}-{'-'.join(k)}" for n, k in WEIGHT_DECAY_CASES])
def test_complex_weight_decay_equals_torch_to_the_bit(name, kwargs, dtype):
    # 1000 entries: Adam's L2 term added on the real view instead of in complex arithmetic (as torch's
    # single-tensor kernel, the CPU default, does) differed in ~10 % of them; RAdam's torch adds on the view
    ours, _ = _steps(optim, name, kwargs, dtype, shape=(1000,))
    theirs, _ = _steps(torch.optim, name, dict(kwargs, foreach=False), dtype, shape=(1000,))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RAdam"])
def test_complex_second_moment_is_per_real_part(name):
    p = nn.Parameter(torch.tensor([1 + 2j]))
    p.grad = torch.tensor([0.5 - 1j])
    getattr(optim, name)([p], lr=0.1, weight_decay=0.0).step()
    q = nn.Parameter(torch.tensor([1 + 2j]))
    q.grad = torch.tensor([0.5 - 1j])
    getattr(torch.optim, name)([q], lr=0.1, weight_decay=0.0).step()
    assert torch.equal(p.detach(), q.detach())
    if name != "RAdam":
        torch.testing.assert_close(p.detach(), torch.tensor([0.9 + 2.1j]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("name, kwargs", COMPLEX_CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in COMPLEX_CASES])
def test_real_low_precision_equal_torch_exactly(name, kwargs, dtype):
    ours, _ = _steps(optim, name, kwargs, dtype)
    theirs, _ = _steps(torch.optim, name, kwargs, dtype)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("lr_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, kwargs", COMPLEX_CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in COMPLEX_CASES])
def test_tensor_learning_rate_equals_torch(name, kwargs, lr_dtype):
    kwargs = dict(kwargs, lr=torch.tensor(kwargs["lr"], dtype=lr_dtype))
    ours, _ = _steps(optim, name, kwargs, torch.float64)
    theirs, _ = _steps(torch.optim, name, dict(kwargs, lr=kwargs["lr"].clone()), torch.float64)
    assert torch.equal(ours, theirs)


def test_adam_decoupled_weight_decay_equals_adamw():
    kwargs = dict(lr=0.1, weight_decay=0.3)
    a, _ = _steps(optim, "Adam", dict(kwargs, decoupled_weight_decay=True), torch.float64)
    b, _ = _steps(torch.optim, "Adam", dict(kwargs, decoupled_weight_decay=True), torch.float64)
    c, _ = _steps(optim, "AdamW", kwargs, torch.float64)
    assert torch.equal(a, b) and torch.equal(a, c)


def _resume(module, name, kwargs, state_dict, p0, grads):
    import copy

    p = nn.Parameter(p0.clone())
    opt = getattr(module, name)([p], **kwargs)
    opt.load_state_dict(copy.deepcopy(state_dict))  # loading shares the state's tensors
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def _old_style(state_dict, step_type):
    import copy

    sd = copy.deepcopy(state_dict)
    for s in sd["state"].values():
        if "step" in s:
            s["step"] = step_type(s["step"].item())
    for group in sd["param_groups"]:
        for key in ("decoupled_weight_decay", "foreach", "capturable", "differentiable", "fused"):
            group.pop(key, None)
    return sd


@pytest.mark.parametrize("variant", ["tensor", "int", "float"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.complex128])
@pytest.mark.parametrize("name, kwargs", COMPLEX_CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in COMPLEX_CASES])
def test_state_dict_saved_by_torch_resumes_with_torch_numbers(name, kwargs, dtype, variant):
    p_after, torch_opt = _steps(torch.optim, name, kwargs, dtype, steps=6)
    sd = torch_opt.state_dict()
    if variant != "tensor":
        sd = _old_style(sd, int if variant == "int" else float)
    g = torch.Generator().manual_seed(5)
    grads = [torch.randn(3, generator=g, dtype=dtype) for _ in range(3)]
    ours = _resume(optim, name, kwargs, sd, p_after, grads)
    theirs = _resume(torch.optim, name, kwargs, sd, p_after, grads)
    assert torch.equal(ours, theirs)


def test_state_dict_example_of_the_issue():
    # torch stores step as a float32 tensor; the bias correction must still be computed in double
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    t = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.tensor([0.3], dtype=torch.float64)
    t.step()
    grads = [torch.tensor([0.3], dtype=torch.float64)]
    ours = _resume(optim, "Adam", dict(lr=0.1), t.state_dict(), p.detach(), grads)
    theirs = _resume(torch.optim, "Adam", dict(lr=0.1), t.state_dict(), p.detach(), grads)
    assert ours.item() == theirs.item() == pytest.approx(0.80000000667, abs=1e-11)


@pytest.mark.parametrize("name, kwargs", COMPLEX_CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in COMPLEX_CASES])
def test_our_state_dict_loads_into_torch(name, kwargs):
    p_after, ours = _steps(optim, name, kwargs, torch.float64, steps=6)
    g = torch.Generator().manual_seed(5)
    grads = [torch.randn(3, generator=g, dtype=torch.float64) for _ in range(3)]
    a = _resume(torch.optim, name, kwargs, ours.state_dict(), p_after, grads)
    b = _resume(optim, name, kwargs, ours.state_dict(), p_after, grads)
    assert torch.equal(a, b)


# --- F9: torch's implementation options (foreach, differentiable, fused, capturable)

_OPTIONS = {"SGD": ("foreach", "differentiable", "fused"), "Adam": ("foreach", "capturable", "differentiable", "fused"),
            "AdamW": ("foreach", "capturable", "differentiable", "fused"),
            "RAdam": ("foreach", "capturable", "differentiable")}


@pytest.mark.parametrize("foreach", [None, True, False])
@pytest.mark.parametrize("name, kwargs", COMPLEX_CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in COMPLEX_CASES])
def test_foreach_is_accepted_and_changes_no_number(name, kwargs, foreach):
    plain, _ = _steps(optim, name, kwargs, torch.float64)
    ours, opt = _steps(optim, name, dict(kwargs, foreach=foreach), torch.float64)
    theirs, _ = _steps(torch.optim, name, dict(kwargs, foreach=False), torch.float64)   # torch's per-tensor loop
    assert torch.equal(ours, plain) and torch.equal(ours, theirs)
    assert opt.param_groups[0]["foreach"] is foreach


@pytest.mark.parametrize("name", sorted(_OPTIONS))
def test_the_options_torch_takes_are_taken_when_off_and_stored_as_torch_stores_them(name):
    p = [nn.Parameter(torch.ones(2))]
    off = {"foreach": None, "differentiable": False, "fused": None, "capturable": False}
    ours = getattr(optim, name)(p, lr=0.1, **{k: off[k] for k in _OPTIONS[name]})
    theirs = getattr(torch.optim, name)(p, lr=0.1)
    assert set(ours.param_groups[0]) == set(theirs.param_groups[0])
    assert all(ours.param_groups[0][k] == theirs.param_groups[0][k] for k in _OPTIONS[name])
    if "fused" in _OPTIONS[name]:
        getattr(optim, name)(p, lr=0.1, fused=False)
    missing = {"capturable", "fused"} - set(_OPTIONS[name])
    for option in missing:             # an option torch's optimizer has not: refused as by torch
        with pytest.raises(TypeError, match=option):
            getattr(optim, name)(p, lr=0.1, **{option: False})


@pytest.mark.parametrize("name, option", [(n, o) for n, options in sorted(_OPTIONS.items()) for o in options
                                          if o != "foreach"])
def test_an_option_that_cannot_be_honoured_is_refused_by_name(name, option):
    p = [nn.Parameter(torch.ones(2))]
    getattr(torch.optim, name)(p, lr=0.1, **{option: True})            # torch takes it ...
    with pytest.raises(ValueError, match=rf"{option}=True is not supported by helpers.optim.{name}: .*"
                                         rf"use torch.optim.{name}"):
        getattr(optim, name)(p, lr=0.1, **{option: True})             # ... these updates cannot honour it
    with pytest.raises(TypeError, match=f"{option} must be a bool"):
        getattr(optim, name)(p, lr=0.1, **{option: "yes"})


@pytest.mark.parametrize("name", sorted(_OPTIONS))
def test_a_state_dict_asking_for_an_option_that_cannot_be_honoured_is_refused_before_loading(name):
    p_after, ours = _steps(optim, name, dict(lr=0.1), torch.float64, steps=3)
    saved = copy.deepcopy(ours.state_dict())
    for option in (o for o in _OPTIONS[name] if o != "foreach"):
        asking = copy.deepcopy(saved)
        asking["param_groups"][0][option] = True
        with pytest.raises(ValueError, match=f"{option}=True is not supported"):
            ours.load_state_dict(asking)
        assert ours.param_groups[0][option] in (False, None)
        state = ours.state_dict()["state"]     # SGD without momentum keeps none, as torch's
        assert state.keys() == saved["state"].keys()
        assert all(torch.equal(a, b) for k in state for a, b in zip(state[k].values(), saved["state"][k].values())
                   if torch.is_tensor(a))
    without = copy.deepcopy(saved)
    for option in _OPTIONS[name]:
        without["param_groups"][0].pop(option)     # an older state dict: the defaults come back
    ours.load_state_dict(without)
    assert all(ours.param_groups[0][o] in (None, False) for o in _OPTIONS[name])
