import warnings

import pytest
import torch
from torch import nn

from helpers.normalization import BatchNorm1d, BatchNorm2d, LayerNorm, RMSNorm, WeightNormLinear

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _pair(ours_cls, torch_cls, num_features, **kwargs):
    torch.manual_seed(0)
    ours = ours_cls(num_features, **kwargs).double()
    ref = torch_cls(num_features, **kwargs).double()
    if getattr(ref, "weight", None) is not None:
        with torch.no_grad():            # non-trivial affine parameters
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def _assert_same_step(ours, ref, x):
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ya, yb = ours(a), ref(b)
    torch.testing.assert_close(ya, yb, **TOL)
    upstream = torch.randn_like(ya)
    (ya * upstream).sum().backward()
    (yb * upstream).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, **TOL)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **TOL, msg=name)


@pytest.mark.parametrize("ours_cls, torch_cls, shape", [
    (BatchNorm1d, nn.BatchNorm1d, (16, 5)),
    (BatchNorm1d, nn.BatchNorm1d, (8, 5, 7)),
    (BatchNorm2d, nn.BatchNorm2d, (6, 5, 4, 3)),
])
@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0, 0.0, None])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_equals_torch_over_training_then_eval(ours_cls, torch_cls, shape, momentum, affine):
    ours, ref = _pair(ours_cls, torch_cls, shape[1], momentum=momentum, affine=affine, eps=1e-3)
    g = torch.Generator().manual_seed(1)
    for step in range(4):
        x = 3 * torch.randn(*shape, generator=g, dtype=torch.float64) + step
        _assert_same_step(ours, ref, x)
        for name, buffer in ref.named_buffers():
            torch.testing.assert_close(getattr(ours, name), buffer, **TOL, msg=name)
    assert int(ours.num_batches_tracked) == 4
    ours.eval()
    ref.eval()
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    _assert_same_step(ours, ref, x)
    assert int(ours.num_batches_tracked) == 4            # evaluation does not count


@pytest.mark.parametrize("ours_cls, torch_cls", [(BatchNorm1d, nn.BatchNorm1d), (BatchNorm2d, nn.BatchNorm2d)])
def test_batch_norm_state_dict_round_trip_is_strict(ours_cls, torch_cls):
    ours, ref = ours_cls(4), torch_cls(4)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    shape = (8, 4) if ours_cls is BatchNorm1d else (8, 4, 3, 3)
    ours(torch.randn(*shape))                                    # change the buffers
    ref.load_state_dict(ours.state_dict(), strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(ref.state_dict()[key], value), key
    assert ref.num_batches_tracked.dtype == ours.num_batches_tracked.dtype == torch.long


def test_batch_norm_float32_matches_torch():
    ours, ref = BatchNorm1d(6), nn.BatchNorm1d(6)
    x = torch.randn(32, 6) * 5 + 2
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.running_var, ref.running_var)


def test_batch_norm_buffers_move_with_the_module_and_are_not_trained():
    bn = BatchNorm2d(3).double()
    assert bn.running_mean.dtype == torch.float64
    assert {n for n, _ in bn.named_parameters()} == {"weight", "bias"}
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def test_batch_norm_momentum_none_is_a_cumulative_average():
    bn = BatchNorm1d(2, momentum=None)
    batches = [torch.randn(10, 2) + i for i in range(5)]
    for x in batches:
        bn(x)
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean(0) for x in batches]).mean(0))


def test_batch_norm_small_batch_raises_in_training_but_not_in_eval():
    bn = BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.randn(1, 3))
    assert int(bn.num_batches_tracked) == 0
    bn.eval()
    assert bn(torch.randn(1, 3)).shape == (1, 3)


def test_batch_norm_reset_running_stats():
    bn = BatchNorm1d(3)
    bn(torch.randn(5, 3) + 4)
    bn.reset_running_stats()
    assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))
    assert int(bn.num_batches_tracked) == 0


