"""The one registry of layer kinds whose weights the helpers initialise and watch.

Lowest layer of the package (it imports only torch), so :mod:`helpers.init`,
:mod:`helpers.models` and :mod:`helpers.diagnostics` all read the same tuple and none
imports upward.

* :data:`WEIGHTED_LAYERS`: a weight matrix (or filter bank) ``weight`` and an optional
  ``bias``. A transposed convolution stores its weight as ``(in, out/groups, *kernel)``;
  like ``torch.nn.init`` the helpers read fans from the tensor's own dimensions (dim 1
  is fan_in), so their numbers equal torch's for every kind here. A new kind also needs an
  entry in ``EXAMPLES`` of ``tests/test_layers.py`` (which then checks it against torch, in
  ``scale_init_``, ``lsuv_`` and the monitor). A kind whose trained weight is not its
  ``.weight`` parameter (like :class:`helpers.normalization.WeightNormLinear`, whose weight
  ``g * v / ||v||`` is computed) does not belong here: add it to :mod:`helpers.diagnostics`'
  ``_REPORTED_LAYERS`` and teach :func:`helpers.diagnostics.trained_weight` which parameter to report.
* recurrent layers (``nn.RNN``/``LSTM``/``GRU`` and cells, and any module with
  ``weight_ih*``/``weight_hh*`` parameters, e.g. :mod:`helpers.recurrent`'s cells): their
  input-to-hidden and hidden-to-hidden matrices, watched by the diagnostics.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.parameter import is_lazy

__all__ = ["WEIGHTED_LAYERS", "RECURRENT_PREFIXES", "check_materialised", "describe_kinds", "recurrent_weights"]

WEIGHTED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                   nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
RECURRENT_PREFIXES = ("weight_ih", "weight_hh")


def describe_kinds() -> str:
    """The names of the weighted layer kinds, for error messages."""
    return ", ".join(c.__name__ for c in WEIGHTED_LAYERS)


def recurrent_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{parameter name: tensor}`` of a module's own ``weight_ih*``/``weight_hh*`` matrices (empty if none)."""
    return {name: p for name, p in module.named_parameters(recurse=False) if name.startswith(RECURRENT_PREFIXES)}


def check_materialised(name: str, layers: dict[str, nn.Module]) -> None:
    """Raise ``ValueError`` if a parameter or buffer of one of ``layers`` is still uninitialised (a lazy module).

    A lazy layer (``nn.LazyLinear`` …) learns its shapes on its first forward pass; before that,
    torch refuses any use of its weight. Checking every layer first means a function that changes
    layers one by one fails before it has changed any.

    Args:
        name: the argument's name, used in the message (``"model"``).
        layers: ``{layer name: module}``; each module's own parameters and buffers are checked.

    Example:
        >>> check_materialised("model", {"0": nn.Linear(3, 2), "1": nn.LazyLinear(2)})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: model has a lazy layer whose shapes are not known yet: '1' (LazyLinear: weight, bias); ...
    """
    for layer_name, layer in layers.items():
        tensors = itertools.chain(layer.named_parameters(recurse=False), layer.named_buffers(recurse=False))
        lazy = [tensor_name for tensor_name, tensor in tensors if is_lazy(tensor)]
        if lazy:
            raise ValueError(f"{name} has a lazy layer whose shapes are not known yet: {layer_name!r} "
                             f"({type(layer).__name__}: {', '.join(lazy)}); run one batch through the model "
                             "before initialising it")
