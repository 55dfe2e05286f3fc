"""Properties of helpers.clipping that must hold for every input, searched with hypothesis."""

import math

import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from helpers.clipping import adaptive_clip_grad_, clip_grad_norm_, clip_grad_value_

SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)
NORM_TYPES = st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, math.inf])


@st.composite
def parameters(draw, dtype=torch.float64, min_size=1):
    """A list of parameters of random shapes (scalars, vectors, conv-like), each with a random
    gradient (some None), drawn from a seeded generator so every example is reproducible."""
    shapes = draw(st.lists(SHAPES, min_size=min_size, max_size=5))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 1e8]))
    has_grad = draw(st.lists(st.booleans(), min_size=len(shapes), max_size=len(shapes)))
    g = torch.Generator().manual_seed(seed)
    params = []
    for shape, with_grad in zip(shapes, has_grad):
        p = nn.Parameter(torch.randn(shape, generator=g, dtype=dtype))
        if with_grad:
            p.grad = scale * torch.randn(shape, generator=g, dtype=dtype)
        params.append(p)
    return params


def _copy(params):
    out = []
    for p in params:
        q = nn.Parameter(p.detach().clone())
        q.grad = None if p.grad is None else p.grad.clone()
        out.append(q)
    return out


def _norm(params, p=2.0):
    grads = [q.grad for q in params if q.grad is not None]
    if not grads:
        return 0.0
    norms = [torch.linalg.vector_norm(g, p) if g.numel() else g.new_zeros(()) for g in grads]
    return float(torch.linalg.vector_norm(torch.stack(norms), p))


@given(parameters(), st.floats(1e-3, 1e3), NORM_TYPES)
def test_norm_after_clipping_is_at_most_max_norm(params, max_norm, norm_type):
    clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert _norm(params, norm_type) <= max_norm * (1 + 1e-6)


@given(parameters(), st.floats(1e-3, 1e3), NORM_TYPES)
def test_norm_clipping_keeps_the_direction(params, max_norm, norm_type):
    before = _copy(params)
    total = float(clip_grad_norm_(params, max_norm, norm_type=norm_type))
    scale = min(1.0, max_norm / (total + 1e-6))
    for a, b in zip(params, before):
        if a.grad is not None:
            # every entry is multiplied by the same factor: the direction is kept
            torch.testing.assert_close(a.grad, scale * b.grad, rtol=1e-12, atol=0)


@given(parameters(), st.floats(1e-3, 1e3), NORM_TYPES)
def test_norm_clipping_is_idempotent(params, max_norm, norm_type):
    clip_grad_norm_(params, max_norm, norm_type=norm_type)
    once = _copy(params)
    clip_grad_norm_(params, max_norm, norm_type=norm_type)
    for a, b in zip(params, once):
        if a.grad is not None:
            # a second pass scales by at most max_norm / (max_norm + 1e-6): a relative change below 1e-6 / max_norm
            torch.testing.assert_close(a.grad, b.grad, rtol=2e-6 / max_norm + 1e-12, atol=0)


@given(parameters(), st.floats(0.0, 1e3))
def test_value_clipping_bounds_every_entry_and_is_idempotent(params, clip_value):
    before = _copy(params)
    clip_grad_value_(params, clip_value)
    once = _copy(params)
    clip_grad_value_(params, clip_value)
    for a, b, c in zip(params, before, once):
        if a.grad is not None:
            assert a.grad.abs().max() <= clip_value if a.grad.numel() else True
            inside = b.grad.abs() <= clip_value
            assert torch.equal(a.grad[inside], b.grad[inside])      # untouched where already inside
            assert torch.equal(a.grad, c.grad)                      # idempotent
            if clip_value > 0:  # clamped entries keep their sign
                assert torch.equal(torch.sign(a.grad[~inside]), torch.sign(b.grad[~inside]))


@given(parameters(min_size=0), st.floats(1e-3, 1e3), NORM_TYPES)
def test_clip_grad_norm_equals_torch_for_random_shapes(params, max_norm, norm_type):
    theirs = _copy(params)
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    try:
        expected = nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    except RuntimeError:  # torch refuses the inf norm of an empty tensor; ours counts it as 0
        assert norm_type == math.inf and any(p.grad is not None and p.numel() == 0 for p in params)
        assert bool(torch.isfinite(total))
        return
    torch.testing.assert_close(total, expected.to(total.dtype), rtol=1e-12, atol=0)
    for a, b in zip(params, theirs):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=0)


@given(parameters(min_size=0), st.floats(0.0, 1e3))
def test_clip_grad_value_equals_torch_for_random_shapes(params, clip_value):
    theirs = _copy(params)
    clip_grad_value_(params, clip_value)
    if not any(p.grad is not None for p in theirs):
        return  # torch's foreach kernel refuses an empty list of gradients; ours does nothing
    nn.utils.clip_grad_value_(theirs, clip_value)
    for a, b in zip(params, theirs):
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad)


@given(parameters(), st.floats(1e-3, 1.0))
def test_adaptive_clipping_bounds_each_units_ratio(params, clipping):
    assume(any(p.grad is not None for p in params))
    eps = 1e-3
    adaptive_clip_grad_(params, clipping=clipping, eps=eps)
    for p in params:
        if p.grad is None or p.numel() == 0:
            continue
        dims = tuple(range(1, p.dim())) if p.dim() > 1 else tuple(range(p.dim()))
        w = torch.linalg.vector_norm(p.detach(), dim=dims) if dims else p.detach().abs()
        g = torch.linalg.vector_norm(p.grad, dim=dims) if dims else p.grad.abs()
        assert (g <= clipping * w.clamp(min=eps) * (1 + 1e-9) + 1e-12).all()
