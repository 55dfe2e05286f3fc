"""helpers._fused: torch's private multi-tensor functions in one place, each with a public fallback
that gives the same numbers when the private function is missing or refuses its input."""

import itertools
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import _fused
from helpers.clipping import clip_grad_norm_
from helpers.diagnostics import GradientMonitor

PRIVATE = ("_foreach_copy_", "_foreach_sub_", "_foreach_mul_", "_foreach_norm")


def _tensors(seed, dtypes=(torch.float32, torch.float64, torch.float32)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3 + i, 2, generator=g).to(dtype) for i, dtype in enumerate(dtypes)]


@pytest.fixture(params=["torch's", "missing", "refusing"])
def private(request, monkeypatch):
    """Run a test with torch's private functions as they are, deleted, or raising on every input."""
    def refuse(*args, **kwargs):
        raise RuntimeError("refused")

    for name in PRIVATE:
        if request.param == "missing":
            monkeypatch.delattr(torch, name)
        elif request.param == "refusing":
            monkeypatch.setattr(torch, name, refuse)
    if request.param != "torch's":
        monkeypatch.setattr(_fused, "_group_tensors_by_device_and_dtype",
                            None if request.param == "missing" else refuse)
    return request.param


@pytest.fixture(params=["torch's", "missing"])
def in_place(request, monkeypatch):
    """An in-place wrapper falls back only when torch's function is missing (a refusal is raised)."""
    if request.param == "missing":
        for name in PRIVATE:
            monkeypatch.delattr(torch, name)
    return request.param


def test_in_place_wrappers_equal_the_loop(in_place):
    a, b = _tensors(0), _tensors(1)
    expected = [(x - y) * y for x, y in zip(a, b)]
    _fused.sub_(a, b)
    _fused.mul_(a, b)
    assert all(torch.equal(x, e) for x, e in zip(a, expected))
    _fused.copy_(a, b)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_mul_broadcasts_a_factor_per_member(in_place):
    grads = _tensors(2)
    factors = [torch.linspace(0.5, 2.0, g.shape[0], dtype=g.dtype).view(-1, 1) for g in grads]
    expected = [g * f for g, f in zip(grads, factors)]
    _fused.mul_(grads, factors)
    assert all(torch.equal(g, e) for g, e in zip(grads, expected))


@pytest.mark.parametrize("wrapper, once", [(_fused.sub_, -1.0), (_fused.mul_, 6.0), (_fused.copy_, 3.0)])
def test_an_in_place_wrapper_does_not_apply_twice_when_torch_fails_partway(wrapper, once):
    # torch's CPU loop may change the first tensor before it fails on the second: a retry would change it again
    first = torch.full((3,), 2.0)
    with pytest.raises(RuntimeError):
        wrapper([first, torch.ones(3)], [torch.full((3,), 3.0), torch.ones(4)])
    assert torch.equal(first, torch.full((3,), 2.0)) or torch.equal(first, torch.full((3,), once))


@pytest.mark.parametrize("wrapper", [_fused.sub_, _fused.mul_, _fused.copy_])
def test_the_fallback_checks_the_lengths_before_changing_anything(wrapper, monkeypatch):
    for name in PRIVATE:
        monkeypatch.delattr(torch, name)
    first = torch.full((3,), 2.0)
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        wrapper([first, torch.ones(3)], [torch.ones(3)])
    assert torch.equal(first, torch.full((3,), 2.0))


def test_norms_equal_the_public_norm(private):
    tensors = _tensors(3)
    assert torch.equal(_fused.fast_norms(tensors), torch.stack([torch.linalg.vector_norm(t) for t in tensors]))
    wide = torch.stack([torch.linalg.vector_norm(t, dtype=torch.float64) for t in tensors])
    assert torch.equal(_fused.norms(tensors), wide)


