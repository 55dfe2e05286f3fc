"""DynamicLossScaler reproduces torch.amp.GradScaler (which runs on the CPU in torch 2.13)."""

import copy
import math

import pytest
import torch

from helpers.amp import DynamicLossScaler, overflow_fraction

BAD = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def make_pair(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    return model, copy.deepcopy(model)


def run(scaler, model, events, *, lr=0.1, momentum=0.9, clip=None):
    """Train on fixed data; ``events[k]`` is None (clean) or a non-finite value put into a gradient.

    Returns the scale after each update, which steps changed the weights, and the final weights.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)
    scales, stepped, unscaled = [], [], []
    for event in events:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        if event is not None:
            model[0].weight.grad[1, 2] = BAD[event]
        before = [p.detach().clone() for p in model.parameters()]
        scaler.unscale_(optimizer)
        unscaled.append([p.grad.clone() for p in model.parameters()])
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        scales.append(scaler.get_scale())
        stepped.append(any(not torch.equal(b, p) for b, p in zip(before, model.parameters())))
    return scales, stepped, unscaled, [p.detach().clone() for p in model.parameters()]


def pattern(n, every, kinds=("inf",)):
    return [kinds[(k // every) % len(kinds)] if k % every == every - 1 else None for k in range(n)]


SETTINGS = [
    {},
    {"init_scale": 2.0**10, "growth_interval": 3},
    {"init_scale": 1000.0, "growth_factor": 1.5, "backoff_factor": 0.3, "growth_interval": 2},
    {"init_scale": 2.0**126, "growth_factor": 4.0, "growth_interval": 1},  # growth to inf is refused
    {"init_scale": 0.5, "growth_interval": 1},
]
EVENTS = [
    [None] * 12,
    pattern(40, 5, ("inf", "nan", "-inf")),
    ["inf"] * 6 + [None] * 10,
    [None, "nan", None, None, "inf", "inf", None, None, None, None, None, "nan"] * 2,
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
@pytest.mark.parametrize("events", EVENTS, ids=["clean", "periodic", "burst", "mixed"])
def test_same_scales_skips_gradients_and_weights_as_grad_scaler(settings, events):
    ours_model, torch_model = make_pair()
    ours = run(DynamicLossScaler(**settings), ours_model, events)
    theirs = run(torch.amp.GradScaler("cpu", **settings), torch_model, events)
    assert ours[0] == theirs[0]                      # scale after every update
    assert ours[1] == theirs[1]                      # the same steps skipped
    assert ours[1] == [e is None for e in events]    # exactly the overflowing ones
    for a, b in zip(ours[2], theirs[2]):             # unscaled gradients, bit for bit
        for ga, gb in zip(a, b):
            torch.testing.assert_close(ga, gb, rtol=0, atol=0, equal_nan=True)
    for a, b in zip(ours[3], theirs[3]):
        assert torch.equal(a, b)


def test_clipping_after_unscale_matches_torch():
    events = pattern(20, 4)
    ours_model, torch_model = make_pair()
    ours = run(DynamicLossScaler(init_scale=2.0**20, growth_interval=2), ours_model, events, clip=0.05)
    theirs = run(torch.amp.GradScaler("cpu", init_scale=2.0**20, growth_interval=2), torch_model, events, clip=0.05)
    assert ours[0] == theirs[0] and ours[1] == theirs[1]
    for a, b in zip(ours[3], theirs[3]):
        assert torch.equal(a, b)


def test_scale_trajectory_by_hand():
    scaler = DynamicLossScaler(init_scale=8.0, growth_interval=2)
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    trajectory, trackers = [], []
    for overflow in (False, False, False, True, False, False):
        scaler.scale(model(torch.ones(1, 1)).sum()).backward()
        if overflow:
            model.weight.grad.fill_(float("inf"))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        trajectory.append(scaler.get_scale())
        trackers.append(scaler.get_growth_tracker())
    assert trajectory == [8.0, 16.0, 16.0, 8.0, 8.0, 16.0]
    assert trackers == [1, 0, 1, 0, 1, 0]


def test_overflow_in_one_optimizer_skips_both():
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    opt_a, opt_b = (torch.optim.SGD(m.parameters(), lr=1.0) for m in (a, b))
    results = {}
    scalers = {"ours": DynamicLossScaler(init_scale=4.0), "torch": torch.amp.GradScaler("cpu", init_scale=4.0)}
    for name, scaler in scalers.items():
        for m in (a, b):
            m.zero_grad()
        scaler.scale(a(torch.ones(1, 2)).sum() + b(torch.ones(1, 2)).sum()).backward()
        a.weight.grad[0, 0] = float("nan")
        before = b.weight.detach().clone()
        scaler.step(opt_a)
        scaler.step(opt_b)   # b's gradients are finite: b still steps, as in torch
        scaler.update()
        results[name] = (scaler.get_scale(), torch.equal(before, b.weight))
    assert results["ours"] == results["torch"] == (2.0, False)


def test_step_unscales_when_not_done_and_returns_optimizer_result():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = DynamicLossScaler(init_scale=64.0)
    scaler.scale(model(torch.ones(1, 2)).sum()).backward()
    assert scaler.step(optimizer) is None
    torch.testing.assert_close(model.weight.grad, torch.ones(1, 2))


def test_call_order_errors_match_torch():
    for scaler in (DynamicLossScaler(), torch.amp.GradScaler("cpu")):
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler.scale(model(torch.ones(1, 2)).sum()).backward()
        scaler.unscale_(optimizer)
        with pytest.raises(RuntimeError, match="already been called"):
            scaler.unscale_(optimizer)
        scaler.step(optimizer)
        with pytest.raises(RuntimeError, match="after step"):
            scaler.unscale_(optimizer)
        with pytest.raises(RuntimeError, match="already been called"):
            scaler.step(optimizer)
        with pytest.raises(RuntimeError, match="(?i)closure"):
            scaler.step(optimizer, closure=lambda: None)
        scaler.update()


def test_update_needs_a_record_and_new_scale_overrides():
    scaler = DynamicLossScaler(init_scale=4.0)
    with pytest.raises(RuntimeError, match="scale"):
        scaler.update()
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler.scale(model(torch.ones(1, 2)).sum())
    with pytest.raises(RuntimeError, match="no overflow record"):
        scaler.update()
    scaler.update(new_scale=32.0)
    assert scaler.get_scale() == 32.0
    scaler.update(new_scale=torch.tensor(16.0))
    assert scaler.get_scale() == 16.0
    with pytest.raises(ValueError, match="new_scale"):
        scaler.update(new_scale=-1.0)
    assert optimizer is not None


def test_float16_gradients_are_refused_before_anything_changes():
    model = torch.nn.Linear(2, 1).half()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = DynamicLossScaler(init_scale=4.0)
    scaler.scale(model(torch.ones(1, 2, dtype=torch.float16)).sum()).backward()
    grad = model.weight.grad.clone()
    with pytest.raises(ValueError, match="float16"):
        scaler.unscale_(optimizer)
    assert torch.equal(grad, model.weight.grad)


def test_none_gradients_and_empty_optimizers_are_fine():
    used, unused = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(list(used.parameters()) + list(unused.parameters()), lr=0.1)
    scaler = DynamicLossScaler(init_scale=2.0, growth_interval=1)
    scaler.scale(used(torch.ones(1, 2)).sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    assert unused.weight.grad is None and scaler.get_scale() == 4.0


def test_scale_nested_outputs_and_disabled_scaler():
    scaler = DynamicLossScaler(init_scale=4.0)
    a, (b, c) = scaler.scale([torch.ones(1), (torch.ones(2), 2 * torch.ones(1))])
    assert a.item() == 4.0 and b.tolist() == [4.0, 4.0] and c.item() == 8.0
    with pytest.raises(TypeError, match="outputs"):
        scaler.scale(3.0)
    off = DynamicLossScaler(enabled=False)
    loss = torch.ones(())
    assert off.scale(loss) is loss and off.get_scale() == 1.0 and off.state_dict() == {}
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model(torch.ones(1, 1)).sum().backward()
    before = model.weight.detach().clone()
    off.unscale_(optimizer)
    off.step(optimizer)
    off.update()
    assert not torch.equal(before, model.weight)


def test_state_dict_round_trip_and_torch_compatible():
    ours = DynamicLossScaler(init_scale=8.0, growth_interval=3)
    theirs = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    for scaler in (ours, theirs):
        scaler.scale(model(torch.ones(1, 1)).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
    theirs_state = {k: (int(v) if k == "_growth_tracker" else v) for k, v in theirs.state_dict().items()}
    assert ours.state_dict() == theirs_state
    restored = DynamicLossScaler()
    restored.load_state_dict(theirs.state_dict())
    assert restored.state_dict() == ours.state_dict()
    with pytest.raises(ValueError, match="lacks"):
        restored.load_state_dict({"scale": 1.0})


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"init_scale": 0.0}, ValueError, "init_scale"),
    ({"init_scale": float("inf")}, ValueError, "init_scale"),
    ({"growth_factor": 1.0}, ValueError, "growth_factor"),
    ({"backoff_factor": 1.0}, ValueError, "backoff_factor"),
    ({"backoff_factor": 0.0}, ValueError, "backoff_factor"),
    ({"growth_interval": 0}, ValueError, "growth_interval"),
    ({"growth_interval": 2.0}, TypeError, "growth_interval"),
    ({"enabled": 1}, TypeError, "enabled"),
])
def test_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        DynamicLossScaler(**kwargs)


def test_bad_optimizer():
    scaler = DynamicLossScaler()
    with pytest.raises(TypeError, match="optimizer"):
        scaler.unscale_([torch.nn.Parameter(torch.ones(1))])


def test_overflow_fraction():
    values = torch.tensor([1e-9, 2e-8, 1e-7, 1.0, 7e4, -1e6, 0.0, float("nan")])
    under, over = overflow_fraction(values)
    assert (under, over) == (2 / 6, 2 / 6)         # 1e-9 and 2e-8 < 2**-25 round to 0; 7e4 and -1e6 to ±inf
    assert overflow_fraction(values, torch.bfloat16) == (0.0, 0.0)
    assert overflow_fraction(torch.zeros(3)) == (0.0, 0.0)
    with pytest.raises(TypeError, match="values"):
        overflow_fraction(torch.ones(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="dtype"):
        overflow_fraction(torch.ones(2), torch.int32)


def test_sparse_gradients_are_refused_before_anything_changes():
    embedding = torch.nn.Embedding(5, 2, sparse=True)
    dense = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(list(dense.parameters()) + list(embedding.parameters()), lr=0.1)
    scaler = DynamicLossScaler(init_scale=4.0)
    scaler.scale(dense(embedding(torch.tensor([1, 2]))).sum()).backward()
    grad = dense.weight.grad.clone()
    with pytest.raises(ValueError, match="sparse"):
        scaler.unscale_(optimizer)
    assert torch.equal(grad, dense.weight.grad)


# ---- issue 15: gradient accumulation with a loss scaler (unscale once per step, clip after accumulating)

from helpers.amp import accumulation_step  # noqa: E402


def _accumulation_world(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(48, 6, generator=g), torch.randint(0, 3, (48,), generator=g)
    return model, x, y


def _torch_recipe(model, optimizer, scaler, chunks, max_norm, dtype):
    """PyTorch's AMP example: accumulate scaled gradients, unscale once, clip, step, update."""
    for x, y in chunks:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y) / len(chunks)
        scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, None])
