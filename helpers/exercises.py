"""Automatic checkers for the learners' exercises.

Each checker takes the learner's function, runs it on fresh inputs and compares it
with a reference computed independently (autograd, linear algebra or
:mod:`helpers.theory`). It prints one stable line and returns nothing (so a notebook
shows the line and no ``True``/``False`` after it):

* ``… not attempted yet …`` -- the function still raises ``NotImplementedError``;
* ``… correct.``
* ``… not yet. <hint>`` -- wrong, with a hint.

Worked *solutions* live in :mod:`helpers.solutions`, not in the notebooks:
``show_solution("3.1")`` prints one after its checker has checked an attempt of yours
(or at once with ``force=True``).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable

import torch
from torch import nn

from helpers.diagnostics import layer_grad_norms
from helpers.models import MLP
from helpers.solutions import SOLUTIONS, exercise_id
from helpers.theory import chi

_TITLES = {
    "1.1": "gradient of a quadratic",
    "1.2": "largest stable learning rate with momentum",
    "1.3": "backward pass of a linear layer",
    "2.1": "critical weight scale",
    "2.2": "per-layer gradient norms",
    "2.3": "how fast the input gradient explodes",
}


_ATTEMPTED: set[str] = set()


def attempted() -> frozenset[str]:
    """The exercises whose checker has checked an attempt (right or wrong) in this session."""
    return frozenset(_ATTEMPTED)


def show_solution(exercise, *, force: bool = False) -> None:
    """Print the worked solution of ``exercise`` (e.g. ``"3.1"``) once you have tried it.

    Shown when the exercise's checker has checked an attempt of yours in this session, or
    with ``force=True``; otherwise a note asks you to try first. Prints, returns nothing.
    """
    key = exercise_id(exercise)
    solution = SOLUTIONS[key]
    title = f"Exercise {key} ({_TITLES[key]})"
    if not force and key not in attempted():
        print(f"{title}: try first. Write your function, run its checker cell "
              f"(exercises.{solution.checker}), then ask again; show_solution({key!r}, force=True) shows it now.")
        return
    print(f"{title}: a worked solution (it passes exercises.{solution.checker}).\n")
    print(solution.code)
    print()
    print(textwrap.fill(f"Why: {solution.explanation}", width=100))


def _report(exercise: str, ok: bool | None, hint: str = "") -> None:
    title = f"Exercise {exercise} ({_TITLES[exercise]})"
    if ok is not None:
        _ATTEMPTED.add(exercise)
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
    r"""Exercise 1.1: ``fn(A, b, theta)`` returns the gradient of the quadratic, for any square ``A``.

    .. math:: \nabla_\theta \big(\tfrac12 \theta^\top A \theta - b^\top \theta\big)
              = \tfrac12 (A + A^\top)\,\theta - b

    Notebook 01 prints the symmetric case (:math:`A\theta - b`); the checker uses
    matrices that are *not* symmetric, so copying that formula is not enough.
    """
    g = torch.Generator().manual_seed(11)
    for n in (2, 5):
        A = _spd_matrix(n, g) + torch.randn(n, n, generator=g, dtype=torch.float64)  # not symmetric
        b = torch.randn(n, generator=g, dtype=torch.float64)
        theta = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
        (0.5 * theta @ A @ theta - b @ theta).backward()
        attempted, answer = _attempt("1.1", fn, A, b, theta.detach().clone())
        if not attempted:
            return _report("1.1", None)
        if not _close(answer, theta.grad):
            if _close(answer, A @ theta.detach() - b):
                return _report("1.1", False, "Aθ − b is the gradient only when A is symmetric, and this A is "
                               "not. Write ½θᵀAθ as ½Σᵢⱼ θᵢAᵢⱼθⱼ and differentiate with respect to θₖ: "
                               "θₖ appears once as the row index and once as the column index.")
            return _report("1.1", False, "Differentiate each term: ½θᵀAθ (write it as ½Σᵢⱼ θᵢAᵢⱼθⱼ; A need "
                           "not be symmetric) and bᵀθ, whose gradient is b. Return a tensor shaped like theta.")
    return _report("1.1", True)


def check_largest_stable_lr(fn: Callable) -> None:
    r"""Exercise 1.2: ``fn(A, beta)`` returns the learning rate above which gradient descent with
    heavy-ball momentum :math:`\beta` diverges on the quadratic with Hessian A.

    The iteration :math:`\theta_{t+1} = \theta_t - \eta\nabla L(\theta_t) + \beta(\theta_t - \theta_{t-1})`
    (PyTorch's ``SGD(momentum=beta)``) multiplies the pair :math:`(e_t, e_{t-1})` along an eigenvector
    with eigenvalue :math:`\lambda` by :math:`\begin{pmatrix} 1 + \beta - \eta\lambda & -\beta \\ 1 & 0\end{pmatrix}`;
    for :math:`0 \le \beta < 1` both of its eigenvalues lie inside the unit circle iff
    :math:`0 < \eta\lambda < 2(1 + \beta)`, so the limit is :math:`2(1 + \beta)/\lambda_{max}(A)`
    (Polyak 1964). Notebook 01 derives only :math:`\beta = 0`; the checker also tries 0.5 and 0.9.
    """
    g = torch.Generator().manual_seed(12)
    for n in (2, 6):
        A = _spd_matrix(n, g)
        lam = float(torch.linalg.eigvalsh(A).max())
        for beta in (0.0, 0.5, 0.9):
            expected = 2.0 * (1.0 + beta) / lam
            attempted, answer = _attempt("1.2", fn, A.clone(), beta)
            if not attempted:
                return _report("1.2", None)
            try:
                value = float(answer)
            except (TypeError, ValueError):
                return _report("1.2", False, "Return one number.")
            if math.isclose(value, expected, rel_tol=1e-6):
                continue
            if beta > 0 and math.isclose(value, 2.0 / lam, rel_tol=1e-6):
                return _report("1.2", False, f"2/λmax is plain gradient descent's limit (β = 0); with momentum "
                               f"β = {beta} it changes. Along an eigenvector write the error recurrence "
                               "e_{t+1} = (1 + β − ηλ) e_t − β e_{t−1} as a 2×2 matrix acting on (e_t, e_{t−1}) "
                               "and find the η at which one of its eigenvalues reaches −1.")
            return _report("1.2", False, f"Wrong for β = {beta}. The 2×2 matrix [[1 + β − ηλ, −β], [1, 0]] "
                           "has determinant β < 1, so it turns unstable when an eigenvalue passes −1: put z = −1 "
                           "into its characteristic polynomial z² − (1 + β − ηλ) z + β and solve for η, for the "
                           "largest λ.")
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
    r"""Exercise 2.1: ``fn(activation, sigma_b)`` returns a weight scale at which :math:`\chi = 1`.

    Cases: ``("sigmoid", 0.0)`` and ``("tanh", 0.3)``, neither printed in notebook 02.
    Checked with :func:`helpers.theory.chi` at the learner's :math:`\sigma_w`: 30 layers at
    that :math:`\chi` must change the gradient norm by less than a factor 2.
    """
    for activation, sigma_b in (("sigmoid", 0.0), ("tanh", 0.3)):
        attempted, answer = _attempt("2.1", fn, activation, sigma_b)
        if not attempted:
            return _report("2.1", None)
        try:
            sigma_w = float(answer)
        except (TypeError, ValueError):
            return _report("2.1", False, "Return one number per case.")
        value = chi(activation, sigma_w, sigma_b=sigma_b) if 0 < sigma_w < 1e3 else math.inf
        if not (0 < value and abs(15 * math.log(value)) < math.log(2)):
            naive = {"sigmoid": 4.0, "tanh": 1.0}[activation]
            if math.isclose(sigma_w, naive, rel_tol=0.02):
                hint = (f"σ_w = {naive:g} would give χ = 1 only if every pre-activation sat at 0, where the "
                        f"slope is largest. With this σ_w (and σ_b = {sigma_b:g}) they spread out and the "
                        f"mean squared slope is smaller: χ = {value:.2f}. Measure χ with helpers.theory.chi and "
                        "search for the σ_w where it crosses 1 (a bisection is enough).")
            else:
                hint = (f"For {activation} with σ_b = {sigma_b:g}, χ = {value:.3g} at your σ_w, not close to 1. "
                        "Evaluate helpers.theory.chi(activation, σ_w, sigma_b=σ_b) on a few σ_w and bisect.")
            return _report("2.1", False, hint)
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
    r"""Exercise 2.3: ``fn(depth)`` returns the exponent p of the exploding *input* gradient.

    Multiplying every weight of a bias-free ReLU MLP with ``depth`` hidden layers by k
    multiplies :math:`\partial L/\partial x` by :math:`k^p` (cross-entropy, saturated softmax):
    the input gradient passes through all ``depth + 1`` weight matrices, so p = depth + 1.
    Notebook 02 measures the *weight* gradients (p = depth), not this one.
    """
    for depth in (3, 7, 12):
        attempted, answer = _attempt("2.3", fn, depth)
        if not attempted:
            return _report("2.3", None)
        try:
            value = float(answer)
        except (TypeError, ValueError):
            return _report("2.3", False, "Return one number.")
        if not math.isclose(value, depth + 1):
            hint = ("That is the exponent of the weight gradients (section 4). The gradient with respect to the "
                    "input is a different product: count the weight matrices between x and the loss."
                    if math.isclose(value, depth) else
                    "A bias-free ReLU net is positively homogeneous: scaling one layer's weights by k scales "
                    "everything after it by k. How many weight matrices does ∂L/∂x pass through?")
            return _report("2.3", False, hint)
    return _report("2.3", True)


# -- notebook 03: weight initialization -----------------------------------------------

_TITLES.update({
    "3.1": "Xavier's standard deviation for any weight shape",
    "3.2": "He's uniform bound for leaky ReLU",
    "3.3": "an orthogonal matrix",
})


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fans(shape) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _measured_std(fill_, shape, seed: int) -> float:
    return float(fill_(torch.empty(shape), generator=torch.Generator().manual_seed(seed)).std())


def check_xavier_std(fn: Callable) -> None:
    r"""Exercise 3.1: ``fn(shape)`` returns the Xavier-normal std for a weight of that shape, gain 1.

    Shapes of Linear (out, in) and Conv2d (out, in, kh, kw) weights; the fans of a
    convolution include the receptive field :math:`k_h k_w`, so
    :math:`\text{std} = \sqrt{2/((c_{in} + c_{out})\, k_h k_w)}`. The hint reports the std
    measured on ``torch.nn.init.xavier_normal_`` for comparison.
    """
    shapes = ((64, 64), (10, 100), (32, 16, 3, 3), (8, 3, 5, 5))
    for shape in shapes:
        attempted, answer = _attempt("3.1", fn, shape)
        if not attempted:
            return _report("3.1", None)
        value = _number(answer)
        if value is None:
            return _report("3.1", False, "Return one number.")
        fan_in, fan_out = _fans(shape)
        if math.isclose(value, math.sqrt(2 / (fan_in + fan_out)), rel_tol=1e-6):
            continue
        measured = _measured_std(torch.nn.init.xavier_normal_, shape, 31)
        if len(shape) > 2 and math.isclose(value, math.sqrt(2 / (shape[0] + shape[1])), rel_tol=1e-6):
            hint = (f"For shape {shape} you ignored the kernel: torch.nn.init.xavier_normal_ gives a measured std "
                    f"of {measured:.4f}, you returned {value:.4f}. Each output of a convolution sums over "
                    "in_channels × kh × kw inputs: those are its fans.")
        elif math.isclose(value, math.sqrt(shape[1] / shape[0]), rel_tol=1e-6):
            hint = ("That is √(d_in/d_out), a common mistake: for a square layer it is 1 whatever the width. "
                    f"Measured std of torch.nn.init.xavier_normal_ for {shape}: {measured:.4f}.")
        else:
            hint = (f"For shape {shape} torch.nn.init.xavier_normal_ gives a measured std of {measured:.4f}, you "
                    f"returned {value:.4g}. Xavier's variance is 2/(fan_in + fan_out); return the std.")
        return _report("3.1", False, hint)
    return _report("3.1", True)


def _mean_square_factor(bound: float, negative_slope: float, width: int = 256, depth: int = 30) -> float:
    """Per-layer factor of the mean square in a leaky-ReLU net with U(-bound, bound) weights (measured)."""
    g = torch.Generator().manual_seed(32)
    h = torch.randn(512, width, generator=g, dtype=torch.float64)
    first = None
    for _ in range(depth):
        w = (2 * torch.rand(width, width, generator=g, dtype=torch.float64) - 1) * bound
        h = nn.functional.leaky_relu(h @ w.T, negative_slope)
        m = float(h.square().mean())
        first = m if first is None else first
    return (m / first) ** (1 / (depth - 1)) if first > 0 and math.isfinite(m) and m > 0 else math.inf


def check_he_uniform_bound(fn: Callable) -> None:
    r"""Exercise 3.2: ``fn(fan_in, fan_out, negative_slope)`` returns He's uniform bound for leaky ReLU.

    :math:`b = \sqrt{6 / ((1 + a^2)\,\text{fan\_in})}`: the variance
    :math:`2/((1+a^2)\,\text{fan\_in})` keeps the mean square of a leaky-ReLU layer with
    slope :math:`a`, and :math:`\mathcal U(-b, b)` has variance :math:`b^2/3`. A wrong
    answer gets the per-layer factor measured in a 30-layer net initialised with it.
    """
    for fan_in, fan_out, slope in ((256, 256, 0.5), (100, 10, 0.2), (3, 300, 0.0), (256, 64, 1.0)):
        attempted, answer = _attempt("3.2", fn, fan_in, fan_out, slope)
        if not attempted:
            return _report("3.2", None)
        value = _number(answer)
        if value is None:
            return _report("3.2", False, "Return one number.")
        if math.isclose(value, math.sqrt(6 / ((1 + slope**2) * fan_in)), rel_tol=1e-6):
            continue
        factor = _mean_square_factor(value * math.sqrt(fan_in / 256), slope) if value > 0 else 0.0
        where = (f"Measured in a 30-layer leaky-ReLU net (a = {slope:g}) with your bound: the mean square "
                 f"changes ×{factor:.3g} per layer, 1 is the target. ")
        if math.isclose(value, math.sqrt(6 / fan_in), rel_tol=1e-6) and slope > 0:
            hint = where + "That is ReLU's bound: leaky ReLU keeps (1 + a²)/2 of the mean square, not ½."
        elif math.isclose(value, math.sqrt(2 / (fan_in + fan_out)), rel_tol=1e-6):
            hint = where + "That is a common mistake for He's bound; fan_out plays no part in mode 'fan_in'."
        else:
            hint = where + "Find the variance that keeps the signal, then the b with b²/3 equal to it."
        return _report("3.2", False, hint)
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


# --- notebook 11: recurrent networks -------------------------------------------------------

_TITLES.update({
    "11.1": "a GRU step from scratch",
    "11.2": "back-propagation through time with a loss at every step",
    "11.3": "the largest growth per step of a sigmoid RNN",
    "12.1": "the gap to the next number of a float format",
    "12.2": "the dynamic scale's update rule",
    "12.3": "a mixed-precision step in the right order",
})


def check_gru_step(fn: Callable) -> None:
    r"""Exercise 11.1: ``fn(x, h, weight_ih, weight_hh, bias_ih, bias_hh)`` returns :math:`h'` of a GRU.

    Gate order r, z, n (torch's); :math:`n = \tanh(x W_{in}^\top + b_{in} + r \odot (h W_{hn}^\top + b_{hn}))`,
    :math:`h' = (1 - z) \odot n + z \odot h`. Checked against :class:`torch.nn.GRUCell`.
    """
    g = torch.Generator().manual_seed(111)
    for batch, input_size, hidden_size in ((4, 3, 5), (2, 6, 2)):
        with torch.random.fork_rng(devices=[]):        # the module's own init must not move the learner's RNG
            reference = nn.GRUCell(input_size, hidden_size, dtype=torch.float64)
        with torch.no_grad():
            for p in reference.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        x = torch.randn(batch, input_size, generator=g, dtype=torch.float64)
        h = torch.randn(batch, hidden_size, generator=g, dtype=torch.float64)
        with torch.no_grad():
            expected = reference(x, h)
        weights = [p.detach().clone() for p in (reference.weight_ih, reference.weight_hh,
                                                 reference.bias_ih, reference.bias_hh)]
        attempted, answer = _attempt("11.1", fn, x, h, *weights)
        if not attempted:
            return _report("11.1", None)
        if not _close(answer, expected, 1e-8):
            return _report("11.1", False, "Split x W_ihᵀ + b_ih and h W_hhᵀ + b_hh into r, z, n blocks with "
                           ".chunk(3, dim=1) (order r, z, n); r multiplies the whole recurrent part of n, bias "
                           "b_hn included; z weights the OLD state: h' = (1 − z)·n + z·h.")
    return _report("11.1", True)


def check_bptt(fn: Callable) -> None:
    r"""Exercise 11.2: ``fn(weight_hh, states, grads)`` returns :math:`\partial L/\partial W_{hh}` (loss at every step).

    The tanh RNN :math:`h_t = \tanh(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)` starts at :math:`h_0 = 0`;
    the loss is :math:`L = \sum_t \ell_t(h_t)` and ``grads[t]`` is :math:`\partial \ell_t/\partial h_t`.
    The gradient that reaches :math:`h_t` is its own loss's plus what comes back from step :math:`t+1`,
    :math:`\delta_t = g_t + (\delta_{t+1} \odot (1 - h_{t+1}^2)) W_{hh}`, and
    :math:`\partial L/\partial W_{hh} = \sum_t (\delta_t \odot (1 - h_t^2))^\top h_{t-1}` (rows are batch
    entries). Checked against autograd; the learner's global random state is not touched.
    """
    g = torch.Generator().manual_seed(112)
    batch, input_size, hidden_size, steps = 3, 2, 4, 6
    weight_ih = torch.randn(hidden_size, input_size, generator=g, dtype=torch.float64)
    weight_hh = (torch.randn(hidden_size, hidden_size, generator=g, dtype=torch.float64) * 0.7).requires_grad_(True)
    bias = torch.randn(hidden_size, generator=g, dtype=torch.float64) * 0.1
    xs = torch.randn(steps, batch, input_size, generator=g, dtype=torch.float64)
    grads = [torch.randn(batch, hidden_size, generator=g, dtype=torch.float64) for _ in range(steps)]

    def weight_grad(losses):
        states, h = [], torch.zeros(batch, hidden_size, dtype=torch.float64)
        for x in xs:
            h = torch.tanh(x @ weight_ih.T + h @ weight_hh.T + bias)
            states.append(h)
        (grad,) = torch.autograd.grad(sum((s * d).sum() for s, d in zip(states, losses)), weight_hh)
        return [s.detach() for s in states], grad

    states, expected = weight_grad(grads)
    _, last_only = weight_grad([torch.zeros_like(d) for d in grads[:-1]] + [grads[-1]])
    attempted, answer = _attempt("11.2", fn, weight_hh.detach().clone(), [s.clone() for s in states],
                                 [d.clone() for d in grads])
    if not attempted:
        return _report("11.2", None)
    if not (isinstance(answer, torch.Tensor) and answer.shape == expected.shape):
        return _report("11.2", False, f"Return one tensor of W_hh's shape {tuple(expected.shape)}: ∂L/∂W_hh.")
    if _close(answer, last_only, 1e-5):
        return _report("11.2", False, "That is the gradient of the last step's loss alone. Every step's loss adds "
                       "its own gradient where it reads the state: δ_t = grads[t] + (δ_{t+1} ⊙ (1 − h_{t+1}²)) W_hh.")
    if _close(answer.T, expected, 1e-5):
        return _report("11.2", False, "Transposed: entry (i, j) pairs unit i's pre-activation gradient with the "
                       "previous state's unit j, Σ_t (δ_t ⊙ (1 − h_t²))ᵀ @ h_{t−1}.")
    if not _close(answer, expected, 1e-5):      # float32's precision: an answer summed in float32 is right
        return _report("11.2", False, "Walk back from step T: δ_t = grads[t] + (δ_{t+1} ⊙ (1 − h_{t+1}²)) @ W_hh; "
                       "each step adds (δ_t ⊙ (1 − h_t²))ᵀ @ h_{t−1} to ∂L/∂W_hh, with h_0 = 0 (the state "
                       "BEFORE the step multiplies W_hh).")
    return _report("11.2", True)


def check_growth_bound(fn: Callable) -> None:
    r"""Exercise 11.3: ``fn(weight_hh)`` returns the tightest bound on one step's gradient growth, sigmoid units.

    For :math:`h_t = \sigma(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)` with the logistic :math:`\sigma`,
    :math:`\partial h_t/\partial h_{t-1} = \mathrm{diag}(h_t(1-h_t)) W_{hh}` and :math:`h(1-h) \le 1/4`
    (equality at pre-activation 0), so the smallest bound over all states is
    :math:`\sigma_{max}(W_{hh})/4`. Checked on non-normal matrices, whose spectral radius is far below
    their largest singular value.
    """
    g = torch.Generator().manual_seed(113)
    for n in (3, 8):
        shift = torch.diag(torch.full((n - 1,), 2.0, dtype=torch.float64), 1)
        W = torch.triu(torch.randn(n, n, generator=g, dtype=torch.float64)) * 0.5 + shift
        sigma_max = float(torch.linalg.matrix_norm(W, ord=2))
        attempted, answer = _attempt("11.3", fn, W.clone())
        if not attempted:
            return _report("11.3", None)
        try:
            value = float(answer)
        except (TypeError, ValueError):
            return _report("11.3", False, "Return one number.")
        radius = float(torch.linalg.eigvals(W).abs().max())
        if any(math.isclose(value, r, rel_tol=1e-6) for r in (radius, radius / 4)):
            return _report("11.3", False, "That uses the spectral radius (largest |eigenvalue|): it governs "
                           "Wᵗ for large t, but one step of a non-normal matrix can stretch a vector more.")
        if math.isclose(value, sigma_max, rel_tol=1e-6):
            return _report("11.3", False, "That is the tanh RNN's bound, where |tanh'| ≤ 1. The logistic "
                           "sigmoid's slope is σ'(z) = σ(z)(1 − σ(z)): how large can it get?")
        if not math.isclose(value, sigma_max / 4, rel_tol=1e-6):
            return _report("11.3", False, "Bound the slope of the sigmoid over all pre-activations, then the "
                           "largest stretch of W_hh: its largest singular value (not the Frobenius norm).")
    return _report("11.3", True)


# --- notebook 12: mixed precision ----------------------------------------------------------


def _next_up(w: float, dtype: torch.dtype) -> float:
    """The next number of ``dtype`` above the positive finite ``w``, read off the bit pattern."""
    as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[torch.finfo(dtype).bits // 8]
    return float((torch.tensor(w, dtype=dtype).view(as_int) + 1).view(dtype))


def check_float_spacing(fn: Callable) -> None:
    r"""Exercise 12.1: ``fn(w, exponent_bits, mantissa_bits)`` returns the gap between the positive
    number ``w`` of the format and the next larger number of the format.

    .. math:: 2^{\,\max(\lfloor \log_2 w \rfloor,\, E_{min}) - m}, \qquad E_{min} = 2 - 2^{e-1}

    A normal :math:`w = 1.b_1\dots b_m \cdot 2^E` moves by one unit of its last mantissa bit, :math:`2^{E-m}`;
    below the smallest normal number (subnormals) the exponent stays at :math:`E_{min}`. An increase
    smaller than half this gap leaves ``w`` unchanged (a decrease at a power of two meets a gap half
    as wide). The reference is the next bit pattern, for float16, bfloat16 and float32, at normal
    numbers, powers of two and subnormals.
    """
    for dtype, e, m in ((torch.float16, 5, 10), (torch.bfloat16, 8, 7), (torch.float32, 8, 23)):
        info = torch.finfo(dtype)
        for raw in (1.0, 3.0, 0.1, 2.0**-3, 1000.0, info.max / 4, info.smallest_normal, info.smallest_normal / 4):
            w = float(torch.tensor(raw, dtype=dtype))        # a number of the format
            expected = _next_up(w, dtype) - w
            attempted, answer = _attempt("12.1", fn, w, e, m)
            if not attempted:
                return _report("12.1", None)
            try:
                value = float(answer)
            except (TypeError, ValueError, OverflowError):
                return _report("12.1", False, "Return one number.")
            if math.isclose(value, expected, rel_tol=1e-12):
                continue
            where = f"for w = {w:.6g} in {dtype} ({e} exponent bits, {m} mantissa bits)"
            if w < info.smallest_normal:
                return _report("12.1", False, f"Wrong {where}, a subnormal number: below the smallest normal "
                               "number 2^(2 − 2^(e−1)) the exponent stops at its minimum, so the gap stops shrinking.")
            return _report("12.1", False, f"Wrong {where}. ε = 2^(−m) is the gap just above 1 only; write "
                           "w = 1.b₁…bₘ · 2^E and ask what one unit in the last mantissa bit is worth.")
    return _report("12.1", True)


def _reference_scale_update(scale, tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    if found_inf:
        return scale * backoff_factor, 0
    tracker += 1
    if tracker == growth_interval:
        return scale * growth_factor, 0
    return scale, tracker


def check_scale_update(fn: Callable) -> None:
    r"""Exercise 12.2: ``fn(scale, tracker, found_inf, growth_factor, backoff_factor, growth_interval)``.

    Returns ``(new_scale, new_tracker)``: back off and reset on overflow; otherwise count the
    clean step and grow (and reset) when the count reaches ``growth_interval``.
    """
    events = [False, False, True, False, False, False, False, True, True, False, False, False]
    for growth_factor, backoff_factor, interval in ((2.0, 0.5, 3), (1.5, 0.25, 2), (2.0, 0.5, 1)):
        ours, theirs = (1024.0, 0), (1024.0, 0)
        for found_inf in events:
            attempted, answer = _attempt("12.2", fn, theirs[0], theirs[1], found_inf, growth_factor,
                                         backoff_factor, interval)
            if not attempted:
                return _report("12.2", None)
            ours = _reference_scale_update(*theirs, found_inf, growth_factor, backoff_factor, interval)
            try:
                scale, tracker = float(answer[0]), int(answer[1])
            except (TypeError, ValueError, IndexError):
                return _report("12.2", False, "Return a pair (new_scale, new_tracker).")
            if not (math.isclose(scale, ours[0], rel_tol=1e-9) and tracker == ours[1]):
                return _report("12.2", False, "On overflow: scale × backoff_factor and tracker 0. Otherwise the "
                               "tracker counts clean steps; when it REACHES growth_interval the scale is "
                               "multiplied by growth_factor and the tracker goes back to 0.")
            theirs = (scale, tracker)
    return _report("12.2", True)


def _amp_setup():
    torch.manual_seed(123)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    g = torch.Generator().manual_seed(124)
    x, y = torch.randn(16, 5, generator=g), torch.randn(16, 2, generator=g)
    return model, x, y


def check_amp_step(fn: Callable) -> None:
    r"""Exercise 12.3: ``fn(model, x, y, optimizer, scaler, max_norm)`` does one mixed-precision step.

    Mean squared error loss; the order scale → backward → unscale → clip → step → update.
    Checked over three steps against the reference (weights and the scale after each).
    """
    from helpers.amp import DynamicLossScaler

    results = []
    for use_reference in (True, False):
        model, x, y = _amp_setup()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = DynamicLossScaler(init_scale=2.0**12, growth_interval=2)
        trace = []
        for _ in range(3):
            optimizer.zero_grad()
            if use_reference:
                loss = nn.functional.mse_loss(model(x), y)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
                scaler.step(optimizer)
                scaler.update()
            else:
                try:
                    attempted, _ = _attempt("12.3", fn, model, x, y, optimizer, scaler, 0.05)
                except RuntimeError as error:
                    return _report("12.3", False, f"The scaler refused a call ({error}) Every step calls "
                                   "scale → backward → unscale_ → clip → step → update, each once.")
                if not attempted:
                    return _report("12.3", None)
            trace.append(([p.detach().clone() for p in model.parameters()], scaler.get_scale()))
        results.append(trace)
    for (want, want_scale), (got, got_scale) in zip(*results):
        if got_scale != want_scale:
            return _report("12.3", False, "The scale did not change as expected: call scaler.update() once "
                           "at the end of every step.")
        if not all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(got, want)):
            return _report("12.3", False, "The weights differ from the reference: compute the MSE loss, "
                           "scaler.scale(loss).backward(), scaler.unscale_(optimizer), THEN clip_grad_norm_ with "
                           "max_norm, then scaler.step(optimizer) and scaler.update().")
    return _report("12.3", True)


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


# --------------------------------------------------------------------------- notebook 13
_TITLES.update({
    "13.1": "update-to-data ratios",
    "13.2": "a verdict from per-layer gradient norms",
})


def check_update_ratios(fn: Callable) -> None:
    r"""Exercise 13.1: ``fn(before, after)`` returns :math:`\lVert W' - W \rVert_F / \lVert W \rVert_F` per tensor.

    ``before`` and ``after`` are lists of weight tensors (any shapes) before and after one
    optimizer step; the answer is a list of floats, one per tensor.
    """
    g = torch.Generator().manual_seed(131)
    before = [torch.randn(shape, generator=g, dtype=torch.float64)
              for shape in ((6, 4), (3, 2, 3, 3), (5,))]
    # one small, one large and one medium step, so that dividing by the wrong norm shows
    after = [w + scale * torch.randn(w.shape, generator=g, dtype=torch.float64)
             for w, scale in zip(before, (1e-3, 2.0, 0.3))]
    expected = [float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)) for b, a in zip(before, after)]
    attempted, answer = _attempt("13.1", fn, [w.clone() for w in before], [w.clone() for w in after])
    if not attempted:
        return _report("13.1", None)
    try:
        values = [float(v) for v in answer]
    except (TypeError, ValueError):
        return _report("13.1", False, "Return a list of numbers, one per weight tensor.")
    if len(values) != len(expected):
        return _report("13.1", False, f"Return {len(expected)} numbers, one per weight tensor.")
    if not all(math.isclose(v, e, rel_tol=1e-6) for v, e in zip(values, expected)):
        return _report("13.1", False, "Take the Frobenius norm of the whole change W_after − W_before (not the "
                       "change of the norms, not a mean of absolute values), and divide by the norm of the "
                       "weights *before* the step.")
    return _report("13.1", True)


def check_gradient_verdict(fn: Callable) -> None:
    r"""Exercise 13.2: ``fn(norms)`` returns ``"vanishing"``, ``"exploding"`` or ``"healthy"``.

    ``norms`` maps layer names to gradient norms, from the input layer to the output
    layer. With :math:`r` = first / last: ``"exploding"`` if any norm is NaN or inf or
    :math:`r > 10^3`; ``"vanishing"`` if :math:`r < 10^{-3}`; ``"healthy"`` otherwise.
    """
    cases = [
        ({"fc1": 1e-9, "fc2": 1e-5, "fc3": 1e-2, "out": 0.5}, "vanishing"),
        ({"fc1": 40.0, "fc2": 3.0, "fc3": 0.5, "out": 0.02}, "exploding"),
        ({"fc1": 0.3, "fc2": 0.4, "fc3": 0.6, "out": 0.5}, "healthy"),
        # a dip in the middle does not make the first-to-last ratio small
        ({"fc1": 0.2, "fc2": 1e-5, "fc3": 0.3, "out": 0.4}, "healthy"),
        ({"fc1": float("nan"), "fc2": 1.0, "out": 0.5}, "exploding"),
        ({"fc1": 0.1, "fc2": float("inf"), "out": 0.5}, "exploding"),
        # layer names are not in alphabetical order: use the order given
        ({"input": 5e-5, "hidden": 0.01, "classifier": 0.1}, "vanishing"),
        ({"conv1": 0.01, "out": 5.0}, "healthy"),
    ]
    for norms, expected in cases:
        attempted, answer = _attempt("13.2", fn, dict(norms))
        if not attempted:
            return _report("13.2", None)
        if answer != expected:
            if any(not math.isfinite(v) for v in norms.values()):
                hint = "A NaN or inf gradient norm means the gradient blew up: check for it first."
            else:
                hint = ("Compare the first layer's norm with the last layer's, in the order of the dict "
                        "(input first), as first / last.")
            return _report("13.2", False, f"For {norms} the verdict is {expected!r}, you said {answer!r}. {hint}")
    return _report("13.2", True)


# --------------------------------------------------------------------------- notebook 14

_TITLES.update({
    "14.1": "split once",
    "14.2": "a depthwise-separable convolution",
})


def _index_set(value) -> set[int] | None:
    """The entries of a 1-D integer tensor (or sequence) as a set, or None if it is not one."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    if tensor.dim() != 1 or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        return None
    return set(tensor.tolist()) if len(set(tensor.tolist())) == tensor.numel() else None


def check_split_once(fn: Callable) -> None:
    r"""Exercise 14.1: ``fn(n, test_fraction, seed)`` returns ``(train_idx, test_idx)``, a random split made once.

    Accepted: disjoint index sets covering :math:`\{0, \dots, n-1\}` with ``round(n * test_fraction)`` test
    indices, the same for the same seed (even after other draws from the global generator), different for
    different seeds.
    """
    splits = {}
    for n, fraction, seed in ((100, 0.2, 0), (100, 0.2, 0), (100, 0.2, 1), (37, 0.3, 5)):
        torch.rand(3)                        # other code drawing random numbers between two epochs
        attempted, answer = _attempt("14.1", fn, n, fraction, seed)
        if not attempted:
            return _report("14.1", None)
        if not (isinstance(answer, tuple | list) and len(answer) == 2):
            return _report("14.1", False, "Return a pair (train_idx, test_idx).")
        train, test = (_index_set(part) for part in answer)
        if train is None or test is None:
            return _report("14.1", False, "Each part must be a 1-D tensor of distinct integer indices.")
        if train & test or train | test != set(range(n)):
            return _report("14.1", False, "Every index in range(n) must go to exactly one of the two sets: "
                           "no example may be both trained on and tested on, none may be lost.")
        if len(test) != round(n * fraction):
            return _report("14.1", False, f"With n = {n} and test_fraction = {fraction} the test set has "
                           f"{round(n * fraction)} indices, not {len(test)}.")
        if (n, fraction, seed) in splits and splits[n, fraction, seed] != test:
            return _report("14.1", False, "Called twice with the same seed, it returned two different splits: "
                           "that is seed 001's re-split every epoch. Draw the permutation from a "
                           "torch.Generator seeded with `seed`, not from the global generator.")
        splits[n, fraction, seed] = test
    if splits[100, 0.2, 0] == splits[100, 0.2, 1]:
        return _report("14.1", False, "Seeds 0 and 1 gave the same test set: draw the permutation from a "
                       "generator seeded with `seed`, so that another seed gives another split.")
    if splits[100, 0.2, 0] in ({*range(20)}, {*range(80, 100)}):
        return _report("14.1", False, "The test set is a block of consecutive indices: shuffle before splitting.")
    return _report("14.1", True)


def check_separable_conv(fn: Callable) -> None:
    r"""Exercise 14.2: ``fn(in_channels, out_channels, kernel_size)`` returns a depthwise-separable convolution.

    A depthwise :math:`k \times k` convolution (``groups=in_channels``, padding :math:`k // 2`, no bias)
    followed by a pointwise :math:`1 \times 1` convolution (no bias): :math:`C_{in}k^2 + C_{in}C_{out}` weights.
    """
    g = torch.Generator().manual_seed(142)
    for c_in, c_out, k in ((6, 10, 3), (4, 4, 5)):
        attempted, module = _attempt("14.2", fn, c_in, c_out, k)
        if not attempted:
            return _report("14.2", None)
        if not isinstance(module, nn.Module):
            return _report("14.2", False, "Return an nn.Module (e.g. an nn.Sequential of two nn.Conv2d).")
        x = torch.randn(2, c_in, 7, 9, generator=g)
        try:
            out = module(x)
        except RuntimeError as error:
            return _report("14.2", False, f"The module fails on a (2, {c_in}, 7, 9) input: {error}")
        if not (isinstance(out, torch.Tensor) and out.shape == (2, c_out, 7, 9)):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return _report("14.2", False, f"Expected an output of shape (2, {c_out}, 7, 9), got {shape}: "
                           "pad the depthwise convolution by k // 2 and let the 1×1 one produce out_channels.")
        convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        if any(m.bias is not None for m in convs):
            return _report("14.2", False, "Both convolutions are without bias (bias=False).")
        weights = sum(p.numel() for p in module.parameters())
        expected = c_in * k * k + c_in * c_out
        if len(convs) != 2 or weights != expected:
            return _report("14.2", False, f"A depthwise-separable convolution {c_in} → {c_out} with k = {k} has "
                           f"{expected} weights (C_in·k² + C_in·C_out); yours has {weights}. The depthwise "
                           "convolution needs groups=in_channels, and it comes first.")
        depthwise, pointwise = convs
        if depthwise.groups != c_in or depthwise.kernel_size != (k, k) or pointwise.kernel_size != (1, 1):
            return _report("14.2", False, "First the depthwise k×k convolution (groups=in_channels), "
                           "then the pointwise 1×1 one.")
        with torch.no_grad():
            conv2d = torch.nn.functional.conv2d
            reference = conv2d(conv2d(x, depthwise.weight, padding=k // 2, groups=c_in), pointwise.weight)
        if not _close(out.detach(), reference, 1e-5):
            return _report("14.2", False, "The output is not pointwise(depthwise(x)): apply the two "
                           "convolutions one after the other, with nothing in between.")
    return _report("14.2", True)


# --------------------------------------------------------------------------- notebook 15

_TITLES.update({
    "15.1": "causal attention",
    "15.2": "find the loss spikes",
})


def check_causal_attention(fn: Callable) -> None:
    r"""Exercise 15.1: ``fn(q, k, v)`` returns causal scaled dot-product attention.

    :math:`\operatorname{softmax}(QK^\top/\sqrt d + M)V` with :math:`M_{ij} = -\infty` for
    :math:`j > i` (a query never sees a later key); ``q``, ``k``, ``v`` are (B, T, d). Checked against
    ``torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)``.
    """
    g = torch.Generator().manual_seed(151)
    for shape in ((2, 5, 4), (3, 7, 16)):
        q, k, v = (3 * torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
        attempted, answer = _attempt("15.1", fn, q.clone(), k.clone(), v.clone())
        if not attempted:
            return _report("15.1", None)
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        if not isinstance(answer, torch.Tensor) or answer.shape != expected.shape:
            got = tuple(answer.shape) if isinstance(answer, torch.Tensor) else type(answer).__name__
            return _report("15.1", False, f"Return a tensor shaped like v, {tuple(expected.shape)}; got {got}.")
        if _close(answer, expected, 1e-6):
            continue
        free = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        if _close(answer, free, 1e-6):
            return _report("15.1", False, "Without a mask every query sees the whole sequence, the future "
                           "included: set the logits above the diagonal (key j > query i) to -inf.")
        if torch.allclose(answer[:, -1].double(), v[:, -1]) and not torch.allclose(answer[:, 0].double(), v[:, 0]):
            return _report("15.1", False, "The mask is the wrong way round: query i may see keys j <= i "
                           "(torch.tril), not j >= i.")
        unscaled = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
        if _close(answer, unscaled, 1e-6):
            return _report("15.1", False, "Divide the logits by √d (d = the last dimension of q): without it "
                           "the softmax saturates as d grows.")
        return _report("15.1", False, "Compute softmax(q @ kᵀ / √d) over the keys (the last dimension), with "
                       "-inf where the key comes after the query, then multiply by v.")
    return _report("15.1", True)


def check_loss_spikes(fn: Callable) -> None:
    r"""Exercise 15.2: ``fn(losses, factor, window)`` returns the indices of the spiking steps.

    Step :math:`t \ge` ``window`` spikes when ``losses[t]`` exceeds ``factor`` times the median of
    the ``window`` losses before it (``losses[t - window:t]``, step :math:`t` itself excluded).
    """
    import statistics

    g = torch.Generator().manual_seed(152)
    cases = []
    for n, factor, window in ((60, 2.0, 10), (40, 1.5, 5)):
        base = (1.5 * torch.exp(-torch.arange(n) / 15) + 0.05 * torch.rand(n, generator=g)).tolist()
        for t in (window + 3, n // 2, n - 1, n // 2 + 1):
            base[t] = base[t] * (factor + 1.5)
        cases.append((base, factor, window))
    cases.append(([0.1, 0.1, 0.1, 1.0, 0.25, 0.1, 0.1], 2.0, 3))   # after a spike: the median, not the mean
    for losses, factor, window in cases:
        expected = [t for t in range(window, len(losses))
                    if losses[t] > factor * statistics.median(losses[t - window:t])]
        attempted, answer = _attempt("15.2", fn, list(losses), factor, window)
        if not attempted:
            return _report("15.2", None)
        try:
            got = sorted(int(t) for t in answer)
        except (TypeError, ValueError):
            return _report("15.2", False, "Return a list of step indices (ints).")
        if got != expected:
            return _report("15.2", False, f"For factor={factor}, window={window} the spikes are at {expected}, you "
                           f"found {got}. Compare losses[t] with factor × the median (not the mean) of "
                           "losses[t - window:t], the steps before t only, for every t >= window.")
    return _report("15.2", True)