def test_grouping_follows_torch_and_falls_back_to_first_appearance(private):
    tensors = _tensors(4, (torch.float32, torch.float64, torch.float32, torch.bfloat16))
    grouped = _fused.by_device_and_dtype(tensors)
    assert sorted(map(id, grouped)) == sorted(map(id, tensors))
    dtypes = [t.dtype for t in grouped]
    assert len(list(itertools.groupby(dtypes))) == len(set(dtypes))   # each dtype in one run
    if private != "torch's":
        assert dtypes == [torch.float32, torch.float32, torch.float64, torch.bfloat16]
    assert _fused.by_device_and_dtype([]) == []


def test_the_wrapped_functions_give_torch_own_numbers_bit_for_bit():
    a, b = _tensors(5), _tensors(6)
    a2 = [t.clone() for t in a]
    _fused.sub_(a, b)
    torch._foreach_sub_(a2, b)
    assert all(torch.equal(x, y) for x, y in zip(a, a2))
    assert torch.equal(_fused.fast_norms(a), torch.stack(torch._foreach_norm(a2, 2)))


def _monitored_run():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net) as monitor:
        for _ in range(3):
            opt.zero_grad()
            net(torch.randn(16, 4)).square().mean().backward()
            clip_grad_norm_(net.parameters(), 0.1)
            opt.step()
            monitor.step()
    return monitor.records


def test_the_monitor_and_clipping_record_the_same_numbers_without_the_private_functions(monkeypatch):
    expected = _monitored_run()
    for name in PRIVATE:
        monkeypatch.delattr(torch, name)
    monkeypatch.setattr(_fused, "_group_tensors_by_device_and_dtype", None)
    assert _monitored_run() == expected


def test_only_fused_calls_torch_private_functions():
    package = Path(_fused.__file__).parent
    callers = sorted(p.name for p in package.rglob("*.py")
                     if p.name != "_fused.py"
                     and re.search(r"torch\._foreach_|_foreach_utils", p.read_text("utf-8")))
    assert not callers, f"call helpers._fused's wrappers instead of torch's private functions in {callers}"


def _exact(t):
    """The 2-norm in float64 by hand, with the largest entry divided out (no overflow, no underflow)."""
    t = t.detach().double()
    peak = float(t.abs().max())
    return peak * float(torch.linalg.vector_norm(t / peak)) if peak else 0.0


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e19), (torch.float32, 1e30), (torch.float16, 3e3),
                                          (torch.float16, 300.0), (torch.float64, 1e200)])
def test_refine_redoes_norms_whose_squares_overflowed(dtype, scale):
    # F1: float32 entries of 1e19 have squares beyond float32's range; a float16 norm above 65504 is inf
    g = torch.Generator().manual_seed(0)
    tensors = [(torch.randn(64, 64, generator=g, dtype=torch.float64) * scale).to(dtype),
               torch.randn(5, generator=g).to(dtype)]
    assert all(bool(torch.isfinite(t).all()) for t in tensors)
    fast = _fused.fast_norms(tensors).float().tolist()
    refined = _fused.refine(fast, tensors)
    rel = max(torch.finfo(dtype).eps, torch.finfo(torch.float32).eps)   # the monitor reads float32 values
    for value, t in zip(refined, tensors):
        assert value == pytest.approx(_exact(t), rel=rel)


def test_refine_leaves_the_common_values_alone_and_redoes_only_the_doubtful_ones():
    # a stand-in tensor whose norm differs from the value shows whether a value was recomputed
    asked = []
    stand_in = torch.tensor([3.0, 4.0])

    def tensor(i):
        asked.append(i)
        return stand_in

    values = [1.0, math.inf, 2e18, 1e-13, math.nan, 1e18, _fused.TINY]
    assert _fused.refine(values, tensor) == [1.0, 5.0, 5.0, 5.0, 5.0, 1e18, _fused.TINY]
    assert asked == [1, 2, 3, 4]
    assert _fused.refine([1.0, 2.0], lambda i: pytest.fail("a common value was recomputed")) == [1.0, 2.0]


