r"""Activation functions written from scratch, each with its derivative by hand.

Every activation :math:`\varphi` is an :class:`Activation` module with two methods:
:meth:`~Activation.function` (:math:`\varphi(x)`) and :meth:`~Activation.derivative`
(:math:`\varphi'(x)`). Autograd is told to use the hand-written derivative,

.. math:: \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot \varphi'(x),

so the number that decides whether gradients vanish -- the slope of each unit -- is
in plain sight. One registry names them all: :func:`get_activation` builds the course's module,
:func:`make_activation` PyTorch's fused equivalent (or the course's, ``from_scratch=True``), and
:func:`name_of` reads either back. The formulas are arranged to stay finite wherever PyTorch's built-in
versions do (no :math:`e^{x}` of a large :math:`x`), and the tests check outputs and
gradients against ``torch.nn`` on random and extreme inputs.

Example:
    >>> x = torch.tensor([-2.0, 0.0, 3.0])
    >>> LeakyReLU(0.1)(x)
    tensor([-0.2000,  0.0000,  3.0000])
    >>> Sigmoid().derivative(torch.tensor(0.0))   # the largest slope of the sigmoid
    tensor(0.2500)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helpers._checks import check_choice, check_module, check_real

__all__ = ["ACTIVATION_NAMES", "Activation", "ELU", "GELU", "Identity", "LeakyReLU", "Mish", "ReLU", "SELU",
           "Sigmoid", "Swish", "TORCH_ACTIVATIONS", "Tanh", "get_activation", "make_activation", "name_of"]

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _opmath(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype the arithmetic is done in: float32 for float16/bfloat16 (as torch's kernels), else itself."""
    return x.float() if x.dtype in _LOW_PRECISION else x


