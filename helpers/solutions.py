"""Worked solutions of the exercises, shown on request: ``show_solution("3.1")``.

Every exercise of the course has a checker in :mod:`helpers.exercises` and a reference
solution here, keyed by the exercise's id ("3.1" is the first exercise of notebook 03). The
tests run every solution through its checker, so each one printed is one that passes.

The rule: a solution is shown once you have tried. ``show_solution(id)`` prints it after the
exercise's checker has checked an attempt of yours in this session (your function returned
something, right or wrong); before that it prints a "try first" note. ``force=True`` shows
it anyway: studying alone, you decide. Nothing is recorded anywhere but in this Python
session, so restarting the kernel resets it.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Solution", "SOLUTIONS", "exercise_id"]


@dataclass(frozen=True)
class Solution:
    """A worked solution: the function that passes its exercise's checker, and what to take from it.

    The checker is ``helpers.exercises.EXERCISES[exercise].checker`` (named ``check_`` + the
    function's name): the registry knows it, so it is not written here again.
    """

    exercise: str
    function: Callable
    explanation: str

    @property
    def code(self) -> str:
        return textwrap.dedent(inspect.getsource(self.function)).rstrip()


# --- notebook 01 ---------------------------------------------------------------------------

def quadratic_gradient(A, b, theta):
    return 0.5 * (A + A.T) @ theta - b


def largest_stable_lr(A, beta):
    # per eigenvalue: z^2 - (1 + beta - lr*lam) z + beta = 0 has a root at z = -1 when lr*lam = 2(1 + beta)
    return 2 * (1 + beta) / torch.linalg.eigvalsh(A).max()


def linear_backward(x, W, b, grad_out):
    grad_x = grad_out @ W          # (batch, out) @ (out, in)
    grad_W = grad_out.T @ x        # (out, batch) @ (batch, in)
    grad_b = grad_out.sum(dim=0)   # the bias is added to every row
    return grad_x, grad_W, grad_b


# --- notebook 02 ---------------------------------------------------------------------------

def critical_sigma_w(activation, sigma_b):
    from helpers.theory import chi

    low, high = 1.0, 12.0                 # chi < 1 at 1 and > 1 at 12 for both cases (measured first)
    for _ in range(50):                   # bisection on chi(sigma_w) - 1
        middle = (low + high) / 2
        if chi(activation, middle, sigma_b=sigma_b) < 1:
            low = middle
        else:
            high = middle
    return (low + high) / 2               # sigmoid: about 10.4 (not 4); tanh with sigma_b 0.3: about 1.40 (not 1)


def layer_gradient_norms(model):
    return [m.weight.grad.norm().item() for m in model.modules() if isinstance(m, nn.Linear)]


def exploding_exponent(depth):
    return depth + 1        # x passes through all depth + 1 weight matrices on its way to the loss


# --- notebook 03 ---------------------------------------------------------------------------

def xavier_std(shape):
    receptive = math.prod(shape[2:])             # kh * kw for a convolution, 1 for a Linear layer
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    return math.sqrt(2 / (fan_in + fan_out))


def he_uniform_bound(fan_in, fan_out, negative_slope):
    variance = 2 / ((1 + negative_slope**2) * fan_in)   # leaky ReLU keeps (1 + a^2)/2 of the mean square
    return math.sqrt(3 * variance)                        # U(-b, b) has variance b^2 / 3


def orthogonal_matrix(rows, cols, generator):
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.diagonal(r).sign()   # make the factorisation unique: uniform over orthogonal matrices
    return q.T if rows < cols else q


# --- notebook 04 ---------------------------------------------------------------------------

def leaky_relu(x, a):
    return torch.where(x > 0, x, a * x)


def sigmoid_derivative(x):
    s = torch.sigmoid(x)
    return s * (1 - s)


def dead_fraction(h):
    return (h == 0).all(dim=0).float().mean().item()


# --- notebook 05 ---------------------------------------------------------------------------

def batch_norm_forward(x, gamma, beta, eps):
    mean = x.mean(dim=0)
    var = x.var(dim=0, unbiased=False)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def running_variance(running_var, batch, momentum):
    return (1 - momentum) * running_var + momentum * batch.var(dim=0)


def weight_norm(g, v):
    return g * v / v.norm(dim=1, keepdim=True)


# --- notebook 06 ---------------------------------------------------------------------------

def residual_block(x, branch, projection):
    skip = x if projection is None else projection(x)
    return skip + branch(x)


def residual_jacobian(jacobians):
    n = jacobians[0].shape[0]
    total = torch.eye(n, dtype=jacobians[0].dtype)
    for j in jacobians:
        total = (torch.eye(n, dtype=j.dtype) + j) @ total
    return total


# --- notebook 07 ---------------------------------------------------------------------------

def clip_by_value(g, v):
    return torch.minimum(torch.maximum(g, torch.tensor(-v, dtype=g.dtype)), torch.tensor(v, dtype=g.dtype))


def clip_by_global_norm(grads, max_norm):
    total = torch.sqrt(sum(g.square().sum() for g in grads))
    scale = min(1.0, max_norm / float(total))
    return [g * scale for g in grads]


def threshold_from_norms(norms, fraction):
    return float(torch.quantile(torch.tensor(norms), 1 - fraction))


# --- notebook 08 ---------------------------------------------------------------------------

def l1_gradient(w, lam):
    return lam * torch.sign(w)


def inverted_dropout(x, mask, p):
    return x * mask / (1 - p)


def weight_decay_step(w, g, lr, weight_decay):
    return w - lr * (g + weight_decay * w)


# --- notebook 09 ---------------------------------------------------------------------------

def momentum_step(param, grad, buf, lr, momentum, nesterov):
    buf = momentum * buf + grad
    step = grad + momentum * buf if nesterov else buf
    return param - lr * step, buf


def adam_step(param, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v


# --- notebook 10 ---------------------------------------------------------------------------

def cosine_lr(t, T, eta_max, eta_min):
    return eta_min + 0.5 * (eta_max - eta_min) * (1 + math.cos(math.pi * t / T))


def half_life_gamma(k):
    return 0.5 ** (1 / k)


# --- notebook 11 ---------------------------------------------------------------------------

def gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    i_r, i_z, i_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
    h_r, h_z, h_n = (h @ weight_hh.T + bias_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)      # the reset gate multiplies W_hn h + b_hn, bias included
    return (1 - z) * n + z * h


def bptt(weight_hh, states, grads):
    grad_w = torch.zeros_like(weight_hh)
    delta = torch.zeros_like(states[-1])
    previous = [torch.zeros_like(states[0])] + list(states[:-1])          # h_0 = 0
    for h, h_before, g in zip(reversed(states), reversed(previous), reversed(grads)):
        delta = delta + g                       # this step's own loss adds its gradient to what came back
        a = delta * (1 - h**2)                  # back through tanh at step t
        grad_w = grad_w + a.T @ h_before        # step t's share of dL/dW_hh
        delta = a @ weight_hh                   # back to h_{t-1} (rows are batch entries: no transpose)
    return grad_w


def growth_bound(weight_hh):
    # sigma'(z) = sigma(z)(1 - sigma(z)) <= 1/4, reached at z = 0
    return torch.linalg.matrix_norm(weight_hh, ord=2) / 4


# --- notebook 12 ---------------------------------------------------------------------------

def float_spacing(w, e, m):
    e_min = 2 - 2 ** (e - 1)                      # the exponent of the smallest normal number
    exponent = max(math.frexp(w)[1] - 1, e_min)   # w = 1.b…b · 2^exponent; subnormals keep e_min
    return 2.0 ** (exponent - m)                  # one unit in the last of the m mantissa bits


def scale_update(scale, tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    if found_inf:
        return scale * backoff_factor, 0
    if tracker + 1 == growth_interval:
        return scale * growth_factor, 0
    return scale, tracker + 1


def amp_step(model, x, y, optimizer, scaler, max_norm):
    loss = nn.functional.mse_loss(model(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)                                   # true gradients first …
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)  # … then clip them
    scaler.step(optimizer)                                       # skipped if any gradient is inf/NaN
    scaler.update()


# --- notebook 13 ---------------------------------------------------------------------------

def update_ratios(before, after):
    return [float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)) for b, a in zip(before, after)]


def gradient_verdict(norms):
    values = list(norms.values())           # ordered from the input to the output
    if not all(math.isfinite(v) for v in values):
        return "exploding"
    ratio = values[0] / values[-1]          # first layer's gradient over the last one's
    return "exploding" if ratio > 1e3 else "vanishing" if ratio < 1e-3 else "healthy"


# --- notebook 14 ---------------------------------------------------------------------------

def split_once(n, test_fraction, seed):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = round(n * test_fraction)
    return order[k:], order[:k]


def separable_conv(c_in, c_out, k):
    return nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False),   # depthwise
                         nn.Conv2d(c_in, c_out, 1, bias=False))                                # pointwise


# --- notebook 15 ---------------------------------------------------------------------------

def causal_attention(q, k, v):
    d, T = q.shape[-1], q.shape[-2]
    logits = q @ k.transpose(-2, -1) / math.sqrt(d)
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)        # key j > query i
    return torch.softmax(logits.masked_fill(future, -math.inf), dim=-1) @ v


def loss_spikes(losses, factor, window):
    import statistics
    return [t for t in range(window, len(losses))
            if losses[t] > factor * statistics.median(losses[t - window:t])]


_TABLE = [
    ("1.1", quadratic_gradient,
     "½θᵀAθ = ½Σᵢⱼ θᵢAᵢⱼθⱼ; θₖ appears as a row index (giving ½(Aθ)ₖ) and as a column index (giving "
     "½(Aᵀθ)ₖ), so ∇(½θᵀAθ) = ½(A + Aᵀ)θ, which is Aθ only for a symmetric A. ∇(bᵀθ) = b; the result has "
     "theta's shape."),
    ("1.2", largest_stable_lr,
     "Heavy ball: e_{t+1} = (1 + β − ηλ) e_t − β e_{t−1} along an eigenvector, i.e. (e_{t+1}, e_t) = "
     "M (e_t, e_{t−1}) with M = [[1 + β − ηλ, −β], [1, 0]]. Its eigenvalues solve z² − (1 + β − ηλ) z + β = 0; "
     "their product is β < 1, so as η grows they leave the unit circle through z = −1, where "
     "1 + (1 + β − ηλ) + β = 0, i.e. ηλ = 2(1 + β). For every λ: η < 2(1 + β)/λ_max — momentum 0.9 allows "
     "rates 1.9 times larger than plain gradient descent (β = 0 gives back 2/λ_max)."),
    ("1.3", linear_backward,
     "For y = xWᵀ + b each gradient is a product with grad_out whose shapes must match the input: "
     "grad_x like x, grad_W like W, grad_b like b (summed over the batch)."),
    ("2.1", critical_sigma_w,
     "χ = σ_w²·E[φ′(z)²] with z ~ N(0, q*), and q* itself grows with σ_w (and σ_b). The slope bound alone "
     "(σ′ ≤ ¼, tanh′ ≤ 1) gives σ_w = 4 or 1 only if every pre-activation sat at 0; in fact they spread out "
     "and the mean squared slope falls, so the critical σ_w is larger: measure χ and bisect."),
    ("2.2", layer_gradient_norms,
     "model.modules() visits the layers from input to output; take each Linear layer's weight gradient "
     "(not the biases) and its norm as a Python float."),
    ("2.3", exploding_exponent,
     "∂L/∂x = W₁ᵀD₁W₂ᵀD₂ ⋯ W_{L+1}ᵀ ∂L/∂s: all L + 1 weight matrices appear, each scaled by k, and the "
     "D's (ReLU slopes, 0 or 1) do not change when every pre-activation is multiplied by k > 0. With a "
     "saturated softmax ∂L/∂s no longer depends on k, so the input gradient grows like k^(L+1), one power "
     "more than the weight gradients (k^L: ∂L/∂W_ℓ misses W_ℓ itself)."),
    ("3.1", xavier_std,
     "Glorot & Bengio average the forward and backward conditions, Var(W) = 2/(fan_in + fan_out). For a "
     "convolution every output sums over in_channels × kh × kw inputs, so both fans include the receptive "
     "field, as torch.nn.init computes them; the standard deviation is the square root."),
    ("3.2", he_uniform_bound,
     "A leaky ReLU with slope a keeps (1 + a²)/2 of the mean square of a symmetric input, so the "
     "variance that keeps the signal is 2/((1 + a²)·fan_in); U(−b, b) has variance b²/3, so "
     "b = √(6/((1 + a²)·fan_in)). fan_out plays no part (mode 'fan_in'); a = 0 gives ReLU's √(6/fan_in)."),
    ("3.3", orthogonal_matrix,
     "QR of a Gaussian matrix gives an orthogonal Q; multiplying its columns by the signs of R's diagonal "
     "makes it uniformly distributed (as torch.nn.init.orthogonal_ does). Transpose for wide shapes."),
    ("4.1", leaky_relu,
     "torch.where picks x for positive inputs and a·x for the rest: two branches, not a·x everywhere."),
    ("4.2", sigmoid_derivative,
     "σ′(x) = σ(x)(1 − σ(x)): computed from σ, it stays finite for large |x| where exp(−x)/(1 + exp(−x))² "
     "gives inf/inf."),
    ("4.3", dead_fraction,
     "A unit (a column) is dead when it outputs 0 for every example (every row): .all(dim=0), then the "
     "mean over units."),
    ("5.1", batch_norm_forward,
     "Normalise each feature over the batch (dim=0) with the biased variance and √(σ² + ε), then scale "
     "and shift."),
    ("5.2", running_variance,
     "An exponential moving average with weight `momentum` on the new batch; the running estimate uses "
     "the unbiased variance, as PyTorch does."),
    ("5.3", weight_norm,
     "Each row of v is divided by its own norm and multiplied by its gain g: the length and the direction "
     "of every output unit's weights are learned separately."),
    ("6.1", residual_block,
     "The skip carries x unchanged (or projected where the shapes differ) and the branch adds to it: "
     "F is applied once."),
    ("6.2", residual_jacobian,
     "Each block's Jacobian is I + J_i; the stack's is their product with the first block rightmost."),
    ("7.1", clip_by_value,
     "min(max(g, −v), v) clamps each entry to [−v, v] (torch.clamp does the same); min(max(g, v), v) "
     "would always return v."),
    ("7.2", clip_by_global_norm,
     "One norm over all tensors together; scale every tensor by the same factor, and only when the norm "
     "exceeds max_norm, so the direction is kept."),
    ("7.3", threshold_from_norms,
     "To clip a fraction f of the steps, set the threshold at the (1 − f) quantile of the observed norms."),
    ("8.1", l1_gradient,
     "d|w|/dw = sign(w) (0 at 0, as torch.sign gives), times the coefficient."),
    ("8.2", inverted_dropout,
     "Keep the units of the mask and divide by the keep probability 1 − p, so the expected activation is "
     "unchanged and nothing needs rescaling at test time."),
    ("8.3", weight_decay_step,
     "Weight decay adds λw to the gradient before the step; for plain SGD that equals an L2 penalty ½λ‖w‖²."),
    ("9.1", momentum_step,
     "PyTorch's convention: buf = μ·buf + g; the step is buf, or g + μ·buf with Nesterov."),
    ("9.2", adam_step,
     "Moving averages of g and g², divided by (1 − βᵗ) to undo their start at zero, and ε added outside "
     "the square root."),
    ("10.1", cosine_lr,
     "η_t = η_min + ½(η_max − η_min)(1 + cos(πt/T)): the ½ makes it start at η_max and end at η_min."),
    ("10.2", half_life_gamma,
     "After k steps the rate is γᵏ times the start; γᵏ = ½ gives γ = 0.5^(1/k)."),
    ("11.1", gru_step,
     "PyTorch's gate order is r, z, n; the reset gate multiplies the whole hidden term W_hn·h + b_hn, and "
     "the new state is (1 − z)·n + z·h."),
    ("11.2", bptt,
     "The gradient reaching h_t is its own loss's plus what comes back from step t+1: δ_t = g_t + (δ_{t+1} ⊙ "
     "(1 − h_{t+1}²)) W_hh; W_hh is used at every step, so its gradient sums each step's (δ_t ⊙ (1 − h_t²))ᵀ h_{t−1}, "
     "with h_0 = 0."),
    ("11.3", growth_bound,
     "‖diag(h(1 − h)) W_hh‖₂ ≤ ¼ σ_max(W_hh): the sigmoid's slope is at most ¼ (at pre-activation 0) and "
     "σ_max is the largest singular value (not the spectral radius, which can be far smaller for a non-normal "
     "matrix). For [[2, 8], [0, 2]] at h = ½ the bound 8.5/4 ≈ 2.1 is met at k = 1 only: ‖(W/4)ᵏ‖₂ = 2.1, 2.0, "
     "1.5, 1.0, 0.6, … → 0 (about 0.04 at k = 10), because over many steps the spectral radius 2/4 = ½ wins: "
     "a non-normal matrix gives transient growth, not explosion."),
    ("12.1", float_spacing,
     "A normal number is 1.b₁…bₘ · 2^E with E = ⌊log₂ w⌋, and the next one up differs by one unit in the "
     "last mantissa bit, 2^(E − m): the gap doubles at every power of two (ε = 2^(−m) is the gap at 1). "
     "Subnormals keep the smallest exponent E_min = 2 − 2^(e−1), so below the smallest normal number the gap "
     "stays 2^(E_min − m), the smallest subnormal. In float16 the gap at 2000 (between 2¹⁰ and 2¹¹) is 2^(10 − 10) "
     "= 1, so + 0.3 (under half of it) rounds away and the weight stays 2000; at 1000 the gap is 0.5 and it "
     "becomes 1000.5. Small updates to large weights vanish, which is why mixed precision keeps float32 master "
     "weights."),
    ("12.2", scale_update,
     "On inf/NaN back off and reset the counter; after growth_interval clean steps in a row grow and reset; "
     "otherwise count."),
    ("12.3", amp_step,
     "scale → backward → unscale_ → clip → step → update: clipping must see the true gradients, and "
     "update() adjusts the scale for the next step."),
    ("13.1", update_ratios,
     "‖W′ − W‖/‖W‖ per tensor, with the norm of the weights before the step in the denominator."),
    ("13.2", gradient_verdict,
     "Compare the first layer's gradient norm with the last one's (the dict is ordered input to output); "
     "any non-finite norm means exploding."),
    ("14.1", split_once,
     "One permutation from a seeded generator, cut once: the same split every epoch and every run."),
    ("14.2", separable_conv,
     "A depthwise convolution (groups = c_in, one filter per channel) followed by a 1×1 pointwise one "
     "that mixes the channels; no bias, no activation in between."),
    ("15.1", causal_attention,
     "Logits q·kᵀ/√d, -inf above the diagonal (a later key) so that softmax gives it weight 0, softmax over "
     "the keys, then the weighted sum of the values."),
    ("15.2", loss_spikes,
     "Compare each step with the median of the steps before it: the median ignores earlier spikes, and "
     "leaving step t out of its own window lets a spike stand out."),
]

SOLUTIONS: dict[str, Solution] = {exercise: Solution(exercise, function, explanation)
                                  for exercise, function, explanation in _TABLE}


def exercise_id(exercise) -> str:
    """The key of ``exercise`` in :data:`SOLUTIONS` ('3.1', 3.1 and 'Exercise 3.1' all give '3.1')."""
    if isinstance(exercise, bool) or not isinstance(exercise, str | int | float):
        raise TypeError(f"exercise must be an id like '3.1', got {type(exercise).__name__} {exercise!r}")
    key = str(exercise).strip().removeprefix("Exercise").strip()
    if key not in SOLUTIONS:
        raise ValueError(f"exercise must be one of {', '.join(SOLUTIONS)}; got {exercise!r}")
    return key
