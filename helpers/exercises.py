"""Automatic checkers for the learners' exercises.

Each checker takes the learner's function, runs it on fresh inputs and compares it
with a reference computed independently (autograd, linear algebra or
:mod:`helpers.theory`). It prints one stable line and returns nothing (so a notebook
shows the line and no ``True``/``False`` after it):

* ``… not attempted yet …`` -- the function still raises ``NotImplementedError``;
* ``… correct.``
* ``… not yet. <hint>`` -- wrong, with a hint.

Reference *solutions* live in ``tests/test_exercises.py``, not in the notebooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from helpers.diagnostics import layer_grad_norms
from helpers.models import MLP
from helpers.theory import chi

_TITLES = {
    "1.1": "gradient of a quadratic",
    "1.2": "largest stable learning rate",
    "1.3": "backward pass of a linear layer",
    "2.1": "critical weight scale",
    "2.2": "per-layer gradient norms",
    "2.3": "how fast gradients explode",
}


def _report(exercise: str, ok: bool | None, hint: str = "") -> None:
    title = f"Exercise {exercise} ({_TITLES[exercise]})"
    if ok is None:
        print(f"{title}: not attempted yet. Replace `raise NotImplementedError` with your code.")
    elif ok:
        print(f"{title}: correct.")
    else:
        print(f"{title}: not yet. {hint}")


def _attempt(exercise: str, fn: Callable, *args):
    """Call the learner's function; map NotImplementedError to 'not attempted'."""
    if not callable(fn):
        raise TypeError(f"the solution of exercise {exercise} must be a function, got {type(fn).__name__}")
    try:
        return True, fn(*args)
    except NotImplementedError:
        return False, None


def _close(a, b, tol: float = 1e-5) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(
        a.double(), b.double(), rtol=tol, atol=tol)


