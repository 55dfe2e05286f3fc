"""Clipping across processes: two real processes (torch.distributed, gloo) each hold half of a
model's parameters. Clipping each half by its own norm is wrong; the course's
distributed_clip_grad_norm_ equals clipping the unsharded model."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from helpers.clipping import clip_grad_norm_, distributed_clip_grad_norm_

pytestmark = pytest.mark.distributed

WORLD = 2
MAX_NORM = 1.0
NORM_TYPES = (2.0, 1.0, math.inf)


def _model_with_grads():
    """The same model and gradients in every process (float64, so tolerances can be tight)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.Tanh(), nn.Linear(8, 3))
    model.double()
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    (model(x) ** 2).sum().mul(10.0).backward()  # large gradients, so clipping fires
    return list(model.parameters())


def _shard(params, rank):
    return params[rank::WORLD]  # every other parameter tensor: uneven shards of different shapes


def _worker(rank, store, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for norm_type in NORM_TYPES:
            local = _shard(_model_with_grads(), rank)
            local_norm = clip_grad_norm_(local, MAX_NORM, norm_type=norm_type)  # the mistake
            results[f"local/{norm_type}"] = ([p.grad.clone() for p in local], local_norm)

            shard = _shard(_model_with_grads(), rank)
            total = distributed_clip_grad_norm_(shard, MAX_NORM, norm_type=norm_type)
            results[f"global/{norm_type}"] = ([p.grad.clone() for p in shard], total)
        # a process whose shard has no gradient still takes part
        empty = distributed_clip_grad_norm_([], MAX_NORM) if rank == 1 else \
            distributed_clip_grad_norm_(_model_with_grads(), MAX_NORM)
        results["empty-shard"] = ([], empty)
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(str(tmp / "store"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _unsharded(norm_type):
    params = _model_with_grads()
    total = clip_grad_norm_(params, MAX_NORM, norm_type=norm_type)
    return [p.grad for p in params], total


def _reassemble(shards, key):
    """Gradients back in the model's parameter order from the ranks' shards."""
    n = sum(len(s[key][0]) for s in shards)
    grads = [None] * n
    for rank, s in enumerate(shards):
        for i, g in zip(range(rank, n, WORLD), s[key][0]):
            grads[i] = g
    return grads


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_global_clipping_over_two_processes_equals_clipping_the_unsharded_model(shards, norm_type):
    expected, total = _unsharded(norm_type)
    assert total > MAX_NORM  # clipping fires
    for s in shards:  # every process got the global norm
        torch.testing.assert_close(s[f"global/{norm_type}"][1], total, rtol=1e-12, atol=0)
    for ours, theirs in zip(_reassemble(shards, f"global/{norm_type}"), expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_clipping_each_shard_by_its_local_norm_is_wrong(shards, norm_type):
    expected, total = _unsharded(norm_type)
    local_norms = [float(s[f"local/{norm_type}"][1]) for s in shards]
    if norm_type == math.inf:  # the largest entry lives in one shard
        assert max(local_norms) == float(total) and min(local_norms) < float(total)
    else:
        assert all(n < float(total) for n in local_norms) and local_norms[0] != local_norms[1]
    wrong = _reassemble(shards, f"local/{norm_type}")
    # each shard is scaled to MAX_NORM on its own: the shards get different factors, so the
    # direction changes, and (for p < inf) the total norm ends up above MAX_NORM
    stacked = torch.cat([g.flatten() for g in wrong])
    right = torch.cat([g.flatten() for g in expected])
    if norm_type != math.inf:
        assert torch.linalg.vector_norm(stacked, norm_type) > MAX_NORM * 1.01
    cosine = torch.dot(stacked, right) / (stacked.norm() * right.norm())
    assert cosine < 1 - 1e-6


def test_a_process_with_an_empty_shard_takes_part(shards):
    _, total = _unsharded(2.0)
    for s in shards:  # the process without gradients returns it in the default dtype (float32)
        torch.testing.assert_close(s["empty-shard"][1].double(), total, rtol=1e-6, atol=0)


def test_without_a_process_group_it_says_so():
    w = nn.Parameter(torch.ones(2))
    w.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="init_process_group"):
        distributed_clip_grad_norm_([w], 1.0)
    assert torch.equal(w.grad, torch.ones(2))