def test_exact_norms_neither_underflow_nor_overflow_and_keep_true_infinities():
    big = torch.full((4,), 1e200, dtype=torch.float64)
    assert _fused.exact_norms([big, torch.tensor([3.0, 4.0])]) == [2e200, 5.0]
    assert _fused.exact_norms([torch.full((4,), 1e-30)]) == [pytest.approx(2e-30, rel=1e-7)]
    assert _fused.exact_norms([torch.full((4,), 1e19)]) == [pytest.approx(2e19, rel=1e-7)]
    with_inf = torch.tensor([1e200, math.inf], dtype=torch.float64)
    with_nan = torch.tensor([1e200, math.nan], dtype=torch.float64)
    assert _fused.exact_norms([with_inf])[0] == math.inf and math.isnan(_fused.exact_norms([with_nan])[0])
    beyond = torch.full((4,), 1.5e308, dtype=torch.float64)   # the norm itself is beyond float64: inf is the truth
    assert _fused.exact_norms([beyond, torch.zeros(0)]) == [math.inf, 0.0]
    assert _fused.exact_norms([]) == []


def test_foreach_norms_and_groups_fall_back_to_the_same_numbers(private):
    tensors = _tensors(7, (torch.float32, torch.float64, torch.float32))
    for p in (2.0, 1.0, math.inf):
        assert all(torch.equal(a, torch.linalg.vector_norm(t, p))
                   for a, t in zip(_fused.foreach_norms(tensors, p), tensors))
    groups = _fused.device_dtype_groups(tensors)
    assert sorted(len(g) for g in groups) == [1, 2] and all(len({t.dtype for t in g}) == 1 for g in groups)
    assert _fused.foreach_norms([], 2.0) == [] and _fused.device_dtype_groups([]) == []


def test_foreach_support_follows_torch_and_its_fallback(monkeypatch):
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert _fused.foreach_supported(cpu) and not _fused.foreach_supported(meta)
    assert _fused.uses_foreach([torch.ones(1)], cpu, None) and not _fused.uses_foreach([torch.ones(1)], meta, None)
    assert not _fused.uses_foreach([nn.Parameter(torch.ones(1))], cpu, None)   # a subclass: torch's loop
    assert _fused.uses_foreach([torch.ones(1)], meta, True) is True
    assert _fused.uses_foreach([torch.ones(1)], cpu, False) is False
    monkeypatch.setattr(_fused, "_device_has_foreach_support", None)
    assert _fused.foreach_supported(cpu) and not _fused.foreach_supported(meta)


@pytest.mark.parametrize("scale", [1.0, 1e-30, 1e25, 0.0])
def test_exact_norms_of_complex_tensors_are_their_real_and_imaginary_parts_norm(scale):
    # torch refuses a float64 norm of a complex tensor; the norm is that of the real view, in float64
    g = torch.Generator().manual_seed(3)
    z = (torch.randn(5, 4, generator=g, dtype=torch.complex128) * scale).to(torch.complex64)
    real = torch.randn(3, generator=g)
    parts = torch.view_as_real(z)
    values = _fused.exact_norms([z, real, z.conj(), z.t()])
    assert values[1] == _fused.exact_norms([real])[0]
    assert values[0] == values[2] == values[3] == pytest.approx(_exact(parts), rel=1e-12)
    if scale == 1.0:
        assert values[0] == pytest.approx(float(torch.linalg.vector_norm(z)), rel=1e-6)
    assert _fused.norms([z]).tolist() == [values[0]]


def test_refine_recomputes_a_doubtful_complex_norm():
    z = torch.zeros(3, dtype=torch.complex64)
    huge = torch.full((4,), 1e30 + 1e30j, dtype=torch.complex64)
    fast = _fused.fast_norms([z, huge]).tolist()
    assert _fused.refine(fast, [z, huge]) == [0.0, pytest.approx(2e30 * math.sqrt(2), rel=1e-6)]