@pytest.mark.parametrize("make, x, error, text", [
    (lambda: BatchNorm1d(3), torch.randn(4, 4), ValueError, r"expects 3 channels .* got shape \(4, 4\)"),
    (lambda: BatchNorm1d(3), torch.randn(4), ValueError, "2 or 3-D input"),
    (lambda: BatchNorm2d(3), torch.randn(4, 3), ValueError, "4-D input"),
    (lambda: BatchNorm1d(3), [[1.0, 2.0, 3.0]], TypeError, "input must be a tensor"),
    (lambda: LayerNorm(3), torch.randn(4, 5), ValueError, r"ending in \(3,\)"),
])
def test_bad_inputs(make, x, error, text):
    with pytest.raises(error, match=text):
        make()(x)


@pytest.mark.parametrize("kwargs, error, text", [
    ({"num_features": 0}, ValueError, "num_features must be an int >= 1, got 0"),
    ({"num_features": 2.0}, TypeError, "num_features must be an int"),
    ({"momentum": 1.5}, ValueError, "momentum must be <= 1.0, got 1.5"),
    ({"momentum": -0.1}, ValueError, "momentum must be >= 0.0"),
    ({"momentum": "0.1"}, TypeError, "momentum must be a real number"),
    ({"eps": 0.0}, ValueError, "eps must be > 0.0"),
    ({"affine": 1}, TypeError, "affine must be a bool"),
])
def test_batch_norm_bad_arguments(kwargs, error, text):
    args = {"num_features": 3, **kwargs}
    with pytest.raises(error, match=text):
        BatchNorm1d(**args)


@pytest.mark.parametrize("shape, normalized", [((4, 7), 7), ((3, 5, 6), (5, 6)), ((2, 3, 4), [4])])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_equals_torch(shape, normalized, affine):
    torch.manual_seed(0)
    ref = nn.LayerNorm(normalized, elementwise_affine=affine, eps=1e-4).double()
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
    ours = LayerNorm(normalized, elementwise_affine=affine, eps=1e-4).double()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for mode in ("train", "eval"):            # the same computation in both modes
        getattr(ours, mode)()
        getattr(ref, mode)()
        _assert_same_step(ours, ref, 2 * torch.randn(*shape, dtype=torch.float64) + 1)


def test_layer_norm_without_bias_matches_torch_state_dict():
    ours, ref = LayerNorm(5, bias=False), nn.LayerNorm(5, bias=False)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    ref.load_state_dict(ours.state_dict(), strict=True)


def test_layer_norm_is_independent_of_the_batch():
    ln = LayerNorm(8)
    x = torch.randn(6, 8)
    torch.testing.assert_close(ln(x)[:1], ln(x[:1]))


@pytest.mark.parametrize("kwargs, error, text", [
    ({"normalized_shape": 0}, ValueError, "normalized_shape entries must be an int >= 1"),
    ({"normalized_shape": ()}, TypeError, "normalized_shape must be an int or a non-empty tuple"),
    ({"normalized_shape": 2.5}, TypeError, "normalized_shape"),
    ({"normalized_shape": 3, "eps": -1.0}, ValueError, "eps"),
    ({"normalized_shape": 3, "elementwise_affine": "yes"}, TypeError, "elementwise_affine must be a bool"),
])
def test_layer_norm_bad_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        LayerNorm(**kwargs)