@pytest.mark.parametrize("k, max_norm, init_scale", [(4, 0.5, 2.0**24), (3, None, 2.0**16), (1, 1.0, 2.0**30)])
def test_accumulation_step_equals_grad_scaler_recipe(dtype, k, max_norm, init_scale):
    model, x, y = _accumulation_world()
    twin = copy.deepcopy(model)
    ours_opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    theirs_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    ours = DynamicLossScaler(init_scale=init_scale, growth_interval=2)
    theirs = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=2)
    skipped = []
    for step in range(8):
        rows = torch.arange(step * 6, step * 6 + 48) % 48
        chunks = list(zip(x[rows].chunk(k), y[rows].chunk(k)))
        before = [p.detach().clone() for p in twin.parameters()]
        out = accumulation_step(model, ours_opt, ours, chunks, torch.nn.functional.cross_entropy,
                                max_norm=max_norm, dtype=dtype)
        _torch_recipe(twin, theirs_opt, theirs, chunks, max_norm, dtype)
        skipped.append(out.skipped)
        assert out.skipped == all(torch.equal(b, p) for b, p in zip(before, twin.parameters()))
        assert ours.get_scale() == theirs.get_scale()
        for a, b in zip(model.parameters(), twin.parameters()):
            assert torch.equal(a, b)
            assert a.grad is None or not a.grad.any()
    if dtype is torch.float16 and init_scale >= 2.0**24:
        assert any(skipped)  # the large start overflows in float16 and backs off, like GradScaler


