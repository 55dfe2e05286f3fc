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

import torch
from torch import nn

__all__ = ["WEIGHTED_LAYERS", "RECURRENT_PREFIXES", "describe_kinds", "recurrent_weights"]

WEIGHTED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                   nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
RECURRENT_PREFIXES = ("weight_ih", "weight_hh")


def describe_kinds() -> str:
    """The names of the weighted layer kinds, for error messages."""
    return ", ".join(c.__name__ for c in WEIGHTED_LAYERS)


def recurrent_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{parameter name: tensor}`` of a module's own ``weight_ih*``/``weight_hh*`` matrices (empty if none)."""
    return {name: p for name, p in module.named_parameters(recurse=False) if name.startswith(RECURRENT_PREFIXES)}
