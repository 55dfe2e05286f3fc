"""Models of the course, built so every layer has a name a learner can read."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from helpers._checks import check_bool, check_choice, check_int, check_int_sequence, check_module, check_real
from helpers._layers import WEIGHTED_LAYERS, check_materialised
from helpers.activations import ACTIVATION_NAMES, make_activation
from helpers.normalization import BatchNorm1d, BatchNorm2d, LayerNorm, RMSNorm
from helpers.regularization import Dropout

__all__ = ["ConvNet", "DenseBlock", "MLP", "NORM_NAMES", "scale_init_", "with_torch_layers"]

NORM_NAMES = (None, "batch", "layer", "rms")


def _check_norm(norm, choices=NORM_NAMES):
    if norm is not None:
        check_choice("norm", norm, [c for c in choices if c is not None])
    return norm


class _ResidualSequential(nn.Sequential):
    r"""A Sequential whose hidden layers may be wrapped as residual blocks.

    Subclasses register their layers in order and describe the forward pass in
    ``self._plan``: a layer name applies that layer; a tuple
    ``(index, branch names, projection name or None)`` applies one residual block
    :math:`h \leftarrow P h + \alpha\, F(h)`, with :math:`P` the projection (identity
    when the widths agree) and :math:`\alpha` the branch scale.
    """

    def _setup_residual(self, plan: list, residual: bool, residual_scale: float,
                        learn_residual_scale: bool) -> None:
        self._plan = plan
        self.residual, self.residual_scale = residual, residual_scale
        self.learn_residual_scale = learn_residual_scale
        if residual and learn_residual_scale:
            for step in plan:
                if isinstance(step, tuple):
                    self.register_parameter(f"alpha{step[0]}",
                                            nn.Parameter(torch.tensor(float(residual_scale))))

    def branch_scale(self, index: int):
        r"""The scale :math:`\alpha` of block ``index``: a learned parameter or the fixed float."""
        if self.learn_residual_scale:
            return getattr(self, f"alpha{index}")
        return self.residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return super().forward(x)
        modules = self._modules
        for step in self._plan:
            if isinstance(step, str):
                x = modules[step](x)
                continue
            index, branch_names, projection = step
            branch = x
            for name in branch_names:
                branch = modules[name](branch)
            skip = x if projection is None else modules[projection](x)
            scale = self.branch_scale(index)
            x = skip + branch if (not self.learn_residual_scale and scale == 1.0) else skip + scale * branch
        return x


class MLP(_ResidualSequential):
    r"""A multilayer perceptron whose layers are named ``fc1 … fc{depth}``, ``out``.

    .. math::
        h_0 = x,\quad h_\ell = \varphi(N(W_\ell h_{\ell-1} + b_\ell))\ (\ell = 1..L),
        \quad \hat y = W_{out} h_L + b_{out}

    ``depth`` is the number of hidden layers :math:`L`, so the net has ``depth + 1``
    Linear layers (``depth = 0`` is a linear model). After ``fc{i}`` come, in this
    order, ``norm{i}`` (if ``norm``), ``act{i}`` and ``drop{i}`` (if ``dropout > 0``),
    all from the course's own modules (:mod:`helpers.normalization`,
    :mod:`helpers.regularization`). Layers keep PyTorch's default initialisation.

    With ``residual=True`` every hidden layer becomes a *pre-activation* residual
    block (He et al. 2016b): the same layers, reordered so that the branch ends with
    its Linear layer, plus a skip connection

    .. math::
        h_\ell = P_\ell h_{\ell-1} + \alpha_\ell\, F_\ell(h_{\ell-1}),
        \qquad F_\ell = W_\ell \circ \text{drop} \circ \varphi \circ N,
        \qquad \frac{\partial h_\ell}{\partial h_{\ell-1}}
        = P_\ell + \alpha_\ell \frac{\partial F_\ell}{\partial h_{\ell-1}}

    (children ``norm{i}``, ``act{i}``, ``drop{i}``, ``fc{i}``), where :math:`P_\ell` is
    the identity, or a bias-free Linear layer ``proj{i}`` when the block changes the
    width (only block 1, when ``in_features != width``). The branch scale
    :math:`\alpha` is the constant ``residual_scale``, or with
    ``learn_residual_scale=True`` a learned scalar ``alpha{i}`` per block starting at
    ``residual_scale`` (``residual_scale=0.0``: ReZero, Bachlechner et al. 2020). The
    residual forward pass is not the plain Sequential one: call the model, do not
    iterate over its children.

    Args:
        in_features: size of each input sample.
        out_features: size of each output (the number of classes for a classifier).
        width: units in every hidden layer.
        depth: number of hidden layers, >= 0.
        activation: a name accepted by :func:`helpers.activations.make_activation`.
        norm: ``None``, ``"batch"`` (:class:`~helpers.normalization.BatchNorm1d`),
            ``"layer"`` (:class:`~helpers.normalization.LayerNorm`) or ``"rms"``
            (:class:`~helpers.normalization.RMSNorm`, Zhang & Sennrich 2019), just before the activation.
        residual: wrap each hidden layer in a skip connection.
        dropout: drop probability in [0, 1) after each activation (0: no dropout layer).
        residual_scale: :math:`\alpha`, the factor of every residual branch.
        learn_residual_scale: learn :math:`\alpha` per block (ReZero-style).
        from_scratch: use the course's own activation modules (:mod:`helpers.activations`)
            instead of PyTorch's fused ones; same numbers, slower. (Normalization and dropout
            layers are always the course's own; see :func:`with_torch_layers`.)

    Example:
        >>> net = MLP(64, 10, width=32, depth=3, activation="tanh")
        >>> [name for name, _ in net.named_children()]
        ['fc1', 'act1', 'fc2', 'act2', 'fc3', 'act3', 'out']
        >>> net(torch.zeros(5, 64)).shape
        torch.Size([5, 10])
        >>> res = MLP(64, 10, width=32, depth=2, norm="batch", residual=True, dropout=0.1)
        >>> [name for name, _ in res.named_children()]
        ['norm1', 'act1', 'drop1', 'fc1', 'proj1', 'norm2', 'act2', 'drop2', 'fc2', 'out']
    """

    def __init__(self, in_features: int, out_features: int, width: int, depth: int,
                 activation: str = "relu", norm: str | None = None, residual: bool = False,
                 dropout: float = 0.0, *, residual_scale: float = 1.0,
                 learn_residual_scale: bool = False, from_scratch: bool = False):
        check_int("in_features", in_features, minimum=1)
        check_int("out_features", out_features, minimum=1)
        check_int("width", width, minimum=1)
        check_int("depth", depth, minimum=0)
        check_choice("activation", activation, ACTIVATION_NAMES)
        _check_norm(norm)
        check_bool("residual", residual)
        dropout = check_real("dropout", dropout, minimum=0.0, maximum=1.0, strict_maximum=True)
        residual_scale = check_real("residual_scale", residual_scale)
        check_bool("learn_residual_scale", learn_residual_scale)
        check_bool("from_scratch", from_scratch)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        plan: list = []
        fan_in = in_features
        for i in range(1, depth + 1):
            # plain: fc -> norm -> act -> drop; residual (pre-activation): norm -> act -> drop -> fc,
            # so that the branch ends with a Linear layer and adds a zero-mean update to the skip path
            size = fan_in if residual else width
            block = OrderedDict()
            if norm is not None:
                block[f"norm{i}"] = {"batch": BatchNorm1d, "layer": LayerNorm, "rms": RMSNorm}[norm](size)
            block[f"act{i}"] = make_activation(activation, from_scratch=from_scratch)
            if dropout > 0:
                block[f"drop{i}"] = Dropout(dropout)
            fc = {f"fc{i}": nn.Linear(fan_in, width)}
            block = OrderedDict({**block, **fc}) if residual else OrderedDict({**fc, **block})
            layers.update(block)
            projection = None
            if residual and fan_in != width:
                projection = f"proj{i}"
                layers[projection] = nn.Linear(fan_in, width, bias=False)
            plan.append((i, list(block), projection))
            fan_in = width
        layers["out"] = nn.Linear(fan_in, out_features)
        plan.append("out")
        super().__init__(layers)
        self._setup_residual(plan, residual, residual_scale, learn_residual_scale)
        self.in_features, self.out_features = in_features, out_features
        self.width, self.depth, self.activation = width, depth, activation
        self.norm, self.dropout = norm, dropout

    def linear_layers(self) -> list[nn.Linear]:
        """The Linear layers of the main path ``fc1 … out``, from input to output (no projections)."""
        return [m for name, m in self.named_children()
                if isinstance(m, nn.Linear) and not name.startswith("proj")]

    def extra_repr(self) -> str:
        text = f"depth={self.depth}, width={self.width}, activation={self.activation!r}"
        if self.norm is not None:
            text += f", norm={self.norm!r}"
        if self.residual:
            text += f", residual=True, residual_scale={self.residual_scale}"
            if self.learn_residual_scale:
                text += " (learned)"
        if self.dropout:
            text += f", dropout={self.dropout}"
        return text


class _AsImage(nn.Module):
    """Reshape flat inputs (N, side*side) to single-channel images (N, 1, side, side)."""

    def __init__(self, side: int):
        super().__init__()
        self.side = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return x
        if x.dim() != 2 or x.shape[1] != self.side * self.side:
            raise ValueError(f"expected images (N, C, {self.side}, {self.side}) or flat inputs "
                             f"(N, {self.side * self.side}), got shape {tuple(x.shape)}")
        return x.reshape(-1, 1, self.side, self.side)

    def extra_repr(self) -> str:
        return f"side={self.side}"


class ConvNet(_ResidualSequential):
    r"""A small convolutional net for the 8x8 digits, plain or residual.

    Layer :math:`i` is a 3x3 convolution ``conv{i}`` (padding 1, so images stay
    8x8), then ``norm{i}`` (:class:`~helpers.normalization.BatchNorm2d`, if
    ``norm="batch"``) and ``act{i}``; ``flatten`` turns the last feature maps into one
    vector per image (8x8 is too small to pool away) and a Linear layer ``out``
    classifies. Flat inputs (N, 64) are reshaped to (N, 1, 8, 8) by the first module
    ``image``.

    With ``residual=True`` each layer is a pre-activation block
    :math:`h \leftarrow P h + \alpha F(h)` with :math:`F` = ``norm{i}``, ``act{i}``,
    ``conv{i}`` in this order; when the number of channels changes (e.g. 16 → 32, and
    always from the 1 input channel) :math:`P` is a 1x1 convolution ``proj{i}``,
    otherwise the identity: the skip can only be *added* when both tensors have the
    same shape.

    Args:
        channels: output channels of each convolution, e.g. ``(16, 16, 32, 32)``.
        out_features: number of classes.
        activation: a name accepted by :func:`helpers.activations.make_activation`.
        norm: ``None`` or ``"batch"``.
        residual: wrap each convolution in a skip connection.
        residual_scale, learn_residual_scale, from_scratch: as in :class:`MLP`.
        image_size: side of the square input images.

    Example:
        >>> net = ConvNet(channels=(8, 16), residual=True)
        >>> [name for name, _ in net.named_children()]
        ['image', 'norm1', 'act1', 'conv1', 'proj1', 'norm2', 'act2', 'conv2', 'proj2', 'flatten', 'out']
        >>> net(torch.zeros(4, 64)).shape
        torch.Size([4, 10])
    """

    def __init__(self, channels=(16, 16, 16, 16), out_features: int = 10, activation: str = "relu",
                 norm: str | None = "batch", residual: bool = False, *, residual_scale: float = 1.0,
                 learn_residual_scale: bool = False, image_size: int = 8, from_scratch: bool = False):
        channels = check_int_sequence("channels", channels, minimum=1, what="convolution")
        check_int("out_features", out_features, minimum=1)
        check_choice("activation", activation, ACTIVATION_NAMES)
        _check_norm(norm, (None, "batch"))
        check_bool("residual", residual)
        residual_scale = check_real("residual_scale", residual_scale)
        check_bool("learn_residual_scale", learn_residual_scale)
        check_bool("from_scratch", from_scratch)
        check_int("image_size", image_size, minimum=1)
        layers: OrderedDict[str, nn.Module] = OrderedDict(image=_AsImage(image_size))
        plan: list = ["image"]
        fan_in = 1
        for i, c in enumerate(channels, start=1):
            # plain: conv -> norm -> act; residual (pre-activation): norm -> act -> conv
            block = OrderedDict()
            if norm == "batch":
                block[f"norm{i}"] = BatchNorm2d(fan_in if residual else c)
            block[f"act{i}"] = make_activation(activation, from_scratch=from_scratch)
            conv = {f"conv{i}": nn.Conv2d(fan_in, c, kernel_size=3, padding=1, bias=residual or norm is None)}
            block = OrderedDict({**block, **conv}) if residual else OrderedDict({**conv, **block})
            layers.update(block)
            projection = None
            if residual and fan_in != c:
                projection = f"proj{i}"
                layers[projection] = nn.Conv2d(fan_in, c, kernel_size=1, bias=False)
            plan.append((i, list(block), projection))
            fan_in = c
        layers["flatten"] = nn.Flatten()
        layers["out"] = nn.Linear(fan_in * image_size * image_size, out_features)
        plan += ["flatten", "out"]
        super().__init__(layers)
        self._setup_residual(plan, residual, residual_scale, learn_residual_scale)
        self.channels, self.norm, self.activation = channels, norm, activation

    def extra_repr(self) -> str:
        return f"channels={self.channels}, norm={self.norm!r}, residual={self.residual}"


class DenseBlock(nn.Module):
    r"""A densely connected block (after Huang et al. 2017): every layer sees all earlier outputs.

    .. math::
        h_\ell = \varphi\big(W_\ell\, [x, h_1, \dots, h_{\ell-1}] + b_\ell\big), \qquad
        \text{output} = [x, h_1, \dots, h_L]

    where :math:`[\cdot]` concatenates features. Each layer adds ``growth`` features,
    so the output has ``in_features + layers * growth``; the gradient reaches every
    layer, and the input, directly through the concatenation.

    Args:
        in_features: size of each input sample.
        growth: features each layer adds.
        layers: number of layers ``fc1 … fc{layers}``.
        activation: a name accepted by :func:`helpers.activations.make_activation`.
        from_scratch: as in :class:`MLP`.

    Example:
        >>> block = DenseBlock(64, growth=8, layers=3)
        >>> block.out_features, block(torch.zeros(2, 64)).shape
        (88, torch.Size([2, 88]))
    """

    def __init__(self, in_features: int, growth: int, layers: int, activation: str = "relu", *,
                 from_scratch: bool = False):
        check_int("in_features", in_features, minimum=1)
        check_int("growth", growth, minimum=1)
        check_int("layers", layers, minimum=1)
        check_choice("activation", activation, ACTIVATION_NAMES)
        super().__init__()
        self.in_features, self.growth, self.layers = in_features, growth, layers
        self.out_features = in_features + layers * growth
        for i in range(1, layers + 1):
            self.add_module(f"fc{i}", nn.Linear(in_features + (i - 1) * growth, growth))
            self.add_module(f"act{i}", make_activation(activation, from_scratch=from_scratch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(1, self.layers + 1):
            h = self._modules[f"act{i}"](self._modules[f"fc{i}"](torch.cat(features, dim=1)))
            features.append(h)
        return torch.cat(features, dim=1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, growth={self.growth}, layers={self.layers}"


@torch.no_grad()
def scale_init_(model: nn.Module, gain: float = 1.0, bias: float = 0.0) -> nn.Module:
    r"""Re-initialise every weighted layer as :math:`\mathcal N(0, \text{gain}^2/\text{fan\_in})`.

    The one-parameter family the course uses to move a net between vanishing
    (small ``gain``) and exploding (large ``gain``) gradients: the variance of each
    pre-activation is :math:`\text{gain}^2` times the mean square of the layer's input.
    Biases are set to the constant ``bias``.

    Args:
        model: any module; its layers of :data:`helpers._layers.WEIGHTED_LAYERS` are re-initialised
            in place (fan_in read from the weight's dim 1 and kernel, as torch.nn.init).
        gain: :math:`\sigma_w`, a real number > 0.
        bias: constant for every bias.

    Example:
        >>> net = scale_init_(MLP(64, 10, 32, 2), gain=2 ** 0.5)  # He-style for ReLU
    """
    check_module("model", model)
    check_real("gain", gain, minimum=0.0, strict_minimum=True)
    check_real("bias", bias)
    check_materialised("model", {name: m for name, m in model.named_modules() if isinstance(m, WEIGHTED_LAYERS)})
    for module in model.modules():
        if isinstance(module, WEIGHTED_LAYERS):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, gain / fan_in**0.5)
            if module.bias is not None:
                module.bias.fill_(bias)
    return model


def with_torch_layers(model: nn.Module) -> nn.Module:
    """Swap the course's normalization and dropout layers for PyTorch's own, in place, state included.

    :class:`~helpers.normalization.BatchNorm1d`, :class:`~helpers.normalization.BatchNorm2d`,
    :class:`~helpers.normalization.LayerNorm`, :class:`~helpers.normalization.RMSNorm` and
    :class:`~helpers.regularization.Dropout`
    compute what their ``torch.nn`` namesakes compute (the tests prove it) but in several
    small operations; PyTorch's fused kernels are faster. Each layer is replaced by its
    torch counterpart under the same name, its state_dict loaded strictly, on the same
    device and dtype and in the same training mode, so the network computes the same
    function (and, under the same seed, drops the same units). Use it for long training
    runs once the from-scratch layers have been checked.

    Args:
        model: any module; returned for chaining.

    Example:
        >>> net = with_torch_layers(MLP(8, 2, width=4, depth=1, norm="batch", dropout=0.1))
        >>> type(net.norm1), type(net.drop1)
        (<class 'torch.nn.modules.batchnorm.BatchNorm1d'>, <class 'torch.nn.modules.dropout.Dropout'>)
    """
    check_module("model", model)

    def counterpart(m: nn.Module) -> nn.Module | None:
        if isinstance(m, BatchNorm1d | BatchNorm2d):
            kind = nn.BatchNorm1d if isinstance(m, BatchNorm1d) else nn.BatchNorm2d
            new = kind(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine)
        elif isinstance(m, LayerNorm):
            new = nn.LayerNorm(m.normalized_shape, eps=m.eps, elementwise_affine=m.elementwise_affine,
                               bias=m.bias is not None)
        elif isinstance(m, RMSNorm):
            new = nn.RMSNorm(m.normalized_shape, eps=m.eps, elementwise_affine=m.elementwise_affine)
        elif isinstance(m, Dropout):
            return nn.Dropout(m.p).train(m.training)
        else:
            return None
        state = m.state_dict()
        floats = [t for t in state.values() if t.is_floating_point()]
        if floats:
            new = new.to(device=floats[0].device, dtype=floats[0].dtype)
        new.load_state_dict(state, strict=True)
        return new.train(m.training)

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = counterpart(child)
            if new is not None:
                setattr(parent, name, new)
    return model
