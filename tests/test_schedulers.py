import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as torch_sched

from helpers.schedulers import (
    CosineAnnealing,
    ExponentialDecay,
    LinearDecay,
    StepDecay,
    WarmupCosine,
    cosine,
)


def _optimizer(lrs=(0.5, 0.02)):
    groups = [{"params": [nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def _sequence(make, steps):
    """Learning rates of every group at steps 0..steps-1 (read before each step, as fit does)."""
    opt = _optimizer()
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return np.array(out)


PAIRS = {
    "step": (lambda o: StepDecay(o, step_size=7, gamma=0.3), lambda o: torch_sched.StepLR(o, 7, gamma=0.3), 50),
    "step-default-gamma": (lambda o: StepDecay(o, 3), lambda o: torch_sched.StepLR(o, 3), 20),
    "exponential": (lambda o: ExponentialDecay(o, 0.95), lambda o: torch_sched.ExponentialLR(o, 0.95), 60),
    "linear-to-0": (lambda o: LinearDecay(o, 40), lambda o: torch_sched.LinearLR(
        o, start_factor=1.0, end_factor=0.0, total_iters=40), 40),
    "linear-to-0.1-and-after": (lambda o: LinearDecay(o, 30, end_factor=0.1), lambda o: torch_sched.LinearLR(
        o, start_factor=1.0, end_factor=0.1, total_iters=30), 60),
    "cosine": (lambda o: CosineAnnealing(o, 50), lambda o: torch_sched.CosineAnnealingLR(o, T_max=50), 51),
    "cosine-eta-min": (lambda o: CosineAnnealing(o, 33, eta_min=0.001),
                       lambda o: torch_sched.CosineAnnealingLR(o, T_max=33, eta_min=0.001), 34),
    "warmup-cosine": (lambda o: WarmupCosine(o, 10, 60, eta_min=0.001, start_factor=0.1),
                      lambda o: torch_sched.SequentialLR(o, [
                          torch_sched.LinearLR(o, start_factor=0.1, total_iters=10),
                          torch_sched.CosineAnnealingLR(o, T_max=50, eta_min=0.001)], milestones=[10]), 61),
    "warmup-cosine-f0.5": (lambda o: WarmupCosine(o, 4, 12, start_factor=0.5),
                           lambda o: torch_sched.SequentialLR(o, [
                               torch_sched.LinearLR(o, start_factor=0.5, total_iters=4),
                               torch_sched.CosineAnnealingLR(o, T_max=8)], milestones=[4]), 13),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # SequentialLR's own deprecation notes
@pytest.mark.parametrize("name", list(PAIRS))
def test_learning_rates_equal_torch(name):
    ours, theirs, steps = PAIRS[name]
    # torch's chainable forms accumulate rounding errors step by step; ours are closed forms
    np.testing.assert_allclose(_sequence(ours, steps), _sequence(theirs, steps), rtol=1e-9, atol=1e-12)


def test_cosine_equals_torch_closed_form_and_then_stays_at_eta_min():
    T, eta, eta_min = 20, 0.5, 0.01
    closed = [eta_min + (eta - eta_min) * (1 + math.cos(math.pi * t / T)) / 2 for t in range(T + 1)]
    ours = _sequence(lambda o: CosineAnnealing(o, T, eta_min=eta_min), 2 * T)[:, 0]
    np.testing.assert_allclose(ours[:T + 1], closed, rtol=1e-12)
    np.testing.assert_allclose(ours[T:], eta_min, rtol=1e-12)
    assert cosine(0, T, eta) == eta  # the 1/2 makes it start at the chosen rate


def test_seed_001_cosine_without_the_half_starts_at_twice_the_rate():
    wrong = [0.1 * (1 + math.cos(math.pi * t / 10)) for t in range(11)]
    assert wrong[0] == pytest.approx(0.2) and cosine(0, 10, 0.1) == pytest.approx(0.1)


def test_warmup_cosine_after_total_stays_at_eta_min():
    lrs = _sequence(lambda o: WarmupCosine(o, 3, 10, eta_min=0.002), 15)[:, 0]
    assert lrs[0] == pytest.approx(0.05) and lrs[3] == pytest.approx(0.5)
    np.testing.assert_allclose(lrs[10:], 0.002)
    lrs0 = _sequence(lambda o: WarmupCosine(o, 0, 10), 11)[:, 0]
    np.testing.assert_allclose(lrs0, _sequence(lambda o: CosineAnnealing(o, 10), 11)[:, 0])


@pytest.mark.parametrize("make", [lambda o: StepDecay(o, 4, 0.5), lambda o: ExponentialDecay(o, 0.9),
                                  lambda o: LinearDecay(o, 20, 0.2), lambda o: CosineAnnealing(o, 20, 0.01),
                                  lambda o: WarmupCosine(o, 5, 20, 0.01)])
def test_state_dict_round_trip_mid_schedule(make):
    full = _sequence(make, 20)
    opt = _optimizer()
    sched = make(opt)
    for _ in range(8):
        opt.step()
        sched.step()
    state = copy.deepcopy(sched.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    opt2 = _optimizer(lrs=(9.0, 9.0))   # a fresh run with other settings, then resumed
    sched2 = make(opt2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    resumed = []
    for _ in range(12):
        resumed.append([g["lr"] for g in opt2.param_groups])
        opt2.step()
        sched2.step()
    np.testing.assert_allclose(np.array(resumed), full[8:], rtol=1e-12)


@pytest.mark.parametrize("make, error, text", [
    (lambda o: StepDecay(o, 0), ValueError, "step_size"),
    (lambda o: StepDecay(o, 2.5), TypeError, "step_size"),
    (lambda o: ExponentialDecay(o, 0.0), ValueError, "gamma"),
    (lambda o: LinearDecay(o, 10, end_factor=1.5), ValueError, "end_factor"),
    (lambda o: CosineAnnealing(o, 0), ValueError, "total_steps"),
    (lambda o: CosineAnnealing(o, 10, eta_min=-1.0), ValueError, "eta_min"),
    (lambda o: WarmupCosine(o, 10, 10), ValueError, "total_steps"),
    (lambda o: WarmupCosine(o, 2, 10, start_factor=0.0), ValueError, "start_factor"),
    (lambda o: StepDecay("sgd", 2), TypeError, "optimizer"),
])
def test_bad_arguments_modify_nothing(make, error, text):
    opt = _optimizer()
    with pytest.raises(error, match=text):
        make(opt)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.02]
    assert all("initial_lr" not in g for g in opt.param_groups)


# ---- issue 16: the schedules are chainable (recursive get_lr), as torch's, and keep a closed form

from torch.optim import lr_scheduler as L  # noqa: E402

from helpers import schedulers as S  # noqa: E402

T16 = 10
PAIRS16 = {  # ours, torch's counterpart (equal up to T16 steps), exact: bit-for-bit
    "StepDecay": (lambda o: S.StepDecay(o, 3, gamma=0.5), lambda o: L.StepLR(o, 3, gamma=0.5), True),
    "ExponentialDecay": (lambda o: S.ExponentialDecay(o, 0.9), lambda o: L.ExponentialLR(o, 0.9), True),
    "LinearDecay": (lambda o: S.LinearDecay(o, T16, end_factor=0.1),
                    lambda o: L.LinearLR(o, 1.0, 0.1, total_iters=T16), True),
    "CosineAnnealing": (lambda o: S.CosineAnnealing(o, T16, eta_min=0.01),
                        lambda o: L.CosineAnnealingLR(o, T16, eta_min=0.01), True),
    # SequentialLR(LinearLR, CosineAnnealingLR) resets the rate to the closed form at its milestone (step 3),
    # undoing a chained scheduler's or a hand's change made during the warm-up: WarmupCosine does the same
    "WarmupCosine": (lambda o: S.WarmupCosine(o, 3, T16, eta_min=0.0, start_factor=0.2),
                     lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.2, total_iters=3),
                                                  L.CosineAnnealingLR(o, T16 - 3, eta_min=0.0)], milestones=[3]),
                     True),
}


def _warmup_closed(t):
    return S.WarmupCosine(_opt16(1.0), 3, T16, eta_min=0.0, start_factor=0.2).lr_at(t, 1.0)


def test_warmup_cosine_alone_equals_sequential_lr():
    def theirs(o):
        return L.SequentialLR(o, [L.LinearLR(o, 0.2, total_iters=3), L.CosineAnnealingLR(o, T16 - 3, eta_min=0.0)],
                              milestones=[3])

    np.testing.assert_allclose(_trace(PAIRS16["WarmupCosine"][0]), _trace(theirs), rtol=1e-12)


def _opt16(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1)), ], lr=lr)


