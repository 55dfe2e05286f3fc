"""Multi-tensor operations: the one place the helpers call torch's private functions.

``torch._foreach_*`` applies one operation to a whole list of tensors in one call (one
kernel launch per group on a GPU, no Python loop), and
``torch.utils._foreach_utils._group_tensors_by_device_and_dtype`` groups tensors in the
order ``torch.nn.utils.clip_grad_norm_`` sums them. Both are private: a torch release may
rename or drop them. Every use in the helpers goes through a wrapper here, which calls the
private function (so the numbers are torch's own, bit for bit) and falls back to a plain
loop of public operations when the function is missing. A pure function (a norm, a grouping)
also falls back when torch's refuses its input; an in-place one does not retry: torch may
have changed some tensors before it failed, and a second pass would change them twice, so
torch's error is raised as it is.
"""

from __future__ import annotations

import math

import torch

try:
    from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype
except ImportError:  # pragma: no cover - a torch without the private helper
    _group_tensors_by_device_and_dtype = None
try:
    from torch.utils._foreach_utils import _device_has_foreach_support
except ImportError:  # pragma: no cover - a torch without the private helper
    _device_has_foreach_support = None

__all__ = ["HUGE", "TINY", "by_device_and_dtype", "copy_", "device_dtype_groups", "exact_norms", "fast_norms",
           "foreach_norms", "foreach_supported", "graph_is_observed", "mul_", "norms", "refine", "sub_",
           "uses_foreach"]

TINY = 1e-12  # below this a float32 norm may have lost entries whose squares underflowed
# above this a float32 norm's squares came within a few orders of magnitude of float32's largest number
# (3.4e38), where they overflow to inf; a float16 norm above 65504 is inf itself
HUGE = 1e18
# what a private function raises when it is missing (AttributeError) or refuses an input
_REFUSED = (AttributeError, TypeError, ValueError, RuntimeError)


def copy_(destinations: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """``destinations[i].copy_(sources[i])`` for every ``i``, in one multi-tensor call."""
    _pairwise_("_foreach_copy_", torch.Tensor.copy_, destinations, sources)


def sub_(tensors: list[torch.Tensor], others: list[torch.Tensor]) -> None:
    """``tensors[i].sub_(others[i])`` for every ``i``, in one multi-tensor call."""
    _pairwise_("_foreach_sub_", torch.Tensor.sub_, tensors, others)


def mul_(tensors: list[torch.Tensor], factors: list[torch.Tensor]) -> None:
    """``tensors[i].mul_(factors[i])`` for every ``i`` (a factor broadcasts), in one multi-tensor call."""
    _pairwise_("_foreach_mul_", torch.Tensor.mul_, tensors, factors)


def _pairwise_(private: str, each, tensors: list[torch.Tensor], others: list[torch.Tensor]) -> None:
    """``torch.<private>(tensors, others)``; where torch has no such function, ``each(tensors[i], others[i])``."""
    function = getattr(torch, private, None)
    if function is not None:
        function(tensors, others)
        return
    if len(tensors) != len(others):     # checked before the first change, as torch does
        raise ValueError(f"{private[1:]}: the two lists must have the same length, got {len(tensors)} and "
                         f"{len(others)} tensors")
    for tensor, other in zip(tensors, others):
        each(tensor, other)


_GLOBAL_MODULE_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                        "_global_backward_pre_hooks")


def graph_is_observed() -> bool:
    """Whether something is set that would see or change autograd's graph as it is built.

    True while saved-tensor hooks (``torch.autograd.graph.saved_tensors_hooks``), a
    ``TorchFunctionMode`` or a global module hook (``register_module_forward_hook`` …) are
    active: torch keeps all three in private state. Where that state cannot be read, True.
    """
    from torch.nn.modules import module

    try:
        return (torch._C._autograd._top_saved_tensors_default_hooks(False) is not None
                or torch._C._is_torch_function_mode_enabled()
                or any(getattr(module, name) for name in _GLOBAL_MODULE_HOOKS))
    except _REFUSED:
        return True


