"""Each checker accepts a reference solution and rejects plausible wrong ones.

The reference solutions live here, out of the learners' notebooks.
"""

import math

import pytest
import torch
from torch import nn

from helpers import exercises as ex


def quadratic_gradient(A, b, theta):
    return A @ theta - b


def largest_stable_lr(A):
    return 2 / torch.linalg.eigvalsh(A).max()


def linear_backward(x, W, b, grad_out):
    return grad_out @ W, grad_out.T @ x, grad_out.sum(dim=0)


def critical_sigma_w(activation):
    return {"relu": math.sqrt(2), "tanh": 1.0}[activation]


def layer_gradient_norms(model):
    return [m.weight.grad.norm().item() for m in model.modules() if isinstance(m, nn.Linear)]


def exploding_exponent(depth):
    return depth


def not_attempted(*args):
    raise NotImplementedError


CASES = {
    ex.check_quadratic_gradient: (quadratic_gradient, [
        lambda A, b, t: A @ t + b,
        lambda A, b, t: 0.5 * A @ t - b,
        lambda A, b, t: (A @ t - b).tolist(),
    ]),
    ex.check_largest_stable_lr: (largest_stable_lr, [
        lambda A: 1 / torch.linalg.eigvalsh(A).max(),
        lambda A: 2 / torch.linalg.eigvalsh(A).min(),
        lambda A: 2 / torch.trace(A),
        lambda A: "fast",
    ]),
    ex.check_linear_backward: (linear_backward, [
        lambda x, W, b, g: (g @ W, x.T @ g, g.sum(0)),
        lambda x, W, b, g: (g @ W, g.T @ x, g.mean(0)),
        lambda x, W, b, g: (g @ W.T if g.shape[1] == W.shape[1] else g @ W, g.T @ x, g[0]),
        lambda x, W, b, g: g @ W,
    ]),
    ex.check_critical_sigma_w: (critical_sigma_w, [
        lambda a: 1.0,
        lambda a: math.sqrt(2),
        lambda a: 2.0,
    ]),
    ex.check_layer_gradient_norms: (layer_gradient_norms, [
        lambda m: layer_gradient_norms(m)[::-1],
        lambda m: [v**2 for v in layer_gradient_norms(m)],
        lambda m: [p.grad.norm().item() for p in m.parameters()],
        lambda m: layer_gradient_norms(m)[:-1],
    ]),
    ex.check_exploding_exponent: (exploding_exponent, [
        lambda d: d + 1,
        lambda d: 2 * d,
        lambda d: d - 1,
    ]),
}


@pytest.mark.parametrize("checker", list(CASES), ids=lambda c: c.__name__)
def test_reference_solution_is_accepted(checker, capsys):
    assert checker(CASES[checker][0]) is None  # prints, returns nothing a notebook would echo
    assert capsys.readouterr().out.strip().endswith(": correct.")


@pytest.mark.parametrize("checker", list(CASES), ids=lambda c: c.__name__)
def test_not_attempted_prints_a_stable_line(checker, capsys):
    checker(not_attempted)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not attempted yet" in out


@pytest.mark.parametrize("checker, wrong", [(c, w) for c, (_, ws) in CASES.items() for w in ws],
                         ids=lambda v: getattr(v, "__name__", "wrong"))
def test_wrong_solutions_are_rejected(checker, wrong, capsys):
    checker(wrong)
    out = capsys.readouterr().out
    assert ": not yet." in out and "correct." not in out


def test_a_solution_must_be_a_function():
    with pytest.raises(TypeError, match="must be a function"):
        ex.check_exploding_exponent(10)


# --- notebooks 05, 06, 08 -------------------------------------------------------------------

def _bn_reference(x, gamma, beta, eps):
    mean = x.mean(dim=0)
    var = x.var(dim=0, unbiased=False)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def _stack_reference(jacobians):
    n = jacobians[0].shape[0]
    total = torch.eye(n, dtype=jacobians[0].dtype)
    for j in jacobians:
        total = (torch.eye(n, dtype=j.dtype) + j) @ total
    return total


CASES_05_08 = {
    ex.check_batch_norm_forward: (_bn_reference, [
        lambda x, gamma, beta, eps: gamma * (x - x.mean(0)) / (x.std(0, unbiased=False) + eps) + beta,  # seed 001
        lambda x, gamma, beta, eps: gamma * (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) + beta,
        lambda x, gamma, beta, eps: gamma * (x - x.mean(0)) / torch.sqrt(x.var(0) + eps) + beta,     # unbiased
        lambda x, gamma, beta, eps: (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True) + eps),
    ]),
    ex.check_running_variance: (lambda rv, b, m: (1 - m) * rv + m * b.var(0), [
        lambda rv, b, m: (1 - m) * rv + m * b.var(0, unbiased=False),
        lambda rv, b, m: m * rv + (1 - m) * b.var(0),
        lambda rv, b, m: b.var(0),
    ]),
    ex.check_weight_norm: (lambda g, v: g * v / v.norm(dim=1, keepdim=True), [
        lambda g, v: v / v.norm(dim=1, keepdim=True),                                          # seed 000
        lambda g, v: g * v / v.norm(dim=0, keepdim=True),
        lambda g, v: g * v / v.norm(),
    ]),
    ex.check_residual_block: (lambda x, f, p: (x if p is None else p(x)) + f(x), [
        lambda x, f, p: f(f(x) + x) if p is None else f(p(x)) + p(x),                          # seed 001
        lambda x, f, p: f(x),
        lambda x, f, p: x + f(x) if p is None else f(x),
    ]),
    ex.check_residual_jacobian: (_stack_reference, [
        lambda js: _stack_reference(js[::-1]),
        lambda js: js[2] @ js[1] @ js[0],
        lambda js: torch.eye(4, dtype=js[0].dtype) + sum(js),
    ]),
    ex.check_l1_gradient: (lambda w, lam: lam * torch.sign(w), [
        lambda w, lam: lam * w,
        lambda w, lam: torch.sign(w),
        lambda w, lam: lam * (w >= 0).double() * 2 - lam,
    ]),
    ex.check_inverted_dropout: (lambda x, mask, p: x * mask / (1 - p), [
        lambda x, mask, p: x * mask,
        lambda x, mask, p: x * mask * (1 - p),
        lambda x, mask, p: x * mask / p,
    ]),
    ex.check_weight_decay_step: (lambda w, g, lr, wd: w - lr * (g + wd * w), [
        lambda w, g, lr, wd: w - lr * g,
        lambda w, g, lr, wd: w - lr * (g + 0.5 * wd * w),
        lambda w, g, lr, wd: (1 - wd) * w - lr * g,
    ]),
}


@pytest.mark.parametrize("checker", list(CASES_05_08), ids=lambda c: c.__name__)
def test_reference_solution_is_accepted_05_08(checker, capsys):
    assert checker(CASES_05_08[checker][0]) is None
    assert capsys.readouterr().out.strip().endswith(": correct.")


@pytest.mark.parametrize("checker", list(CASES_05_08), ids=lambda c: c.__name__)
def test_not_attempted_prints_a_stable_line_05_08(checker, capsys):
    checker(not_attempted)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not attempted yet" in out


@pytest.mark.parametrize("checker, wrong", [(c, w) for c, (_, ws) in CASES_05_08.items() for w in ws],
                         ids=lambda v: getattr(v, "__name__", "wrong"))
def test_wrong_solutions_are_rejected_05_08(checker, wrong, capsys):
    checker(wrong)
    out = capsys.readouterr().out
    assert ": not yet." in out and "correct." not in out