def _lr(o):
    return float(o.param_groups[0]["lr"])


def _trace(make, lr=0.5, *, steps=T16, manual=None, chain=None, resume_at=None):
    """Learning rates over ``steps`` steps; ``manual``: step at which the rate is multiplied by 0.1 by hand;
    ``chain``: a torch scheduler stepped after ours; ``resume_at``: rebuild everything from state dicts there."""
    o = _opt16(lr)
    scheds = [make(o)] + ([chain(o)] if chain else [])
    out = [_lr(o)]
    for t in range(steps):
        o.step()
        for s in scheds:
            s.step()
        if manual == t:
            for g in o.param_groups:
                g["lr"] = g["lr"] * 0.1
        if resume_at == t:
            o2 = _opt16(lr)  # torch's order: build, then load the optimizer's state, then the schedulers'
            new = [make(o2)] + ([chain(o2)] if chain else [])
            o2.load_state_dict(o.state_dict())
            for a, b in zip(new, scheds):
                a.load_state_dict(b.state_dict())
            o, scheds = o2, new
        out.append(_lr(o))
    return out


def _assert_same(ours, theirs, exact):
    if exact:
        assert ours == theirs
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def _variant(variant: str) -> dict:
    """_trace's keywords for a composition variant: chained with ExponentialLR, a manual change, resumed."""
    kw = {}
    if "chained" in variant:
        kw["chain"] = lambda o: L.ExponentialLR(o, 0.9)
    if variant == "manual":
        kw["manual"] = 4
    if "resumed" in variant:
        kw["resume_at"] = 5
    return kw


