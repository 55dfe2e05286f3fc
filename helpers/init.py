r"""Weight initialisation schemes, written from scratch with ``torch.nn.init``'s semantics.

A layer computes :math:`y = W x` with :math:`W` of shape ``(fan_out, fan_in)`` (for a
convolution, ``fan_in = in_channels · kernel size`` and ``fan_out = out_channels ·
kernel size``). With independent zero-mean weights and inputs,

.. math:: \mathrm{Var}(y_i) = \text{fan\_in}\,\mathrm{Var}(W_{ij})\,\mathbb E[x_j^2],

and backwards :math:`\mathrm{Var}(\partial L/\partial x_j) = \text{fan\_out}\,\mathrm{Var}(W_{ij})
\,\mathrm{Var}(\partial L/\partial y_i)`. Keeping both sizes constant from layer to layer
is what the schemes below aim for:

* Xavier/Glorot: :math:`\mathrm{Var}(W) = \text{gain}^2 \cdot 2/(\text{fan\_in} + \text{fan\_out})`, the
  compromise between the forward (:math:`1/\text{fan\_in}`) and backward
  (:math:`1/\text{fan\_out}`) conditions.
* Kaiming/He: :math:`\mathrm{Var}(W) = \text{gain}^2/\text{fan}`, with gain :math:`\sqrt2` for ReLU
  (it zeroes half of each unit's input distribution).
* Orthogonal: all singular values of :math:`W` equal to ``gain``.

Given the same :class:`torch.Generator`, every function here fills a tensor with the
same numbers as its ``torch.nn.init`` namesake (the tests check this bit for bit).

Example:
    >>> w = torch.empty(256, 128)
    >>> _ = kaiming_normal_(w, nonlinearity="relu", generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() * 128, 1)   # Var(W) = 2 / fan_in
    2.0
"""

from __future__ import annotations

import math
import warnings
from numbers import Real

import torch
from torch import nn

from helpers._checks import check_choice, check_module, check_real
from helpers._layers import WEIGHTED_LAYERS, check_materialised, describe_kinds

