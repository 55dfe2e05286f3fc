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


# --- notebooks 05 (normalization), 06 (residual connections), 08 (regularization) ---------

_TITLES.update({
    "5.1": "batch norm, training mode",
    "5.2": "running variance",
    "5.3": "weight normalization",
    "6.1": "a residual block",
    "6.2": "the Jacobian of a residual stack",
    "8.1": "the gradient of the L1 penalty",
    "8.2": "inverted dropout",
    "8.3": "an SGD step with weight decay",
})


def check_batch_norm_forward(fn: Callable) -> None:
    r"""Exercise 5.1: ``fn(x, gamma, beta, eps)`` normalises a batch (N, C) in training mode.

    .. math:: y = \gamma \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    with :math:`\mu` and the biased :math:`\sigma^2` taken per column.
    """
    g = torch.Generator().manual_seed(51)
    for n, c in ((16, 3), (5, 7)):
        x = 3 * torch.randn(n, c, generator=g, dtype=torch.float64) + 2
        x[:, 0] = 1.5                     # a constant column: its variance is 0
        gamma = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
        beta = torch.randn(c, generator=g, dtype=torch.float64)
        eps = 0.1
        expected = nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
        attempted, answer = _attempt("5.1", fn, x.clone(), gamma.clone(), beta.clone(), eps)
        if not attempted:
            return _report("5.1", None)
        if not _close(answer, expected, 1e-8):
            return _report("5.1", False, "Average over the batch (dim 0), one mean and one biased variance "
                           "per column, and divide by √(σ² + ε), not σ + ε.")
    return _report("5.1", True)


def check_running_variance(fn: Callable) -> None:
    r"""Exercise 5.2: ``fn(running_var, batch, momentum)`` returns the updated running variance.

    .. math:: \hat\sigma^2 \leftarrow (1 - \alpha)\,\hat\sigma^2 + \alpha\, \tfrac{m}{m-1}\sigma^2_{batch}
    """
    g = torch.Generator().manual_seed(52)
    for m, momentum in ((4, 0.1), (10, 0.3)):
        running = torch.rand(3, generator=g, dtype=torch.float64) + 0.5
        batch = 2 * torch.randn(m, 3, generator=g, dtype=torch.float64)
        layer = nn.BatchNorm1d(3, momentum=momentum).double()
        layer.running_var.copy_(running)
        layer(batch)
        attempted, answer = _attempt("5.2", fn, running.clone(), batch.clone(), momentum)
        if not attempted:
            return _report("5.2", None)
        if not _close(answer, layer.running_var, 1e-10):
            return _report("5.2", False, "momentum is the weight of the *new* batch, and the running "
                           "estimate uses the unbiased variance of the batch (divide by m − 1).")
    return _report("5.2", True)


def check_weight_norm(fn: Callable) -> None:
    r"""Exercise 5.3: ``fn(g, v)`` returns the weight :math:`w_i = g_i v_i / \lVert v_i \rVert` (rows i)."""
    gen = torch.Generator().manual_seed(53)
    g = torch.rand(4, 1, generator=gen, dtype=torch.float64) * 3 + 0.5
    v = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    expected = g * v / v.norm(dim=1, keepdim=True)
    attempted, answer = _attempt("5.3", fn, g.clone(), v.clone())
    if not attempted:
        return _report("5.3", None)
    if not _close(answer, expected, 1e-10):
        return _report("5.3", False, "Normalise each row of v (one output unit each) to length 1, then "
                       "multiply by its learned gain g: without g every row would have length 1.")
    return _report("5.3", True)