@pytest.mark.parametrize("shape, normalized", [((4, 7), 7), ((3, 5, 6), (5, 6)), ((2, 3, 4), [4])])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [None, 1e-4])
def test_rms_norm_equals_torch(shape, normalized, affine, eps):
    torch.manual_seed(0)
    ref = nn.RMSNorm(normalized, eps=eps, elementwise_affine=affine).double()
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
    ours = RMSNorm(normalized, eps=eps, elementwise_affine=affine).double()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    _assert_same_step(ours, ref, 2 * torch.randn(*shape, dtype=torch.float64) + 1)
    if affine:
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **TOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layer_dtype", [torch.float32, "same"])
@pytest.mark.parametrize("eps", [None, 1e-6])
def test_rms_norm_bit_equal_to_torch_in_float32_and_low_precision(dtype, layer_dtype, eps):
    """float16/bfloat16 are normalised in float32 (eps=None: float32's epsilon) and rounded once."""
    layer_dtype = dtype if layer_dtype == "same" else layer_dtype
    torch.manual_seed(0)
    ref = nn.RMSNorm(10, eps=eps).to(layer_dtype)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
    ours = RMSNorm(10, eps=eps).to(layer_dtype)
    ours.load_state_dict(ref.state_dict())
    a = (3 * torch.randn(7, 3, 10)).to(dtype).requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # torch: "cannot dispatch to fused implementation"
        ya, yb = ours(a), ref(b)
    assert ya.dtype == yb.dtype == dtype and torch.equal(ya, yb)
    upstream = torch.randn_like(ya)
    ya.backward(upstream)
    yb.backward(upstream)
    assert torch.equal(a.grad, b.grad) and torch.equal(ours.weight.grad, ref.weight.grad)


def test_rms_norm_empty_batch_and_independence_of_the_batch():
    rms = RMSNorm(8)
    assert rms(torch.randn(0, 8)).shape == (0, 8)
    x = torch.randn(6, 8)
    torch.testing.assert_close(rms(x)[:1], rms(x[:1]))


@pytest.mark.parametrize("kwargs, x, error, text", [
    ({"normalized_shape": 0}, None, ValueError, "normalized_shape entries must be an int >= 1"),
    ({"normalized_shape": (3, "a")}, None, TypeError, "normalized_shape entries"),
    ({"normalized_shape": 3, "eps": 0.0}, None, ValueError, "eps must be > 0.0"),
    ({"normalized_shape": 3, "elementwise_affine": 1}, None, TypeError, "elementwise_affine must be a bool"),
    ({"normalized_shape": 3}, torch.randn(4, 5), ValueError, r"RMSNorm\(3,\) expects an input ending in"),
    ({"normalized_shape": 3}, [1.0, 2.0, 3.0], TypeError, "input must be a tensor"),
    ({"normalized_shape": 3}, torch.ones(2, 3, dtype=torch.long), TypeError,
     r"RMSNorm needs a floating or complex input.*torch.int64; accepted: float16"),
])
def test_rms_norm_bad_arguments(kwargs, x, error, text):
    with pytest.raises(error, match=text):
        layer = RMSNorm(**kwargs)
        layer(x)


@pytest.mark.parametrize("bias", [True, False])
def test_weight_norm_linear_equals_torch_parametrization(bias):
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    ours = WeightNormLinear(5, 3, bias=bias).double()
    with torch.no_grad():
        ours.g.mul_(torch.tensor([[0.5], [2.0], [-1.5]], dtype=torch.float64))   # a learned gain, not ‖v‖
    ref = weight_norm(nn.Linear(5, 3, bias=bias).double(), dim=0)
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(ours.g)
        ref.parametrizations.weight.original1.copy_(ours.v)
        if bias:
            ref.bias.copy_(ours.bias)
    x = torch.randn(7, 5, dtype=torch.float64)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ours(a), ref(b)
    torch.testing.assert_close(ya, yb, **TOL)
    torch.testing.assert_close(ours.weight, ref.weight, **TOL)
    upstream = torch.randn_like(ya)
    (ya * upstream).sum().backward()
    (yb * upstream).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, **TOL)
    torch.testing.assert_close(ours.g.grad, ref.parametrizations.weight.original0.grad, **TOL)
    torch.testing.assert_close(ours.v.grad, ref.parametrizations.weight.original1.grad, **TOL)
    if bias:
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, **TOL)