__all__ = ["NONLINEARITIES", "FAN_MODES", "calculate_gain", "fans", "xavier_uniform_", "xavier_normal_",
           "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "SCHEMES", "init_weights_", "lsuv_"]

_LINEAR_NAMES = ("linear", "identity", "conv1d", "conv2d", "conv3d",
                 "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
NONLINEARITIES = (*_LINEAR_NAMES, "sigmoid", "tanh", "relu", "leaky_relu", "selu")
FAN_MODES = ("fan_in", "fan_out")


def _check_tensor(tensor) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    return tensor


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    r"""The recommended scale of the weights for a nonlinearity.

    ===================== ==============================================
    nonlinearity          gain
    ===================== ==============================================
    linear, conv, sigmoid :math:`1`
    tanh                  :math:`5/3`
    relu                  :math:`\sqrt 2`
    leaky_relu            :math:`\sqrt{2 / (1 + a^2)}`, :math:`a` = ``param`` (default 0.01)
    selu                  :math:`3/4`
    ===================== ==============================================

    The ReLU gain undoes the halving of the second moment,
    :math:`\mathbb E[\mathrm{ReLU}(z)^2] = \tfrac12 \mathbb E[z^2]` for symmetric :math:`z`; for
    leaky ReLU the factor is :math:`(1 + a^2)/2`.

    Args:
        nonlinearity: one of :data:`NONLINEARITIES` (``torch.nn.functional`` names).
        param: the negative slope for ``"leaky_relu"``.

    Example:
        >>> calculate_gain("leaky_relu", 0.2) ** 2   # 2 / (1 + 0.04)
        1.923076923076923
    """
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    if nonlinearity in _LINEAR_NAMES or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    if param is None:
        slope = 0.01
    elif isinstance(param, bool) or not isinstance(param, Real) or not math.isfinite(param):
        raise ValueError(f"param (the negative slope of leaky_relu) must be a finite real number, got {param!r}")
    else:
        slope = param
    return math.sqrt(2.0 / (1 + slope**2))


def fans(tensor: torch.Tensor) -> tuple[int, int]:
    r"""``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``.

    .. math:: \text{fan\_in} = \text{in} \cdot \prod \text{kernel}, \qquad
              \text{fan\_out} = \text{out} \cdot \prod \text{kernel}

    Args:
        tensor: a weight with at least 2 dimensions (a bias has no fans).

    Example:
        >>> fans(torch.empty(16, 3, 5, 5))   # Conv2d(3, 16, kernel_size=5)
        (75, 400)
    """
    _check_tensor(tensor)
    if tensor.dim() < 2:
        raise ValueError(f"fan_in and fan_out need a tensor with at least 2 dimensions (out, in, *kernel); "
                         f"got shape {tuple(tensor.shape)}. Biases have no fans: initialise them with zeros_")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _fan(tensor: torch.Tensor, mode: str) -> int:
    check_choice("mode", mode.lower() if isinstance(mode, str) else mode, FAN_MODES)
    fan_in, fan_out = fans(tensor)
    return fan_in if mode.lower() == "fan_in" else fan_out


def _xavier_std(tensor, gain, generator) -> float | None:
    """Validate; ``gain * sqrt(2 / (fan_in + fan_out))``, or None for a zero-element tensor (a no-op)."""
    _check_tensor(tensor)
    check_real("gain", gain)
    _check_generator(generator)
    fan_in, fan_out = fans(tensor)
    if tensor.numel() == 0:
        return None
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill ``tensor`` from :math:`\mathcal U(-a, a)` (Glorot & Bengio 2010).

    .. math:: a = \text{gain} \cdot \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}},
              \qquad \mathrm{Var}(W) = \frac{a^2}{3} = \text{gain}^2 \frac{2}{\text{fan\_in} + \text{fan\_out}}

    Args:
        tensor: a weight with at least 2 dimensions; filled in place.
        gain: scale factor, see :func:`calculate_gain`.
        generator: the :class:`torch.Generator` to draw from (default: the global one).

    Example:
        >>> w = xavier_uniform_(torch.empty(3, 5))
        >>> bool(w.abs().max() <= (6 / 8) ** 0.5)
        True
    """
    std = _xavier_std(tensor, gain, generator)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std  # a uniform on (-b, b) has variance b^2 / 3
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill ``tensor`` from :math:`\mathcal N(0, \text{std}^2)` (Glorot & Bengio 2010).

    .. math:: \text{std} = \text{gain} \cdot \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    (Seed 002 writes :math:`\sqrt{d_{in}/d_{out}}`, which is 1 for a square layer and
    makes activations grow with the width.)

    Args:
        tensor: a weight with at least 2 dimensions; filled in place.
        gain: scale factor, see :func:`calculate_gain`.
        generator: the :class:`torch.Generator` to draw from.

    Example:
        >>> w = xavier_normal_(torch.empty(300, 100), generator=torch.Generator().manual_seed(0))
        >>> round(w.std().item() ** 2 * 200, 1)
        1.0
    """
    std = _xavier_std(tensor, gain, generator)
    if std is None:
        return tensor
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def _kaiming_std(tensor: torch.Tensor, a: float, mode: str, nonlinearity: str,
                 generator: torch.Generator | None) -> float | None:
    _check_tensor(tensor)
    check_real("a", a)
    _check_generator(generator)
    fan = _fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    if tensor.numel() == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return None
    return gain / math.sqrt(fan)


def kaiming_uniform_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill ``tensor`` from :math:`\mathcal U(-b, b)` (He et al. 2015).

    .. math:: b = \text{gain} \cdot \sqrt{\frac{3}{\text{fan\_mode}}}, \qquad
              \mathrm{Var}(W) = \frac{\text{gain}^2}{\text{fan\_mode}}

    For ReLU (gain :math:`\sqrt2`) the bound is :math:`\sqrt{6/\text{fan\_in}}`; the bound
    :math:`\sqrt{2/(n_{in}+n_{out})}` some tutorials give (notebook 14, E1) is too small
    by :math:`\sqrt3` even for a square layer.

    Args:
        tensor: a weight with at least 2 dimensions; filled in place.
        a: negative slope of the leaky ReLU that follows (used with ``"leaky_relu"`` only).
        mode: ``"fan_in"`` keeps the forward variance, ``"fan_out"`` the backward one.
        nonlinearity: a name accepted by :func:`calculate_gain`.
        generator: the :class:`torch.Generator` to draw from.

    Example:
        >>> w = kaiming_uniform_(torch.empty(4, 6), nonlinearity="relu")
        >>> bool(w.abs().max() <= 1.0)   # sqrt(6 / 6)
        True
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, generator)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def kaiming_normal_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill ``tensor`` from :math:`\mathcal N(0, \text{std}^2)` (He et al. 2015).

    .. math:: \text{std} = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}}

    Args:
        tensor: a weight with at least 2 dimensions; filled in place.
        a: negative slope of the leaky ReLU that follows (used with ``"leaky_relu"`` only).
        mode: ``"fan_in"`` or ``"fan_out"``.
        nonlinearity: a name accepted by :func:`calculate_gain`.
        generator: the :class:`torch.Generator` to draw from.

    Example:
        >>> w = kaiming_normal_(torch.empty(400, 200), mode="fan_out", nonlinearity="relu",
        ...                     generator=torch.Generator().manual_seed(0))
        >>> round(w.var().item() * 400, 1)   # 2 / fan_out
        2.0
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity, generator)
    if std is None:
        return tensor
    with torch.no_grad():
        return tensor.normal_(0, std, generator=generator)


