"""Exercises of notebook 14, FAQ, errata of the source articles and future directions."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from helpers.exercises._core import NotYet, attempt, close, exercise

__all__ = ["check_split_once", "check_separable_conv"]


def _index_set(value) -> set[int] | None:
    """The entries of a 1-D integer tensor (or sequence) as a set, or None if it is not one."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    if tensor.dim() != 1 or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        return None
    return set(tensor.tolist()) if len(set(tensor.tolist())) == tensor.numel() else None


def _check_split(answer, n: int, fraction: float) -> set[int]:
    """The test indices of the pair ``answer`` once it is a split of ``range(n)`` of the right size."""
    if not (isinstance(answer, tuple | list) and len(answer) == 2):
        raise NotYet("Return a pair (train_idx, test_idx).")
    train, test = (_index_set(part) for part in answer)
    if train is None or test is None:
        raise NotYet("Each part must be a 1-D tensor of distinct integer indices.")
    if train & test or train | test != set(range(n)):
        raise NotYet("Every index in range(n) must go to exactly one of the two sets: "
                     "no example may be both trained on and tested on, none may be lost.")
    if len(test) != round(n * fraction):
        raise NotYet(f"With n = {n} and test_fraction = {fraction} the test set has "
                     f"{round(n * fraction)} indices, not {len(test)}.")
    return test


@exercise("14.1", "split once")
def check_split_once(fn: Callable) -> None:
    r"""Exercise 14.1: ``fn(n, test_fraction, seed)`` returns ``(train_idx, test_idx)``, a random split made once.

    Accepted: disjoint index sets covering :math:`\{0, \dots, n-1\}` with ``round(n * test_fraction)`` test
    indices, the same for the same seed (even after other draws from the global generator), different for
    different seeds.
    """
    splits = {}
    for n, fraction, seed in ((100, 0.2, 0), (100, 0.2, 0), (100, 0.2, 1), (37, 0.3, 5)):
        torch.rand(3)      # other code drawing from the global generator between two epochs (restored after)
        test = _check_split(attempt(fn, n, fraction, seed), n, fraction)
        if (n, fraction, seed) in splits and splits[n, fraction, seed] != test:
            raise NotYet("Called twice with the same seed, it returned two different splits: "
                         "that is article 001's re-split every epoch. Draw the permutation from a "
                         "torch.Generator seeded with `seed`, not from the global generator.")
        splits[n, fraction, seed] = test
    if splits[100, 0.2, 0] == splits[100, 0.2, 1]:
        raise NotYet("Seeds 0 and 1 gave the same test set: draw the permutation from a "
                     "generator seeded with `seed`, so that another seed gives another split.")
    if splits[100, 0.2, 0] in ({*range(20)}, {*range(80, 100)}):
        raise NotYet("The test set is a block of consecutive indices: shuffle before splitting.")


def _check_separable_structure(module: nn.Module, c_in: int, c_out: int, k: int) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The depthwise and the pointwise convolution of ``module``, once its layers are the right ones."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if any(m.bias is not None for m in convs):
        raise NotYet("Both convolutions are without bias (bias=False).")
    weights = sum(p.numel() for p in module.parameters())
    expected = c_in * k * k + c_in * c_out
    if len(convs) != 2 or weights != expected:
        raise NotYet(f"A depthwise-separable convolution {c_in} → {c_out} with k = {k} has "
                     f"{expected} weights (C_in·k² + C_in·C_out); yours has {weights}. The depthwise "
                     "convolution needs groups=in_channels, and it comes first.")
    depthwise, pointwise = convs
    if depthwise.groups != c_in or depthwise.kernel_size != (k, k) or pointwise.kernel_size != (1, 1):
        raise NotYet("First the depthwise k×k convolution (groups=in_channels), "
                     "then the pointwise 1×1 one.")
    return depthwise, pointwise


@exercise("14.2", "a depthwise-separable convolution")
def check_separable_conv(fn: Callable) -> None:
    r"""Exercise 14.2: ``fn(in_channels, out_channels, kernel_size)`` returns a depthwise-separable convolution.

    A depthwise :math:`k \times k` convolution (``groups=in_channels``, padding :math:`k // 2`, no bias)
    followed by a pointwise :math:`1 \times 1` convolution (no bias): :math:`C_{in}k^2 + C_{in}C_{out}` weights.
    """
    g = torch.Generator().manual_seed(142)
    for c_in, c_out, k in ((6, 10, 3), (4, 4, 5)):
        module = attempt(fn, c_in, c_out, k)
        if not isinstance(module, nn.Module):
            raise NotYet("Return an nn.Module (e.g. an nn.Sequential of two nn.Conv2d).")
        x = torch.randn(2, c_in, 7, 9, generator=g)
        try:
            out = module(x)
        except RuntimeError as error:
            raise NotYet(f"The module fails on a (2, {c_in}, 7, 9) input: {error}") from None
        if not (isinstance(out, torch.Tensor) and out.shape == (2, c_out, 7, 9)):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise NotYet(f"Expected an output of shape (2, {c_out}, 7, 9), got {shape}: "
                         "pad the depthwise convolution by k // 2 and let the 1×1 one produce out_channels.")
        depthwise, pointwise = _check_separable_structure(module, c_in, c_out, k)
        with torch.no_grad():
            conv2d = torch.nn.functional.conv2d
            reference = conv2d(conv2d(x, depthwise.weight, padding=k // 2, groups=c_in), pointwise.weight)
        if not close(out.detach(), reference, 1e-5):
            raise NotYet("The output is not pointwise(depthwise(x)): apply the two "
                         "convolutions one after the other, with nothing in between.")