class _HandDerivative(torch.autograd.Function):
    """y = module.function(x); backward multiplies by module.derivative(x).

    Low-precision inputs are computed in float32 and rounded once at the end, forward and
    backward, as PyTorch's own activation kernels do. The backward is written with
    differentiable operations of ``x``, so a second derivative (``create_graph=True``)
    is autograd's derivative of :meth:`Activation.derivative`.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, module: Activation) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.module = module
        return module.function(_opmath(x)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        slope = ctx.module.derivative(_opmath(x))
        if torch.is_grad_enabled() and x.requires_grad and not slope.requires_grad:
            slope = _ConstantOf.apply(slope, x)  # a piecewise-constant slope: zero second derivative, as torch
        return (_opmath(grad_output) * slope).to(x.dtype), None


class _ConstantOf(torch.autograd.Function):
    """Returns ``value`` (which does not depend on ``x``) as a function of ``x`` with zero derivative.

    ReLU's slope :math:`[x > 0]` has no autograd history; joined to ``x`` this way, a
    second backward through it gives zeros (as torch's ReLU does) instead of an error.
    """

    @staticmethod
    def forward(ctx, value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.x_meta = (x.shape, x.dtype, x.device)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        shape, dtype, device = ctx.x_meta
        return None, torch.zeros(shape, dtype=dtype, device=device)


class Activation(nn.Module):
    r"""Base class: an elementwise :math:`\varphi` whose backward pass uses :meth:`derivative`.

    Subclasses implement :meth:`function` and :meth:`derivative` with plain tensor
    arithmetic and set ``name`` (the key :func:`get_activation` knows them by).
    """

    name = "activation"
    #: which non-floating inputs the torch counterpart takes (checked in ``forward``, as torch does):
    #: ``"float"`` none (``elu``, ``gelu``, ... raise on integer and bool tensors); ``"promote"``
    #: integer and bool tensors, computed in the default float dtype (``torch.sigmoid``,
    #: ``torch.tanh``); ``"integer"`` integer but not bool tensors, kept integer (``torch.relu``);
    #: ``"any"`` every dtype (``nn.Identity``)
    integer_input = "float"
    #: the torch counterpart, named in the error messages
    torch_name = "torch.nn"
    #: whether the torch counterpart takes complex tensors (this module never does)
    complex_in_torch = False

    def function(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a tensor, got {type(x).__name__}")
        rule = self.integer_input
        if rule == "any":
            return _HandDerivative.apply(x, self)
        accepted = {"float": "floating dtypes (float16, bfloat16, float32, float64)",
                    "promote": "floating dtypes, or integer and bool ones (computed in the default float dtype)",
                    "integer": "floating and integer dtypes (not bool)"}[rule]
        if x.is_complex():
            torch_too = (f"{self.torch_name} accepts complex tensors, this from-scratch version does not"
                         if self.complex_in_torch else f"as {self.torch_name} refuses them")
            raise TypeError(f"{type(self).__name__} takes real tensors ({torch_too}), got x of dtype {x.dtype}; "
                            f"accepted: {accepted}")
        if not x.is_floating_point():
            if rule == "promote":
                x = x.to(torch.get_default_dtype())   # as torch: an integer or bool input gives a float output
            elif rule == "float" or x.dtype == torch.bool:
                raise TypeError(f"{type(self).__name__} got x of dtype {x.dtype}, which {self.torch_name} refuses "
                                f"too; accepted: {accepted}")
        return _HandDerivative.apply(x, self)


def _positive(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, min=0)


def _negative(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, max=0)


# Each function below picks one of two branches with torch.where; each branch sees only
# the inputs of its own sign (clamp), so no branch overflows (no e^{x} of a large x) and
# its autograd derivative is finite, and at x = 0 the chosen branch has the true slope
# (clamp passes the gradient at its bound). A formula in |x| would have slope 0 at 0.

def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    # 1 / (1 + e^{-x}) for x >= 0, e^{x} / (1 + e^{x}) for x < 0: the same function
    e_neg, e_pos = torch.exp(-_positive(x)), torch.exp(_negative(x))
    return torch.where(x >= 0, 1 / (1 + e_neg), e_pos / (1 + e_pos))


def _tanh(x: torch.Tensor) -> torch.Tensor:
    # tanh x = -m / (2 + m) with m = e^{-2x} - 1 for x >= 0 (odd for x < 0); expm1 keeps small |x| accurate
    m_pos, m_neg = torch.expm1(-2 * _positive(x)), torch.expm1(2 * _negative(x))
    return torch.where(x >= 0, -m_pos / (2 + m_pos), m_neg / (2 + m_neg))


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # log(1 + e^x) = x + log(1 + e^{-x}) for x > 0, log(1 + e^{x}) otherwise
    xp = _positive(x)
    return torch.where(x > 0, xp + torch.log1p(torch.exp(-xp)), torch.log1p(torch.exp(_negative(x))))


class Sigmoid(Activation):
    r"""The logistic function.

    .. math::
        \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \sigma'(x) = \sigma(x)\,(1 - \sigma(x)) \le \tfrac14

    Example:
        >>> Sigmoid()(torch.tensor([0.0]))
        tensor([0.5000])
    """

    name = "sigmoid"
    integer_input = "promote"
    torch_name = "torch.sigmoid"
    complex_in_torch = True

    def function(self, x):
        return _sigmoid(x)

    def derivative(self, x):
        s = _sigmoid(x)
        return s * (1 - s)


class Tanh(Activation):
    r"""The hyperbolic tangent.

    .. math::
        \tanh x = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}, \qquad \tanh'(x) = 1 - \tanh^2 x \le 1

    Example:
        >>> Tanh().derivative(torch.tensor([0.0]))
        tensor([1.])
    """

    name = "tanh"
    integer_input = "promote"
    torch_name = "torch.tanh"
    complex_in_torch = True

    def function(self, x):
        return _tanh(x)

    def derivative(self, x):
        return 1 - _tanh(x).square()


class ReLU(Activation):
    r"""The rectified linear unit.

    .. math::
        \mathrm{ReLU}(x) = \max(x, 0), \qquad \mathrm{ReLU}'(x) = [x > 0]

    The slope is exactly 1 or 0: no shrinking on the active side, but a unit that is
    negative for every input passes no gradient at all (a *dead* unit). At 0 the
    slope is taken to be 0, as in PyTorch.

    Example:
        >>> ReLU()(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """

    name = "relu"
    integer_input = "integer"
    torch_name = "torch.relu"

    def function(self, x):
        return torch.where(x <= 0, torch.zeros_like(x), x)  # NaN stays NaN

    def derivative(self, x):
        return (~(x <= 0)).to(x.dtype)  # as PyTorch: slope 1 for NaN, 0 at 0


class LeakyReLU(Activation):
    r"""ReLU with a small slope for negative inputs, so no unit can die.

    .. math::
        \mathrm{LeakyReLU}(x) = \begin{cases} x & x > 0 \\ a\,x & x \le 0 \end{cases},
        \qquad \mathrm{LeakyReLU}'(x) = \begin{cases} 1 & x > 0 \\ a & x \le 0 \end{cases}

    Only the negative branch is scaled by :math:`a` (a formula some tutorials give, :math:`a x` on
    both branches, is just a linear map: notebook 14, E18).

    Args:
        negative_slope: :math:`a`, a real number (default 0.01, as in PyTorch).

    Example:
        >>> LeakyReLU(0.2)(torch.tensor([-1.0, 1.0]))
        tensor([-0.2000,  1.0000])
    """

    name = "leaky_relu"
    integer_input = "float"
    torch_name = "torch.nn.functional.leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = check_real("negative_slope", negative_slope)

    def function(self, x):
        return torch.where(x > 0, x, self.negative_slope * x)

    def derivative(self, x):
        return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, self.negative_slope))

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(Activation):
    r"""The exponential linear unit of Clevert et al. (2016).

    .. math::
        \mathrm{ELU}(x) = \begin{cases} x & x > 0 \\ \alpha\,(e^{x} - 1) & x \le 0 \end{cases},
        \qquad \mathrm{ELU}'(x) = \begin{cases} 1 & x > 0 \\ \alpha\,e^{x} & x \le 0 \end{cases}

    Negative inputs keep a (shrinking) slope, and the mean output is pushed toward 0.

    Args:
        alpha: :math:`\alpha`, the value approached as :math:`x \to -\infty` is :math:`-\alpha`.

    Example:
        >>> ELU()(torch.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """

    name = "elu"
    integer_input = "float"
    torch_name = "torch.nn.functional.elu"

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = check_real("alpha", alpha)

    def function(self, x):
        negative = self.alpha * torch.expm1(torch.clamp(x, max=0))  # e^x only where x <= 0
        return torch.where(x <= 0, negative, x)

    def derivative(self, x):
        # at 0 the slope is alpha (the left branch, as torch) and its own slope 0 (as torch's double backward)
        strictly_negative = torch.where(x < 0, x, torch.zeros_like(x))
        return torch.where(x <= 0, self.alpha * torch.exp(strictly_negative), torch.ones_like(x))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SELU(Activation):
    r"""The scaled exponential linear unit of Klambauer et al. (2017), "self-normalising".

    .. math::
        \mathrm{SELU}(x) = \lambda \begin{cases} x & x > 0 \\ \alpha\,(e^{x} - 1) & x \le 0 \end{cases},
        \qquad \mathrm{SELU}'(x) = \lambda \begin{cases} 1 & x > 0 \\ \alpha\,e^{x} & x \le 0 \end{cases}

    with the fixed constants :math:`\alpha \approx 1.6733` and :math:`\lambda \approx 1.0507`
    (the same as ``torch.nn.SELU``), chosen so that for :math:`z \sim \mathcal N(0, 1)` the output
    has mean 0 and variance 1: with LeCun-normal weights :math:`\mathcal N(0, 1/n_{in})` (gain 1)
    the mean and variance of a deep net's units are driven back to (0, 1) layer after layer.
    (``torch.nn.init.calculate_gain("selu")`` is 3/4, which gives up that fixed point; for
    self-normalisation PyTorch's documentation recommends the ``"linear"`` gain, 1.)

    Source: G. Klambauer, T. Unterthiner, A. Mayr, S. Hochreiter, "Self-normalizing neural
    networks", NeurIPS 2017, eq. (2) and Theorem 1.

    Example:
        >>> SELU()(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 1.0507])
    """

    name = "selu"
    integer_input = "float"
    torch_name = "torch.nn.functional.selu"
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def function(self, x):
        negative = (self.scale * self.alpha) * torch.expm1(torch.clamp(x, max=0))  # e^x only where x <= 0
        return torch.where(x <= 0, negative, self.scale * x)

    def derivative(self, x):
        # at 0 the left branch, scale * alpha (as torch)
        strictly_negative = torch.where(x < 0, x, torch.zeros_like(x))
        return torch.where(x <= 0, (self.scale * self.alpha) * torch.exp(strictly_negative),
                           torch.full_like(x, self.scale))


class GELU(Activation):
    r"""The Gaussian error linear unit of Hendrycks & Gimpel (2016).

    .. math::
        \mathrm{GELU}(x) = x\,\Phi(x), \qquad \mathrm{GELU}'(x) = \Phi(x) + x\,\phi(x),

    with :math:`\Phi` the standard normal CDF, :math:`\Phi(x) = \tfrac12(1 + \mathrm{erf}(x/\sqrt2))`,
    and :math:`\phi` its density. ``approximate="tanh"`` uses
    :math:`\Phi(x) \approx \tfrac12(1 + \tanh(\sqrt{2/\pi}(x + 0.044715x^3)))`.

    Args:
        approximate: ``"none"`` (exact, default) or ``"tanh"``.

    Example:
        >>> GELU()(torch.tensor([0.0]))
        tensor([0.])
    """

    name = "gelu"
    integer_input = "float"
    torch_name = "torch.nn.functional.gelu"

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = check_choice("approximate", approximate, ("none", "tanh"))

    # Arranged without cancellation: 1 + erf(x/sqrt2) = erfc(-x/sqrt2), and
    # 1 + tanh(u) = 2 sigmoid(2u), 1 - tanh(u)^2 = 4 sigmoid(2u)(1 - sigmoid(2u)),
    # so the left tail (x << 0, where both are tiny) keeps its relative accuracy.

    def _tanh_argument(self, x):
        return _SQRT_2_OVER_PI * (x + 0.044715 * x**3)

    def function(self, x):
        if self.approximate == "tanh":
            return x * _sigmoid(2 * self._tanh_argument(x))
        return 0.5 * x * torch.erfc(-x / _SQRT_2)

    def derivative(self, x):
        if self.approximate == "tanh":
            s = _sigmoid(2 * self._tanh_argument(x))
            return s + 2 * x * s * (1 - s) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        cdf = 0.5 * torch.erfc(-x / _SQRT_2)
        density = _INV_SQRT_2PI * torch.exp(-0.5 * x * x)
        return cdf + x * density

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Swish(Activation):
    r"""Swish (Ramachandran et al. 2017); with :math:`\beta = 1` it is SiLU.

    .. math::
        \mathrm{Swish}(x) = x\,\sigma(\beta x), \qquad
        \mathrm{Swish}'(x) = \sigma(\beta x) + \beta x\,\sigma(\beta x)(1 - \sigma(\beta x))

    Args:
        beta: :math:`\beta`, a real number (default 1).

    Example:
        >>> Swish()(torch.tensor([0.0]))
        tensor([0.])
    """

    name = "swish"
    integer_input = "float"
    torch_name = "torch.nn.functional.silu"
    complex_in_torch = True

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = check_real("beta", beta)

    def function(self, x):
        return x * _sigmoid(self.beta * x)

    def derivative(self, x):
        s = _sigmoid(self.beta * x)
        return s + self.beta * x * s * (1 - s)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class Mish(Activation):
    r"""Mish (Misra 2019).

    .. math::
        \mathrm{Mish}(x) = x \tanh(\mathrm{softplus}(x)),\quad \mathrm{softplus}(x) = \log(1 + e^x),

    .. math::
        \mathrm{Mish}'(x) = \tanh(\mathrm{softplus}(x)) + x\,\big(1 - \tanh^2(\mathrm{softplus}(x))\big)\,\sigma(x)

    Example:
        >>> Mish()(torch.tensor([0.0]))
        tensor([0.])
    """

    name = "mish"
    integer_input = "float"
    torch_name = "torch.nn.functional.mish"

    def function(self, x):
        return x * _tanh(_softplus(x))

    def derivative(self, x):
        t = _tanh(_softplus(x))
        return t + x * (1 - t * t) * _sigmoid(x)


class Identity(Activation):
    r"""No activation: :math:`\varphi(x) = x`, :math:`\varphi'(x) = 1` (a deep *linear* net)."""

    name = "identity"
    integer_input = "any"
    torch_name = "torch.nn.Identity"

    def function(self, x):
        return x.clone()

    def derivative(self, x):
        return torch.ones_like(x)


# The one activation registry: each name, the course's from-scratch module and PyTorch's fused
# module computing the same numbers (tests/test_activations.py proves each pair equal, outputs and
# gradients). The fused one costs one elementwise kernel instead of several: 1.7-3x faster small
# nets on a CPU, so the models use it unless asked for the course's own.
_REGISTRY: dict[str, tuple[type[Activation], type[nn.Module]]] = {
    "identity": (Identity, nn.Identity),
    "sigmoid": (Sigmoid, nn.Sigmoid),
    "tanh": (Tanh, nn.Tanh),
    "relu": (ReLU, nn.ReLU),
    "leaky_relu": (LeakyReLU, nn.LeakyReLU),
    "elu": (ELU, nn.ELU),
    "selu": (SELU, nn.SELU),
    "gelu": (GELU, nn.GELU),
    "swish": (Swish, nn.SiLU),
    "mish": (Mish, nn.Mish),
}
assert all(ours.name == name for name, (ours, _) in _REGISTRY.items())
ACTIVATION_NAMES = tuple(_REGISTRY)
_NAME_OF_TYPE = {kind: name for name, kinds in _REGISTRY.items() for kind in kinds}
# PyTorch's modules for the registry's nonlinearities (nn.Identity is left out: models also use it
# as a no-op placeholder, e.g. a transformer block without a norm)
TORCH_ACTIVATIONS = tuple(fused for name, (_, fused) in _REGISTRY.items() if name != "identity")


def get_activation(name: str, **kwargs) -> Activation:
    """A new from-scratch activation module by name: :func:`make_activation` with ``from_scratch=True``.

    Example:
        >>> get_activation("leaky_relu", negative_slope=0.2)
        LeakyReLU(negative_slope=0.2)
    """
    check_choice("activation", name, ACTIVATION_NAMES)
    try:
        return _REGISTRY[name][0](**kwargs)
    except TypeError as error:
        raise TypeError(f"bad arguments {kwargs} for activation {name!r}: {error}") from None


def make_activation(name: str, *, from_scratch: bool = False, **kwargs) -> nn.Module:
    """Return a new activation module by name: PyTorch's fused one, or the course's own.

    Args:
        name: one of :data:`ACTIVATION_NAMES` (the example below lists them).
        from_scratch: ``True`` for the course's own module (:func:`get_activation`);
            ``False`` (default) for PyTorch's fused one, which computes the same numbers faster.
        **kwargs: passed to the module, e.g. ``negative_slope=0.2`` for leaky ReLU.

    Raises:
        ValueError: ``name`` is not one of :data:`ACTIVATION_NAMES`.
        TypeError: ``kwargs`` are not the module's arguments.

    Example:
        >>> ACTIVATION_NAMES
        ('identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'elu', 'selu', 'gelu', 'swish', 'mish')
        >>> make_activation("leaky_relu", negative_slope=0.2)
        LeakyReLU(negative_slope=0.2)
        >>> type(make_activation("mish", from_scratch=True))
        <class 'helpers.activations.Mish'>
    """
    if from_scratch:
        return get_activation(name, **kwargs)
    check_choice("activation", name, ACTIVATION_NAMES)
    return _REGISTRY[name][1](**kwargs)


def name_of(module: nn.Module) -> str | None:
    """The registry name of an activation module, the course's or PyTorch's fused one; ``None`` for any other.

    The module's exact type is looked up (a subclass may compute something else).

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.

    Example:
        >>> name_of(torch.nn.SiLU()), name_of(Swish()), name_of(torch.nn.Linear(1, 1))
        ('swish', 'swish', None)
    """
    check_module("module", module)
    return _NAME_OF_TYPE.get(type(module))
