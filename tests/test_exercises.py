"""Each checker accepts its reference solution and rejects plausible wrong ones.

The reference solutions live in helpers.solutions (one copy: what `show_solution` prints is what
is checked here); the wrong ones live here, in one table per notebook (``CASES_01`` …
``CASES_15``, in notebook order, each with the tests of that notebook's checkers after it): checker
→ (reference, [wrong answers]). A wrong answer wrapped in :func:`hinted` must also get the hint
named. No test here may move the global random state: the fixture below checks it around every
test, so every checker is checked with every answer.
"""

import json
import math
import pathlib
import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from helpers import exercises as ex
from helpers.exercises import _core, _registry
from helpers.solutions import SOLUTIONS

ROOT = pathlib.Path(__file__).parents[1]


def not_attempted(*args):
    raise NotImplementedError


def _global_random_states():
    numpy_state = np.random.get_state(legacy=False)  # noqa: NPY002 (numpy's global generator is the point)
    states = [torch.get_rng_state(), torch.initial_seed(), random.getstate(), numpy_state]
    if torch.cuda.is_available():
        states.append(torch.cuda.get_rng_state_all())
    return states


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.fixture(autouse=True)
def global_random_state_untouched():
    """Checkers run in the learner's session: none may reseed or draw from the global generators."""
    before = _global_random_states()
    yield
    assert _equal(_global_random_states(), before), "a checker moved the learner's global random state"


def hinted(wrong, hint: str):
    """Mark a wrong answer whose "not yet" line must also contain ``hint`` (the mistake it names)."""
    wrong.hint = hint
    return wrong


# -- the registry and the checks every checker shares -----------------------------------------------

def test_a_solution_must_be_a_function():
    with pytest.raises(TypeError, match="must be a function"):
        ex.check_exploding_exponent(10)


def test_a_duplicate_exercise_id_is_refused_and_the_registry_kept(monkeypatch):
    monkeypatch.setattr(_core, "EXERCISES", dict(_core.EXERCISES))
    taken = _core.EXERCISES["7.3"]
    with pytest.raises(ValueError, match=r"exercise 7\.3 is already registered, by "
                                         r"helpers\.exercises\.nb07_gradient_clipping\.check_threshold_from_norms"):
        _core.exercise("7.3", "a second 7.3")(lambda fn: None)
    assert _core.EXERCISES["7.3"] is taken


def test_reloading_the_core_or_a_notebook_module_keeps_the_registry(capsys):
    # IPython's autoreload after an edit: the checkers must keep working, and a module that
    # registers its own checkers again is not a duplicate
    import importlib

    from helpers.exercises import nb07_gradient_clipping as nb07
    before, nb07_names = dict(_core.EXERCISES), dict(vars(nb07))
    try:
        importlib.reload(_core)
        importlib.reload(nb07)
        assert set(_core.EXERCISES) == set(before)
        nb07.check_clip_by_value(lambda g, v: g)                  # the reloaded module's checker
        ex.check_clip_by_value(lambda g, v: g.clamp(-v, v))       # the one imported before the reload
        ex.check_leaky_relu(lambda x, a: x)                       # raises the NotYet of before the reload
        out = capsys.readouterr().out.splitlines()
        assert "not yet" in out[0] and out[1].endswith("correct.") and "not yet" in out[2]
    finally:                              # the other tests compare the registry with the modules
        _core.EXERCISES.update(before)
        vars(nb07).update(nb07_names)


@pytest.mark.parametrize("bad", ["7", "7.", "07.4", "7.0", "0.1", "7.4.1", " 7.4", "7,4", "Exercise 7.4", 7.4, None])
def test_a_malformed_exercise_id_is_refused(bad, monkeypatch):
    monkeypatch.setattr(_core, "EXERCISES", dict(_core.EXERCISES))
    with pytest.raises(ValueError, match="an exercise id is '<notebook>.<k>'"):
        _core.exercise(bad, "title")(lambda fn: None)
    assert _core.EXERCISES == ex.EXERCISES


def test_a_new_id_is_registered_in_order(monkeypatch, capsys):
    monkeypatch.setattr(_core, "EXERCISES", dict(_core.EXERCISES))
    monkeypatch.setattr(_registry, "ATTEMPTED", set())
    checker = _core.exercise("7.4", "a new one")(lambda fn: None)
    assert list(_core.EXERCISES)[-1] == "7.4" and _core.EXERCISES["7.4"].checker is checker
    checker(lambda: None)
    assert capsys.readouterr().out == "Exercise 7.4 (a new one): correct.\n"


