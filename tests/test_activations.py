"""helpers.activations: same outputs and gradients as torch.nn, also at extreme inputs."""

import pytest
import torch
from torch import nn

from helpers import activations as act

PAIRS = {
    "sigmoid": (act.Sigmoid(), nn.Sigmoid()),
    "tanh": (act.Tanh(), nn.Tanh()),
    "relu": (act.ReLU(), nn.ReLU()),
    "leaky_relu": (act.LeakyReLU(), nn.LeakyReLU()),
    "leaky_relu_0.2": (act.LeakyReLU(0.2), nn.LeakyReLU(0.2)),
    "elu": (act.ELU(), nn.ELU()),
    "elu_0.5": (act.ELU(alpha=0.5), nn.ELU(alpha=0.5)),
    "selu": (act.SELU(), nn.SELU()),
    "gelu": (act.GELU(), nn.GELU()),
    "gelu_tanh": (act.GELU("tanh"), nn.GELU("tanh")),
    "swish": (act.Swish(), nn.SiLU()),
    "mish": (act.Mish(), nn.Mish()),
    "identity": (act.Identity(), nn.Identity()),
}
EXTREMES = [float("-inf"), -1e30, -1e4, -100.0, -88.0, -30.0, -20.0, -1.0, -1e-7, 0.0,
            1e-7, 1.0, 20.0, 30.0, 88.0, 100.0, 1e4, 1e30, float("inf")]


