"""Normalization layers from scratch: batch norm, layer norm, RMSNorm, weight normalization.

Each layer keeps PyTorch's parameter and buffer names, so a state_dict of
:class:`torch.nn.BatchNorm1d`, :class:`torch.nn.BatchNorm2d`, :class:`torch.nn.LayerNorm`
or :class:`torch.nn.RMSNorm` loads strictly into the course's layer and back. The tests
prove outputs, gradients and running statistics equal PyTorch's.
"""

from __future__ import annotations

from numbers import Integral

import torch
from torch import nn

from helpers._checks import check_bool, check_int, check_real

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "RMSNorm", "WeightNormLinear"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _opmath(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 computed in float32, as torch's normalization kernels do; other dtypes as they are."""
    return t.float() if t.dtype in _LOW_PRECISION else t


def _check_dtype(layer: nn.Module, x: torch.Tensor, own: torch.dtype | None) -> None:
    """As torch: the input's dtype is the layer's, or float16/bfloat16 into a float32 layer."""
    if own is None or x.dtype == own or (x.dtype in _LOW_PRECISION and own == torch.float32):
        return
    raise TypeError(f"input of dtype {x.dtype} does not match {type(layer).__name__}'s {own} parameters "
                    f"(torch calls this 'mixed dtype'); accepted: {own}, or float16/bfloat16 into float32. "
                    f"Convert the layer (.to({x.dtype})) or the input (.to({own}))")


def _check_momentum(momentum) -> float | None:
    if momentum is None:
        return None
    return check_real("momentum", momentum, minimum=0.0, maximum=1.0)


def _check_normalized_shape(normalized_shape) -> tuple[int, ...]:
    if isinstance(normalized_shape, Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (int(normalized_shape),)
    if not isinstance(normalized_shape, tuple | list | torch.Size) or not normalized_shape:
        raise TypeError(f"normalized_shape must be an int or a non-empty tuple of ints, "
                        f"got {normalized_shape!r}")
    for size in normalized_shape:
        check_int("normalized_shape entries", size, minimum=1)
    return tuple(int(s) for s in normalized_shape)


def _check_trailing(layer: nn.Module, x, normalized_shape: tuple[int, ...]) -> int:
    """The number of trailing dimensions normalised over, after checking ``x`` ends in them."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a tensor, got {type(x).__name__}")
    k = len(normalized_shape)
    if x.dim() < k or tuple(x.shape[x.dim() - k:]) != normalized_shape:
        raise ValueError(f"{type(layer).__name__}{normalized_shape} expects an input ending in "
                         f"{normalized_shape}, got shape {tuple(x.shape)}")
    return k


class _BatchNorm(nn.Module):
    r"""Shared code of :class:`BatchNorm1d` and :class:`BatchNorm2d`.

    Subclasses set ``_input_dims``, the accepted numbers of input dimensions.
    """

    _input_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True):
        check_int("num_features", num_features, minimum=1)
        check_real("eps", eps, minimum=0.0, strict_minimum=True)
        momentum = _check_momentum(momentum)
        check_bool("affine", affine)
        super().__init__()
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, counter 0 (as a freshly built layer)."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a tensor, got {type(x).__name__}")
        if x.dim() not in self._input_dims:
            raise ValueError(f"{type(self).__name__} expects a {' or '.join(map(str, self._input_dims))}-D "
                             f"input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects {self.num_features} "
                             f"channels in dimension 1, got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        _check_dtype(self, x, self.running_mean.dtype)
        dims = [0, *range(2, x.dim())]                  # every dimension except the channels
        shape = [1, self.num_features] + [1] * (x.dim() - 2)
        xc = _opmath(x)  # float16/bfloat16 are normalised in float32 and rounded once, as torch does
        if self.training:
            count = x.numel() // self.num_features
            if count == 1:
                raise ValueError(f"batch norm needs more than 1 value per channel in training mode, "
                                 f"got input of shape {tuple(x.shape)}")
            if count == 0:  # an empty batch: as torch, nothing to average, the counter still advances
                mean, var = xc.new_zeros(self.num_features), xc.new_ones(self.num_features)
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
            else:
                var, mean = torch.var_mean(xc, dim=dims, correction=0)   # biased: normalises the batch
                self._update_running(mean.detach(), var.detach(), count)
        else:
            mean, var = _opmath(self.running_mean), _opmath(self.running_var)
        # y = (x - mean) / sqrt(var + eps) * weight + bias, folded into one scale and one shift per
        # channel so that only one operation touches the whole input
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * _opmath(self.weight)
        shift = -mean * scale
        if self.affine:
            shift = shift + _opmath(self.bias)
        return torch.addcmul(shift.reshape(shape), xc, scale.reshape(shape)).to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        # the running variance is the unbiased estimate, as in torch
        own = self.running_mean.dtype
        self.running_mean.lerp_(mean.to(own), factor)
        self.running_var.lerp_((var * (count / (count - 1))).to(own), factor)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    r"""Batch normalization over a mini-batch of vectors (N, C) or sequences (N, C, L).

    In training mode each channel :math:`c` is normalised with the mean and the
    *biased* variance of the batch (over N, and L if present):

    .. math::
        \mu_c = \frac1m \sum_i x_{ic}, \quad \sigma_c^2 = \frac1m \sum_i (x_{ic} - \mu_c)^2, \quad
        y_{ic} = \gamma_c \frac{x_{ic} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}} + \beta_c

    and the running estimates move towards the batch's, with the *unbiased* variance:

    .. math::
        \hat\mu \leftarrow (1-\alpha)\,\hat\mu + \alpha\,\mu, \quad
        \hat\sigma^2 \leftarrow (1-\alpha)\,\hat\sigma^2 + \alpha\,\tfrac{m}{m-1}\sigma^2

    where :math:`\alpha` is ``momentum`` (``None``: :math:`\alpha = 1/t` at the
    :math:`t`-th batch, a cumulative average). In evaluation mode the running
    estimates replace the batch statistics, so the output of an example no longer
    depends on the rest of its batch. Note :math:`\sqrt{\sigma^2 + \epsilon}`, not
    :math:`\sigma + \epsilon`.

    Args:
        num_features: number of channels C.
        eps: added to the variance, > 0.
        momentum: :math:`\alpha` in [0, 1], or ``None`` for a cumulative average.
        affine: learn :math:`\gamma` (``weight``, init 1) and :math:`\beta` (``bias``, init 0).

    Buffers: ``running_mean``, ``running_var``, ``num_batches_tracked`` (as in torch).

    Example:
        >>> bn = BatchNorm1d(3)
        >>> y = bn(torch.tensor([[1.0, 2.0, 3.0], [3.0, 6.0, 9.0]]))
        >>> y.detach()
        tensor([[-1.0000, -1.0000, -1.0000],
                [ 1.0000,  1.0000,  1.0000]])
        >>> bn.running_mean
        tensor([0.2000, 0.4000, 0.6000])
    """

    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    r"""Batch normalization of images (N, C, H, W), one mean and variance per channel.

    The statistics of channel :math:`c` are taken over the batch *and* the positions,
    :math:`m = N H W` values, otherwise as :class:`BatchNorm1d`:

    .. math::
        y_{nchw} = \gamma_c \frac{x_{nchw} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}} + \beta_c

    Args:
        num_features: number of channels C.
        eps: added to the variance, > 0.
        momentum: running-average factor in [0, 1], or ``None`` for a cumulative average.
        affine: learn a per-channel scale ``weight`` and shift ``bias``.

    Example:
        >>> bn = BatchNorm2d(4)
        >>> y = bn(torch.randn(8, 4, 5, 5))
        >>> bool(y.mean(dim=(0, 2, 3)).abs().max() < 1e-5)
        True
    """

    _input_dims = (4,)


class LayerNorm(nn.Module):
    r"""Layer normalization: every example normalised over its own last dimensions.

    With :math:`H` the number of elements of ``normalized_shape``, for each example
    (and each position of the leading dimensions):

    .. math::
        \mu = \frac1H \sum_j x_j, \quad \sigma^2 = \frac1H \sum_j (x_j - \mu)^2, \quad
        y_j = \gamma_j \frac{x_j - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta_j

    Nothing is averaged over the batch, so training and evaluation compute the same
    thing and a batch of one is fine.

    Args:
        normalized_shape: an int or a tuple, the trailing shape to normalise over.
        eps: added to the variance, > 0.
        elementwise_affine: learn :math:`\gamma` (``weight``, init 1) and :math:`\beta`.
        bias: with ``elementwise_affine``, also learn :math:`\beta` (``bias``, init 0).

    Example:
        >>> ln = LayerNorm(4)
        >>> ln(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum().abs() < 1e-6
        tensor(True)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        normalized_shape = _check_normalized_shape(normalized_shape)
        check_real("eps", eps, minimum=0.0, strict_minimum=True)
        for name, flag in (("elementwise_affine", elementwise_affine), ("bias", bias)):
            check_bool(name, flag)
        super().__init__()
        self.normalized_shape = normalized_shape
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = _check_trailing(self, x, self.normalized_shape)
        if not x.is_floating_point():
            raise TypeError(f"LayerNorm needs a floating input, as torch.nn.LayerNorm, got x of dtype {x.dtype}; "
                            f"accepted: float16, bfloat16, float32, float64")
        _check_dtype(self, x, self.weight.dtype if self.weight is not None else None)
        xc = _opmath(x)  # float16/bfloat16 normalised in float32 and rounded once, as torch does
        if x.numel() == 0:  # an empty batch: an empty output (no statistics to take), as torch
            y = xc
        else:
            var, mean = torch.var_mean(xc, dim=tuple(range(-k, 0)), correction=0, keepdim=True)
            y = (xc - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None and self.bias is not None:
            y = torch.addcmul(_opmath(self.bias), y, _opmath(self.weight))
        elif self.weight is not None:
            y = y * _opmath(self.weight)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class RMSNorm(nn.Module):
    r"""Root-mean-square normalization: layer norm without the mean.

    With :math:`H` the number of elements of ``normalized_shape``, for each example (and
    each position of the leading dimensions):

    .. math::
        \operatorname{RMS}(x) = \sqrt{\frac1H \sum_j x_j^2 + \epsilon}, \quad
        y_j = \gamma_j \frac{x_j}{\operatorname{RMS}(x)}

    It keeps layer norm's re-scaling and drops its re-centring (no :math:`\mu`, no
    :math:`\beta`): cheaper, and in Transformers it trains as well. Like layer norm it
    averages over nothing but the example itself.

    Args:
        normalized_shape: an int or a tuple, the trailing shape to normalise over.
        eps: added to the mean square, > 0; ``None`` (default, as torch) uses the machine
            epsilon of the dtype it computes in (float32 for float16/bfloat16 inputs).
        elementwise_affine: learn the gain :math:`\gamma` (``weight``, shape
            ``normalized_shape``, init 1).

    Raises:
        TypeError: ``normalized_shape`` not an int or tuple of ints; a non-bool flag; an
            input that is not a tensor, or neither floating nor complex.
        ValueError: a size < 1, ``eps`` ≤ 0, or an input not ending in ``normalized_shape``.

    Dtypes as :class:`torch.nn.RMSNorm` (bit for bit): any floating or complex input with a
    weight of any floating or complex dtype; the output has the input's dtype (a float64
    input into float32 weights gives float64; a complex weight into a real input loses its
    imaginary part, with torch's warning). :class:`LayerNorm` is stricter, as
    ``torch.nn.LayerNorm`` is: the input's dtype must be the weight's, or float16/bfloat16
    into float32.

    Example:
        >>> rms = RMSNorm(4)
        >>> y = rms(torch.tensor([[1.0, -1.0, 1.0, -1.0]]))
        >>> torch.allclose(y, torch.tensor([[1.0, -1.0, 1.0, -1.0]]))
        True

    Source: Zhang & Sennrich, "Root Mean Square Layer Normalization", NeurIPS 2019, §4
    (equation 4). Same parameter names and state dict as :class:`torch.nn.RMSNorm`.
    """

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True):
        normalized_shape = _check_normalized_shape(normalized_shape)
        if eps is not None:
            check_real("eps", eps, minimum=0.0, strict_minimum=True)
        check_bool("elementwise_affine", elementwise_affine)
        super().__init__()
        self.normalized_shape, self.eps, self.elementwise_affine = normalized_shape, eps, elementwise_affine
        self.weight = nn.Parameter(torch.ones(normalized_shape)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = _check_trailing(self, x, self.normalized_shape)
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(f"RMSNorm needs a floating or complex input, as torch.nn.RMSNorm, got x of dtype "
                            f"{x.dtype}; accepted: float16, bfloat16, float32, float64, complex64, complex128")
        xc = _opmath(x)  # float16/bfloat16 normalised in float32 and rounded once, as torch does
        eps = torch.finfo(xc.dtype).eps if self.eps is None else self.eps
        y = xc * torch.rsqrt(xc.pow(2).mean(dim=tuple(range(-k, 0)), keepdim=True) + eps)
        if self.weight is not None:
            # any weight dtype, as torch: a float16/bfloat16 input takes the weight in float32; another
            # input multiplies by the weight in the promoted dtype (a float64 weight into a float32 input:
            # the product in float64); the output has the input's dtype in every case
            w = self.weight
            y = y * (w.to(y.dtype) if x.dtype in _LOW_PRECISION else w)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class WeightNormLinear(nn.Module):
    r"""A linear layer whose weight is split into a length ``g`` and a direction ``v``.

    Each output unit :math:`i` (a row of the weight) is

    .. math::
        w_i = g_i \frac{v_i}{\lVert v_i \rVert_2}, \qquad y = x W^\top + b

    so :math:`\lVert w_i \rVert = |g_i|` whatever :math:`v_i`: the learned gain
    :math:`g` sets the scale, :math:`v` only the direction (Salimans & Kingma 2016).
    The gradient with respect to :math:`v` is orthogonal to :math:`v`:

    .. math::
        \nabla_{v_i} L = \frac{g_i}{\lVert v_i \rVert}
        \Big(I - \frac{v_i v_i^\top}{\lVert v_i \rVert^2}\Big) \nabla_{w_i} L

    :math:`v` starts as :class:`torch.nn.Linear` initialises its weight and
    :math:`g = \lVert v_i \rVert`, so the layer starts equal to a plain Linear layer.
    Equal to ``torch.nn.utils.parametrizations.weight_norm(nn.Linear(...), dim=0)``
    with ``original0 = g`` and ``original1 = v``.

    Args:
        in_features, out_features: sizes of each input and output sample.
        bias: learn an additive bias.

    Example:
        >>> layer = WeightNormLinear(3, 2)
        >>> layer.g.shape, layer.v.shape
        (torch.Size([2, 1]), torch.Size([2, 3]))
        >>> torch.allclose(layer.weight.norm(dim=1, keepdim=True), layer.g.abs())
        True
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        check_int("in_features", in_features, minimum=1)
        check_int("out_features", out_features, minimum=1)
        check_bool("bias", bias)
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        template = nn.Linear(in_features, out_features, bias=bias)
        self.v = nn.Parameter(template.weight.detach().clone())
        self.g = nn.Parameter(torch.linalg.vector_norm(self.v.detach(), dim=1, keepdim=True))
        self.bias = nn.Parameter(template.bias.detach().clone()) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight :math:`g \\cdot v / \\lVert v \\rVert`, computed from ``g`` and ``v``."""
        return self.g * self.v / torch.linalg.vector_norm(self.v, dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
