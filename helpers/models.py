"""Models of the course, built so every layer has a name a learner can read."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from helpers import activations
from helpers._checks import check_choice, check_int, check_real

# PyTorch's fused modules under the course's names. tests/test_activations.py proves each
# equal (outputs and gradients) to the course's from-scratch module of the same name,
# which costs several elementwise kernels instead of one: 1.7-3x slower small nets on a CPU.
_FUSED = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
}
ACTIVATION_NAMES = activations.ACTIVATION_NAMES
assert set(_FUSED) == set(ACTIVATION_NAMES)


def make_activation(name: str, *, from_scratch: bool = False, **kwargs) -> nn.Module:
    """Return a new activation module by name.

    Args:
        name: one of :data:`ACTIVATION_NAMES`: ``"identity"``, ``"sigmoid"``, ``"tanh"``,
            ``"relu"``, ``"leaky_relu"``, ``"elu"``, ``"gelu"``, ``"swish"`` or ``"mish"``.
        from_scratch: ``True`` for the course's own module from :mod:`helpers.activations`;
            ``False`` (default) for PyTorch's fused one, which computes the same numbers faster.
        **kwargs: passed to the module, e.g. ``negative_slope=0.2`` for leaky ReLU.

    Example:
        >>> make_activation("leaky_relu", negative_slope=0.2)
        LeakyReLU(negative_slope=0.2)
        >>> type(make_activation("mish", from_scratch=True))
        <class 'helpers.activations.Mish'>
    """
    check_choice("activation", name, ACTIVATION_NAMES)
    if from_scratch:
        return activations.get_activation(name, **kwargs)
    return _FUSED[name](**kwargs)


class MLP(nn.Sequential):
    r"""A multilayer perceptron whose layers are named ``fc1 … fc{depth}``, ``out``.

    .. math::
        h_0 = x,\quad h_\ell = \varphi(W_\ell h_{\ell-1} + b_\ell)\ (\ell = 1..L),
        \quad \hat y = W_{out} h_L + b_{out}

    ``depth`` is the number of hidden layers :math:`L`, so the net has ``depth + 1``
    Linear layers (``depth = 0`` is a linear model). The activation after ``fc{i}``
    is named ``act{i}``. Layers keep PyTorch's default initialisation; re-initialise
    them with :mod:`torch.nn.init` to study other schemes.

    Args:
        in_features: size of each input sample.
        out_features: size of each output (the number of classes for a classifier).
        width: units in every hidden layer.
        depth: number of hidden layers, >= 0.
        activation: a name accepted by :func:`make_activation`.
        from_scratch: use the course's own activation modules (:mod:`helpers.activations`)
            instead of PyTorch's fused ones; same numbers, slower.

    Example:
        >>> net = MLP(64, 10, width=32, depth=3, activation="tanh")
        >>> [name for name, _ in net.named_children()]
        ['fc1', 'act1', 'fc2', 'act2', 'fc3', 'act3', 'out']
        >>> net(torch.zeros(5, 64)).shape
        torch.Size([5, 10])
    """

    def __init__(self, in_features: int, out_features: int, width: int, depth: int,
                 activation: str = "relu", *, from_scratch: bool = False):
        check_int("in_features", in_features, minimum=1)
        check_int("out_features", out_features, minimum=1)
        check_int("width", width, minimum=1)
        check_int("depth", depth, minimum=0)
        check_choice("activation", activation, ACTIVATION_NAMES)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        fan_in = in_features
        for i in range(1, depth + 1):
            layers[f"fc{i}"] = nn.Linear(fan_in, width)
            layers[f"act{i}"] = make_activation(activation, from_scratch=from_scratch)
            fan_in = width
        layers["out"] = nn.Linear(fan_in, out_features)
        super().__init__(layers)
        self.in_features, self.out_features = in_features, out_features
        self.width, self.depth, self.activation = width, depth, activation

    def linear_layers(self) -> list[nn.Linear]:
        """The Linear layers from input to output."""
        return [m for m in self if isinstance(m, nn.Linear)]

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width={self.width}, activation={self.activation!r}"


@torch.no_grad()
def scale_init_(model: nn.Module, gain: float = 1.0, bias: float = 0.0) -> nn.Module:
    r"""Re-initialise every Linear/Conv weight as :math:`\mathcal N(0, \text{gain}^2/\text{fan\_in})`.

    The one-parameter family the course uses to move a net between vanishing
    (small ``gain``) and exploding (large ``gain``) gradients: the variance of each
    pre-activation is :math:`\text{gain}^2` times the mean square of the layer's input.
    Biases are set to the constant ``bias``.

    Args:
        model: any module; its Linear, Conv1d/2d/3d layers are re-initialised in place.
        gain: :math:`\sigma_w`, a real number > 0.
        bias: constant for every bias.

    Example:
        >>> net = scale_init_(MLP(64, 10, 32, 2), gain=2 ** 0.5)  # He-style for ReLU
    """
    check_real("gain", gain, minimum=0.0, strict_minimum=True)
    check_real("bias", bias)
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, gain / fan_in**0.5)
            if module.bias is not None:
                module.bias.fill_(bias)
    return model