def test_weight_norm_linear_starts_as_a_linear_layer_and_its_v_gradient_is_orthogonal_to_v():
    torch.manual_seed(0)
    layer = WeightNormLinear(6, 4).double()
    torch.testing.assert_close(layer.weight, layer.v.detach())
    torch.testing.assert_close(layer.weight.norm(dim=1, keepdim=True), layer.g.detach())
    layer(torch.randn(10, 6, dtype=torch.float64)).square().sum().backward()
    torch.testing.assert_close((layer.v.grad * layer.v).sum(dim=1), torch.zeros(4, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    assert set(layer.state_dict()) == {"g", "v", "bias"}
    assert layer.g.shape == (4, 1) and layer.v.shape == (4, 6)


def test_weight_norm_linear_scale_of_v_does_not_matter():
    layer = WeightNormLinear(3, 2)
    x = torch.randn(4, 3)
    before = layer(x)
    with torch.no_grad():
        layer.v.mul_(10)
    torch.testing.assert_close(layer(x), before)


@pytest.mark.parametrize("kwargs, error, text", [
    ({"in_features": 0}, ValueError, "in_features must be an int >= 1"),
    ({"out_features": "2"}, TypeError, "out_features must be an int"),
    ({"bias": None}, TypeError, "bias must be a bool"),
])
def test_weight_norm_linear_bad_arguments(kwargs, error, text):
    args = {"in_features": 3, "out_features": 2, **kwargs}
    with pytest.raises(error, match=text):
        WeightNormLinear(**args)


def test_batch_norm_non_finite_input_poisons_like_torch():
    ours, ref = BatchNorm1d(3), nn.BatchNorm1d(3)
    x = torch.randn(8, 3)
    x[2, 1] = float("nan")
    a, b = ours(x), ref(x)
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    assert torch.equal(torch.isnan(ours.running_var), torch.isnan(ref.running_var))
    assert not ours.running_mean.requires_grad and ours.running_mean.grad_fn is None


def test_one_value_per_channel_raises_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(2)(torch.randn(1, 2, 1, 1))


# ---- issue 16: empty batches, low precision and mixed dtypes as torch 2.13

from helpers import normalization as _N  # noqa: E402

_BN_CASES = [(_N.BatchNorm1d, nn.BatchNorm1d, (0, 4)), (_N.BatchNorm1d, nn.BatchNorm1d, (0, 4, 3)),
             (_N.BatchNorm2d, nn.BatchNorm2d, (0, 4, 2, 2))]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("ours, theirs, shape", _BN_CASES, ids=str)
def test_empty_batch_like_torch(ours, theirs, shape, train):
    a, b = ours(4), theirs(4)
    a.train(train)
    b.train(train)
    outs = []
    for m in (a, b):
        with torch.no_grad():
            m.weight.uniform_(0.5, 2.0)
        x = torch.randn(shape, requires_grad=True)
        y = m(x)
        y.sum().backward()
        outs.append((y.shape, x.grad.shape, m.weight.grad, m.bias.grad))
    assert outs[0][:2] == outs[1][:2]
    assert torch.equal(outs[0][2], outs[1][2]) and torch.equal(outs[0][3], outs[1][3])
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(a.state_dict()[key], b.state_dict()[key]), key


def test_layer_norm_empty_input_like_torch():
    for shape in [(0, 4), (3, 0, 4)]:
        grads = []
        for m in (_N.LayerNorm(4), nn.LayerNorm(4)):
            x = torch.randn(shape, requires_grad=True)
            y = m(x)
            y.sum().backward()
            assert y.shape == x.shape
            grads.append((m.weight.grad, m.bias.grad))
        assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("ours, theirs, shape", [(_N.BatchNorm1d, nn.BatchNorm1d, (8, 4)),
                                                 (_N.BatchNorm2d, nn.BatchNorm2d, (8, 4, 3, 3))], ids=str)
def test_batch_norm_low_precision_input_like_torch(ours, theirs, shape, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    a, b = ours(4), theirs(4)
    for train in (True, False):
        a.train(train)
        b.train(train)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = a(xa), b(xb)
        assert ya.dtype == yb.dtype == dtype
        torch.testing.assert_close(ya, yb)
        ya.float().square().sum().backward()
        yb.float().square().sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=0.02, atol=0.05)
    assert a.running_mean.dtype == torch.float32
    torch.testing.assert_close(a.running_mean, b.running_mean)
    torch.testing.assert_close(a.running_var, b.running_var)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_layer_norm_low_precision_input_like_torch(dtype):
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
    ya, yb = _N.LayerNorm(5)(x), nn.LayerNorm(5)(x)
    assert ya.dtype == yb.dtype == dtype
    torch.testing.assert_close(ya, yb)


def test_layers_converted_to_low_precision_like_torch():
    x = torch.randn(8, 4).bfloat16()
    ya, yb = _N.BatchNorm1d(4).bfloat16()(x), nn.BatchNorm1d(4).bfloat16()(x)
    assert ya.dtype == yb.dtype == torch.bfloat16
    torch.testing.assert_close(ya, yb)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_mlp_with_norm_under_autocast(norm):
    from helpers.models import MLP

    torch.manual_seed(0)
    net = MLP(6, 3, width=8, depth=2, norm=norm)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(16, 6))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().sum().backward()


@pytest.mark.parametrize("layer", [lambda: _N.BatchNorm1d(4), lambda: _N.LayerNorm(4)])
def test_mixed_dtype_is_a_clear_error_that_modifies_nothing(layer):
    m = layer()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(TypeError, match=r"input of dtype torch.float64 does not match .*torch.float32.*mixed dtype"):
        m(torch.randn(8, 4, dtype=torch.float64))
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


# ---- RMSNorm takes every dtype combination torch.nn.RMSNorm takes (its composite path), bit for bit

_RMS_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128]