@pytest.mark.parametrize("name", sorted(PAIRS16))
@pytest.mark.parametrize("variant", ["alone", "chained", "manual", "resumed", "chained+resumed"])
def test_composes_like_its_torch_counterpart(name, variant):
    ours, theirs, exact = PAIRS16[name]
    kw = _variant(variant)
    _assert_same(_trace(ours, **kw), _trace(theirs, **kw), exact)


def test_issue_example_cosine_and_exponential_chained():
    def run(cos, exp):
        o = _opt16(0.5)
        chained = L.ChainedScheduler([cos(o), exp(o)])
        for _ in range(4):
            o.step()
            chained.step()
        return _lr(o)

    ours = run(lambda o: S.CosineAnnealing(o, total_steps=10), lambda o: S.ExponentialDecay(o, gamma=0.9))
    theirs = run(lambda o: L.CosineAnnealingLR(o, T_max=10), lambda o: L.ExponentialLR(o, gamma=0.9))
    assert ours == theirs == pytest.approx(0.2147, abs=1e-4)


def test_manual_change_under_step_decay_is_kept():
    o = _opt16(1.0)
    s = S.StepDecay(o, step_size=3, gamma=0.5)
    o.step()
    s.step()
    o.param_groups[0]["lr"] *= 0.1
    o.step()
    s.step()
    assert _lr(o) == pytest.approx(0.1)
    o.step()
    s.step()
    assert _lr(o) == pytest.approx(0.05)


@pytest.mark.parametrize("name", sorted(PAIRS16))
def test_inside_sequential_lr_like_torch(name):
    ours, theirs, exact = PAIRS16[name]

    def seq(make):
        return lambda o: L.SequentialLR(o, [L.ConstantLR(o, 0.5, total_iters=2), make(o)], milestones=[4])

    if name == "WarmupCosine":  # at the milestone SequentialLR calls step(0): the closed form, then recursion
        o = _opt16(0.5)
        expected = [0.25, 0.25, 0.5, 0.5] + [S.WarmupCosine(o, 3, T16, 0.0, 0.2).lr_at(t, 0.5) for t in range(7)]
        np.testing.assert_allclose(_trace(seq(ours)), expected, rtol=1e-12)
    else:
        np.testing.assert_allclose(_trace(seq(ours)), _trace(seq(theirs)), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(PAIRS16))
@pytest.mark.parametrize("lr_dtype", [torch.float32, torch.float64])
def test_tensor_learning_rate_like_torch(name, lr_dtype):
    ours, theirs, exact = PAIRS16[name]
    a = _trace(ours, lr=torch.tensor(0.5, dtype=lr_dtype), chain=lambda o: L.ExponentialLR(o, 0.9))
    b = _trace(theirs, lr=torch.tensor(0.5, dtype=lr_dtype), chain=lambda o: L.ExponentialLR(o, 0.9))
    _assert_same(a, b, exact and lr_dtype == torch.float64)
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(PAIRS16))
def test_closed_form_is_kept_for_reading_and_for_step_with_epoch(name):
    ours, _, _ = PAIRS16[name]
    o = _opt16(0.5)
    s = ours(o)
    alone = _trace(ours)
    for t in range(T16 + 1):
        s.last_epoch = t
        assert s._get_closed_form_lr()[0] == pytest.approx(alone[t], rel=1e-12)
        assert s.lr_at(t, 0.5) == pytest.approx(alone[t], rel=1e-12)


# ---- issue 15: one-cycle (equal to OneCycleLR, momentum included) and warmup-stable-decay (closed form)


