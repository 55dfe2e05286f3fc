r"""Gradient clipping from scratch: by value, by global norm, and unit-wise adaptive.

Each function modifies the gradients in place, between ``loss.backward()`` and
``optimizer.step()``, and can be passed to :func:`helpers.training.fit` as ``clip``,
e.g. ``clip=functools.partial(clip_grad_norm_, max_norm=1.0)``.

Norm clipping is split into three steps so that the global norm can also be formed
over parameters that live in several processes (sharded training): per-tensor norms
(:func:`grad_norms`), one total from them (:func:`total_norm_from_norms`), and the
rescaling (:func:`clip_grads_with_norm_`). Because

.. math:: \lVert g \rVert_p = \Big(\sum_k \lVert g_k \rVert_p^p\Big)^{1/p}, \qquad
          \lVert g \rVert_\infty = \max_k \lVert g_k \rVert_\infty ,

the norm of all gradients together only needs the norms of the pieces, wherever they are.
"""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Iterable
from numbers import Real

import torch

from helpers._checks import check_real
from helpers._fused import device_dtype_groups, foreach_norms, foreach_supported, uses_foreach

__all__ = ["grad_norms", "total_norm_from_norms", "get_total_norm", "clip_grads_with_norm_",
           "clip_grad_norm_", "clip_grad_value_", "unitwise_norm", "adaptive_clip_grad_",
           "distributed_clip_grad_norm_"]

_EPS = 1e-6  # added to the total norm before dividing, as torch.nn.utils does


def _scalar(name: str, value, *, strings: bool = False):
    """``value``, with a one-element real tensor (and, if ``strings``, a numeric string) as a float.

    torch's clipping calls ``float()`` on its numbers, so it takes ``torch.tensor(1.0)`` (and
    ``norm_type="inf"``, which it documents) as well as ``1.0``; anything else is returned as it is.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} as a tensor must hold one real number, got a tensor of shape "
                            f"{tuple(value.shape)} and dtype {value.dtype}")
        return float(value)
    if strings and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise TypeError(f"{name} must be a number; as a string it must spell one, such as '2' or 'inf', "
                            f"got {value!r}") from None
    return value


def _check_max_norm(max_norm) -> float:
    """A real max_norm >= 0 (or a one-element tensor); +inf is accepted, as torch does (it leaves finite-norm
    gradients as they are; an infinite norm gives inf/inf = NaN there too)."""
    return _check_bound("max_norm", max_norm)


def _check_bound(name: str, value) -> float:
    """A real number (or one-element tensor) >= 0 or +inf, as a float."""
    value = _scalar(name, value)
    if isinstance(value, Real) and not isinstance(value, bool) and value == math.inf:
        return math.inf
    return check_real(name, value, minimum=0.0)


def _check_foreach(foreach, grads: list[torch.Tensor]) -> bool | None:
    """``foreach`` if it is None, True or False; True only where every gradient's device has foreach kernels."""
    if foreach is not None and not isinstance(foreach, bool):
        raise TypeError(f"foreach must be None, True or False, got {type(foreach).__name__} ({foreach!r})")
    unsupported = sorted({g.device.type for g in grads if not foreach_supported(g.device)})
    if foreach and unsupported:
        raise ValueError(f"foreach=True needs torch's foreach kernels, which {unsupported[0]} tensors lack "
                         "(torch raises too); pass foreach=None or False")
    return foreach

def _as_list(parameters, name: str = "parameters") -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    if not isinstance(parameters, Iterable) or isinstance(parameters, str | bytes):
        raise TypeError(f"{name} must be a tensor or an iterable of tensors, got {type(parameters).__name__}")
    items = list(parameters)
    bad = [type(p).__name__ for p in items if not isinstance(p, torch.Tensor)]
    if bad:
        raise TypeError(f"{name} must contain only tensors, got items of type {sorted(set(bad))}")
    return items


def _check_norm_type(norm_type) -> float:
    """A real number > 0 or inf; torch's spellings too: ``"inf"``, ``"2"``, a one-element tensor."""
    norm_type = _scalar("norm_type", norm_type, strings=True)
    if isinstance(norm_type, bool) or not isinstance(norm_type, Real):
        raise TypeError(f"norm_type must be a positive real number or inf, got {type(norm_type).__name__} "
                        f"({norm_type!r})")
    value = float(norm_type)
    if math.isnan(value) or value <= 0:
        raise ValueError(f"norm_type must be a positive real number or inf, got {norm_type!r}")
    return value


