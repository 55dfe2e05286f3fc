r"""Gradient clipping when a model's parameters are sharded over processes: a runnable demo.

:func:`compare_sharded_clipping` starts ``world_size`` real processes (``torch.distributed``
with the gloo backend, on this machine), gives each the same model and gradients, lets
each keep every ``world_size``-th parameter tensor (its shard), and clips three ways:

* **unsharded**: :func:`helpers.clipping.clip_grad_norm_` on the whole model (the reference);
* **local**: each process clips its shard by the shard's own norm :math:`\lVert g_r \rVert`
  (the mistake: every shard gets its own factor, so the direction of :math:`g` changes and
  :math:`\lVert g \rVert` can end up far above the threshold);
* **global**: :func:`helpers.clipping.distributed_clip_grad_norm_`, which all-reduces
  :math:`\sum_r \lVert g_r \rVert_p^p` so that every shard is scaled by the same factor.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from helpers._checks import check_int, check_real
from helpers.clipping import clip_grad_norm_, distributed_clip_grad_norm_

__all__ = ["compare_sharded_clipping"]


def _model_and_grads(seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).double()
    x = torch.randn(64, 8, dtype=torch.float64)
    (model(x) ** 2).sum().mul(10.0).backward()
    return list(model.parameters())


def _worker(rank: int, world_size: int, store: str, out: str, max_norm: float, norm_type: float, seed: int):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        local = _model_and_grads(seed)[rank::world_size]
        local_norm = clip_grad_norm_(local, max_norm, norm_type)
        shard = _model_and_grads(seed)[rank::world_size]
        global_norm = distributed_clip_grad_norm_(shard, max_norm, norm_type)
        torch.save({"local": [p.grad for p in local], "local_norm": local_norm,
                    "global": [p.grad for p in shard], "global_norm": global_norm}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _assemble(parts: list[list[torch.Tensor]], world_size: int) -> torch.Tensor:
    n = sum(len(p) for p in parts)
    grads = [None] * n
    for rank, part in enumerate(parts):
        for i, g in zip(range(rank, n, world_size), part):
            grads[i] = g
    return torch.cat([g.flatten() for g in grads])


def compare_sharded_clipping(max_norm: float = 1.0, norm_type: float = 2.0, world_size: int = 2,
                             seed: int = 0) -> dict[str, float | list[float]]:
    r"""Clip the same gradients unsharded, shard by shard (local norms) and with the global norm.

    With :math:`\hat g` the full gradient after clipping, it returns the norms and the
    cosine of each sharded result with the unsharded one,
    :math:`\cos = \langle \hat g_{\text{sharded}}, \hat g_{\text{unsharded}} \rangle /
    (\lVert\cdot\rVert\,\lVert\cdot\rVert)`: 1 means the same direction.

    Args:
        max_norm: the clipping threshold, > 0.
        norm_type: :math:`p`, e.g. 2.0 or ``float("inf")``.
        world_size: number of processes, >= 2 (each needs a few seconds to start).
        seed: of the model and the data.

    Returns:
        ``total_norm`` (of the unsharded gradient, before clipping), ``shard_norms`` (each
        shard's own norm), ``norm_after_local`` and ``norm_after_global`` (of the full
        gradient after each kind of clipping), ``cosine_local``, ``cosine_global``, and
        ``max_difference_global`` (largest absolute difference from the unsharded result).

    Example:
        >>> r = compare_sharded_clipping()   # starts two processes: a few seconds
        >>> r["norm_after_local"] > 1.2, r["cosine_local"] < 0.9999, round(r["norm_after_global"], 6)
        (True, True, 1.0)
    """
    check_real("max_norm", max_norm, minimum=0.0, strict_minimum=True)
    check_int("world_size", world_size, minimum=2)
    check_int("seed", seed, minimum=0)
    params = _model_and_grads(seed)
    total = float(clip_grad_norm_(params, max_norm, norm_type))
    reference = torch.cat([p.grad.flatten() for p in params])
    with tempfile.TemporaryDirectory() as tmp:
        # plain subprocesses rather than multiprocessing's spawn, which re-imports the caller's
        # __main__ (a script without an `if __name__ == "__main__"` guard would start again)
        workers = []
        for rank in range(world_size):
            args = (rank, world_size, str(Path(tmp) / "store"), tmp, float(max_norm), norm_type, seed)
            code = f"from math import inf; from helpers.sharding import _worker; _worker(*{args!r})"
            workers.append(subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True))
        errors = [w.communicate()[1] for w in workers]
        if any(w.returncode for w in workers):
            raise RuntimeError("a worker process failed:\n" + "\n".join(e for e in errors if e))
        results = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
    local = _assemble([r["local"] for r in results], world_size)
    global_ = _assemble([r["global"] for r in results], world_size)
    p = math.inf if norm_type in (math.inf, "inf") else float(norm_type)

    def cosine(a, b):
        return float(torch.dot(a, b) / (a.norm() * b.norm()))

    return {"total_norm": total,
            "shard_norms": [float(r["local_norm"]) for r in results],
            "norm_after_local": float(torch.linalg.vector_norm(local, p)),
            "norm_after_global": float(torch.linalg.vector_norm(global_, p)),
            "cosine_local": cosine(local, reference),
            "cosine_global": cosine(global_, reference),
            "max_difference_global": float((global_ - reference).abs().max())}
