"""Many tensors laid end to end in one buffer, each a contiguous view of it.

An elementwise operation over all of them is then one call over the buffer instead of one
per tensor. :func:`helpers.ensemble.fit_ensemble` keeps its stacked parameters, their
gradients and the optimizer's state this way: on 2 CPU cores the optimizer's part of a step
of 32 MLPs (20 layers of width 64, 42 tensors) took 1.7 ms instead of 2.7 ms, caches cold
(the same bytes, 40 fewer calls). The numbers are the same: each entry meets the same
arithmetic either way.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Layout"]


class Layout:
    """Where each of some tensors (all of one dtype and device) sits in one flat buffer, in order."""

    def __init__(self, like: list[torch.Tensor]):
        self.shapes = [t.shape for t in like]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.dtype, self.device = like[0].dtype, like[0].device
        self.total = sum(self.sizes)

    @staticmethod
    def fits(tensors: list[torch.Tensor]) -> bool:
        """Whether the tensors can share one buffer: at least one, one dtype, one device."""
        return bool(tensors) and len({(t.dtype, t.device) for t in tensors}) == 1

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The tensors' views into ``flat``, in order."""
        return [piece.view(shape) for piece, shape in zip(flat.split(self.sizes), self.shapes)]

    def zeros(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A new buffer of zeros, and its views."""
        flat = torch.zeros(self.total, dtype=self.dtype, device=self.device)
        return flat, self.views(flat)

    def empty(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A new buffer, uninitialised, and its views."""
        flat = torch.empty(self.total, dtype=self.dtype, device=self.device)
        return flat, self.views(flat)

    def gather(self, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A new buffer holding a copy of ``tensors``, and its views."""
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        return flat, self.views(flat)