def test_expect_close_accepts_a_close_tensor_and_raises_the_hint_otherwise():
    """The shared check of a tensor answer: close passes; a far, reshaped or non-tensor answer gets the hint."""
    x = torch.tensor([1.0, -2.0], dtype=torch.float64)
    _core.expect_close(lambda t: t * (1 + 1e-7), (x,), x, hint="h")
    _core.expect_close(lambda t: t * (1 + 1e-7), (x,), x, hint="h", tol=1e-6)
    for wrong in (lambda t: t * (1 + 1e-4), lambda t: t[None], lambda t: t.tolist()):
        with pytest.raises(_core.NotYet, match="^h$"):
            _core.expect_close(wrong, (x,), x, hint="h")
    with pytest.raises(_core.NotYet):
        _core.expect_close(lambda t: t * (1 + 1e-7), (x,), x, hint="h", tol=1e-9)


def test_expect_close_reports_an_unattempted_answer_as_not_attempted():
    def unattempted(t):
        raise NotImplementedError

    with pytest.raises(_registry.NotAttempted):
        _core.expect_close(unattempted, (torch.zeros(2),), torch.zeros(2), hint="h")


def test_no_checker_seeds_a_global_generator():
    """Module inits that need a seed use exercises._core.seeded (fork_rng and the CPU generator only)."""
    for path in sorted((ROOT / "helpers" / "exercises").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(torch\.manual_seed|np\.random\.seed|random\.seed|torch\.seed)\(", text), path.name


# -- notebook 01, gradient descent, backpropagation ------------------------------------------------

quadratic_gradient = SOLUTIONS["1.1"].function
largest_stable_lr = SOLUTIONS["1.2"].function
linear_backward = SOLUTIONS["1.3"].function


CASES_01 = {
    ex.check_quadratic_gradient: (quadratic_gradient, [
        lambda A, b, t: A @ t + b,
        lambda A, b, t: A @ t - b,             # the symmetric case only
        lambda A, b, t: A.T @ t - b,
        lambda A, b, t: 0.5 * A @ t - b,
        lambda A, b, t: (A @ t - b).tolist(),
    ]),
    ex.check_largest_stable_lr: (largest_stable_lr, [
        lambda A, beta: 2 / torch.linalg.eigvalsh(A).max(),                      # plain GD's limit (section 1)
        lambda A, beta: 2 * (1 - beta) / torch.linalg.eigvalsh(A).max(),
        lambda A, beta: 2 / ((1 - beta) * torch.linalg.eigvalsh(A).max()),       # the "effective rate" η/(1 − β)
        lambda A, beta: 2 * (1 + beta) / torch.linalg.eigvalsh(A).min(),
        lambda A, beta: "fast",
    ]),
    ex.check_linear_backward: (linear_backward, [
        lambda x, W, b, g: (g @ W, x.T @ g, g.sum(0)),
        lambda x, W, b, g: (g @ W, g.T @ x, g.mean(0)),
        lambda x, W, b, g: (g @ W.T if g.shape[1] == W.shape[1] else g @ W, g.T @ x, g[0]),
        lambda x, W, b, g: g @ W,
    ]),
}


def test_quadratic_gradient_hint_names_the_symmetric_case(capsys):
    ex.check_quadratic_gradient(lambda A, b, t: A @ t - b)   # notebook 01 prints this for symmetric A
    out = capsys.readouterr().out
    assert "not yet" in out and "only when A is symmetric" in out


def test_largest_stable_lr_hint_names_plain_gradient_descent(capsys):
    ex.check_largest_stable_lr(lambda A, beta: 2 / torch.linalg.eigvalsh(A).max())   # section 1's answer
    out = capsys.readouterr().out
    assert "not yet" in out and "plain gradient descent's limit" in out


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_largest_stable_lr_reference_is_the_heavy_ball_limit(beta):
    """Heavy-ball momentum at 0.99 x the reference limit converges, at 1.01 x it diverges."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.tensor([0.5, 1.0, 2.0, 5.0], dtype=torch.float64)) @ q.T
    limit = float(largest_stable_lr(A, beta))
    for factor, converges in ((0.99, True), (1.01, False)):
        theta = previous = torch.ones(4, dtype=torch.float64)
        for _ in range(3000):
            theta, previous = theta - factor * limit * (A @ theta) + beta * (theta - previous), theta
        assert (float(theta.norm()) < 1e-3) == converges


def test_largest_stable_lr_equals_torch_sgd_with_momentum():
    """PyTorch's SGD(momentum=beta) is the heavy-ball iteration the exercise describes."""
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    theta = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    sgd = torch.optim.SGD([theta], lr=0.1, momentum=0.9)
    ours = previous = theta.detach().clone()
    for _ in range(20):
        sgd.zero_grad()
        (0.5 * theta @ A @ theta).backward()
        sgd.step()
        ours, previous = ours - 0.1 * (A @ ours) + 0.9 * (ours - previous), ours
    assert torch.allclose(theta.detach(), ours, rtol=1e-12, atol=1e-12)


# -- notebook 02, vanishing and exploding gradients ------------------------------------------------

critical_sigma_w = SOLUTIONS["2.1"].function
layer_gradient_norms = SOLUTIONS["2.2"].function
exploding_exponent = SOLUTIONS["2.3"].function


CASES_02 = {
    ex.check_critical_sigma_w: (critical_sigma_w, [
        lambda a, b: {"sigmoid": 4.0, "tanh": 1.0}[a],     # the slope bound, as if every z were 0
        lambda a, b: math.sqrt(2),
        lambda a, b: 2.0,
        lambda a, b: {"sigmoid": 10.4, "tanh": 1.0}[a],    # right for sigmoid only
    ]),
    ex.check_layer_gradient_norms: (layer_gradient_norms, [
        lambda m: layer_gradient_norms(m)[::-1],
        lambda m: [v**2 for v in layer_gradient_norms(m)],
        lambda m: [p.grad.norm().item() for p in m.parameters()],
        lambda m: layer_gradient_norms(m)[:-1],
    ]),
    ex.check_exploding_exponent: (exploding_exponent, [
        lambda d: d,              # the weight gradients' exponent, measured in notebook 02
        lambda d: 2 * d,
        lambda d: d - 1,
    ]),
}


def test_critical_sigma_w_hint_names_the_slope_bound(capsys):
    ex.check_critical_sigma_w(lambda a, b: {"sigmoid": 4.0, "tanh": 1.0}[a])
    out = capsys.readouterr().out
    assert "not yet" in out and "only if every pre-activation sat at 0" in out


def test_exploding_exponent_hint_names_the_weight_gradients(capsys):
    ex.check_exploding_exponent(lambda d: d)
    out = capsys.readouterr().out
    assert "not yet" in out and "weight gradients" in out


# -- notebook 03, weight initialization ------------------------------------------------------------

xavier_std = SOLUTIONS["3.1"].function
he_uniform_bound = SOLUTIONS["3.2"].function
orthogonal_matrix = SOLUTIONS["3.3"].function


CASES_03 = {
    ex.check_xavier_std: (xavier_std, [
        hinted(lambda shape: math.sqrt(shape[1] / shape[0]), "common mistake"),
        hinted(lambda shape: 2 / (shape[0] + shape[1]), "return the std"),
        hinted(lambda shape: math.sqrt(2 / (shape[0] + shape[1])), "ignored the kernel"),
    ]),
    ex.check_he_uniform_bound: (he_uniform_bound, [
        hinted(lambda fi, fo, a: math.sqrt(2 / (fi + fo)), "common mistake"),
        hinted(lambda fi, fo, a: math.sqrt(2 / fi), "b²/3"),
        hinted(lambda fi, fo, a: math.sqrt(6 / fi), "(1 + a²)/2"),
    ]),
    ex.check_orthogonal_matrix: (orthogonal_matrix, [
        hinted(lambda r, c, g: torch.randn(r, c, generator=g), "QR"),
        hinted(lambda r, c, g: torch.eye(r, c), "not random"),
        hinted(lambda r, c, g: torch.eye(r), "shape"),
    ]),
}


# -- notebook 04, activation functions -------------------------------------------------------------

leaky_relu = SOLUTIONS["4.1"].function
sigmoid_derivative = SOLUTIONS["4.2"].function
dead_fraction = SOLUTIONS["4.3"].function


CASES_04 = {
    ex.check_leaky_relu: (leaky_relu, [
        hinted(lambda x, a: a * x, "article 004"),
        hinted(lambda x, a: torch.relu(x), "torch.where"),
    ]),
    ex.check_sigmoid_derivative: (sigmoid_derivative, [
        hinted(lambda x: torch.exp(-x) / (1 + torch.exp(-x)) ** 2, "finite"),
        hinted(lambda x: torch.sigmoid(x), "Differentiate"),
    ]),
    ex.check_dead_fraction: (dead_fraction, [
        hinted(lambda h: (h == 0).float().mean().item(), "entries"),
        hinted(lambda h: (h == 0).all(dim=1).float().mean().item(), "columns"),
    ]),
}


# -- notebook 05, normalization --------------------------------------------------------------------

_bn_reference = SOLUTIONS["5.1"].function


CASES_05 = {
    ex.check_batch_norm_forward: (_bn_reference, [
        lambda x, gamma, beta, eps: gamma * (x - x.mean(0)) / (x.std(0, unbiased=False) + eps) + beta,  # article 001
        lambda x, gamma, beta, eps: gamma * (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) + beta,
        lambda x, gamma, beta, eps: gamma * (x - x.mean(0)) / torch.sqrt(x.var(0) + eps) + beta,     # unbiased
        lambda x, gamma, beta, eps: (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True) + eps),
    ]),
    ex.check_running_variance: (SOLUTIONS["5.2"].function, [
        lambda rv, b, m: (1 - m) * rv + m * b.var(0, unbiased=False),
        lambda rv, b, m: m * rv + (1 - m) * b.var(0),
        lambda rv, b, m: b.var(0),
    ]),
    ex.check_weight_norm: (SOLUTIONS["5.3"].function, [
        lambda g, v: v / v.norm(dim=1, keepdim=True),                                          # article 000
        lambda g, v: g * v / v.norm(dim=0, keepdim=True),
        lambda g, v: g * v / v.norm(),
    ]),
}


# -- notebook 06, residual connections -------------------------------------------------------------

_stack_reference = SOLUTIONS["6.2"].function


CASES_06 = {
    ex.check_residual_block: (SOLUTIONS["6.1"].function, [
        lambda x, f, p: f(f(x) + x) if p is None else f(p(x)) + p(x),                          # article 001
        lambda x, f, p: f(x),
        lambda x, f, p: x + f(x) if p is None else f(x),
    ]),
    ex.check_residual_jacobian: (_stack_reference, [
        lambda js: _stack_reference(js[::-1]),
        lambda js: js[2] @ js[1] @ js[0],
        lambda js: torch.eye(4, dtype=js[0].dtype) + sum(js),
    ]),
}


# -- notebook 07, gradient clipping ----------------------------------------------------------------

clip_by_value = SOLUTIONS["7.1"].function
clip_by_global_norm = SOLUTIONS["7.2"].function
threshold_from_norms = SOLUTIONS["7.3"].function


CASES_07 = {
    ex.check_clip_by_value: (clip_by_value, [
        lambda g, v: torch.minimum(torch.maximum(g, torch.tensor(v, dtype=g.dtype)), torch.tensor(v, dtype=g.dtype)),
        lambda g, v: g.clamp(0, v),
        lambda g, v: g.clamp(-v, v) * 0.5,
    ]),
    ex.check_clip_by_global_norm: (clip_by_global_norm, [
        lambda grads, c: [g * min(1.0, c / float(g.norm())) for g in grads],
        lambda grads, c: [g * c / float(torch.sqrt(sum(t.square().sum() for t in grads))) for g in grads],
        lambda grads, c: [g * min(1.0, c / float(sum(t.square().sum() for t in grads))) for g in grads],
        lambda grads, c: clip_by_global_norm(grads, c)[0],
    ]),
    ex.check_threshold_from_norms: (threshold_from_norms, [
        lambda norms, f: float(torch.quantile(torch.tensor(norms), f)),
        lambda norms, f: float(torch.tensor(norms).median()),
        lambda norms, f: max(norms),
    ]),
}


# -- notebook 08, regularization -------------------------------------------------------------------

CASES_08 = {
    ex.check_l1_gradient: (SOLUTIONS["8.1"].function, [
        lambda w, lam: lam * w,
        lambda w, lam: torch.sign(w),
        lambda w, lam: lam * (w >= 0).double() * 2 - lam,
    ]),
    ex.check_inverted_dropout: (SOLUTIONS["8.2"].function, [
        lambda x, mask, p: x * mask,
        lambda x, mask, p: x * mask * (1 - p),
        lambda x, mask, p: x * mask / p,
    ]),
    ex.check_weight_decay_step: (SOLUTIONS["8.3"].function, [
        lambda w, g, lr, wd: w - lr * g,
        lambda w, g, lr, wd: w - lr * (g + 0.5 * wd * w),
        lambda w, g, lr, wd: (1 - wd) * w - lr * g,
    ]),
}


# -- notebook 09, optimizers -----------------------------------------------------------------------

momentum_step = SOLUTIONS["9.1"].function
adam_step = SOLUTIONS["9.2"].function


def _wrong_adam_no_bias_correction(param, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    return param - lr * m / (v.sqrt() + eps), m, v


def _wrong_adam_eps_inside(param, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    return param - lr * (m / (1 - beta1 ** t)) / (v / (1 - beta2 ** t) + 1e-3).sqrt(), m, v


CASES_09 = {
    ex.check_momentum_step: (momentum_step, [
        lambda p, g, b, lr, mu, nest: (p - lr * (mu * b + g), mu * b + g),
        lambda p, g, b, lr, mu, nest: momentum_step(p, g, b, lr, mu, False),
        lambda p, g, b, lr, mu, nest: (p - lr * (mu * b + (1 - mu) * g), mu * b + (1 - mu) * g),
        lambda p, g, b, lr, mu, nest: (p + lr * (mu * b + g), mu * b + g),
    ]),
    ex.check_adam_step: (adam_step, [
        _wrong_adam_no_bias_correction,
        _wrong_adam_eps_inside,
        lambda p, g, m, v, t, lr, b1, b2, eps: adam_step(p, g, m, v, t + 1, lr, b1, b2, eps),
        lambda p, g, m, v, t, lr, b1, b2, eps: adam_step(p, g, m, v, t, lr, b1, b2, eps)[0],
    ]),
}


# -- notebook 10, learning-rate schedules ----------------------------------------------------------

cosine_lr = SOLUTIONS["10.1"].function
half_life_gamma = SOLUTIONS["10.2"].function


CASES_10 = {
    ex.check_cosine_lr: (cosine_lr, [
        lambda t, T, hi, lo: lo + (hi - lo) * (1 + math.cos(math.pi * t / T)),
        lambda t, T, hi, lo: hi * (1 + math.cos(math.pi * t / T)) / 2,
        lambda t, T, hi, lo: lo + (hi - lo) * math.cos(math.pi * t / (2 * T)),
    ]),
    ex.check_half_life_gamma: (half_life_gamma, [
        lambda k: 0.5 / k,
        lambda k: 1 - 0.5 / k,
        lambda k: 2 ** (1 / k),
    ]),
}


# -- notebook 11, recurrent networks ---------------------------------------------------------------

gru_step = SOLUTIONS["11.1"].function
bptt = SOLUTIONS["11.2"].function


def gru_step_reset_outside_bias(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    i_r, i_z, i_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
    h_r, h_z, _ = (h @ weight_hh.T + bias_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * (h @ weight_hh[-h.shape[1]:].T) + bias_hh[-h.shape[1]:])
    return (1 - z) * n + z * h


def gru_step_z_swapped(x, h, *weights):
    new = gru_step(x, h, *weights)
    z = torch.sigmoid((x @ weights[0].T + weights[2]).chunk(3, 1)[1] + (h @ weights[1].T + weights[3]).chunk(3, 1)[1])
    n = (new - z * h) / (1 - z)
    return z * n + (1 - z) * h


def bptt_last_loss_only(weight_hh, states, grads):
    return bptt(weight_hh, states, [torch.zeros_like(g) for g in grads[:-1]] + [grads[-1]])


def bptt_transposed(weight_hh, states, grads):
    return bptt(weight_hh, states, grads).T


def bptt_no_tanh(weight_hh, states, grads):
    grad_w, delta = torch.zeros_like(weight_hh), torch.zeros_like(states[-1])
    previous = [torch.zeros_like(states[0])] + list(states[:-1])
    for h_before, g in zip(reversed(previous), reversed(grads)):
        delta = delta + g
        grad_w = grad_w + delta.T @ h_before
        delta = delta @ weight_hh
    return grad_w


def bptt_current_state(weight_hh, states, grads):
    grad_w, delta = torch.zeros_like(weight_hh), torch.zeros_like(states[-1])
    for h, g in zip(reversed(states), reversed(grads)):
        delta = delta + g
        a = delta * (1 - h**2)
        grad_w = grad_w + a.T @ h                  # h_t instead of h_{t-1}
        delta = a @ weight_hh
    return grad_w


CASES_11 = {
    ex.check_gru_step: (gru_step, [gru_step_reset_outside_bias, gru_step_z_swapped,
                                   lambda x, h, *w: torch.tanh(x @ w[0][-h.shape[1]:].T)]),
    ex.check_bptt: (bptt, [bptt_last_loss_only, bptt_transposed, bptt_no_tanh, bptt_current_state,
                           lambda W, s, g: [bptt(W, s, g)], lambda W, s, g: sum(g)]),
    ex.check_growth_bound: (SOLUTIONS["11.3"].function, [
        lambda W: torch.linalg.matrix_norm(W, ord=2),                  # the tanh RNN's bound
        lambda W: torch.linalg.eigvals(W).abs().max() / 4,
        lambda W: torch.linalg.matrix_norm(W) / 4,
        lambda W: 0.25,
        lambda W: "σ_max / 4",
    ]),
}


@pytest.mark.parametrize("wrong, hint", [(bptt_last_loss_only, "last step's loss alone"),
                                         (bptt_transposed, "Transposed"), (bptt_current_state, "h_0 = 0")])
def test_bptt_hints_name_the_mistake(wrong, hint, capsys):
    ex.check_bptt(wrong)
    assert hint in capsys.readouterr().out


def test_bptt_accepts_an_answer_summed_in_float32(capsys):
    ex.check_bptt(lambda weight_hh, states, grads: bptt(weight_hh.float(), [s.float() for s in states],
                                                        [g.float() for g in grads]))
    assert "correct." in capsys.readouterr().out


def test_growth_bound_hint_names_the_tanh_bound(capsys):
    ex.check_growth_bound(lambda W: torch.linalg.matrix_norm(W, ord=2))
    assert "tanh RNN's bound" in capsys.readouterr().out


# -- notebook 12, mixed precision ------------------------------------------------------------------

float_spacing = SOLUTIONS["12.1"].function
scale_update = SOLUTIONS["12.2"].function
amp_step = SOLUTIONS["12.3"].function


def amp_step_clip_scaled(model, x, y, optimizer, scaler, max_norm):
    scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()


def amp_step_no_update(model, x, y, optimizer, scaler, max_norm):
    scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)


def amp_step_no_clip(model, x, y, optimizer, scaler, max_norm):
    scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
    scaler.step(optimizer)
    scaler.update()


CASES_12 = {
    ex.check_float_spacing: (float_spacing, [
        lambda w, e, m: w * 2.0**-m,                                        # ε scaled by w
        lambda w, e, m: 2.0**-m,                                            # ε itself
        lambda w, e, m: 2.0 ** (math.frexp(w)[1] - 1 - m),                  # no subnormals
        lambda w, e, m: 2.0 ** (math.frexp(w)[1] - 2 - m),                  # the gap below w
        lambda w, e, m: 2.0 ** (math.frexp(w)[1] - 1 - e),                  # bits swapped
    ]),
    ex.check_scale_update: (scale_update, [
        lambda s, t, f, g, b, i: (s * b, t) if f else scale_update(s, t, f, g, b, i),
        lambda s, t, f, g, b, i: scale_update(s, t, f, g, b, i + 1),
        lambda s, t, f, g, b, i: (s * b, 0) if f else (s * g, 0),
        lambda s, t, f, g, b, i: s,
    ]),
    ex.check_amp_step: (amp_step, [amp_step_clip_scaled, amp_step_no_update, amp_step_no_clip]),
}


# -- notebook 13, capstone -------------------------------------------------------------------------

_update_ratios = SOLUTIONS["13.1"].function
_verdict = SOLUTIONS["13.2"].function


def _verdict_swapped(norms):
    values = list(norms.values())
    ratio = values[-1] / values[0]
    return "exploding" if ratio > 1e3 else "vanishing" if ratio < 1e-3 else "healthy"


def _verdict_min_max(norms):
    values = list(norms.values())
    if not all(math.isfinite(v) for v in values):
        return "exploding"
    ratio = min(values) / max(values)
    return "vanishing" if ratio < 1e-3 else "healthy"


def _verdict_ignores_nan(norms):
    values = [v for v in norms.values() if math.isfinite(v)]
    ratio = values[0] / values[-1]
    return "exploding" if ratio > 1e3 else "vanishing" if ratio < 1e-3 else "healthy"


def _verdict_sorted_names(norms):
    return _verdict(dict(sorted(norms.items())))


CASES_13 = {
    ex.check_update_ratios: (_update_ratios, [
        lambda b, a: [float(torch.linalg.vector_norm(y - x) / torch.linalg.vector_norm(y)) for x, y in zip(b, a)],
        lambda b, a: [float(abs(torch.linalg.vector_norm(y) - torch.linalg.vector_norm(x))
                            / torch.linalg.vector_norm(x)) for x, y in zip(b, a)],
        lambda b, a: [float((y - x).abs().mean() / x.abs().mean()) for x, y in zip(b, a)],
        lambda b, a: [float(torch.linalg.vector_norm(y - x)) for x, y in zip(b, a)],
        lambda b, a: _update_ratios(b, a)[:2],
    ]),
    ex.check_gradient_verdict: (_verdict, [
        _verdict_swapped, _verdict_min_max, _verdict_ignores_nan, _verdict_sorted_names,
        lambda norms: "healthy",
    ]),
}


# -- notebook 14, FAQ, errata, future directions ---------------------------------------------------

_split_once = SOLUTIONS["14.1"].function
_separable_conv = SOLUTIONS["14.2"].function


CASES_14 = {
    ex.check_split_once: (_split_once, [
        lambda n, f, seed: (torch.randperm(n)[round(n * f):], torch.randperm(n)[:round(n * f)]),   # overlap
        lambda n, f, seed: (lambda o: (o[round(n * f):], o[:round(n * f)]))(torch.randperm(n)),   # article 001
        lambda n, f, seed: (torch.arange(round(n * f), n), torch.arange(round(n * f))),           # no shuffle
        lambda n, f, seed: (lambda o: (o, o[:round(n * f)]))(
            torch.randperm(n, generator=torch.Generator().manual_seed(seed))),                     # train = all
        lambda n, f, seed: (lambda o: (o[int(n * f) + 1:], o[:int(n * f) + 1]))(
            torch.randperm(n, generator=torch.Generator().manual_seed(seed))),                     # wrong size
        lambda n, f, seed: (lambda o: (o[round(n * f):], o[:round(n * f)]))(
            torch.randperm(n, generator=torch.Generator().manual_seed(0))),                       # ignores seed
        lambda n, f, seed: (lambda o: (o[round(n * f):].float(), o[:round(n * f)].float()))(
            torch.randperm(n, generator=torch.Generator().manual_seed(seed))),                     # not indices
    ]),
    ex.check_separable_conv: (_separable_conv, [
        lambda c_in, c_out, k: nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),            # full conv
        lambda c_in, c_out, k: nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False),  # no pointwise
        lambda c_in, c_out, k: nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False),                # wrong order
                                             nn.Conv2d(c_out, c_out, k, padding=k // 2, groups=c_out, bias=False)),
        lambda c_in, c_out, k: nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in),  # biases
                                             nn.Conv2d(c_in, c_out, 1)),
        lambda c_in, c_out, k: nn.Sequential(nn.Conv2d(c_in, c_in, k, groups=c_in, bias=False),     # no padding
                                             nn.Conv2d(c_in, c_out, 1, bias=False)),
        lambda c_in, c_out, k: nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False),
                                             nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False)),     # extra ReLU
        lambda c_in, c_out, k: nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=k // 2, bias=False),   # groups=1
                                             nn.Conv2d(c_in, c_out, 1, bias=False)),
        lambda c_in, c_out, k: "conv",
    ]),
}