def check_residual_block(fn: Callable) -> None:
    r"""Exercise 6.1: ``fn(x, branch, projection)`` returns :math:`P x + F(x)`.

    :math:`P` is ``projection``, or the identity when it is None.
    """
    with torch.random.fork_rng(devices=[]):        # leave the learner's random state alone
        torch.manual_seed(61)
        cases = [(nn.Sequential(nn.Tanh(), nn.Linear(5, 5)), None, 5),
                 (nn.Sequential(nn.Tanh(), nn.Linear(5, 3)), nn.Linear(5, 3, bias=False), 5)]
        inputs = [torch.randn(4, width, dtype=torch.float64) for *_, width in cases]
    for (branch, projection, _), x in zip(cases, inputs):
        branch.double()
        if projection is not None:
            projection.double()
        with torch.no_grad():
            expected = (x if projection is None else projection(x)) + branch(x)
            attempted, answer = _attempt("6.1", fn, x.clone(), branch, projection)
        if not attempted:
            return _report("6.1", None)
        if not _close(answer, expected, 1e-10):
            return _report("6.1", False, "Apply F once, to x, and add the skip: x itself, or projection(x) "
                           "when the branch changes the width.")
    return _report("6.1", True)


def check_residual_jacobian(fn: Callable) -> None:
    r"""Exercise 6.2: ``fn(jacobians)`` returns :math:`\partial h_L / \partial h_0 = (I + J_L) \cdots (I + J_1)`.

    ``jacobians[l]`` is the Jacobian of the branch of block :math:`l + 1` (applied first for ``l = 0``).
    """
    g = torch.Generator().manual_seed(62)
    matrices = [0.3 * torch.randn(4, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    expected = torch.autograd.functional.jacobian(
        lambda h: _linear_residual_stack(matrices, h), torch.randn(4, dtype=torch.float64))
    attempted, answer = _attempt("6.2", fn, [m.clone() for m in matrices])
    if not attempted:
        return _report("6.2", None)
    if not _close(answer, expected, 1e-10):
        return _report("6.2", False, "Each block contributes I + J (the skip gives I), and the chain rule "
                       "puts the last block on the left: (I + J_3)(I + J_2)(I + J_1).")
    return _report("6.2", True)


def _linear_residual_stack(matrices, h):
    for m in matrices:
        h = h + m @ h
    return h


def check_l1_gradient(fn: Callable) -> None:
    r"""Exercise 8.1: ``fn(w, coefficient)`` returns the gradient of :math:`\lambda \sum_i |w_i|` (0 where w = 0)."""
    g = torch.Generator().manual_seed(81)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    w[0, 0] = 0.0
    attempted, answer = _attempt("8.1", fn, w.clone(), 0.3)
    if not attempted:
        return _report("8.1", None)
    if not _close(answer, 0.3 * torch.sign(w), 1e-12):
        return _report("8.1", False, "|w| has slope +1 for w > 0 and −1 for w < 0, whatever the size of w "
                       "(λ·w would be the gradient of the L2 penalty).")
    return _report("8.1", True)


def check_inverted_dropout(fn: Callable) -> None:
    r"""Exercise 8.2: ``fn(x, mask, p)`` applies inverted dropout with the given 0/1 ``mask``."""
    g = torch.Generator().manual_seed(82)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    for p in (0.25, 0.6):
        mask = (torch.rand(6, 4, generator=g, dtype=torch.float64) >= p).double()
        attempted, answer = _attempt("8.2", fn, x.clone(), mask.clone(), p)
        if not attempted:
            return _report("8.2", None)
        if not _close(answer, x * mask / (1 - p), 1e-12):
            return _report("8.2", False, "Keep the masked units and divide them by the keep probability "
                           "1 − p, so the expected value of every unit stays x.")
    return _report("8.2", True)


def check_weight_decay_step(fn: Callable) -> None:
    r"""Exercise 8.3: ``fn(w, grad, lr, weight_decay)`` returns the weights after one step of ``torch.optim.SGD``."""
    g = torch.Generator().manual_seed(83)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64)
    grad = torch.randn(4, 3, generator=g, dtype=torch.float64)
    param = nn.Parameter(w.clone())
    param.grad = grad.clone()
    torch.optim.SGD([param], lr=0.1, weight_decay=0.01).step()
    attempted, answer = _attempt("8.3", fn, w.clone(), grad.clone(), 0.1, 0.01)
    if not attempted:
        return _report("8.3", None)
    if not _close(answer, param.detach(), 1e-12):
        return _report("8.3", False, "Weight decay adds weight_decay · w to the gradient before the step: "
                       "w − lr · (grad + weight_decay · w).")
    return _report("8.3", True)