def _cycle_trace(make, optimizer="sgd", steps=40, lr=0.5):
    """(lr, momentum or beta1) before each step."""
    p = torch.nn.Parameter(torch.zeros(1))
    o = (torch.optim.SGD([p], lr=lr, momentum=0.9) if optimizer == "sgd"
         else torch.optim.Adam([p], lr=lr) if optimizer == "adam" else torch.optim.SGD([p], lr=lr))
    s = make(o)
    out = []
    for _ in range(steps):
        g = o.param_groups[0]
        out.append((float(g["lr"]), g["betas"][0] if "betas" in g else g["momentum"]))
        o.step()
        s.step()
    return np.array(out)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "plain-sgd"])
@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("steps, pct, div, final",
                         [(40, 0.25, 25.0, 1e4), (17, 0.5, 10.0, 100.0), (100, 0.3, 4.0, 1e3)])
def test_one_cycle_equals_torch_rates_and_momenta(optimizer, strategy, steps, pct, div, final):
    kw = {"pct_start": pct, "anneal_strategy": strategy, "div_factor": div, "final_div_factor": final,
          "base_momentum": 0.8, "max_momentum": 0.93}
    ours = _cycle_trace(lambda o: S.OneCycle(o, steps, **kw), optimizer, steps)
    theirs = _cycle_trace(lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=steps, **kw), optimizer, steps)
    np.testing.assert_array_equal(ours, theirs)  # bit for bit


def _cycle_pairs(make, steps, lr, optimizer="sgd", by_epoch=False):
    """(lr, momentum or beta1) at steps 0..steps, stepping with step() or step(epoch)."""
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.SGD([p], lr=lr, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam([p], lr=lr)
    s = make(o)
    out = []
    for t in range(steps + 1):
        g = o.param_groups[0]
        out.append((float(g["lr"]), g["betas"][0] if "betas" in g else g["momentum"]))  # a tensor rate: in place
        o.step()
        if t < steps:
            if by_epoch:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch's deprecation of step(epoch)
                    s.step(t + 1)
            else:
                s.step()
    return out


@pytest.mark.parametrize("by_epoch", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("strategy, steps, lr", [("cos", 1000, 0.5), ("linear", 1000, 1e-3), ("cos", 37, 0.1)])
def test_one_cycle_is_bit_equal_to_torch_over_long_runs_including_step_t(by_epoch, optimizer, strategy, steps, lr):
    """The recursive ratio drifted (cos T=1000: 960 rates differ); alone the formula is evaluated directly.
    Step T (torch extrapolates the second phase) included; step(epoch) sets the momentum too, as torch."""
    ours = _cycle_pairs(lambda o: S.OneCycle(o, steps, anneal_strategy=strategy), steps, lr, optimizer, by_epoch)
    theirs = _cycle_pairs(lambda o: L.OneCycleLR(o, max_lr=lr, total_steps=steps, anneal_strategy=strategy),
                          steps, lr, optimizer, by_epoch)
    assert ours == theirs


@pytest.mark.parametrize("by_epoch", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("strategy, steps, lr", [("cos", 50, 0.1), ("linear", 100, 0.37), ("cos", 1000, 3e-3)])
def test_one_cycle_with_a_tensor_lr_is_bit_equal_to_torch_given_that_tensor_as_max_lr(by_epoch, dtype, strategy,
                                                                                        steps, lr):
    # the peak is the optimizer's rate: a tensor's formula runs in its dtype, as OneCycleLR(max_lr=tensor) does
    peak = torch.tensor(lr, dtype=dtype)
    ours = _cycle_pairs(lambda o: S.OneCycle(o, steps, anneal_strategy=strategy), steps, peak.clone(),
                        by_epoch=by_epoch)
    theirs = _cycle_pairs(lambda o: L.OneCycleLR(o, max_lr=peak.clone(), total_steps=steps, anneal_strategy=strategy),
                          steps, peak.clone(), by_epoch=by_epoch)
    assert ours == theirs
    if dtype == torch.float64:      # the same number as a Python float: the same rates
        assert ours == _cycle_pairs(lambda o: L.OneCycleLR(o, max_lr=lr, total_steps=steps, anneal_strategy=strategy),
                                    steps, peak.clone(), by_epoch=by_epoch)


def test_one_cycle_reference_for_a_float32_tensor_lr_is_its_own_peak():
    # OneCycleLR(max_lr=0.1) on a float32 rate of 0.1 anneals from another peak (0.1, not 0.1000000015): torch's own
    # rates then differ in the last float32 bit from OneCycleLR(max_lr=float(rate)); no schedule that reads the
    # peak from the optimizer can match both, and OneCycle matches OneCycleLR given the optimizer's own peak
    def rates(max_lr):
        return [r for r, _ in _cycle_pairs(lambda o: L.OneCycleLR(o, max_lr=max_lr, total_steps=100), 100,
                                           torch.tensor(0.1))]

    assert rates(0.1) != rates(float(torch.tensor(0.1)))
    ours = [r for r, _ in _cycle_pairs(lambda o: S.OneCycle(o, 100), 100, torch.tensor(0.1))]
    assert ours == rates(torch.tensor(0.1))


def test_one_cycle_step_epoch_sets_the_momentum():
    o = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)
    s = S.OneCycle(o, 10, pct_start=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.step(4)  # the peak: base momentum
    assert o.param_groups[0]["momentum"] == s.momentum_at(4) == 0.85
    assert o.param_groups[0]["lr"] == s.lr_at(4, 1.0) == 1.0


def test_one_cycle_past_total_steps_raises_like_torch_and_changes_nothing():
    o = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5, momentum=0.9)
    s = S.OneCycle(o, 10, anneal_strategy="linear")
    for _ in range(10):
        o.step()
        s.step()
    assert s.last_epoch == 10 and o.param_groups[0]["lr"] < 0  # torch's extrapolated step T, never used
    before = (s.last_epoch, dict(o.param_groups[0]))
    with pytest.raises(ValueError, match="total_steps=10"):
        s.step()
    assert (s.last_epoch, dict(o.param_groups[0])) == before
    with pytest.raises(ValueError, match="total_steps"):
        s.lr_at(11, 1.0)
    t = L.OneCycleLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5), max_lr=0.5, total_steps=10)
    for _ in range(10):
        t.optimizer.step()
        t.step()
    with pytest.raises(ValueError):
        t.step()


