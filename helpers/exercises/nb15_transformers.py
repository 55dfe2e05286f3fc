"""Exercises of notebook 15, Transformers."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

from helpers.exercises._core import NotYet, attempt, close, exercise

__all__ = ["check_causal_attention", "check_loss_spikes"]


def _attention_hint(answer: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """What a wrong causal attention most likely got wrong: the mask, its direction or the scale."""
    attention = torch.nn.functional.scaled_dot_product_attention
    if close(answer, attention(q, k, v), 1e-6):
        return ("Without a mask every query sees the whole sequence, the future "
                "included: set the logits above the diagonal (key j > query i) to -inf.")
    if torch.allclose(answer[:, -1].double(), v[:, -1]) and not torch.allclose(answer[:, 0].double(), v[:, 0]):
        return "The mask is the wrong way round: query i may see keys j <= i (torch.tril), not j >= i."
    if close(answer, attention(q, k, v, is_causal=True, scale=1.0), 1e-6):
        return ("Divide the logits by √d (d = the last dimension of q): without it "
                "the softmax saturates as d grows.")
    return ("Compute softmax(q @ kᵀ / √d) over the keys (the last dimension), with "
            "-inf where the key comes after the query, then multiply by v.")


@exercise("15.1", "causal attention")
def check_causal_attention(fn: Callable) -> None:
    r"""Exercise 15.1: ``fn(q, k, v)`` returns causal scaled dot-product attention.

    :math:`\operatorname{softmax}(QK^\top/\sqrt d + M)V` with :math:`M_{ij} = -\infty` for
    :math:`j > i` (a query never sees a later key); ``q``, ``k``, ``v`` are (B, T, d). Checked against
    ``torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)``.
    """
    g = torch.Generator().manual_seed(151)
    for shape in ((2, 5, 4), (3, 7, 16)):
        q, k, v = (3 * torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
        answer = attempt(fn, q.clone(), k.clone(), v.clone())
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        if not isinstance(answer, torch.Tensor) or answer.shape != expected.shape:
            got = tuple(answer.shape) if isinstance(answer, torch.Tensor) else type(answer).__name__
            raise NotYet(f"Return a tensor shaped like v, {tuple(expected.shape)}; got {got}.")
        if not close(answer, expected, 1e-6):
            raise NotYet(_attention_hint(answer, q, k, v))


def _spike_cases() -> list[tuple[list[float], float, int]]:
    """Decaying losses with four planted spikes, twice, and a case where the mean and the median differ."""
    g = torch.Generator().manual_seed(152)
    cases = []
    for n, factor, window in ((60, 2.0, 10), (40, 1.5, 5)):
        base = (1.5 * torch.exp(-torch.arange(n) / 15) + 0.05 * torch.rand(n, generator=g)).tolist()
        for t in (window + 3, n // 2, n - 1, n // 2 + 1):
            base[t] = base[t] * (factor + 1.5)
        cases.append((base, factor, window))
    cases.append(([0.1, 0.1, 0.1, 1.0, 0.25, 0.1, 0.1], 2.0, 3))   # after a spike: the median, not the mean
    return cases


@exercise("15.2", "find the loss spikes")
def check_loss_spikes(fn: Callable) -> None:
    r"""Exercise 15.2: ``fn(losses, factor, window)`` returns the indices of the spiking steps.

    Step :math:`t \ge` ``window`` spikes when ``losses[t]`` exceeds ``factor`` times the median of
    the ``window`` losses before it (``losses[t - window:t]``, step :math:`t` itself excluded).
    """
    for losses, factor, window in _spike_cases():
        expected = [t for t in range(window, len(losses))
                    if losses[t] > factor * statistics.median(losses[t - window:t])]
        answer = attempt(fn, list(losses), factor, window)
        try:
            got = sorted(int(t) for t in answer)
        except (TypeError, ValueError):
            raise NotYet("Return a list of step indices (ints).") from None
        if got != expected:
            raise NotYet(f"For factor={factor}, window={window} the spikes are at {expected}, you "
                         f"found {got}. Compare losses[t] with factor × the median (not the mean) of "
                         "losses[t - window:t], the steps before t only, for every t >= window.")