def grad_norms(grads: Iterable[torch.Tensor], norm_type: float = 2.0) -> list[torch.Tensor]:
    r"""The :math:`p`-norm of each tensor, each taken over all its entries.

    A tensor with no entries has norm 0 for every :math:`p` (torch's own ``inf`` norm refuses
    an empty tensor, so ``torch.nn.utils.clip_grad_norm_`` fails on one; this does not).

    Args:
        grads: tensors (typically the ``.grad`` of each parameter).
        norm_type: :math:`p > 0`, or ``inf`` for the largest absolute entry.

    Example:
        >>> [float(n) for n in grad_norms([torch.tensor([3.0, 4.0]), torch.tensor([-2.0])])]
        [5.0, 2.0]
    """
    return _grad_norms(_as_list(grads, "grads"), _check_norm_type(norm_type))


def _grad_norms(grads: list[torch.Tensor], p: float) -> list[torch.Tensor]:
    return [torch.linalg.vector_norm(g, p) if g.numel() else g.new_zeros(()) for g in grads]


def _group_norms(group: list[torch.Tensor], p: float, foreach: bool | None) -> list[torch.Tensor]:
    """The norms of one (device, dtype) group, by the kernel torch's clipping uses for it with ``foreach``."""
    if not uses_foreach(group, group[0].device, foreach):
        return _grad_norms(group, p)
    filled = iter(foreach_norms([g for g in group if g.numel()], p))   # an empty tensor has norm 0 (see grad_norms)
    return [next(filled) if g.numel() else g.new_zeros(()) for g in group]


def total_norm_from_norms(norms: Iterable[torch.Tensor], norm_type: float = 2.0) -> torch.Tensor:
    r"""Combine per-tensor :math:`p`-norms into the :math:`p`-norm of all the tensors together.

    .. math:: \lVert g \rVert_p = \Big(\sum_k n_k^p\Big)^{1/p}, \qquad \lVert g \rVert_\infty = \max_k n_k .

    This is the one place a distributed version needs to change: each process computes
    the norms of its own pieces, and the processes combine them (gather the norms, or
    all-reduce :math:`\sum_k n_k^p`, or the max for ``inf``) before the final root.

    Args:
        norms: scalar tensors :math:`n_k = \lVert g_k \rVert_p`.
        norm_type: the same :math:`p` the norms were taken with.

    Returns:
        A scalar tensor; ``tensor(0.)`` when ``norms`` is empty.

    Example:
        >>> float(total_norm_from_norms([torch.tensor(3.0), torch.tensor(4.0)]))
        5.0
    """
    return _total_norm_from_norms(_as_list(norms, "norms"), _check_norm_type(norm_type))


def _total_norm_from_norms(norms: list[torch.Tensor], p: float) -> torch.Tensor:
    if not norms:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(torch.stack([n.reshape(()) for n in norms]), p)