def test_one_cycle_without_momentum_cycling_leaves_momentum_and_ends_like_torch():
    lrs = _cycle_trace(lambda o: S.OneCycle(o, 20, cycle_momentum=False), "sgd", 20)
    assert (lrs[:, 1] == 0.9).all()
    assert lrs[0, 0] == pytest.approx(0.5 / 25) and lrs[:, 0].max() == pytest.approx(0.5)
    assert lrs[19, 0] == pytest.approx(0.5 / 25 / 1e4, rel=1e-12)
    plain = _cycle_trace(lambda o: S.OneCycle(o, 20), "plain-sgd", 5)  # torch cycles a plain SGD's momentum too
    assert plain[0, 1] == pytest.approx(0.95)


def _wsd_closed(t, eta, W, D, T, f, e, shape):
    if t < W:
        return eta * (f + (1 - f) * t / W)
    if t < T - D:
        return eta
    x = (min(t, T) - (T - D)) / D
    d = {"linear": 1 - x, "cosine": (1 + math.cos(math.pi * x)) / 2, "sqrt": 1 - math.sqrt(x)}[shape]
    return eta * (e + (1 - e) * d)


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt"])
@pytest.mark.parametrize("W, D, T, f, e", [(5, 10, 40, 0.1, 0.0), (0, 3, 12, 0.5, 0.1), (4, 16, 20, 0.01, 0.0)])
def test_warmup_stable_decay_follows_its_closed_form_and_lambda_lr(shape, W, D, T, f, e):
    expected = [[_wsd_closed(t, lr, W, D, T, f, e, shape) for lr in (0.5, 0.02)] for t in range(T + 5)]
    ours = _sequence(lambda o: S.WarmupStableDecay(o, W, D, T, start_factor=f, end_factor=e, decay=shape), T + 5)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)
    lam = _sequence(lambda o: L.LambdaLR(o, lambda t: _wsd_closed(t, 1.0, W, D, T, f, e, shape)), T + 5)
    np.testing.assert_allclose(ours, lam, rtol=1e-12, atol=1e-15)


@pytest.mark.filterwarnings("ignore::UserWarning")  # SequentialLR's own deprecation notes
@pytest.mark.parametrize("W, D, T, f, e", [(20, 44, 220, 0.1, 0.0), (3, 5, 12, 0.5, 0.2)])
def test_linear_warmup_stable_decay_equals_sequential_lr_of_linear_ramps(W, D, T, f, e):
    ours = _sequence(lambda o: S.WarmupStableDecay(o, W, D, T, start_factor=f, end_factor=e), T + 1)
    theirs = _sequence(lambda o: L.SequentialLR(o, [
        L.LinearLR(o, f, 1.0, total_iters=W), L.ConstantLR(o, 1.0, total_iters=0),
        L.LinearLR(o, 1.0, e, total_iters=D)], milestones=[W, T - D]), T + 1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-15)


def _ratio_reference(closed):
    """A chainable torch reference: the first factor at construction (as LinearLR), then MultiplicativeLR."""
    def make(o):
        for g in o.param_groups:
            g["lr"] = g["lr"] * closed(0)
        return L.MultiplicativeLR(o, lambda t: closed(t) / closed(t - 1) if closed(t - 1) else 1.0)
    return make


