"""Multi-tensor reductions, wrapped in one place.

``torch._foreach_norm`` reduces a list of tensors in one call (one kernel launch per
group on a GPU, no Python loop); it is a private torch function, so every use in the
helpers goes through :func:`norms`, which falls back to the public
``torch.linalg.vector_norm`` when it is missing.
"""

from __future__ import annotations

import torch

TINY = 1e-12  # below this a float32 norm may have lost entries whose squares underflowed


def fast_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of each tensor in the tensors' own precision, one multi-tensor call (no host sync).

    Float32 squares underflow for entries below ~1e-19: check values under :data:`TINY`
    with :func:`refine` once they are on the host.
    """
    if not tensors:
        return torch.zeros(0)
    try:
        result = torch._foreach_norm(tensors, 2)
    except (AttributeError, TypeError, RuntimeError):
        result = [torch.linalg.vector_norm(t) for t in tensors]
    return torch.stack(list(result))


def refine(values: list[float], tensors: list[torch.Tensor]) -> list[float]:
    """``values`` (from :func:`fast_norms`) with those below :data:`TINY` recomputed by :func:`norms` (no underflow)."""
    tiny = [i for i, v in enumerate(values) if v < TINY]
    if not tiny:
        return values
    exact = norms([tensors[i] for i in tiny]).tolist()
    values = list(values)
    for i, v in zip(tiny, exact):
        values[i] = v
    return values


def _wide_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    r"""The 2-norm of each tensor, as one 1-D tensor, computed without underflow.

    Squares of float32 entries below :math:`\approx 10^{-23}` underflow to 0, so a norm
    summed in float32 would report 0 for gradients of :math:`10^{-43} \ldots 10^{-24}`. The sums
    are taken in float64 (float32 on MPS, which then rescales by the largest entry).

    Example:
        >>> norms([torch.full((4,), 1e-30), torch.tensor([3.0, 4.0])])
        tensor([2.0000e-30, 5.0000e+00], dtype=torch.float64)
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    device = tensors[0].device
    dtype = _wide_dtype(device)
    if dtype != torch.float64:
        return torch.stack([_scaled_norm(t, dtype) for t in tensors])
    try:
        result = torch._foreach_norm(tensors, 2, dtype=dtype)
    except (AttributeError, TypeError, RuntimeError):  # no multi-tensor norm in this torch
        result = [torch.linalg.vector_norm(t, dtype=dtype) for t in tensors]
    return torch.stack(list(result))


def _scaled_norm(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    t = t.to(dtype)
    if t.numel() == 0:
        return t.new_zeros(())
    peak = t.abs().amax()
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return torch.where(torch.isfinite(peak), torch.linalg.vector_norm(t / safe) * safe, peak)