def get_total_norm(grads: Iterable[torch.Tensor], norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> torch.Tensor:
    r"""The :math:`p`-norm of all ``grads`` viewed as one long vector (``tensor(0.)`` if there are none).

    Args:
        grads: tensors; ``None`` entries are skipped.
        norm_type: :math:`p > 0` or ``inf``.
        error_if_nonfinite: raise ``RuntimeError`` if the total norm is NaN or infinite.
        foreach: as ``torch.nn.utils.get_total_norm``'s: None (torch's multi-tensor kernels where the
            device has them), True or False; the norms are then taken by the same kernels as torch's.

    Example:
        >>> float(get_total_norm([torch.tensor([3.0]), None, torch.tensor([4.0])]))
        5.0
    """
    p = _check_norm_type(norm_type)
    if not isinstance(grads, torch.Tensor) and isinstance(grads, Iterable) and not isinstance(grads, str | bytes):
        grads = [g for g in grads if g is not None]
    grads = _as_list(grads, "grads")
    return _get_total_norm(grads, p, bool(error_if_nonfinite), _check_foreach(foreach, grads))


def _get_total_norm(grads: list[torch.Tensor], p: float, error_if_nonfinite: bool,
                    foreach: bool | None = None) -> torch.Tensor:
    # grouped as torch groups them: the order of the groups changes the rounding of the total
    norms = [n for group in device_dtype_groups(grads) for n in _group_norms(group, p, foreach)]
    total = _total_norm_from_norms(norms, p)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(f"The total norm of order {p} of the gradients is non-finite ({float(total)}), "
                           "so it cannot be clipped. Pass error_if_nonfinite=False to clip anyway "
                           "(the gradients then become NaN or 0).")
    return total


@torch.no_grad()
def clip_grads_with_norm_(parameters, max_norm: float, total_norm: torch.Tensor, foreach: bool | None = None) -> None:
    r"""Scale every gradient by :math:`\min\big(1, \tfrac{\text{max\_norm}}{\text{total\_norm} + 10^{-6}}\big)`.

    The scale is applied even when it is 1, without a branch, so that no value has to be
    read back from an accelerator.

    Args:
        parameters: a tensor or tensors whose ``.grad`` is scaled (``None`` grads skipped).
        max_norm: the largest allowed total norm, >= 0 (a number or a one-element tensor).
        total_norm: the norm of all gradients together, e.g. from :func:`get_total_norm`.
        foreach: accepted as ``torch.nn.utils.clip_grads_with_norm_`` accepts it (None, True or False);
            the numbers do not depend on it.

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([6.0, 8.0])
        >>> clip_grads_with_norm_([w], 5.0, torch.tensor(10.0)); w.grad
        tensor([3.0000, 4.0000])
    """
    params = _as_list(parameters)
    max_norm = _check_max_norm(max_norm)
    if not isinstance(total_norm, torch.Tensor) or total_norm.numel() != 1:
        got = f"shape {tuple(total_norm.shape)}" if isinstance(total_norm, torch.Tensor) else type(total_norm).__name__
        raise TypeError(f"total_norm must be a tensor with one element (e.g. from get_total_norm), got {got}")
    _check_foreach(foreach, [p.grad for p in params if p.grad is not None])
    _clip_grads_with_norm(params, max_norm, total_norm)


@torch.no_grad()
def _clip_grads_with_norm(params: list[torch.Tensor], max_norm: float, total_norm: torch.Tensor) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    scale = torch.clamp(max_norm / (total_norm + _EPS), max=1.0)
    for g in grads:
        # the coefficient keeps its own dtype (a 0-d tensor does not promote g): a bfloat16
        # gradient is multiplied in float32 and rounded once, as torch does
        g.mul_(scale.to(device=g.device))


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> torch.Tensor:
    r"""Rescale all gradients together so that their global norm is at most ``max_norm``.

    With :math:`g` all gradients stacked into one vector,

    .. math::
        g \leftarrow g \cdot \min\Big(1, \frac{c}{\lVert g \rVert_p + 10^{-6}}\Big),

    so the direction of the full gradient is kept and only its length is capped at
    :math:`c`. Equals :func:`torch.nn.utils.clip_grad_norm_`.

    Args:
        parameters: a tensor or an iterable of tensors; parameters whose ``.grad`` is
            ``None`` are skipped.
        max_norm: :math:`c`, the largest allowed norm, >= 0 (``inf``: no clipping while the norm is
            finite; as in torch, an infinite norm, even of finite entries, gives :math:`\infty/\infty` = NaN
            gradients). As in torch, a one-element tensor is taken for its number.
        norm_type: :math:`p > 0`, or ``float("inf")`` for the largest absolute entry. As in
            torch, a string (``"inf"``, ``"2"``) or a one-element tensor is taken for its number.
        error_if_nonfinite: if True, raise ``RuntimeError`` when the total norm is NaN or
            infinite, before any gradient is touched. If False such a norm turns the
            gradients into NaN (or 0 for the finite entries when it is ``inf``).
        foreach: as torch's: None (torch's multi-tensor kernels where the device has them),
            True (refused on a device without them) or False. The norms are taken by the same
            kernels as torch's with the same ``foreach``, so the numbers are torch's.

    Returns:
        The total norm **before** clipping, a scalar tensor (``tensor(0.)`` when no
        parameter has a gradient). Gradients of several dtypes are scaled by one coefficient
        in the dtype of the total norm (each rounded once), as torch does. An empty
        generator gives a ``UserWarning`` that no clipping will occur, as torch's.

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([30.0, 40.0])
        >>> float(clip_grad_norm_([w], max_norm=5.0)), torch.allclose(w.grad, torch.tensor([3.0, 4.0]))
        (50.0, True)
    """
    is_generator = isinstance(parameters, types.GeneratorType)
    params = _as_list(parameters)
    max_norm = _check_max_norm(max_norm)
    p = _check_norm_type(norm_type)
    grads = [q.grad for q in params if q.grad is not None]
    foreach = _check_foreach(foreach, grads)
    if is_generator and not params:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=2)
    total = _get_total_norm(grads, p, bool(error_if_nonfinite), foreach)
    _clip_grads_with_norm(params, max_norm, total)
    return total