NEW15 = {
    "OneCycle": (lambda o: S.OneCycle(o, T16, pct_start=0.3, cycle_momentum=False),
                 lambda t: S.OneCycle(_opt16(1.0), T16, pct_start=0.3, cycle_momentum=False).lr_at(t, 1.0)),
    "WarmupStableDecay": (lambda o: S.WarmupStableDecay(o, 2, 4, T16, start_factor=0.2, end_factor=0.05),
                          lambda t: _wsd_closed(t, 1.0, 2, 4, T16, 0.2, 0.05, "linear")),
}


@pytest.mark.parametrize("name", sorted(NEW15))
@pytest.mark.parametrize("variant", ["alone", "chained", "manual", "resumed", "chained+resumed"])
def test_new_schedules_compose_like_a_chainable_torch_reference(name, variant):
    ours, closed = NEW15[name]
    kw = _variant(variant)
    np.testing.assert_allclose(_trace(ours, **kw), _trace(_ratio_reference(closed), **kw), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(NEW15))
def test_new_schedules_in_chained_scheduler_like_the_product_of_factors(name):
    ours, closed = NEW15[name]
    o = _opt16(0.5)
    chained = L.ChainedScheduler([ours(o), L.ExponentialLR(o, 0.9)])
    got = [_lr(o)]
    for _ in range(T16):
        o.step()
        chained.step()
        got.append(_lr(o))
    np.testing.assert_allclose(got, [0.5 * closed(t) * 0.9 ** t for t in range(T16 + 1)], rtol=1e-12)


@pytest.mark.parametrize("make, error, text", [
    (lambda o: S.OneCycle(o, 10, pct_start=0.05), ValueError, "pct_start"),
    (lambda o: S.OneCycle(o, 10, pct_start=1.0), ValueError, "pct_start"),
    (lambda o: S.OneCycle(o, 10, anneal_strategy="exp"), ValueError, "anneal_strategy"),
    (lambda o: S.OneCycle(o, 10, div_factor=0.0), ValueError, "div_factor"),
    (lambda o: S.OneCycle(o, 10, base_momentum=0.9, max_momentum=0.8), ValueError, "max_momentum"),
    (lambda o: S.OneCycle(o, 10.0), TypeError, "total_steps"),
    (lambda o: S.WarmupStableDecay(o, 5, 6, 10), ValueError, "total_steps"),
    (lambda o: S.WarmupStableDecay(o, 2, 0, 10), ValueError, "decay_steps"),
    (lambda o: S.WarmupStableDecay(o, 2, 2, 10, decay="exp"), ValueError, "decay"),
    (lambda o: S.WarmupStableDecay(o, 2, 2, 10, start_factor=0.0), ValueError, "start_factor"),
    (lambda o: S.WarmupStableDecay(o, 2, 2, 10, end_factor=1.5), ValueError, "end_factor"),
])
def test_new_schedules_bad_arguments_modify_nothing(make, error, text):
    opt = _optimizer()
    momenta = [g["momentum"] for g in opt.param_groups]
    with pytest.raises(error, match=text):
        make(opt)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.02]
    assert [g["momentum"] for g in opt.param_groups] == momenta
    assert all("initial_lr" not in g for g in opt.param_groups)


def test_one_cycle_needs_momentum_to_cycle_it():
    class NoMomentum(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

        def step(self, closure=None):
            return None

    opt = NoMomentum([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="cycle_momentum"):
        S.OneCycle(opt, 10)
    assert opt.param_groups[0]["lr"] == 0.1
    S.OneCycle(opt, 10, cycle_momentum=False)


# ---- built with last_epoch = k on a rate that is not the closed form: torch's "initial step" rule


def _resumed_trace(make, k, steps, lr=0.37, initial_lr=1.0, optimizer="sgd", **group_keys):
    """(lr, momentum or beta1) before each of ``steps`` steps of a schedule built with ``last_epoch=k``."""
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.Adam([p], lr=lr) if optimizer == "adam" else torch.optim.SGD([p], lr=lr, momentum=0.9)
    o.param_groups[0].update(initial_lr=initial_lr, **group_keys)  # torch requires initial_lr when k >= 0
    s = make(o, k)
    out = []
    for _ in range(steps):
        g = o.param_groups[0]
        out.append((g["lr"], g["betas"][0] if "betas" in g else g["momentum"]))
        o.step()
        s.step()
    return out


RESUMED = {  # ours, torch's, built with last_epoch=k (T16 = 10 steps in all)
    "StepDecay": (lambda o, k: S.StepDecay(o, 3, 0.5, last_epoch=k), lambda o, k: L.StepLR(o, 3, 0.5, last_epoch=k)),
    "ExponentialDecay": (lambda o, k: S.ExponentialDecay(o, 0.9, last_epoch=k),
                         lambda o, k: L.ExponentialLR(o, 0.9, last_epoch=k)),
    "LinearDecay": (lambda o, k: S.LinearDecay(o, T16, 0.1, last_epoch=k),
                    lambda o, k: L.LinearLR(o, 1.0, 0.1, T16, last_epoch=k)),
    "CosineAnnealing": (lambda o, k: S.CosineAnnealing(o, T16, 0.01, last_epoch=k),
                        lambda o, k: L.CosineAnnealingLR(o, T16, 0.01, last_epoch=k)),
}


@pytest.mark.parametrize("name", sorted(RESUMED))
@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 8])
@pytest.mark.parametrize("lr", [0.37, 1.0, 0.5])
def test_built_with_last_epoch_like_torch(name, k, lr):
    # CosineAnnealing set its closed form at construction (0.9045 instead of keeping 1.0, hostile r2)
    ours, theirs = RESUMED[name]
    steps = T16 - k  # up to step T16 (CosineAnnealingLR rises again after it)
    assert _resumed_trace(ours, k, steps, lr) == _resumed_trace(theirs, k, steps, lr)