def by_device_and_dtype(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors grouped by (device, dtype), the groups in the order torch's clipping sums them.

    The order of the groups changes the rounding of a total norm; torch's own grouping (a
    hash map) makes a total equal torch's bit for bit. The fallback keeps the groups in order
    of first appearance.
    """
    return [t for group in device_dtype_groups(tensors) for t in group]


def device_dtype_groups(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """The groups of :func:`by_device_and_dtype`, one list per (device, dtype).

    Example:
        >>> sorted(len(g) for g in device_dtype_groups([torch.ones(1), torch.ones(2).double(), torch.ones(3)]))
        [1, 2]
    """
    if not tensors:
        return []
    try:
        grouped = _group_tensors_by_device_and_dtype([tensors])
        return [list(group) for (group,), _ in grouped.values()]
    except _REFUSED:
        groups: dict[tuple, list[torch.Tensor]] = {}
        for t in tensors:
            groups.setdefault((t.device, t.dtype), []).append(t)
        return list(groups.values())


_FOREACH_DEVICES = ("cpu", "cuda", "xpu", "mtia")  # the fallback's list: torch's as of 2.13


def foreach_supported(device: torch.device) -> bool:
    """Whether torch has multi-tensor (``foreach``) kernels for ``device``, as ``torch.nn.utils``' clipping asks.

    Example:
        >>> foreach_supported(torch.device("cpu")), foreach_supported(torch.device("meta"))
        (True, False)
    """
    try:
        return bool(_device_has_foreach_support(device))
    except _REFUSED:
        return device.type in _FOREACH_DEVICES or device.type == torch._C._get_privateuse1_backend_name()


def uses_foreach(tensors: list[torch.Tensor], device: torch.device, foreach: bool | None) -> bool:
    """Whether ``torch.nn.utils``' clipping takes its multi-tensor path for one (device, dtype) group.

    ``foreach=None``: where the device has such kernels and every tensor is a plain
    ``torch.Tensor`` (no subclass); ``True``/``False``: as asked (the caller refuses ``True`` on a
    device without kernels, as torch does).
    """
    if foreach is None:
        return foreach_supported(device) and all(type(t) is torch.Tensor for t in tensors)
    return foreach


def foreach_norms(tensors: list[torch.Tensor], p: float) -> list[torch.Tensor]:
    """The ``p``-norm of each tensor in its own dtype by ``torch._foreach_norm`` (torch's numbers); a loop of
    ``torch.linalg.vector_norm`` where that function is missing or refuses the input.

    Example:
        >>> foreach_norms([torch.tensor([3.0, 4.0]), torch.tensor([-2.0])], 2.0)
        [tensor(5.), tensor(2.)]
    """
    if not tensors:
        return []
    try:
        return list(torch._foreach_norm(tensors, p))
    except _REFUSED:
        return [torch.linalg.vector_norm(t, p) for t in tensors]


def fast_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of each tensor in the tensors' own precision, one multi-tensor call (no host sync).

    Float32 squares underflow for entries below ~1e-19: check values under :data:`TINY`
    with :func:`refine` once they are on the host.
    """
    if not tensors:
        return torch.zeros(0)
    try:
        result = torch._foreach_norm(tensors, 2)
    except _REFUSED:
        result = [torch.linalg.vector_norm(t) for t in tensors]
    return torch.stack(list(result))


def refine(values: list[float], tensors) -> list[float]:
    """``values`` (from :func:`fast_norms`) with the doubtful ones recomputed by :func:`exact_norms`.

    Doubtful: below :data:`TINY` (squares may have underflowed), above :data:`HUGE` or not
    finite (squares may have overflowed: float32 gradients of 1e19, float16 norms above 65504).
    Only those entries are recomputed, so the common case costs one comparison per value.

    Args:
        values: the norms as Python floats, one per tensor.
        tensors: the tensors, or a function giving the ``i``-th tensor (called for doubtful entries only).
    """
    doubtful = [i for i, v in enumerate(values) if not TINY <= v <= HUGE]  # NaN fails both comparisons
    if not doubtful:
        return values
    tensor = tensors if callable(tensors) else tensors.__getitem__
    values = list(values)
    for i, v in zip(doubtful, exact_norms([tensor(i) for i in doubtful])):
        values[i] = v
    return values


def exact_norms(tensors: list[torch.Tensor]) -> list[float]:
    """The 2-norm of each tensor as Python floats, neither underflowing nor overflowing where the norm is finite.

    :func:`norms` (squares summed in float64), then, for a result that is infinite although the
    tensor's entries are finite (float64 entries of 1e200 have squares beyond float64's range),
    the norm again after dividing by the largest absolute entry. A complex tensor's norm is that of
    its real and imaginary parts together (``torch.linalg.vector_norm``'s, without its float32 rounding).

    Example:
        >>> exact_norms([torch.full((4,), 1e200, dtype=torch.float64), torch.tensor([3.0, 4.0])])
        [2e+200, 5.0]
    """
    tensors = [_real_view(t) for t in tensors]
    values = norms(tensors).tolist()
    for i, v in enumerate(values):
        if v == math.inf:
            values[i] = _scaled_norm(tensors[i], _wide_dtype(tensors[i].device)).item()
    return values


def _real_view(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as real numbers (its 2-norm unchanged): torch refuses a real ``dtype`` for a complex norm."""
    return torch.view_as_real(t.resolve_conj()) if t.is_complex() else t


def _wide_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    r"""The 2-norm of each tensor, as one 1-D tensor, computed without underflow.

    Squares of float32 entries below :math:`\approx 10^{-23}` underflow to 0, so a norm
    summed in float32 would report 0 for gradients of :math:`10^{-43} \ldots 10^{-24}`. The sums
    are taken in float64 (float32 on MPS, which then rescales by the largest entry); a complex
    tensor's over its real and imaginary parts.

    Example:
        >>> norms([torch.full((4,), 1e-30), torch.tensor([3.0, 4.0])])
        tensor([2.0000e-30, 5.0000e+00], dtype=torch.float64)
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    tensors = [_real_view(t) for t in tensors]
    device = tensors[0].device
    dtype = _wide_dtype(device)
    if dtype != torch.float64:
        return torch.stack([_scaled_norm(t, dtype) for t in tensors])
    try:
        result = torch._foreach_norm(tensors, 2, dtype=dtype)
    except _REFUSED:
        result = [torch.linalg.vector_norm(t, dtype=dtype) for t in tensors]
    return torch.stack(list(result))


def _scaled_norm(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    t = t.to(dtype)
    if t.numel() == 0:
        return t.new_zeros(())
    peak = t.abs().amax()
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return torch.where(torch.isfinite(peak), torch.linalg.vector_norm(t / safe) * safe, peak)