@torch.no_grad()
def clip_grad_value_(parameters, clip_value: float, foreach: bool | None = None) -> None:
    r"""Clamp every gradient entry into :math:`[-v, v]`.

    .. math:: g_i \leftarrow \min\big(\max(g_i, -v), v\big)

    (The lower bound is :math:`-v`; :math:`\min(\max(g, v), v)` would always give :math:`v`.)
    Unlike norm clipping this changes the gradient's direction whenever some entries are
    clamped and others are not. NaN entries stay NaN. Equals
    :func:`torch.nn.utils.clip_grad_value_`.

    Args:
        parameters: a tensor or an iterable of tensors; ``None`` grads are skipped.
        clip_value: :math:`v \ge 0` (a number or a one-element tensor); ``inf`` leaves the gradients
            as they are. It must fit every gradient's dtype (float16: at most 65504), as torch requires.
        foreach: as torch's: None, True (refused on a device without multi-tensor kernels) or False;
            the numbers do not depend on it.

    Raises:
        ValueError: ``clip_value`` is negative, NaN or beyond a gradient's dtype, where torch would
            clamp some gradients and then fail on that one; here nothing is changed.
        TypeError: a complex gradient (torch cannot clamp those either).

    Example:
        >>> w = torch.zeros(3, requires_grad=True); w.grad = torch.tensor([-5.0, 0.5, 2.0])
        >>> clip_grad_value_(w, 1.0); w.grad
        tensor([-1.0000,  0.5000,  1.0000])
    """
    params = _as_list(parameters)
    clip_value = _check_bound("clip_value", clip_value)
    grads = [p.grad for p in params if p.grad is not None]
    _check_foreach(foreach, grads)
    _check_fits_dtypes(clip_value, grads)
    for g in grads:
        g.clamp_(min=-clip_value, max=clip_value)


