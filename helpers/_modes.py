"""A model's training/evaluation modes, module by module, kept and put back.

``model.train(was_training)`` after an evaluation sets *every* sub-module to one mode, so a
layer the user had put in its own mode (a BatchNorm frozen in eval mode inside a model being
fine-tuned) would come back changed. :func:`kept_modes` records each module's ``training`` flag
and restores each one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["kept_modes"]


@contextlib.contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, change the modes of ``model`` freely; on leaving, whatever happened, every module
    of it is back in its own mode.

    Modules are restored from the root down (:meth:`~torch.nn.Module.modules` order) with their own
    ``train(mode)``, called only where the mode differs, so an override of ``train`` still runs.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        >>> _ = net[1].eval()
        >>> with kept_modes(net):
        ...     _ = net.eval()
        >>> net.training, net[1].training
        (True, False)
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:  # a parent before its children: its train() resets them, they follow
            if module.training != training:
                module.train(training)