def _spd_matrix(n: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eigenvalues = torch.linspace(0.5, 5.0, n, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T


def check_quadratic_gradient(fn: Callable) -> None:
    r"""Exercise 1.1: ``fn(A, b, theta)`` returns the gradient of the quadratic.

    .. math:: \nabla_\theta \big(\tfrac12 \theta^\top A \theta - b^\top \theta\big), \quad A = A^\top
    """
    g = torch.Generator().manual_seed(11)
    for n in (2, 5):
        A = _spd_matrix(n, g)
        b = torch.randn(n, generator=g, dtype=torch.float64)
        theta = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
        (0.5 * theta @ A @ theta - b @ theta).backward()
        attempted, answer = _attempt("1.1", fn, A, b, theta.detach().clone())
        if not attempted:
            return _report("1.1", None)
        if not _close(answer, theta.grad):
            return _report("1.1", False, "Differentiate each term: the gradient of ½θᵀAθ is Aθ "
                           "(A symmetric) and that of bᵀθ is b. Return a tensor shaped like theta.")
    return _report("1.1", True)


def check_largest_stable_lr(fn: Callable) -> None:
    r"""Exercise 1.2: ``fn(A)`` returns the learning rate above which gradient descent diverges.

    For the quadratic with Hessian A that is :math:`2/\lambda_{max}(A)`.
    """
    g = torch.Generator().manual_seed(12)
    for n in (2, 6):
        A = _spd_matrix(n, g)
        expected = 2.0 / float(torch.linalg.eigvalsh(A).max())
        attempted, answer = _attempt("1.2", fn, A)
        if not attempted:
            return _report("1.2", None)
        try:
            value = float(answer)
        except (TypeError, ValueError):
            return _report("1.2", False, "Return one number.")
        if not math.isclose(value, expected, rel_tol=1e-6):
            return _report("1.2", False, "Along an eigenvector with eigenvalue λ one step multiplies the "
                           "error by (1 − ηλ); it must stay inside (−1, 1) for every λ.")
    return _report("1.2", True)


def check_linear_backward(fn: Callable) -> None:
    r"""Exercise 1.3: ``fn(x, W, b, grad_out)`` returns ``(grad_x, grad_W, grad_b)`` for :math:`y = x W^\top + b`."""
    g = torch.Generator().manual_seed(13)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(7, 3, generator=g, dtype=torch.float64)
    (x @ W.T + b).backward(grad_out)
    attempted, answer = _attempt("1.3", fn, x.detach(), W.detach(), b.detach(), grad_out)
    if not attempted:
        return _report("1.3", None)
    if not (isinstance(answer, tuple | list) and len(answer) == 3):
        return _report("1.3", False, "Return a tuple (grad_x, grad_W, grad_b).")
    for name, got, want in zip(("grad_x", "grad_W", "grad_b"), answer, (x.grad, W.grad, b.grad)):
        if not _close(got, want):
            return _report("1.3", False, f"{name} is wrong: each gradient has the shape of its "
                           "variable, and the bias gradient sums over the batch.")
    return _report("1.3", True)


def check_critical_sigma_w(fn: Callable) -> None:
    r"""Exercise 2.1: ``fn(activation)`` returns the critical weight scale of ``"relu"`` and ``"tanh"``.

    Critical: :math:`\chi(\sigma_w) = 1` with no bias, checked with :func:`helpers.theory.chi`.
    """
    for activation in ("relu", "tanh"):
        attempted, answer = _attempt("2.1", fn, activation)
        if not attempted:
            return _report("2.1", None)
        try:
            sigma_w = float(answer)
        except (TypeError, ValueError):
            return _report("2.1", False, "Return one number per activation.")
        # 30 layers at chi must change the gradient norm by less than a factor 2
        if not (sigma_w > 0 and abs(15 * math.log(chi(activation, sigma_w))) < math.log(2)):
            return _report("2.1", False, f"For {activation}, χ = σ_w²·E[φ'(h)²] is not close to 1 "
                           "at your σ_w. What is E[φ'(h)²] for this activation?")
    return _report("2.1", True)


def check_layer_gradient_norms(fn: Callable) -> None:
    """Exercise 2.2: ``fn(model)`` returns the list of weight-gradient norms, input to output."""
    torch.manual_seed(22)
    model = MLP(6, 3, width=8, depth=4, activation="tanh")
    nn.functional.cross_entropy(model(torch.randn(16, 6)), torch.randint(0, 3, (16,))).backward()
    expected = list(layer_grad_norms(model).values())
    attempted, answer = _attempt("2.2", fn, model)
    if not attempted:
        return _report("2.2", None)
    try:
        values = [float(v) for v in answer]
    except (TypeError, ValueError):
        return _report("2.2", False, "Return a list of numbers, one per Linear layer.")
    if len(values) != len(expected):
        return _report("2.2", False, f"Expected {len(expected)} numbers (one per Linear layer, "
                       f"weights only), got {len(values)}.")
    if not all(math.isclose(v, e, rel_tol=1e-5) for v, e in zip(values, expected)):
        return _report("2.2", False, "Use the Frobenius norm of each Linear layer's weight.grad "
                       "(not squared, not the bias), ordered from input to output.")
    return _report("2.2", True)


def check_exploding_exponent(fn: Callable) -> None:
    r"""Exercise 2.3: ``fn(depth)`` returns the exponent p of the exploding gradient.

    Multiplying every weight of a bias-free ReLU MLP with ``depth`` hidden layers by k
    multiplies the weight gradients by :math:`k^p` (cross-entropy, saturated softmax).
    """
    for depth in (3, 7, 12):
        attempted, answer = _attempt("2.3", fn, depth)
        if not attempted:
            return _report("2.3", None)
        try:
            value = float(answer)
        except (TypeError, ValueError):
            return _report("2.3", False, "Return one number.")
        if not math.isclose(value, depth):
            return _report("2.3", False, "A bias-free ReLU net is positively homogeneous: scaling one "
                           "layer by k scales its output by k. Which weights does ∂ŷ/∂W_ℓ contain?")
    return _report("2.3", True)


# -- notebook 03: weight initialization -----------------------------------------------

_TITLES.update({
    "3.1": "Xavier's standard deviation",
    "3.2": "He's uniform bound",
    "3.3": "an orthogonal matrix",
})


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_xavier_std(fn: Callable) -> None:
    r"""Exercise 3.1: ``fn(fan_in, fan_out)`` returns :math:`\sqrt{2/(\text{fan\_in} + \text{fan\_out})}`."""
    pairs = ((64, 64), (100, 10), (3, 300))
    values = []
    for fan_in, fan_out in pairs:
        attempted, answer = _attempt("3.1", fn, fan_in, fan_out)
        if not attempted:
            return _report("3.1", None)
        values.append(_number(answer))
    if None in values:
        return _report("3.1", False, "Return one number.")
    if all(math.isclose(v, math.sqrt(i / o), rel_tol=1e-6) for v, (i, o) in zip(values, pairs)):
        return _report("3.1", False, "That is seed 002's √(d_in/d_out); it does not depend on the "
                       "width at all for a square layer. Average the two conditions 1/fan_in and 1/fan_out.")
    if not all(math.isclose(v, math.sqrt(2 / (i + o)), rel_tol=1e-6) for v, (i, o) in zip(values, pairs)):
        return _report("3.1", False, "The forward pass wants Var(W) = 1/fan_in, the backward pass "
                       "1/fan_out; Xavier takes the harmonic compromise. Return the std, not the variance.")
    return _report("3.1", True)


def check_he_uniform_bound(fn: Callable) -> None:
    r"""Exercise 3.2: ``fn(fan_in, fan_out)`` returns :math:`\sqrt{6/\text{fan\_in}}`."""
    for fan_in, fan_out in ((64, 64), (100, 10), (3, 300)):
        attempted, answer = _attempt("3.2", fn, fan_in, fan_out)
        if not attempted:
            return _report("3.2", None)
        value = _number(answer)
        if value is None:
            return _report("3.2", False, "Return one number.")
        if math.isclose(value, math.sqrt(2 / (fan_in + fan_out)), rel_tol=1e-6):
            return _report("3.2", False, "That is seed 000's formula: it keeps 1/6 of the signal per "
                           "ReLU layer. He's variance is 2/fan_in, and U(−b, b) has variance b²/3.")
        if not math.isclose(value, math.sqrt(6 / fan_in), rel_tol=1e-6):
            return _report("3.2", False, "He's variance is 2/fan_in (fan_out plays no part in mode "
                           "'fan_in'), and a uniform on (−b, b) has variance b²/3.")
    return _report("3.2", True)


def check_orthogonal_matrix(fn: Callable) -> None:
    """Exercise 3.3: ``fn(rows, cols, generator)`` returns a (semi-)orthogonal ``rows × cols`` matrix."""
    samples = []
    for rows, cols in ((5, 5), (3, 8), (8, 3)):
        attempted, answer = _attempt("3.3", fn, rows, cols, torch.Generator().manual_seed(rows * 10 + cols))
        if not attempted:
            return _report("3.3", None)
        if not isinstance(answer, torch.Tensor) or tuple(answer.shape) != (rows, cols):
            return _report("3.3", False, f"Return a tensor of shape ({rows}, {cols}).")
        w = answer.detach().double()
        gram = w @ w.T if rows <= cols else w.T @ w
        if not torch.allclose(gram, torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-4):
            return _report("3.3", False, "Q of a QR factorisation has orthonormal columns; for a wide "
                           "matrix factor its transpose and transpose Q back.")
        samples.append(w)
    other = fn(5, 5, torch.Generator().manual_seed(1234))
    if torch.equal(other.detach().double(), samples[0]):
        return _report("3.3", False, "Orthogonal, but the same for every generator: draw a Gaussian "
                       "matrix with it first (the identity is orthogonal but not random).")
    return _report("3.3", True)


# -- notebook 04: activation functions ---------------------------------------------------

_TITLES.update({
    "4.1": "leaky ReLU from scratch",
    "4.2": "the sigmoid's derivative",
    "4.3": "fraction of dead units",
})


def check_leaky_relu(fn: Callable) -> None:
    r"""Exercise 4.1: ``fn(x, a)`` returns :math:`x` where :math:`x > 0` and :math:`a x` elsewhere."""
    g = torch.Generator().manual_seed(41)
    for a in (0.01, 0.2):
        x = torch.randn(50, generator=g, dtype=torch.float64) * 3
        attempted, answer = _attempt("4.1", fn, x.clone(), a)
        if not attempted:
            return _report("4.1", None)
        if _close(answer, a * x):
            return _report("4.1", False, "a·x on both branches (seed 004's formula) is a linear function: "
                           "a deep net of it is one linear map. Only the negative side is scaled.")
        if not _close(answer, torch.nn.functional.leaky_relu(x, a)):
            return _report("4.1", False, "Keep x where x > 0 and use a·x where x ≤ 0 (torch.where helps).")
    return _report("4.1", True)


def check_sigmoid_derivative(fn: Callable) -> None:
    r"""Exercise 4.2: ``fn(x)`` returns :math:`\sigma'(x) = \sigma(x)(1 - \sigma(x))`, finite for large :math:`|x|`."""
    x = torch.tensor([-1000.0, -30.0, -2.0, 0.0, 0.5, 3.0, 30.0, 1000.0], dtype=torch.float64)
    attempted, answer = _attempt("4.2", fn, x.clone())
    if not attempted:
        return _report("4.2", None)
    s = torch.sigmoid(x)
    if not isinstance(answer, torch.Tensor) or not torch.isfinite(answer).all():
        return _report("4.2", False, "Return a tensor that stays finite at ±1000: e^{1000} overflows, "
                       "so write the derivative in terms of σ(x) itself.")
    if not _close(answer, s * (1 - s), tol=1e-9):
        return _report("4.2", False, "Differentiate 1/(1 + e^{−x}) and express the result with σ(x).")
    return _report("4.2", True)


def check_dead_fraction(fn: Callable) -> None:
    """Exercise 4.3: ``fn(h)`` returns the fraction of units (columns) of a ReLU output that are 0 for every example."""
    g = torch.Generator().manual_seed(43)
    h = torch.relu(torch.randn(64, 20, generator=g))
    h[:, :5] = 0.0           # five dead units
    h[3, 5:8] = 0.0          # zeros that do not make a unit dead
    attempted, answer = _attempt("4.3", fn, h.clone())
    if not attempted:
        return _report("4.3", None)
    value = _number(answer)
    if value is None:
        return _report("4.3", False, "Return one number between 0 and 1.")
    if math.isclose(value, (h == 0).float().mean().item(), rel_tol=1e-6):
        return _report("4.3", False, "That is the fraction of zero *entries*; a unit is dead only if its "
                       "whole column is zero, for every example of the batch.")
    if not math.isclose(value, 0.25, rel_tol=1e-6):
        return _report("4.3", False, "Rows are examples, columns are units: count the columns that are zero "
                       "in every row, divided by the number of columns.")
    return _report("4.3", True)
# --------------------------------------------------------------------------- notebook 07

_TITLES.update({
    "7.1": "clip by value",
    "7.2": "clip by global norm",
    "7.3": "a threshold from observed gradient norms",
})


def check_clip_by_value(fn: Callable) -> None:
    r"""Exercise 7.1: ``fn(g, v)`` returns a new tensor with every entry clamped into :math:`[-v, v]`."""
    g = torch.Generator().manual_seed(71)
    for v in (0.5, 2.0):
        grad = 3 * torch.randn(50, generator=g, dtype=torch.float64)
        attempted, answer = _attempt("7.1", fn, grad.clone(), v)
        if not attempted:
            return _report("7.1", None)
        if not _close(answer, grad.clamp(-v, v), tol=1e-12):
            return _report("7.1", False, "Entries inside [−v, v] must stay as they are; those below −v "
                           "become −v and those above v become v. Check the lower bound of your max().")
    return _report("7.1", True)


def check_clip_by_global_norm(fn: Callable) -> None:
    r"""Exercise 7.2: ``fn(grads, max_norm)`` returns the list of clipped gradients.

    One scale for all tensors: :math:`\min(1, c/\lVert g \rVert_2)`, :math:`\lVert g \rVert_2` over all
    entries of all tensors.
    """
    g = torch.Generator().manual_seed(72)
    grads = [torch.randn(shape, generator=g, dtype=torch.float64) * s
             for shape, s in (((4, 3), 1.0), ((3,), 10.0), ((2, 2, 2), 0.1))]
    total = math.sqrt(sum(float(t.square().sum()) for t in grads))
    for max_norm in (0.5 * total, 2 * total):
        scale = min(1.0, max_norm / total)
        attempted, answer = _attempt("7.2", fn, [t.clone() for t in grads], max_norm)
        if not attempted:
            return _report("7.2", None)
        if not (isinstance(answer, list | tuple) and len(answer) == len(grads)):
            return _report("7.2", False, f"Return a list of {len(grads)} tensors, one per gradient.")
        if not all(_close(a, t * scale, tol=1e-5) for a, t in zip(answer, grads)):
            return _report("7.2", False, "Use one norm over all entries of all tensors (not one per "
                           "tensor), and scale only when it exceeds max_norm.")
    return _report("7.2", True)


def check_threshold_from_norms(fn: Callable) -> None:
    r"""Exercise 7.3: ``fn(norms, fraction)`` returns a threshold exceeded by ``fraction`` of ``norms``."""
    g = torch.Generator().manual_seed(73)
    norms = torch.exp(torch.randn(400, generator=g, dtype=torch.float64)).tolist()
    for fraction in (0.1, 0.25):
        attempted, answer = _attempt("7.3", fn, list(norms), fraction)
        if not attempted:
            return _report("7.3", None)
        try:
            threshold = float(answer)
        except (TypeError, ValueError):
            return _report("7.3", False, "Return one number.")
        fired = sum(n > threshold for n in norms) / len(norms)
        if abs(fired - fraction) > 0.01:
            return _report("7.3", False, f"With your threshold clipping would fire on {fired:.0%} of these "
                           f"steps instead of {fraction:.0%}. Which quantile of the norms is that?")
    return _report("7.3", True)


# --------------------------------------------------------------------------- notebook 09

_TITLES.update({
    "9.1": "one step of SGD with momentum",
    "9.2": "one step of Adam",
})


def check_momentum_step(fn: Callable) -> None:
    r"""Exercise 9.1: ``fn(param, grad, buf, lr, momentum, nesterov)`` returns ``(new_param, new_buf)``.

    :math:`b \leftarrow \mu b + g`; the step is :math:`\eta b` (or :math:`\eta(g + \mu b)` with Nesterov).
    """
    g = torch.Generator().manual_seed(91)
    for nesterov in (False, True):
        param = torch.randn(6, generator=g, dtype=torch.float64)
        grad = torch.randn(6, generator=g, dtype=torch.float64)
        buf = torch.randn(6, generator=g, dtype=torch.float64)
        new_buf = 0.9 * buf + grad
        new_param = param - 0.1 * (grad + 0.9 * new_buf if nesterov else new_buf)
        attempted, answer = _attempt("9.1", fn, param.clone(), grad.clone(), buf.clone(), 0.1, 0.9, nesterov)
        if not attempted:
            return _report("9.1", None)
        if not (isinstance(answer, tuple | list) and len(answer) == 2):
            return _report("9.1", False, "Return a pair (new_param, new_buf).")
        if not _close(answer[1], new_buf, tol=1e-12):
            return _report("9.1", False, "The buffer is momentum × old buffer + gradient "
                           "(PyTorch's convention, without a (1 − momentum) factor).")
        if not _close(answer[0], new_param, tol=1e-12):
            return _report("9.1", False, "Without Nesterov the step is lr × new buffer; with Nesterov it "
                           "is lr × (gradient + momentum × new buffer).")
    return _report("9.1", True)


def check_adam_step(fn: Callable) -> None:
    r"""Exercise 9.2: ``fn(param, grad, m, v, t, lr, beta1, beta2, eps)`` returns ``(param, m, v)`` after step ``t``."""
    g = torch.Generator().manual_seed(92)
    lr, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-8
    param = torch.randn(5, generator=g, dtype=torch.float64)
    m, v = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    for t in (1, 2, 3):
        grad = torch.randn(5, generator=g, dtype=torch.float64)
        m_new = beta1 * m + (1 - beta1) * grad
        v_new = beta2 * v + (1 - beta2) * grad ** 2
        p_new = param - lr * (m_new / (1 - beta1 ** t)) / ((v_new / (1 - beta2 ** t)).sqrt() + eps)
        attempted, answer = _attempt("9.2", fn, param.clone(), grad, m.clone(), v.clone(), t, lr, beta1, beta2, eps)
        if not attempted:
            return _report("9.2", None)
        if not (isinstance(answer, tuple | list) and len(answer) == 3):
            return _report("9.2", False, "Return a triple (param, m, v).")
        if not (_close(answer[1], m_new, 1e-10) and _close(answer[2], v_new, 1e-10)):
            return _report("9.2", False, "m and v are moving averages of the gradient and of its square, "
                           "with weights β and 1 − β.")
        if not _close(answer[0], p_new, 1e-7):
            return _report("9.2", False, "Divide m by 1 − β₁ᵗ and v by 1 − β₂ᵗ (bias correction) and add "
                           "ε after the square root.")
        param, m, v = p_new, m_new, v_new
    return _report("9.2", True)


# --------------------------------------------------------------------------- notebook 10

_TITLES.update({
    "10.1": "cosine annealing",
    "10.2": "decay factor for a half-life",
})


def check_cosine_lr(fn: Callable) -> None:
    r"""Exercise 10.1: ``fn(t, T, eta_max, eta_min)`` returns the cosine-annealed learning rate at step ``t <= T``."""
    for T, eta_max, eta_min in ((10, 0.1, 0.0), (37, 1.0, 0.05)):
        for t in range(T + 1):
            expected = eta_min + 0.5 * (eta_max - eta_min) * (1 + math.cos(math.pi * t / T))
            attempted, answer = _attempt("10.1", fn, t, T, eta_max, eta_min)
            if not attempted:
                return _report("10.1", None)
            try:
                value = float(answer)
            except (TypeError, ValueError):
                return _report("10.1", False, "Return one number.")
            if not math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12):
                return _report("10.1", False, "At t = 0 it must give eta_max and at t = T eta_min; the "
                               "cosine term 1 + cos(πt/T) runs from 2 to 0, so it needs a factor ½.")
    return _report("10.1", True)


def check_half_life_gamma(fn: Callable) -> None:
    r"""Exercise 10.2: ``fn(k)`` returns the factor :math:`\gamma` per step that halves the rate in ``k`` steps."""
    for k in (1, 10, 250):
        attempted, answer = _attempt("10.2", fn, k)
        if not attempted:
            return _report("10.2", None)
        try:
            gamma = float(answer)
        except (TypeError, ValueError):
            return _report("10.2", False, "Return one number.")
        if not math.isclose(gamma ** k, 0.5, rel_tol=1e-9):
            return _report("10.2", False, "After k steps the rate is multiplied by γᵏ; solve γᵏ = ½.")
    return _report("10.2", True)