def test_a_learner_drawing_from_the_global_generator_does_not_move_it(capsys):
    """The learner's own draws inside a checked function are undone too (the checker runs in fork_rng)."""
    ex.check_split_once(lambda n, f, seed: (lambda o: (o[round(n * f):], o[:round(n * f)]))(torch.randperm(n)))
    assert "not yet" in capsys.readouterr().out


def test_split_once_hint_names_the_article_001_mistake(capsys):
    ex.check_split_once(lambda n, f, seed: (lambda o: (o[round(n * f):], o[:round(n * f)]))(torch.randperm(n)))
    assert "article 001" in capsys.readouterr().out


# -- notebook 15, Transformers ---------------------------------------------------------------------

_causal_attention = SOLUTIONS["15.1"].function
_loss_spikes = SOLUTIONS["15.2"].function


CASES_15 = {
    ex.check_causal_attention: (_causal_attention, [
        lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ v,          # no mask
        lambda q, k, v: torch.softmax((q @ k.transpose(-2, -1)).masked_fill(                              # no √d
            torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).triu(1), -math.inf), -1) @ v,
        lambda q, k, v: torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(      # j < i
            torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).tril(-1), -math.inf), -1) @ v,
        lambda q, k, v: torch.softmax((q @ k.transpose(-2, -1) / q.shape[-1]).masked_fill(                 # / d
            torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).triu(1), -math.inf), -1) @ v,
        lambda q, k, v: "attention",
    ]),
    ex.check_loss_spikes: (_loss_spikes, [
        lambda losses, f, w: [t for t in range(w, len(losses))                                        # mean
                              if losses[t] > f * sum(losses[t - w:t]) / w],
        lambda losses, f, w: [t for t in range(w, len(losses))                                        # t in window
                              if losses[t] > f * sorted(losses[t - w + 1:t + 1])[w // 2]],
        lambda losses, f, w: [t for t in range(len(losses))                                           # global median
                              if losses[t] > f * sorted(losses)[len(losses) // 2]],
        lambda losses, f, w: [t - 1 for t in range(w, len(losses))                                    # off by one
                              if losses[t] > f * sorted(losses[t - w:t])[w // 2]],
        lambda losses, f, w: None,
    ]),
}


# -- every table, in notebook order -----------------------------------------------------------------
TABLES = (CASES_01, CASES_02, CASES_03, CASES_04, CASES_05, CASES_06, CASES_07, CASES_08,
          CASES_09, CASES_10, CASES_11, CASES_12, CASES_13, CASES_14, CASES_15)
ALL_CASES = {checker: case for table in TABLES for checker, case in table.items()}


def test_every_checker_has_its_cases_in_its_notebooks_table_in_order():
    """A new checker must come with its reference and wrong answers in its notebook's table here."""
    assert list(ALL_CASES) == [e.checker for e in ex.EXERCISES.values()]
    notebook = {e.checker: int(number.split(".")[0]) for number, e in ex.EXERCISES.items()}
    assert [{notebook[checker] for checker in table} for table in TABLES] == [{n} for n in range(1, 16)]
    assert all(wrongs for _, wrongs in ALL_CASES.values())


def test_every_notebook_after_the_welcome_has_two_checked_exercises():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if path.name.startswith("00"):
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        checked = {name for cell in cells if cell["cell_type"] == "code"
                   for name in re.findall(r"^(check_\w+)\(", "".join(cell["source"]), flags=re.M)}
        assert len(checked) >= 2, f"{path.name}: {sorted(checked)}"
        assert all(hasattr(ex, name) for name in checked), path.name


def test_every_checker_is_called_in_its_notebook():
    notebooks = {path.stem[:2]: path for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    for number, exercise in ex.EXERCISES.items():
        path = notebooks[f"{int(number.split('.')[0]):02d}"]
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        sources = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
        assert any(re.search(rf"^{exercise.checker.__name__}\(", s, flags=re.M) for s in sources), (number, path.name)


def test_each_exercise_lives_in_the_module_named_for_its_notebook():
    notebooks = {path.stem[:2]: path.stem for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    for number, exercise in ex.EXERCISES.items():
        assert exercise.number == number and exercise.title
        notebook = notebooks[f"{int(number.split('.')[0]):02d}"]
        assert exercise.checker.__module__ == f"helpers.exercises.nb{notebook}", (number, exercise.checker)
    assert list(ex.EXERCISES) == sorted(ex.EXERCISES, key=lambda n: tuple(map(int, n.split("."))))


def test_the_package_exports_every_checker():
    checkers = [e.checker.__name__ for e in ex.EXERCISES.values()]
    assert [name for name in ex.__all__ if name.startswith("check_")] == checkers
    assert all(getattr(ex, name) is e.checker for name, e in zip(checkers, ex.EXERCISES.values()))


def test_every_checker_is_in_its_modules_all_in_notebook_order():
    """A checker left out of its module's ``__all__`` would not be exported by the package."""
    for module in ex._NOTEBOOK_MODULES:
        registered = [e.checker.__name__ for e in ex.EXERCISES.values() if e.checker.__module__ == module.__name__]
        assert module.__all__ == registered, module.__name__
    assert ex.__all__ == ["EXERCISES", "Exercise", "attempted", "show_solution",
                          *(e.checker.__name__ for e in ex.EXERCISES.values())]


def test_the_package_imports_every_notebook_module_in_order_and_its_docstring_maps_them():
    files = sorted(path.stem for path in (ROOT / "helpers" / "exercises").glob("nb[0-9][0-9]_*.py"))
    assert [module.__name__ for module in ex._NOTEBOOK_MODULES] == [f"helpers.exercises.{f}" for f in files]
    rows = re.findall(r"^(\d\d) .+:mod:`~\.(nb\d\d_\w+)`$", ex.__doc__, flags=re.M)
    assert rows == [(f[2:4], f) for f in files]


def test_every_name_a_notebook_imports_from_helpers_exercises_resolves():
    imported = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for names in re.findall(r"from helpers\.exercises import ([\w, ]+)", "".join(cell["source"])):
                imported |= {name.strip() for name in names.split(",")}
    assert len(imported) > 30 and {name for name in imported if not hasattr(ex, name)} == set()


@pytest.mark.parametrize("checker", list(ALL_CASES), ids=lambda c: c.__name__)
def test_reference_solution_is_accepted(checker, capsys):
    assert checker(ALL_CASES[checker][0]) is None
    assert capsys.readouterr().out.strip().endswith(": correct.")


@pytest.mark.parametrize("checker", list(ALL_CASES), ids=lambda c: c.__name__)
def test_not_attempted_prints_a_stable_line(checker, capsys):
    checker(not_attempted)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not attempted yet" in out


@pytest.mark.parametrize("checker, wrong", [(c, w) for c, (_, ws) in ALL_CASES.items() for w in ws],
                         ids=lambda v: getattr(v, "__name__", "wrong"))
def test_wrong_solutions_are_rejected(checker, wrong, capsys):
    checker(wrong)
    out = capsys.readouterr().out
    assert ": not yet." in out and "correct." not in out
    assert getattr(wrong, "hint", "") in out, out