def test_accumulation_equals_one_big_batch_and_clips_the_accumulated_gradient():
    model, x, y = _accumulation_world()
    big = copy.deepcopy(model)
    loss = torch.nn.functional.cross_entropy(big(x), y)
    loss.backward()
    full_norm = float(torch.nn.utils.clip_grad_norm_(big.parameters(), 0.1))
    torch.optim.SGD(big.parameters(), lr=0.5).step()
    chunks = list(zip(x.chunk(4), y.chunk(4)))
    out = accumulation_step(model, torch.optim.SGD(model.parameters(), lr=0.5), DynamicLossScaler(),
                            chunks, torch.nn.functional.cross_entropy, max_norm=0.1, dtype=None)
    assert out.grad_norm == pytest.approx(full_norm, rel=1e-5) and out.grad_norm > 0.1
    assert out.loss == pytest.approx(float(loss.detach()), rel=1e-5)
    for a, b in zip(model.parameters(), big.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # clipping each micro-batch instead would clip parts whose norms are each below the whole's
    parts = []
    for cx, cy in chunks:
        m = copy.deepcopy(big)
        torch.nn.functional.cross_entropy(m(cx), cy).div(4).backward()
        parts.append(float(torch.nn.utils.clip_grad_norm_(m.parameters(), math.inf)))
    assert max(parts) < out.grad_norm


@pytest.mark.parametrize("kwargs, error, text", [
    ({"micro_batches": []}, ValueError, "micro_batches"),
    ({"micro_batches": [(1, 2, 3)]}, ValueError, "micro_batches"),
    ({"micro_batches": "xy"}, TypeError, "micro_batches must be a list or tuple"),
    ({"micro_batches": None}, TypeError, "micro_batches"),
    ({"micro_batches": [3]}, TypeError, r"micro_batches\[0\]"),
    ({"max_norm": 0.0}, ValueError, "max_norm"),
    ({"dtype": torch.int32}, TypeError, "dtype"),
    ({"scaler": object()}, TypeError, "scaler"),
    ({"loss_fn": 3}, TypeError, "loss_fn"),
    ({"optimizer": "sgd"}, TypeError, "optimizer"),
])
def test_accumulation_step_bad_arguments_modify_nothing(kwargs, error, text):
    model, x, y = _accumulation_world()
    weights = [p.detach().clone() for p in model.parameters()]
    args = {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1), "scaler": DynamicLossScaler(),
            "micro_batches": [(x[:8], y[:8])], "loss_fn": torch.nn.functional.cross_entropy}
    args.update(kwargs)
    with pytest.raises(error, match=text):
        accumulation_step(**args)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def _chunks(x, y, k=3):
    return list(zip(x[:24].chunk(k), y[:24].chunk(k)))