def orthogonal_(tensor: torch.Tensor, gain: float = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill ``tensor`` with a (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014).

    A Gaussian matrix :math:`A` (trailing dimensions flattened, transposed if it is
    wide) is factored :math:`A = QR`; the signs of :math:`Q`'s columns are fixed by
    :math:`\mathrm{sign}(\mathrm{diag}\,R)` so that :math:`Q` is uniformly distributed. Then

    .. math:: W W^\top = \text{gain}^2 I \quad (\text{rows} \le \text{cols}), \qquad
              W^\top W = \text{gain}^2 I \quad \text{otherwise},

    every singular value equals ``gain`` and a deep linear net of such layers neither
    shrinks nor stretches any direction.

    Args:
        tensor: at least 2 dimensions; filled in place. float16/bfloat16 tensors (which
            ``torch.nn.init.orthogonal_`` refuses on the CPU) get the float32 draw of the same
            generator, rounded once.
        gain: scale factor.
        generator: the :class:`torch.Generator` to draw from.

    Example:
        >>> w = orthogonal_(torch.empty(4, 4))
        >>> torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)
        True
    """
    _check_tensor(tensor)
    check_real("gain", gain)
    _check_generator(generator)
    if tensor.dim() < 2:
        raise ValueError(f"orthogonal_ needs a tensor with at least 2 dimensions, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    # float16/bfloat16: torch has no QR for them (torch.nn.init.orthogonal_ raises), so the
    # matrix is drawn and factored in float32 and rounded once when copied in
    work = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
    gaussian = tensor.new_empty((rows, cols), dtype=work).normal_(0, 1, generator=generator)
    wide = rows < cols
    if wide:
        gaussian = gaussian.T
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.diagonal(r).sign()
    if wide:
        q = q.T
    with torch.no_grad():
        if work == tensor.dtype:
            tensor.view_as(q).copy_(q)
            tensor.mul_(gain)
        else:
            tensor.view_as(q).copy_(q * gain)
    return tensor


# -- whole models ------------------------------------------------------------------

SCHEMES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "normal")


def _normal_(tensor: torch.Tensor, std: float = 0.01, generator: torch.Generator | None = None) -> torch.Tensor:
    check_real("std", std, minimum=0.0)
    _check_generator(generator)
    if tensor.numel() == 0:
        return tensor
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


_SCHEME_FUNCTIONS = {
    "xavier_uniform": xavier_uniform_, "xavier_normal": xavier_normal_,
    "kaiming_uniform": kaiming_uniform_, "kaiming_normal": kaiming_normal_,
    "orthogonal": orthogonal_, "normal": _normal_,
}


def init_weights_(model: nn.Module, scheme: str, **kwargs) -> nn.Module:
    """Initialise every weighted layer of ``model`` with one scheme; set their biases to 0.

    The weighted layers are the modules that are instances of :data:`helpers._layers.WEIGHTED_LAYERS`.

    The fans of a transposed convolution's weight ``(in, out/groups, *kernel)`` are read
    from the tensor as ``torch.nn.init`` does (dim 1 is fan_in), so a seeded draw equals torch's.

    Layers are visited in :meth:`~torch.nn.Module.modules` order, so with a seeded
    ``generator=`` the result is reproducible.

    Args:
        model: the module to initialise in place.
        scheme: one of :data:`SCHEMES`; ``"normal"`` draws :math:`\\mathcal N(0, \\text{std}^2)`
            with ``std`` (default 0.01) -- the "small random numbers" of early practice.
        **kwargs: passed to the scheme's function, e.g. ``nonlinearity="relu"``, ``gain=...``,
            ``mode="fan_out"``, ``generator=...``.

    Returns:
        ``model``.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> _ = init_weights_(net, "kaiming_normal", nonlinearity="relu")
        >>> net[0].bias.detach().abs().sum().item()
        0.0
    """
    check_module("model", model)
    check_choice("scheme", scheme, SCHEMES)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, WEIGHTED_LAYERS)}
    if not layers:
        raise ValueError(f"model has no layer to initialise (looked for {describe_kinds()}), got "
                         f"{type(model).__name__}")
    check_materialised("model", layers)  # every layer, before the first one changes
    function = _SCHEME_FUNCTIONS[scheme]
    # validate the keyword arguments on an empty tensor (draws nothing from the generator)
    # before touching the model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            function(torch.empty(0, 2), **kwargs)
    except TypeError as error:
        raise TypeError(f"bad keyword arguments {sorted(kwargs)} for scheme {scheme!r}: {error}") from None
    for layer in layers.values():
        function(layer.weight, **kwargs)
        if layer.bias is not None:
            with torch.no_grad():
                layer.bias.zero_()
    return model


@torch.no_grad()
def lsuv_(model: nn.Module, x: torch.Tensor, *, target_std: float = 1.0, tol: float = 0.01,
          max_iter: int = 10, orthogonal: bool = True,
          generator: torch.Generator | None = None) -> dict[str, int]:
    r"""Layer-sequential unit-variance initialisation (Mishkin & Matas 2016).

    Start from orthogonal weights, then for each layer of :data:`helpers._layers.WEIGHTED_LAYERS`, from input to output,
    run the batch ``x`` through the net and rescale the layer's weight until the
    standard deviation of its output is ``target_std``:

    .. math:: W_\ell \leftarrow W_\ell \cdot \frac{\text{target\_std}}{\mathrm{std}(W_\ell h_{\ell-1} + b_\ell)}

    Data-driven, so it works for any activation without knowing its gain. The last
    layer (the logits) is rescaled too, as in the paper.

    Args:
        model: the module to initialise in place; it must accept ``x``.
        x: a batch of inputs (a few hundred examples are plenty).
        target_std: the wanted output standard deviation of every layer, > 0.
        tol: stop rescaling a layer when :math:`|\mathrm{std} - \text{target}| <` ``tol``.
        max_iter: at most this many rescalings per layer.
        orthogonal: first re-initialise each weight with :func:`orthogonal_` (biases to 0).
        generator: for the orthogonal draw.

    Returns:
        ``{layer name: number of rescalings}``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(10, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh())
        >>> x = torch.randn(256, 10)
        >>> steps = lsuv_(net, x)
        >>> round(net[:3](x).std().item(), 1)   # the second Linear layer's output on the batch
        1.0
    """
    check_module("model", model)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a batch of at least 2 inputs (a tensor of shape (batch, ...)), got {shape}")
    check_real("target_std", target_std, minimum=0.0, strict_minimum=True)
    check_real("tol", tol, minimum=0.0, strict_minimum=True)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    _check_generator(generator)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, WEIGHTED_LAYERS)}
    if not layers:
        raise ValueError(f"model has no layer to initialise (looked for {describe_kinds()}), got "
                         f"{type(model).__name__}")
    check_materialised("model", dict(model.named_modules()))  # its state is kept (cloned) below
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        model(x)  # a batch the model cannot take is the caller's mistake: say so before changing anything
    except (RuntimeError, ValueError, TypeError) as error:
        raise ValueError(f"x of shape {tuple(x.shape)} does not fit the model: {error}") from None
    finally:
        model.load_state_dict(kept)  # undo what the trial pass did to buffers (batch norm statistics)
    try:
        return _lsuv(model, x, layers, target_std, tol, max_iter, orthogonal, generator)
    except BaseException:
        model.load_state_dict(kept)  # a layer LSUV cannot rescale: leave the model as it was
        raise


def _lsuv(model, x, layers, target_std, tol, max_iter, orthogonal, generator) -> dict[str, int]:
    if orthogonal:
        for layer in layers.values():
            orthogonal_(layer.weight, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
    iterations = {}
    captured: dict[str, torch.Tensor] = {}

    def keep_output(_module, _inputs, output):
        captured["out"] = output

    for name, layer in layers.items():
        handle = layer.register_forward_hook(keep_output)
        try:
            rescalings = 0
            for _ in range(max_iter):
                model(x)
                std = captured["out"].std().item()
                if not math.isfinite(std) or std == 0:
                    raise ValueError(f"layer {name!r} outputs std {std}; LSUV cannot rescale it")
                if abs(std - target_std) < tol:
                    break
                layer.weight.mul_(target_std / std)
                rescalings += 1
            iterations[name] = rescalings
        finally:
            handle.remove()
    return iterations
