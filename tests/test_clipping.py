import math
import re

import pytest
import torch
from torch import nn

from helpers.clipping import (
    adaptive_clip_grad_,
    clip_grad_norm_,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
    grad_norms,
    total_norm_from_norms,
    unitwise_norm,
)

NORM_TYPES = [1.0, 2.0, 3.5, math.inf]


def _pair(dtype=torch.float64, scale=1.0, seed=0, with_none=True):
    """Two identical parameter lists with the same gradients (conv, linear, bias, one without grad)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 3, 3, 3), (5, 4), (5,), (2, 2)]
    ours, theirs = [], []
    for i, shape in enumerate(shapes):
        w = torch.randn(shape, generator=g, dtype=dtype)
        grad = scale * torch.randn(shape, generator=g, dtype=dtype)
        a, b = nn.Parameter(w.clone()), nn.Parameter(w.clone())
        if not (with_none and i == len(shapes) - 1):
            a.grad, b.grad = grad.clone(), grad.clone()
        ours.append(a)
        theirs.append(b)
    return ours, theirs


def _same_grads(ours, theirs, **tol):
    for a, b in zip(ours, theirs):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, equal_nan=True, **tol)


@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
def test_clip_grad_norm_equals_torch(norm_type, max_norm):
    ours, theirs = _pair()
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    torch.testing.assert_close(total, expected, rtol=1e-14, atol=0)
    _same_grads(ours, theirs, rtol=1e-14, atol=0)


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_clip_grad_norm_equals_torch_in_float32(norm_type):
    ours, theirs = _pair(dtype=torch.float32, scale=100.0)
    total = clip_grad_norm_(iter(ours), 1.0, norm_type=norm_type)  # a generator works too
    expected = nn.utils.clip_grad_norm_(theirs, 1.0, norm_type=norm_type)
    assert total.dtype == expected.dtype
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=0)
    _same_grads(ours, theirs, rtol=1e-6, atol=1e-8)


def test_clipped_norm_equals_max_norm_and_direction_is_kept():
    ours, _ = _pair(scale=50.0)
    before = torch.cat([p.grad.flatten() for p in ours if p.grad is not None])
    clip_grad_norm_(ours, 2.0)
    after = torch.cat([p.grad.flatten() for p in ours if p.grad is not None])
    assert float(after.norm()) == pytest.approx(2.0, rel=1e-6)
    assert float(torch.nn.functional.cosine_similarity(before, after, dim=0)) == pytest.approx(1.0)


def test_single_tensor_and_string_inf():
    w, v = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3))
    w.grad, v.grad = torch.tensor([1.0, -7.0, 2.0]), torch.tensor([1.0, -7.0, 2.0])
    assert float(clip_grad_norm_(w, 1.0, norm_type="inf")) == 7.0
    nn.utils.clip_grad_norm_(v, 1.0, norm_type="inf")
    torch.testing.assert_close(w.grad, v.grad)


def test_no_gradients_and_empty_input_give_zero():
    for params in ([], [nn.Parameter(torch.ones(2))]):
        total = clip_grad_norm_(params, 1.0)
        assert float(total) == 0.0 and float(nn.utils.clip_grad_norm_(params, 1.0)) == 0.0
    assert float(total_norm_from_norms([])) == 0.0
    clip_grad_value_([], 1.0)
    assert float(adaptive_clip_grad_([])) == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_non_finite_gradients_behave_like_torch(bad, norm_type):
    ours, theirs = _pair()
    for params in (ours, theirs):
        params[1].grad[0, 0] = bad
    total = clip_grad_norm_(ours, 1.0, norm_type=norm_type)
    expected = nn.utils.clip_grad_norm_(theirs, 1.0, norm_type=norm_type)
    torch.testing.assert_close(total, expected, equal_nan=True)
    _same_grads(ours, theirs)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_error_if_nonfinite_raises_before_touching_gradients(bad):
    ours, theirs = _pair()
    for params in (ours, theirs):
        params[0].grad[0, 0, 0, 0] = bad
    snapshot = [p.grad.clone() for p in ours if p.grad is not None]
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    for before, p in zip(snapshot, [p for p in ours if p.grad is not None]):
        torch.testing.assert_close(p.grad, before, equal_nan=True)


def test_norm_from_pieces_equals_norm_of_the_whole():
    """What a sharded (distributed) clip relies on: the total from per-tensor norms."""
    ours, _ = _pair(with_none=False)
    grads = [p.grad for p in ours]
    whole = torch.cat([g.flatten() for g in grads])
    for p in NORM_TYPES:
        split = [grad_norms(grads[:2], p), grad_norms(grads[2:], p)]    # two "processes"
        combined = total_norm_from_norms(split[0] + split[1], p)
        torch.testing.assert_close(combined, torch.linalg.vector_norm(whole, p), rtol=1e-14, atol=0)
        torch.testing.assert_close(get_total_norm(grads, p), combined, rtol=1e-14, atol=0)


def test_clip_grads_with_norm_uses_the_given_total():
    w = nn.Parameter(torch.zeros(2))
    w.grad = torch.tensor([3.0, 4.0])
    clip_grads_with_norm_([w], 1.0, torch.tensor(10.0))  # e.g. a global norm over all processes
    torch.testing.assert_close(w.grad, torch.tensor([3.0, 4.0]) / (10.0 + 1e-6))


@pytest.mark.parametrize("clip_value", [0.0, 0.3, 1.0, 100.0])
def test_clip_grad_value_equals_torch(clip_value):
    ours, theirs = _pair(scale=2.0)
    ours[1].grad[0, 0] = theirs[1].grad[0, 0] = math.nan
    assert clip_grad_value_(ours, clip_value) is None
    nn.utils.clip_grad_value_(theirs, clip_value)
    _same_grads(ours, theirs, rtol=0, atol=0)


def test_seed_000_clip_formula_always_returns_the_threshold():
    g = torch.linspace(-3, 3, 13)
    wrong = torch.minimum(torch.maximum(g, torch.tensor(1.0)), torch.tensor(1.0))
    assert torch.equal(wrong, torch.ones_like(g))
    w = nn.Parameter(torch.zeros(13))
    w.grad = g.clone()
    clip_grad_value_(w, 1.0)
    assert torch.equal(w.grad, g.clamp(-1, 1)) and not torch.equal(w.grad, wrong)


def _agc_reference(weight, grad, clipping, eps):
    """The formula of Brock et al., one unit (output row) at a time, in plain loops."""
    out = grad.clone()
    rows = weight.reshape(len(weight), -1) if weight.dim() > 1 else weight.reshape(1, -1)
    grad_rows = out.reshape(len(weight), -1) if weight.dim() > 1 else out.reshape(1, -1)
    for w_i, g_i in zip(rows, grad_rows):
        w_norm = max(float(w_i.norm()), eps)
        g_norm = float(g_i.norm())
        if g_norm / w_norm > clipping:
            g_i.mul_(clipping * w_norm / g_norm)
    return out


@pytest.mark.parametrize("clipping", [0.01, 0.1, 1.0])
def test_adaptive_clip_matches_its_formula(clipping):
    params, _ = _pair(with_none=True)
    params[2].data.zero_()  # a zero bias: eps keeps its threshold positive
    expected = [None if p.grad is None else _agc_reference(p.detach(), p.grad, clipping, 1e-3) for p in params]
    fraction = adaptive_clip_grad_(params, clipping=clipping)
    for p, e in zip(params, expected):
        if e is not None:
            torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=0)
    assert 0.0 <= float(fraction) <= 1.0


def test_adaptive_clip_is_unit_wise_for_linear_and_conv():
    w = nn.Parameter(torch.tensor([[3.0, 4.0], [0.6, 0.8]]))
    w.grad = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    fraction = adaptive_clip_grad_(w, clipping=0.5)
    # row 0: |W|=5, |G|=1, ratio 0.2 <= 0.5 -> kept; row 1: |W|=1, ratio 1 > 0.5 -> scaled to 0.5
    torch.testing.assert_close(w.grad, torch.tensor([[1.0, 0.0], [0.5, 0.0]]))
    assert float(fraction) == 0.5
    conv = nn.Conv2d(2, 3, 3)
    assert unitwise_norm(conv.weight).shape == (3, 1, 1, 1)
    conv.weight.grad = 10 * conv.weight.detach().clone()
    adaptive_clip_grad_([conv.weight], clipping=0.1)
    ratio = unitwise_norm(conv.weight.grad) / unitwise_norm(conv.weight.detach())
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.1))


@pytest.mark.parametrize("call, error, text", [
    (lambda p: clip_grad_norm_(p, -1.0), ValueError, "max_norm"),
    (lambda p: clip_grad_norm_(p, "1"), TypeError, "max_norm"),
    (lambda p: clip_grad_norm_(p, 1.0, norm_type=0), ValueError, "norm_type"),
    (lambda p: clip_grad_norm_(p, 1.0, norm_type=-2.0), ValueError, "norm_type"),
    (lambda p: clip_grad_norm_(p, 1.0, norm_type="two"), TypeError, "norm_type"),
    (lambda p: clip_grad_norm_([1.0], 1.0), TypeError, "parameters"),
    (lambda p: clip_grad_norm_(3, 1.0), TypeError, "parameters"),
    (lambda p: clip_grad_value_(p, -0.5), ValueError, "clip_value"),
    (lambda p: clip_grad_value_(p, math.nan), ValueError, "clip_value"),
    (lambda p: adaptive_clip_grad_(p, clipping=0.0), ValueError, "clipping"),
    (lambda p: adaptive_clip_grad_(p, eps=-1.0), ValueError, "eps"),
])
def test_bad_arguments_raise_and_modify_nothing(call, error, text):
    params, _ = _pair()
    snapshot = [None if p.grad is None else p.grad.clone() for p in params]
    with pytest.raises(error, match=text):
        call(params)
    for p, s in zip(params, snapshot):
        assert (p.grad is None and s is None) or torch.equal(p.grad, s)


# ---- issue 16: mixed dtypes round once (as torch); an empty generator warns; validation runs once

import warnings  # noqa: E402

from helpers import clipping as _clipping  # noqa: E402

MIXED = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def _mixed_params(seed, dtypes, scale):
    g = torch.Generator().manual_seed(seed)
    params = []
    for i, dtype in enumerate(dtypes):
        p = torch.nn.Parameter(torch.zeros(3 + i, dtype=dtype))
        p.grad = (torch.randn(3 + i, generator=g) * scale).to(dtype)
        params.append(p)
    return params


def test_mixed_dtype_issue_example_rounds_once():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([12.0, 0.0], dtype=torch.bfloat16)
    _clipping.clip_grad_norm_([a, b], 1.0)
    assert b.grad[0].item() == 0.921875


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("dtypes", [MIXED[:2], MIXED[:3], [torch.bfloat16, torch.float16], MIXED,
                                    [torch.float16, torch.float64]], ids=str)
def test_mixed_dtypes_equal_torch_bit_for_bit(dtypes, norm_type):
    for seed in range(50):
        ours = _mixed_params(seed, dtypes, scale=10.0 ** (seed % 5 - 1))
        theirs = _mixed_params(seed, dtypes, scale=10.0 ** (seed % 5 - 1))
        n1 = _clipping.clip_grad_norm_(ours, 1.0, norm_type)
        n2 = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type)
        assert n1.dtype == n2.dtype and torch.equal(n1, n2)
        for p, q in zip(ours, theirs):
            assert p.grad.dtype == q.grad.dtype and torch.equal(p.grad, q.grad), (seed, p.grad, q.grad)


def test_low_precision_alone_equals_torch():
    for dtype in (torch.bfloat16, torch.float16):
        ours, theirs = _mixed_params(0, [dtype] * 3, 30.0), _mixed_params(0, [dtype] * 3, 30.0)
        assert torch.equal(_clipping.clip_grad_norm_(ours, 0.5), torch.nn.utils.clip_grad_norm_(theirs, 0.5))
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours, theirs))


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("make", [lambda: (p for p in []), lambda: [], lambda: iter([]), lambda: ()],
                         ids=["empty generator", "empty list", "empty iterator", "empty tuple"])
def test_empty_parameters_warn_exactly_when_torch_does(make):
    ours = _warnings_of(lambda: _clipping.clip_grad_norm_(make(), 1.0))
    theirs = _warnings_of(lambda: torch.nn.utils.clip_grad_norm_(make(), 1.0))
    assert ours == theirs


def test_exhausted_generator_warns():
    net = torch.nn.Linear(2, 2)
    params = net.parameters()
    list(params)
    assert any("no gradient clipping will occur" in m
               for m in _warnings_of(lambda: _clipping.clip_grad_norm_(params, 1.0)))


def test_norm_type_is_validated_once_per_call(monkeypatch):
    calls = []
    original = _clipping._check_norm_type
    monkeypatch.setattr(_clipping, "_check_norm_type", lambda v: calls.append(v) or original(v))
    w = torch.nn.Parameter(torch.zeros(2))
    w.grad = torch.ones(2)
    _clipping.clip_grad_norm_([w], 1.0)
    assert len(calls) == 1


# --- F9: torch's keywords and spellings; F7: clip_value checked against every dtype before any change

def _torch_error(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - which one torch raises is the point
        return error
    return None


@pytest.mark.parametrize("foreach", [None, True, False])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("dtypes", [[torch.float32] * 3, MIXED], ids=["float32", "mixed"])
def test_foreach_gives_torchs_numbers_for_the_same_foreach(foreach, norm_type, dtypes):
    for seed in range(10):
        ours, theirs = _mixed_params(seed, dtypes, 10.0), _mixed_params(seed, dtypes, 10.0)
        n1 = _clipping.clip_grad_norm_(ours, 1.0, norm_type, foreach=foreach)
        n2 = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type, foreach=foreach)
        assert torch.equal(n1, n2) and all(torch.equal(p.grad, q.grad) for p, q in zip(ours, theirs))
        t1 = _clipping.get_total_norm([p.grad for p in ours], norm_type, foreach=foreach)
        t2 = torch.nn.utils.get_total_norm([q.grad for q in theirs], norm_type, foreach=foreach)
        assert torch.equal(t1, t2)
        _clipping.clip_grads_with_norm_(ours, 0.5, t1, foreach=foreach)
        torch.nn.utils.clip_grads_with_norm_(theirs, 0.5, t2, foreach=foreach)
        _clipping.clip_grad_value_(ours, 0.01, foreach=foreach)
        torch.nn.utils.clip_grad_value_(theirs, 0.01, foreach=foreach)
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours, theirs))


def test_an_empty_gradient_keeps_its_zero_inf_norm_on_the_foreach_path():
    # torch's foreach kernel refuses the inf norm of an empty tensor; ours gives 0, in the tensors' order
    a, b, c = (nn.Parameter(torch.zeros(n)) for n in (3, 0, 2))
    a.grad, b.grad, c.grad = torch.tensor([1.0, -5.0, 2.0]), torch.zeros(0), torch.tensor([4.0, 0.5])
    for foreach in (None, True, False):
        assert float(get_total_norm([a.grad, b.grad, c.grad], math.inf, foreach=foreach)) == 5.0


@pytest.mark.parametrize("kwargs", [
    {"max_norm": torch.tensor(1.0)}, {"max_norm": torch.tensor([0.5], dtype=torch.float64)},
    {"max_norm": 1.0, "norm_type": torch.tensor(2.0)}, {"max_norm": 1.0, "norm_type": torch.tensor(1)},
    {"max_norm": 1.0, "norm_type": "2"}, {"max_norm": 1.0, "norm_type": "inf"}, {"max_norm": 1.0, "norm_type": "1.5"},
    {"max_norm": 1.0, "norm_type": " Infinity "}, {"max_norm": math.inf}, {"max_norm": torch.tensor(math.inf)},
], ids=str)
def test_torchs_spellings_of_the_numbers_give_torchs_result(kwargs):
    ours, theirs = _pair(dtype=torch.float32, scale=10.0)
    n1, n2 = clip_grad_norm_(ours, **kwargs), nn.utils.clip_grad_norm_(theirs, **kwargs)
    assert torch.equal(n1, n2)
    _same_grads(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("clip_value", [torch.tensor(0.5), torch.tensor([2.0]), math.inf, torch.tensor(math.inf)],
                         ids=str)
def test_clip_value_as_a_tensor_or_inf_equals_torch(clip_value):
    ours, theirs = _pair(dtype=torch.float32, scale=10.0)
    before = [p.grad.clone() for p in ours if p.grad is not None]
    clip_grad_value_(ours, clip_value)
    nn.utils.clip_grad_value_(theirs, clip_value)
    _same_grads(ours, theirs, rtol=0, atol=0)
    if float(clip_value) == math.inf:   # a no-op, as torch's
        assert all(torch.equal(b, p.grad) for b, p in zip(before, ours))


def _value_pair(dtypes):
    made = []
    for _ in range(2):
        params = []
        for i, dtype in enumerate(dtypes):
            p = nn.Parameter(torch.zeros(2, dtype=dtype))
            p.grad = torch.tensor([-1e6 if dtype.is_floating_point and torch.finfo(dtype).max > 1e6 else -3.0,
                                   2.0 + i], dtype=dtype)
            params.append(p)
        made.append(params)
    return made


@pytest.mark.parametrize("dtypes, clip_value", [
    ([torch.float32, torch.float16], 1e5), ([torch.float16, torch.float32], 65505.0),
    ([torch.float64, torch.bfloat16], 3.4e38), ([torch.float32], 1e39), ([torch.float64, torch.float32], 1e300),
], ids=str)
def test_a_clip_value_beyond_a_gradients_dtype_is_refused_before_any_change(dtypes, clip_value):
    # F7: the float32 gradient was clamped, then torch's conversion error for float16 came
    ours, theirs = _value_pair(dtypes)
    before = [p.grad.clone() for p in ours]
    assert isinstance(_torch_error(lambda: nn.utils.clip_grad_value_(theirs, clip_value)), RuntimeError)
    got = re.escape(repr(clip_value))
    with pytest.raises(ValueError, match=rf"clip_value must fit every gradient's dtype, got {got}, beyond torch\.\w+"):
        clip_grad_value_(ours, clip_value)
    assert all(torch.equal(b, p.grad) for b, p in zip(before, ours))


@pytest.mark.parametrize("dtypes, clip_value", [
    ([torch.float32, torch.float16], 65504.0), ([torch.float32, torch.bfloat16], 3.3e38),
    ([torch.float64, torch.float32], 3.4e38), ([torch.float16], math.inf), ([torch.float64], 1e300),
], ids=str)
def test_a_clip_value_that_fits_every_dtype_equals_torch(dtypes, clip_value):
    ours, theirs = _value_pair(dtypes)
    clip_grad_value_(ours, clip_value)
    nn.utils.clip_grad_value_(theirs, clip_value)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours, theirs))


def test_a_complex_gradient_is_refused_before_any_change_as_torch_refuses_it():
    def make():
        a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, dtype=torch.complex64))
        a.grad, b.grad = torch.tensor([5.0, -5.0]), torch.full((2,), 3 + 4j, dtype=torch.complex64)
        return [a, b]

    assert _torch_error(lambda: nn.utils.clip_grad_value_(make(), 1.0)) is not None
    params = make()
    with pytest.raises(TypeError, match="cannot clamp a gradient of dtype torch.complex64"):
        clip_grad_value_(params, 1.0)
    assert params[0].grad.tolist() == [5.0, -5.0]
    clip_grad_norm_(make(), 1.0)   # a norm is defined for complex gradients


@pytest.mark.parametrize("call", [
    lambda p: clip_grad_norm_(p, 1.0, foreach=True), lambda p: clip_grad_value_(p, 1.0, foreach=True),
    lambda p: get_total_norm([q.grad for q in p], foreach=True),
    lambda p: clip_grads_with_norm_(p, 1.0, torch.tensor(2.0, device="meta"), foreach=True),
], ids=["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"])
def test_foreach_true_on_a_device_without_foreach_kernels_is_refused_as_torch_refuses_it(call):
    p = nn.Parameter(torch.zeros(2, device="meta"))
    p.grad = torch.zeros(2, device="meta")
    assert isinstance(_torch_error(lambda: torch.nn.utils.clip_grad_norm_([p], 1.0, foreach=True)), RuntimeError)
    with pytest.raises(ValueError, match="foreach=True needs torch's foreach kernels, which meta tensors lack"):
        call([p])
    for foreach in (None, False):      # the loop works there, as torch's
        clip_grad_norm_([p], 1.0, foreach=foreach)
        clip_grad_value_([p], 1.0, foreach=foreach)