@pytest.mark.parametrize("bad, error, text", [
    (("x", None), TypeError, r"micro_batches\[3\] x must be a tensor, got str"),
    ((torch.zeros(8, 10), None), TypeError, r"micro_batches\[3\] y must be a tensor, got NoneType"),
    ((torch.zeros(8, 10), torch.zeros(5, dtype=torch.long)), ValueError, r"micro_batches\[3\].*8 and 5"),
    ((torch.zeros(8, 10), torch.tensor(1)), ValueError, r"micro_batches\[3\] y.*0-d"),
])
def test_accumulation_step_checks_every_micro_batch_before_the_first_backward(bad, error, text):
    model, x, y = _accumulation_world()
    with pytest.raises(error, match=text):
        accumulation_step(model, torch.optim.SGD(model.parameters(), lr=0.1), DynamicLossScaler(),
                          _chunks(x, y) + [bad], torch.nn.functional.cross_entropy)
    assert all(p.grad is None for p in model.parameters())  # no scaled gradient left behind


@pytest.mark.parametrize("had_grads", [False, True])
def test_accumulation_step_failing_midway_puts_the_gradients_back(had_grads):
    model, x, y = _accumulation_world()
    if had_grads:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    weights = [p.detach().clone() for p in model.parameters()]
    bad = (torch.zeros(8, 7), y[:8])  # the wrong number of features: the forward pass raises
    scaler = DynamicLossScaler()
    with pytest.raises(RuntimeError):
        accumulation_step(model, torch.optim.SGD(model.parameters(), lr=0.1), scaler,
                          _chunks(x, y) + [bad], torch.nn.functional.cross_entropy)
    for p, g, w in zip(model.parameters(), grads, weights):
        assert torch.equal(p.detach(), w)
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)
    out = accumulation_step(model, torch.optim.SGD(model.parameters(), lr=0.1), scaler, _chunks(x, y),
                            torch.nn.functional.cross_entropy, dtype=None)  # the scaler still works
    assert not out.skipped


@pytest.mark.parametrize("kind", ["ours", "torch"])
def test_accumulation_step_skipped_is_the_scalers_decision(kind):
    """A disabled scaler steps on inf gradients (the weights turn NaN): skipped must say False."""
    def make(enabled):
        return (DynamicLossScaler(enabled=enabled) if kind == "ours"
                else torch.amp.GradScaler("cpu", enabled=enabled))

    def inf_loss(out, target):
        return torch.nn.functional.cross_entropy(out, target) * math.inf

    for enabled in (False, True):
        model, x, y = _accumulation_world()
        before = [p.detach().clone() for p in model.parameters()]
        out = accumulation_step(model, torch.optim.SGD(model.parameters(), lr=0.1), make(enabled),
                                _chunks(x, y), inf_loss, dtype=None)
        stepped = not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert out.skipped == (not stepped) == enabled