def _forward_backward(module, x):
    x = x.detach().requires_grad_()
    y = module(x)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return y.detach(), grad


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
def test_outputs_and_gradients_equal_torch_float64(name, scale):
    ours, theirs = PAIRS[name]
    x = scale * torch.randn(4, 3, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for a, b in zip(_forward_backward(ours, x), _forward_backward(theirs, x)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def _torch_on_both_paths(module, x):
    """torch's outputs and gradients at each x, from its scalar kernel and from its vectorised one.

    torch picks a kernel by tensor length and CPU (ATEN_CPU_CAPABILITY): a 1-element tensor
    takes the scalar loop, 32 copies of each value in a row fill whole vector registers. The
    two disagree where a formula is an indeterminate form, e.g. GELU(+inf) = inf * Phi(inf) is
    inf on the scalar path and NaN on the vectorised one (x * 0.5 * (1 + erf(x / sqrt 2)) is
    evaluated in another order). Asking for both on every machine keeps the test independent
    of which kernel this machine happens to pick.
    """
    scalar = [torch.cat(parts) for parts in zip(*(_forward_backward(module, x[i:i + 1]) for i in range(len(x))))]
    vector = [t[16::32] for t in _forward_backward(module, x.repeat_interleave(32))]
    return scalar, vector


def _agrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise: equal within float tolerance, or the same non-finite value."""
    same_nonfinite = (torch.isnan(a) & torch.isnan(b)) | (torch.isinf(a) & (a == b))
    close = torch.isfinite(a) & torch.isfinite(b) & ((a - b).abs() <= 1e-5 * b.abs() + 1e-30)
    return same_nonfinite | close


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_inputs_finite_wherever_torch_is(name, dtype):
    ours, theirs = PAIRS[name]
    x = torch.tensor(EXTREMES, dtype=dtype)
    scalar, vector = _torch_on_both_paths(theirs, x)
    for a, s, v in zip(_forward_backward(ours, x), scalar, vector):
        finite = torch.isfinite(s) | torch.isfinite(v)
        bad = x[finite & ~torch.isfinite(a)]
        assert bad.numel() == 0, f"{name}: non-finite where torch is finite, at x = {bad.tolist()}"
        # equal to torch on one of its kernels (both agree everywhere but at indeterminate forms)
        off = x[~(_agrees(a, s) | _agrees(a, v))]
        assert off.numel() == 0, f"{name}: differs from both of torch's kernels at x = {off.tolist()}"


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "sigmoid", "tanh"])
def test_nan_propagates_like_torch(name):
    ours, theirs = PAIRS[name]
    x = torch.tensor([float("nan"), 1.0, -1.0])
    for a, b in zip(_forward_backward(ours, x), _forward_backward(theirs, x)):
        torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize("name", PAIRS)
def test_hand_written_derivative_passes_gradcheck(name):
    ours, _ = PAIRS[name]
    # avoid the kinks of ReLU-like functions, where finite differences are meaningless
    x = torch.linspace(-4, 4, 40, dtype=torch.float64) + 0.013
    assert torch.autograd.gradcheck(ours, (x.requires_grad_(),))


def test_swish_beta_equals_its_formula():
    x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    y = act.Swish(beta=1.7)(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    x2 = x.detach().clone().requires_grad_()
    y2 = x2 * torch.sigmoid(1.7 * x2)
    (g2,) = torch.autograd.grad(y2.sum(), x2)
    torch.testing.assert_close((y, g), (y2, g2))


def test_largest_slopes():
    x = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
    assert act.Sigmoid().derivative(x).max().item() == pytest.approx(0.25)
    assert act.Tanh().derivative(x).max().item() == pytest.approx(1.0)
    assert act.GELU().derivative(x).max().item() == pytest.approx(1.1289, abs=1e-4)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (0, 5), ()])
def test_shapes_and_dtypes_are_kept(shape):
    x = torch.randn(shape, dtype=torch.float64)
    for ours, _ in PAIRS.values():
        y = ours(x)
        assert y.shape == x.shape and y.dtype == x.dtype


def test_module_works_inside_a_network_and_on_a_second_backward():
    net = nn.Sequential(nn.Linear(3, 4), act.Tanh(), nn.Linear(4, 1))
    x = torch.randn(5, 3, requires_grad=True)
    (g,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    g.sum().backward()   # double backward through the hand-written derivative
    assert net[0].weight.grad is not None


def test_get_activation():
    assert isinstance(act.get_activation("mish"), act.Mish)
    assert act.get_activation("leaky_relu", negative_slope=0.3).negative_slope == 0.3
    assert act.get_activation("gelu", approximate="tanh").approximate == "tanh"
    assert set(act.ACTIVATION_NAMES) >= {"sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "swish", "mish"}


def _add_a_pair(names):
    return (f"add {sorted(names)} to PAIRS in tests/test_activations.py as name: (the course's module, "
            "torch's module), so the tests prove the two equal")


def test_every_registered_activation_has_a_pair():
    assert set(act.ACTIVATION_NAMES) <= set(PAIRS), _add_a_pair(set(act.ACTIVATION_NAMES) - set(PAIRS))


@pytest.mark.parametrize("name", act.ACTIVATION_NAMES)
def test_one_registry_names_both_modules(name):
    """make_activation's fused module is the one PAIRS proves equal to the course's; name_of reads both back."""
    assert name in PAIRS, _add_a_pair({name})
    ours, fused = act.make_activation(name, from_scratch=True), act.make_activation(name)
    assert type(ours) is type(PAIRS[name][0]) and type(fused) is type(PAIRS[name][1])
    assert act.name_of(ours) == act.name_of(fused) == ours.name == name


def test_name_of_an_unknown_module_is_none():
    assert act.name_of(nn.Softplus()) is None
    assert act.name_of(type("MyReLU", (nn.ReLU,), {})()) is None   # exact types only


@pytest.mark.parametrize("name, kwargs, error", [("softmax", {}, ValueError), (nn.ReLU, {}, TypeError),
                                                 ("relu", {"inplace": True}, TypeError),
                                                 ("leaky_relu", {"negative_slope": "0.1"}, TypeError),
                                                 ("elu", {"alpha": float("nan")}, ValueError),
                                                 ("gelu", {"approximate": "erf"}, ValueError)])
def test_get_activation_bad_arguments(name, kwargs, error):
    with pytest.raises(error):
        act.get_activation(name, **kwargs)


def test_forward_rejects_non_tensors():
    with pytest.raises(TypeError, match="tensor"):
        act.ReLU()([1.0, -1.0])


def test_repr_shows_arguments():
    assert repr(act.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(act.ELU(0.5)) == "ELU(alpha=0.5)"


# ---- issue 16: second derivatives through the hand-written derivatives; low precision in float32


def _second(module, x, dtype=torch.float64):
    x = x.to(dtype).detach().requires_grad_()
    (g,) = torch.autograd.grad(module(x).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    return g.detach(), gg


@pytest.mark.parametrize("name", PAIRS)
def test_second_derivative_equals_torch_at_zero_and_random_points(name):
    ours, theirs = PAIRS[name]
    x = torch.cat([torch.zeros(1), torch.randn(200, generator=torch.Generator().manual_seed(3)) * 4,
                   torch.tensor([-1e-7, 1e-7, -30.0, 30.0])])
    g1, gg1 = _second(ours, x)
    if name == "identity":  # nn.Identity's gradient does not depend on x at all
        g2, gg2 = torch.ones_like(g1), torch.zeros_like(gg1)
    else:
        g2, gg2 = _second(theirs, x)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(gg1, gg2, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name, expected", [("swish", 0.5), ("mish", 0.64), ("gelu_tanh", 0.798),
                                            ("gelu", 0.798), ("sigmoid", 0.0), ("tanh", 0.0)])
def test_second_derivative_at_exactly_zero_issue_example(name, expected):
    _, gg = _second(PAIRS[name][0], torch.zeros(1))
    assert gg.item() == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "leaky_relu_0.2", "identity"])
def test_piecewise_linear_second_derivative_is_zeros_not_an_error(name):
    _, gg = _second(PAIRS[name][0], torch.tensor([-1.0, 0.0, 2.0]))
    assert torch.equal(gg, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("name", PAIRS)
def test_hand_written_derivative_passes_gradgradcheck(name):
    module = PAIRS[name][0]
    x = (torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3)
    smooth = name in ("sigmoid", "tanh", "gelu", "gelu_tanh", "swish", "mish", "identity")
    x = torch.cat([x, torch.zeros(int(smooth), dtype=torch.float64)]).requires_grad_()  # 0 is a kink otherwise
    assert torch.autograd.gradgradcheck(module, (x,))


LOW_RANGE = torch.cat([torch.linspace(-12, 12, 481), torch.tensor([-700.0, 700.0, -2000.0, 2000.0, 6e4, -6e4])])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", PAIRS)
def test_low_precision_as_accurate_as_torch(name, dtype):
    ours, theirs = PAIRS[name]
    x = LOW_RANGE.to(dtype)
    y1, g1 = _forward_backward(ours, x)
    y2, g2 = _forward_backward(theirs, x)
    assert y1.dtype == g1.dtype == dtype
    assert torch.equal(torch.isfinite(y1), torch.isfinite(y2)) and torch.equal(torch.isfinite(g1), torch.isfinite(g2))
    # against the float64 truth, ours is never more than one rounding (an ulp) worse than torch's
    y_true, g_true = _forward_backward(ours, x.double())
    for a, b, true in ((y1, y2, y_true), (g1, g2, g_true)):
        finite = torch.isfinite(b)
        ulp = torch.finfo(dtype).eps * true[finite].abs() + torch.finfo(dtype).tiny
        err_ours = (a[finite].double() - true[finite]).abs()
        err_torch = (b[finite].double() - true[finite]).abs()
        assert torch.all(err_ours <= err_torch + ulp)


def test_low_precision_issue_examples():
    x = torch.tensor([700.0, -700.0, 1000.0], dtype=torch.float16, requires_grad=True)
    act.GELU("tanh")(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float16))
    y = act.GELU()(torch.tensor([-3.0, -4.0], dtype=torch.bfloat16))
    assert torch.equal(y, nn.GELU()(torch.tensor([-3.0, -4.0], dtype=torch.bfloat16)))
    assert y[1].item() == pytest.approx(-1.27e-4, rel=0.01)


def test_low_precision_second_derivative_close_to_torch():
    x = torch.linspace(-4, 4, 33)
    for name in ("swish", "gelu", "tanh", "mish"):
        ours, theirs = PAIRS[name]
        _, gg1 = _second(ours, x, torch.bfloat16)
        _, gg2 = _second(theirs, x, torch.bfloat16)
        torch.testing.assert_close(gg1.float(), gg2.float(), rtol=0.02, atol=0.02)


def test_selu_fixes_mean_zero_and_variance_one_for_a_unit_normal_input():
    # Klambauer et al. (2017): for z ~ N(0, 1), SELU(z) has mean 0 and variance 1 (to the constants' precision)
    from helpers.theory import gaussian_expectation, variance_preserving_gain

    def selu(h):
        return act.SELU().function(torch.as_tensor(h, dtype=torch.float64)).numpy()

    assert abs(gaussian_expectation(selu, 1.0)) < 2e-3
    assert abs(gaussian_expectation(lambda h: selu(h) ** 2, 1.0) - 1) < 2e-4
    assert variance_preserving_gain("selu") == pytest.approx(1.0, abs=1e-4)
    assert act.get_activation("selu").derivative(torch.tensor([0.0, 1.0])).tolist() == pytest.approx(
        [act.SELU.scale * act.SELU.alpha, act.SELU.scale])


# ---- non-floating inputs: as torch where torch computes, a TypeError where torch refuses


def _torch_result(module, x):
    try:
        return module(x)
    except (NotImplementedError, RuntimeError):
        return None


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64])
def test_non_floating_inputs_follow_torch(name, dtype):
    """SELU/ELU/... on integers returned truncated integers; torch refuses them. sigmoid/tanh promote,
    relu keeps integers (not bool), Identity takes everything. Complex: refused (real-only formulas)."""
    ours, theirs = PAIRS[name]
    x = torch.tensor([True, False]) if dtype == torch.bool else torch.tensor([0, 1, 3, 7]).to(dtype)
    if dtype.is_complex:
        x = x + 1j
    expected = _torch_result(theirs, x)
    if expected is None or (dtype.is_complex and name != "identity"):
        with pytest.raises(TypeError, match=rf"{type(ours).__name__}.*{dtype}.*accepted"):
            ours(x)
        return
    got = ours(x)
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


def test_selu_on_negative_integers_is_refused_not_truncated():
    with pytest.raises(TypeError, match=r"SELU got x of dtype torch.int64.*functional.selu.*accepted: floating"):
        act.SELU()(torch.tensor([-2, 0, 3]))
    with pytest.raises(NotImplementedError):
        nn.SELU()(torch.tensor([-2, 0, 3]))