def _rms_weight(dtype, g):
    return torch.randn(7, generator=g, dtype=dtype) if dtype.is_complex \
        else torch.randn(7, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's 'Mismatch dtype' and 'discards the imaginary part'
@pytest.mark.parametrize("weight_dtype", _RMS_DTYPES + [None])
@pytest.mark.parametrize("x_dtype", _RMS_DTYPES)
def test_rms_norm_every_dtype_combination_like_torch(x_dtype, weight_dtype):
    """float64 input into float32 weights was refused ('mixed dtype'); torch computes it (float64 out)."""
    g = torch.Generator().manual_seed(0)
    affine = weight_dtype is not None
    ours, ref = RMSNorm(7, elementwise_affine=affine), nn.RMSNorm(7, elementwise_affine=affine)
    if affine:
        w = _rms_weight(weight_dtype, g)
        ours, ref = ours.to(weight_dtype), ref.to(weight_dtype)
        with torch.no_grad():
            ours.weight.copy_(w)
            ref.weight.copy_(w)
    x = _rms_weight(x_dtype, g).repeat(5, 1) * torch.arange(1.0, 6.0).reshape(5, 1).to(x_dtype)
    ya, yb = ours(x), ref(x)
    assert ya.dtype == yb.dtype == x_dtype
    assert torch.equal(ya, yb)


@pytest.mark.parametrize("x_dtype, weight_dtype", [(torch.float64, torch.float32), (torch.float32, torch.float64),
                                                   (torch.bfloat16, torch.float64)])
def test_rms_norm_mixed_dtype_gradients_like_torch(x_dtype, weight_dtype):
    import warnings

    ours, ref = RMSNorm(7).to(weight_dtype), nn.RMSNorm(7).to(weight_dtype)
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(x_dtype)
    grads = []
    for layer in (ours, ref):
        xi = x.clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (layer(xi).double() * torch.arange(7.0, dtype=torch.float64)).sum().backward()
        grads.append((xi.grad, layer.weight.grad))
    # a bfloat16 input's weight gradient is summed in float32 by us, in another order by torch
    tol = {"rtol": 1e-6, "atol": 1e-6} if x_dtype == torch.bfloat16 else {}
    for a, b in zip(*grads):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("dtype", [torch.long, torch.complex64])
def test_layer_norm_refuses_what_torch_refuses_without_weights_too(dtype):
    x = torch.ones(3, 4, dtype=dtype)
    with pytest.raises((NotImplementedError, RuntimeError)):
        nn.LayerNorm(4, elementwise_affine=False)(x)
    with pytest.raises(TypeError, match=rf"LayerNorm needs a floating input.*{dtype}; accepted"):
        _N.LayerNorm(4, elementwise_affine=False)(x)
