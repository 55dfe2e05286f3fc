"""Regularization from scratch: L1 and L2 penalties, inverted dropout.

Regularization fights *overfitting*; it is not a remedy for vanishing gradients
(notebook 08 measures this).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from helpers._checks import check_real

__all__ = ["l1_penalty", "l2_penalty", "Dropout"]


def _tensors(parameters) -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    if isinstance(parameters, nn.Module):
        raise TypeError("parameters must be tensors (e.g. model.parameters() or a list of weights), "
                        "got a Module; pass model.parameters()")
    if not isinstance(parameters, Iterable):
        raise TypeError(f"parameters must be a tensor or an iterable of tensors, got {type(parameters).__name__}")
    tensors = list(parameters)
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"parameters[{i}] must be a tensor, got {type(t).__name__}")
    return tensors


def l1_penalty(parameters, coefficient: float = 1.0) -> torch.Tensor:
    r"""The L1 penalty :math:`\lambda \sum_p \sum_i |p_i|`, to add to a loss.

    Its (sub)gradient :math:`\lambda\,\mathrm{sign}(p)` has the same size for every
    non-zero weight, so small weights are pushed all the way to zero: L1 makes
    weights **sparse**.

    Args:
        parameters: a tensor or an iterable of tensors (e.g. only the weights of a model).
        coefficient: :math:`\lambda \ge 0`.

    Returns:
        a scalar tensor (0 for an empty iterable) through which gradients flow.

    Example:
        >>> l1_penalty([torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])], coefficient=0.1)
        tensor(0.6000)
    """
    coefficient = check_real("coefficient", coefficient, minimum=0.0)
    tensors = _tensors(parameters)
    if not tensors:
        return torch.zeros(())
    return coefficient * torch.stack([t.abs().sum() for t in tensors]).sum()


def l2_penalty(parameters, coefficient: float = 1.0) -> torch.Tensor:
    r"""The L2 penalty :math:`\frac\lambda2 \sum_p \sum_i p_i^2`, to add to a loss.

    With the :math:`\tfrac12` its gradient is :math:`\lambda p`: plain SGD on
    ``loss + l2_penalty(params, λ)`` takes exactly the steps of
    ``torch.optim.SGD(..., weight_decay=λ)`` on ``loss``. (Keras' ``l2(λ)`` and the
    ``λ·Σw²`` of many tutorials have no ½: their λ is half of this one.) The pull towards zero
    is proportional to the weight, so L2 **shrinks** weights without zeroing them.

    Args:
        parameters: a tensor or an iterable of tensors.
        coefficient: :math:`\lambda \ge 0`.

    Example:
        >>> l2_penalty(torch.tensor([3.0, 4.0]), coefficient=0.1)
        tensor(1.2500)
    """
    coefficient = check_real("coefficient", coefficient, minimum=0.0)
    tensors = _tensors(parameters)
    if not tensors:
        return torch.zeros(())
    return 0.5 * coefficient * torch.stack([t.square().sum() for t in tensors]).sum()


class Dropout(nn.Module):
    r"""Inverted dropout: zero each element with probability ``p``, scale the rest by :math:`1/(1-p)`.

    In training mode, with a mask :math:`m_i \sim \mathrm{Bernoulli}(1-p)` drawn anew
    at every call,

    .. math::
        y_i = \frac{m_i\, x_i}{1 - p}, \qquad \mathbb E[y_i] = x_i

    so the expected value of every unit is unchanged and evaluation mode is simply the
    identity (no rescaling at test time). ``p = 1`` drops everything (output 0). The
    mask is drawn from PyTorch's global generator exactly as :class:`torch.nn.Dropout`
    draws it on the CPU, so under the same seed both drop the same elements there.

    Args:
        p: probability of dropping an element, in [0, 1].

    Example:
        >>> drop = Dropout(0.5)
        >>> _ = torch.manual_seed(0)
        >>> drop(torch.ones(8))
        tensor([0., 0., 2., 0., 0., 0., 2., 2.])
        >>> drop.eval()(torch.ones(3))
        tensor([1., 1., 1.])
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_real("p", p, minimum=0.0, maximum=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * torch.zeros_like(x)   # keeps the graph: the gradient is 0, not missing
        keep = 1.0 - self.p
        mask = torch.empty_like(x).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"