def test_cosine_built_with_last_epoch_issue_example():
    trace = _resumed_trace(lambda o, k: S.CosineAnnealing(o, 20, last_epoch=k), 3, 3, lr=1.0)
    assert [round(lr, 6) for lr, _ in trace] == [1.0, 0.943665, 0.877706]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 6, 8])
@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_one_cycle_built_with_last_epoch_like_torch(optimizer, k, strategy):
    # OneCycleLR sets its formula's rate (and momentum) at construction, whatever the optimizer's rate
    peak, div, final, steps = 0.8, 25.0, 1e4, T16 - k - 1  # built at step k + 1, stepped up to T16
    ours = _resumed_trace(lambda o, k: S.OneCycle(o, T16, anneal_strategy=strategy, last_epoch=k), k, steps,
                          lr=0.37, initial_lr=peak, optimizer=optimizer)
    theirs = _resumed_trace(lambda o, k: L.OneCycleLR(o, peak, T16, anneal_strategy=strategy, last_epoch=k), k,
                            steps, lr=0.37, initial_lr=peak / div, optimizer=optimizer, max_lr=peak,
                            min_lr=peak / div / final, max_momentum=0.95, base_momentum=0.85)
    assert ours == theirs


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 7])
def test_warmup_cosine_built_with_last_epoch_keeps_the_rate_then_goes_on(k):
    # SequentialLR has no working last_epoch; the parts' rule: keep the rate, LinearLR's ratios up to W - 1,
    # the closed form at the milestone W = 3 (unless the construction step lands on it), then cosine ratios
    W, eta_min, lr = 3, 0.01, 0.37
    ours = [r for r, _ in _resumed_trace(lambda o, k: S.WarmupCosine(o, W, T16, eta_min, 0.2, last_epoch=k), k,
                                         T16 - k, lr)]
    if k < W - 1:
        warm = [r for r, _ in _resumed_trace(lambda o, k: L.LinearLR(o, 0.2, 1.0, W, last_epoch=k), k, W - 1 - k, lr)]
        rest = [r for r, _ in _resumed_trace(lambda o, k: L.CosineAnnealingLR(o, T16 - W, eta_min), -1, T16 - W + 1,
                                             lr=1.0)]
        assert ours == warm + rest
    else:
        rest = [r for r, _ in _resumed_trace(lambda o, k: L.CosineAnnealingLR(o, T16 - W, eta_min, last_epoch=k),
                                             k - W, T16 - k, lr)]
        assert ours == rest


# ---- WarmupCosine composes like SequentialLR(LinearLR, CosineAnnealingLR), which resets at its milestone


def _sequential(W, T, eta_min, f):
    return lambda o: L.SequentialLR(o, [L.LinearLR(o, f, total_iters=W), L.CosineAnnealingLR(o, T - W, eta_min)],
                                    milestones=[W])


def test_warmup_cosine_chained_issue_example():
    chain = {"chain": lambda o: L.ExponentialLR(o, 0.9)}
    ours = _trace(lambda o: S.WarmupCosine(o, 3, 20, start_factor=0.2), lr=1.0, steps=4, **chain)
    theirs = _trace(_sequential(3, 20, 0.0, 0.2), lr=1.0, steps=4, **chain)
    assert ours == theirs
    assert [round(r, 4) for r in ours] == [0.2, 0.42, 0.594, 0.9, 0.8031]  # reset to the closed form 1.0 at step 3