def _check_fits_dtypes(clip_value: float, grads: list[torch.Tensor]) -> None:
    """Raise, before any gradient is clamped, where torch's clamp would refuse one of ``grads``."""
    for dtype in dict.fromkeys(g.dtype for g in grads):
        if dtype.is_complex:
            raise TypeError(f"clip_grad_value_ cannot clamp a gradient of dtype {dtype} (complex numbers have no "
                            "order; torch refuses it too): clip by norm instead")
        largest = torch.finfo(dtype).max if dtype.is_floating_point else math.inf
        if math.isfinite(clip_value) and clip_value > largest:
            raise ValueError(f"clip_value must fit every gradient's dtype, got {clip_value!r}, beyond {dtype}'s "
                             f"largest number {largest!r} (torch cannot convert it either); pass a clip_value "
                             f"<= {largest!r}, or inf for no clipping")


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    r"""Norm of each output unit: over all dimensions but the first, broadcastable to ``x``.

    For a Linear weight (out, in) that is the norm of each row; for a Conv weight
    (out, in, kh, kw) the norm of each output channel's filter. Tensors with at most
    one dimension (biases, gains) count as a single unit.

    Example:
        >>> unitwise_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]])).flatten()
        tensor([5., 1.])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if x.dim() <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad_(parameters, clipping: float = 0.01, eps: float = 1e-3) -> torch.Tensor:
    r"""Unit-wise adaptive gradient clipping (AGC, Brock et al. 2021).

    For each unit :math:`i` of each parameter (a row of a Linear weight, an output
    channel of a Conv weight, a whole bias) with weights :math:`W_i` and gradient
    :math:`G_i`:

    .. math::
        G_i \leftarrow \begin{cases}
        \lambda \dfrac{\max(\lVert W_i \rVert, \epsilon)}{\lVert G_i \rVert}\, G_i
            & \text{if } \dfrac{\lVert G_i \rVert}{\max(\lVert W_i \rVert, \epsilon)} > \lambda \\
        G_i & \text{otherwise}
        \end{cases}

    The threshold is relative: a step may change each unit's weights by at most a
    fraction :math:`\lambda` (times the learning rate), whatever the scale of the layer.
    The paper leaves the final classifier layer unclipped; pass only the parameters to clip.

    Args:
        parameters: a tensor or an iterable of tensors; ``None`` grads are skipped.
        clipping: :math:`\lambda > 0`.
        eps: :math:`\epsilon > 0`, keeps zero-initialised weights from freezing.

    Returns:
        The fraction of units that were clipped (a scalar tensor; 0 if there are none).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
        >>> w.grad = torch.tensor([[0.0, 1.0], [0.001, 0.0]])
        >>> float(adaptive_clip_grad_([w], clipping=0.1)), w.grad
        (0.5, tensor([[0.0000, 0.5000],
                [0.0010, 0.0000]]))
    """
    params = _as_list(parameters)
    clipping = check_real("clipping", clipping, minimum=0.0, strict_minimum=True)
    eps = check_real("eps", eps, minimum=0.0, strict_minimum=True)
    clipped, units = [], 0
    for p in params:
        if p.grad is None:
            continue
        max_norm = unitwise_norm(p.detach()).clamp(min=eps) * clipping
        g_norm = unitwise_norm(p.grad)
        trigger = g_norm > max_norm
        scale = torch.where(trigger, max_norm / g_norm.clamp(min=1e-6), torch.ones_like(g_norm))
        p.grad.mul_(scale)
        clipped.append(trigger.sum())
        units += trigger.numel()
    if not units:
        return torch.tensor(0.0)
    return torch.stack(clipped).sum() / units


def distributed_clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                                error_if_nonfinite: bool = False, process_group=None) -> torch.Tensor:
    r"""Norm clipping when the parameters are sharded over the processes of a group.

    Each process holds some of the parameters (its *shard*). Clipping each shard by its
    own norm gives every process a different scale and changes the direction of the full
    gradient. The global norm needs only one number from each process:

    .. math::
        \lVert g \rVert_p = \Big(\sum_{r} \sum_{k \in \text{shard}_r} \lVert g_k \rVert_p^p\Big)^{1/p},
        \qquad \lVert g \rVert_\infty = \max_r \max_{k \in \text{shard}_r} \lVert g_k \rVert_\infty,

    so each process all-reduces the sum of the :math:`p`-th powers of its norms (the max
    for ``inf``), and every process then scales its gradients by the same
    :math:`\min\big(1, c / (\lVert g \rVert_p + 10^{-6})\big)`. The result equals
    :func:`clip_grad_norm_` on the unsharded model. The reduction is done in float64
    (float32 on MPS) so that :math:`\lVert g_k \rVert^p` does not overflow early.

    Every process of the group must call it (it is a collective), even one whose shard
    has no gradient. Parameters replicated on several processes (not sharded) must be
    passed by one of them only, or they are counted several times.

    Args:
        parameters: this process's shard: a tensor or an iterable of tensors (``None``
            grads skipped).
        max_norm: :math:`c \ge 0`.
        norm_type: :math:`p > 0` or ``inf``.
        error_if_nonfinite: raise ``RuntimeError`` (on every process) if the global norm is
            NaN or infinite, before any gradient is touched.
        process_group: the ``torch.distributed`` group to reduce over (default: the world).

    Returns:
        The global norm before clipping, the same value on every process (in the dtype of
        the local gradients; the default dtype on a process whose shard has none).

    Example:
        >>> import torch.distributed as dist
        >>> import tempfile, os
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([30.0, 40.0])
        >>> float(distributed_clip_grad_norm_([w], max_norm=5.0)), torch.allclose(w.grad, torch.tensor([3.0, 4.0]))
        (50.0, True)
        >>> dist.destroy_process_group()
    """
    import torch.distributed as dist

    params = _as_list(parameters)
    _check_max_norm(max_norm)
    p = _check_norm_type(norm_type)
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("distributed_clip_grad_norm_ needs torch.distributed to be initialised "
                           "(torch.distributed.init_process_group); in a single process use clip_grad_norm_")
    grads = [q.grad for q in params if q.grad is not None]
    device = grads[0].device if grads else _collective_device(process_group)
    dtype = torch.float32 if device.type == "mps" else torch.float64
    norms = [n.to(dtype) for n in _grad_norms(grads, p)]
    if math.isinf(p):
        local = torch.stack(norms).max() if norms else torch.zeros((), dtype=dtype, device=device)
        dist.all_reduce(local, op=dist.ReduceOp.MAX, group=process_group)
        total = local
    else:
        local = torch.stack(norms).pow(p).sum() if norms else torch.zeros((), dtype=dtype, device=device)
        dist.all_reduce(local, op=dist.ReduceOp.SUM, group=process_group)
        total = local.pow(1.0 / p)
    if error_if_nonfinite and not bool(torch.isfinite(total)):
        raise RuntimeError(f"The global norm of order {p} of the gradients is non-finite ({float(total)}), "
                           "so it cannot be clipped. Pass error_if_nonfinite=False to clip anyway.")
    total = total.to(grads[0].dtype if grads else torch.get_default_dtype())
    _clip_grads_with_norm(params, max_norm, total)
    return total


def _collective_device(process_group) -> torch.device:
    import torch.distributed as dist

    backend = dist.get_backend(process_group)
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