@pytest.mark.parametrize("W, eta_min, f", [(1, 0.0, 0.5), (3, 0.01, 0.2), (5, 0.05, 0.1), (9, 0.0, 1.0)])
@pytest.mark.parametrize("variant", [dict(chain=lambda o: L.ExponentialLR(o, 0.9)), dict(manual=1), dict(manual=6),
                                     dict(resume_at=2), dict(chain=lambda o: L.StepLR(o, 2, 0.5), resume_at=0)])
def test_warmup_cosine_equals_sequential_lr_bit_for_bit_when_composed(W, eta_min, f, variant):
    ours = _trace(lambda o: S.WarmupCosine(o, W, T16, eta_min, f), **variant)
    assert ours == _trace(_sequential(W, T16, eta_min, f), **variant)


@pytest.mark.parametrize("lr_dtype", [torch.float32, torch.float64])
def test_warmup_cosine_milestone_with_a_tensor_rate_like_sequential_lr(lr_dtype):
    chain = {"chain": lambda o: L.ExponentialLR(o, 0.9)}
    ours = _trace(lambda o: S.WarmupCosine(o, 4, T16, 0.01, 0.3), lr=torch.tensor(0.5, dtype=lr_dtype), **chain)
    assert ours == _trace(_sequential(4, T16, 0.01, 0.3), lr=torch.tensor(0.5, dtype=lr_dtype), **chain)


def test_one_cycle_chained_keeps_the_outer_factor_where_one_cycle_lr_drops_it():
    # the documented difference: with ExponentialLR(gamma) after it, eta_t * gamma**t here, eta_t * gamma in torch
    gamma, closed = 0.5, S.OneCycle(_opt16(1.0), T16).lr_at
    chain = {"chain": lambda o: L.ExponentialLR(o, gamma), "lr": 1.0, "steps": T16 - 1}
    ours = _trace(lambda o: S.OneCycle(o, T16, cycle_momentum=False), **chain)
    theirs = _trace(lambda o: L.OneCycleLR(o, 1.0, T16, cycle_momentum=False), **chain)
    np.testing.assert_allclose(ours, [closed(t, 1.0) * gamma**t for t in range(T16)], rtol=1e-12)
    np.testing.assert_allclose(theirs, [closed(t, 1.0) * (gamma if t else 1.0) for t in range(T16)], rtol=1e-12)


# ---- F8: last_epoch is checked like torch accepts it (an int >= -1), before the optimizer changes

_EVERY_SCHEDULE = {
    "StepDecay": lambda o, e: S.StepDecay(o, 2, last_epoch=e),
    "ExponentialDecay": lambda o, e: S.ExponentialDecay(o, 0.9, last_epoch=e),
    "LinearDecay": lambda o, e: S.LinearDecay(o, 10, last_epoch=e),
    "CosineAnnealing": lambda o, e: S.CosineAnnealing(o, 10, last_epoch=e),
    "WarmupCosine": lambda o, e: S.WarmupCosine(o, 2, 10, last_epoch=e),
    "OneCycle": lambda o, e: S.OneCycle(o, 10, last_epoch=e),
    "WarmupStableDecay": lambda o, e: S.WarmupStableDecay(o, 2, 3, 10, last_epoch=e),
}


@pytest.mark.parametrize("last_epoch, error, text", [
    ("a", TypeError, r"last_epoch must be an int, got str \('a'\)"),
    (2.5, TypeError, r"last_epoch must be an int, got float \(2.5\)"),
    (True, TypeError, "last_epoch must be an int, got bool"),
    (None, TypeError, "last_epoch must be an int, got NoneType"),
    (-5, ValueError, "last_epoch must be an int >= -1, got -5"),
    (-2, ValueError, "last_epoch must be an int >= -1, got -2"),
])
@pytest.mark.parametrize("name", sorted(_EVERY_SCHEDULE))
def test_a_bad_last_epoch_is_named_before_the_optimizer_changes(name, last_epoch, error, text):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.5, momentum=0.9)
    with pytest.raises(error, match=text):
        _EVERY_SCHEDULE[name](opt, last_epoch)
    assert opt.param_groups[0]["lr"] == 0.5 and "initial_lr" not in opt.param_groups[0]


@pytest.mark.parametrize("name", sorted(_EVERY_SCHEDULE))
def test_last_epoch_minus_one_and_a_resumed_int_work_as_in_torch(name):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.5, momentum=0.9)
    _EVERY_SCHEDULE[name](opt, np.int64(-1))                  # an integral type that is not int
    _EVERY_SCHEDULE[name](opt, 3)                             # resuming: the optimizer has initial_lr now
    fresh = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.5, momentum=0.9)
    with pytest.raises(KeyError, match="initial_lr"):          # torch's own error for resuming a fresh optimizer
        _EVERY_SCHEDULE[name](fresh, 3)
