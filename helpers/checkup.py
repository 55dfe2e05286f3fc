"""A gradient-flow check-up: read a :class:`~helpers.diagnostics.GradientMonitor`, name the problem, suggest the fix.

The course's "diagnose, then fix" checklist as code. Train a few dozen steps with a
monitor attached, then call :func:`checkup`; every check compares one measured health
metric with a threshold and, when it fails, says which remedy (and which notebook)
addresses it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from numbers import Real

import torch

from helpers._checks import check_int, check_real
from helpers.diagnostics import GradientMonitor
from helpers.training import History

__all__ = ["checkup", "CheckupReport", "Finding", "loss_spikes", "CHECKS", "OPTIONAL_CHECKS", "REMEDIES"]

CHECKS = ("non-finite", "vanishing", "exploding", "frozen layers", "large updates", "saturation", "dead units")
# checks run only when asked for (their thresholds are given), reported after CHECKS
OPTIONAL_CHECKS = ("loss spikes",)

REMEDIES = {
    "non-finite": "clip the gradient norm (07), lower the learning rate (10), use loss scaling in fp16 (12)",
    "vanishing": "variance-preserving init (03), a non-saturating activation (04), "
                 "normalization (05), residual connections (06)",
    "exploding": "variance-preserving init (03), normalization (05), gradient clipping (07)",
    "frozen layers": "if gradients vanish, see 'vanishing'; otherwise raise the learning rate (10)",
    "large updates": "lower the learning rate, or warm it up (10); clip the gradient norm (07)",
    "saturation": "scale the init down (03), normalize before the activation (05), or use ReLU-like units (04)",
    "dead units": "lower the learning rate (10), He init (03), leaky ReLU or ELU (04)",
    "loss spikes": "clip the gradient norm at 1.0 (07), lower Adam's beta2 or raise its eps (15), "
                   "normalise queries and keys (15), lower the learning rate (10)",
}


def loss_spikes(losses, factor: float = 2.0, window: int = 10, min_rise: float = 0.1) -> list[int]:
    r"""The steps at which the training loss spiked: jumped well above its recent level.

    Step :math:`t` is a spike when, with :math:`m_t` the median of the ``window`` losses before it,

    .. math:: L_t - m_t > (\text{factor} - 1)\,|m_t| \quad\text{and}\quad L_t - m_t > \text{min\_rise}.

    For a positive median the first condition is :math:`L_t > \text{factor}\cdot m_t`: the rise
    is measured relative to the loss's own size, so jumps are found at any loss level. Writing
    it with :math:`|m_t|` keeps that meaning for losses that can be negative (a log-likelihood
    bound, a loss with a negative regulariser): a rise from -10 to -9.5 is 5 % of the level,
    not a spike, whereas :math:`L_t > \text{factor}\cdot m_t` would call any rise above -20 one.
    The absolute rise ignores the noise of a loss that is already near zero. A non-finite loss
    counts as a spike.

    Args:
        losses: the per-step training losses, a 1-D sequence of real numbers (a list, a 1-D
            array or tensor).
        factor: > 1, how many times the recent median's size a spike exceeds it by, plus one.
        window: >= 1, the number of earlier steps the median is taken over.
        min_rise: >= 0, the smallest absolute jump (in the loss's units, nats for cross-entropy).

    Returns:
        the indices of the spiking steps (the first ``window`` steps are never spikes).

    Raises:
        TypeError: ``losses`` is not a sequence of real numbers (e.g. ``None``, a 2-D history).
        ValueError: a bad ``factor``, ``window`` or ``min_rise``.

    Example:
        >>> loss_spikes([1.0] * 10 + [0.5, 3.0, 0.5, 0.5])
        [11]
        >>> loss_spikes([-10.0] * 10 + [-9.5, 1.0])   # a rise of 0.5 is 5 % of |-10|, 11 is 110 %
        [11]
    """
    check_real("factor", factor, minimum=1.0, strict_minimum=True)
    check_int("window", window, minimum=1)
    check_real("min_rise", min_rise, minimum=0.0)
    if isinstance(losses, torch.Tensor) or hasattr(losses, "ndim"):
        if losses.ndim != 1:
            raise TypeError(f"losses must be a 1-D sequence of real numbers (one loss per step), got an "
                            f"array of shape {tuple(losses.shape)}")
        losses = losses.tolist()
    if isinstance(losses, str | bytes) or not hasattr(losses, "__iter__"):
        raise TypeError(f"losses must be a 1-D sequence of real numbers (one loss per step), got "
                        f"{type(losses).__name__}")
    values = []
    for i, v in enumerate(losses):
        if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_complex() and v.dtype != torch.bool:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, Real):
            raise TypeError(f"losses must be a 1-D sequence of real numbers (one loss per step), got "
                            f"losses[{i}] = {v!r} ({type(v).__name__})")
        values.append(float(v))
    spikes = []
    for t in range(window, len(values)):
        recent = statistics.median(values[t - window:t]) if all(map(math.isfinite, values[t - window:t])) \
            else math.nan
        if not math.isfinite(values[t]):
            spikes.append(t)
        elif math.isfinite(recent):
            rise = values[t] - recent
            if rise > (factor - 1.0) * abs(recent) and rise > min_rise:
                spikes.append(t)
    return spikes


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: its name, whether it passed, what was measured, what to try.

    ``value`` is the number the check compared with its threshold (NaN when there was
    nothing to measure): the number of non-finite layers, the first-to-last gradient ratio,
    the smallest or largest median update ratio, or the worst saturated/dead fraction.
    """

    check: str
    ok: bool
    detail: str
    remedy: str
    value: float = math.nan

    def __str__(self) -> str:
        line = f"{'✓' if self.ok else '✗'} {self.check}: {self.detail}"
        return line if self.ok else f"{line}\n    try: {self.remedy}"


@dataclass(frozen=True)
class CheckupReport:
    """Every :class:`Finding` of one :func:`checkup`, in the order of :data:`CHECKS`."""

    findings: tuple[Finding, ...]

    @property
    def problems(self) -> list[str]:
        """The names of the checks that failed."""
        return [f.check for f in self.findings if not f.ok]

    @property
    def healthy(self) -> bool:
        """True when every check passed."""
        return not self.problems

    def __getitem__(self, check: str) -> Finding:
        for finding in self.findings:
            if finding.check == check:
                return finding
        raise KeyError(f"no check named {check!r}; the checks are {list(CHECKS)}")

    def __str__(self) -> str:
        return "\n".join(str(f) for f in self.findings)


def _median_by_layer(series: dict[str, list[float]]) -> dict[str, float]:
    """Each layer's median over the steps; NaN for a layer with a NaN value (a median of NaNs is undefined)."""
    return {name: math.nan if any(map(math.isnan, values)) else statistics.median(values)
            for name, values in series.items() if values}


def _names(layers: list[str], limit: int = 4) -> str:
    shown = ", ".join(layers[:limit])
    return shown + (f" and {len(layers) - limit} more" if len(layers) > limit else "")


def checkup(monitor: GradientMonitor, history: History | None = None, *, vanishing: float = 1e-3,
            exploding: float = 1e3, update_low: float = 1e-5, update_high: float = 1e-1,
            saturated: float = 0.2, dead: float = 0.2, spike: float = 100.0,
            loss_spike: float | None = None, max_spikes: int = 0) -> CheckupReport:
    r"""Run the course's gradient-flow checklist on what ``monitor`` recorded.

    With :math:`r = \lVert \partial L/\partial W_1 \rVert / \lVert \partial L/\partial W_L \rVert`
    (first over last weighted layer, in the monitor's order, median over the recorded
    steps where either of the two has a gradient: a step where both are exactly 0 -- every
    unit dead -- is left out) and :math:`u_\ell = \lVert \Delta W_\ell \rVert / \lVert W_\ell \rVert` (median per
    layer), the checks fail when

    * **non-finite**: a recorded gradient norm is NaN/inf, or ``history.diverged``;
    * **vanishing**: :math:`r <` ``vanishing``;
    * **exploding**: :math:`r >` ``exploding``, or with a ``history`` the largest global
      gradient norm exceeds ``spike`` times the median one;
    * **frozen layers**: some :math:`u_\ell <` ``update_low`` (healthy training sits near
      :math:`10^{-3}`);
    * **large updates**: some :math:`u_\ell >` ``update_high``, or NaN (the layer's weights or their
      update were not finite at a recorded step; the reported range is the other layers');
    * **saturation**: the median saturated fraction of a sigmoid/tanh layer exceeds ``saturated``;
    * **dead units**: the median dead fraction of a ReLU layer exceeds ``dead``.

    Checks with nothing to measure (no sigmoid/tanh layer, a single weighted layer) pass
    and say so.

    With ``loss_spike`` given (and a ``history``), one more check, reported last:

    * **loss spikes**: more than ``max_spikes`` steps where the loss jumped above
      ``loss_spike`` times the median of the 10 steps before it (and by more than 0.1; see
      :func:`loss_spikes`). Transformers trained at a high learning rate show them
      (notebook 15).

    Args:
        monitor: a :class:`~helpers.diagnostics.GradientMonitor` with at least one record.
        history: the :class:`~helpers.training.History` of the same run (optional).
        vanishing, exploding: bounds on the first-to-last gradient ratio :math:`r`.
        update_low, update_high: bounds on every layer's update ratio :math:`u_\ell`.
        saturated, dead: largest acceptable fraction of saturated / dead units, in (0, 1].
        spike: largest acceptable ratio of the largest to the median global gradient norm.
        loss_spike: ``None`` (no loss-spike check), or the factor > 1 of :func:`loss_spikes`.
        max_spikes: the number of loss spikes accepted, >= 0.

    Returns:
        a :class:`CheckupReport`; ``print`` it for the checklist, read ``.problems`` in code.

    Example:
        >>> import torch
        >>> from helpers.models import MLP
        >>> _ = torch.manual_seed(0)
        >>> net = MLP(8, 2, width=16, depth=12, activation="sigmoid")
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> with GradientMonitor(net) as monitor:
        ...     for _ in range(3):
        ...         opt.zero_grad()
        ...         net(torch.randn(32, 8)).square().mean().backward()
        ...         opt.step()
        ...         _ = monitor.step()
        >>> checkup(monitor).problems
        ['vanishing', 'frozen layers']
    """
    _check_arguments(monitor, history, vanishing=vanishing, exploding=exploding, update_low=update_low,
                     update_high=update_high, saturated=saturated, dead=dead, spike=spike, loss_spike=loss_spike,
                     max_spikes=max_spikes)
    grads = monitor.history("grad_norm")
    ratio, ratio_text = _gradient_ratio(monitor, grads)
    findings = [_non_finite(grads, history),
                _vanishing(ratio, ratio_text, vanishing),
                _exploding(ratio, ratio_text, history, exploding, spike),
                *_updates(monitor, update_low, update_high),
                *_unit_fractions(monitor, saturated, dead)]
    if loss_spike is not None:
        findings.append(_loss_spikes(history, loss_spike, max_spikes))
    return CheckupReport(tuple(findings))


def _check_arguments(monitor, history, *, vanishing, exploding, update_low, update_high, saturated, dead, spike,
                     loss_spike, max_spikes) -> None:
    if not isinstance(monitor, GradientMonitor):
        raise TypeError(f"monitor must be a helpers.diagnostics.GradientMonitor, got {type(monitor).__name__}")
    if history is not None and not isinstance(history, History):
        raise TypeError(f"history must be a helpers.training.History or None, got {type(history).__name__}")
    for name, value in (("vanishing", vanishing), ("exploding", exploding), ("update_low", update_low),
                        ("update_high", update_high), ("spike", spike)):
        check_real(name, value, minimum=0.0, strict_minimum=True)
    for name, value in (("saturated", saturated), ("dead", dead)):
        check_real(name, value, minimum=0.0, maximum=1.0, strict_minimum=True)
    if loss_spike is not None:
        check_real("loss_spike", loss_spike, minimum=1.0, strict_minimum=True)
        if history is None:
            raise ValueError("loss_spike needs the run's history (the losses to look for spikes in)")
    check_int("max_spikes", max_spikes, minimum=0)
    if vanishing >= exploding:
        raise ValueError(f"vanishing must be < exploding, got vanishing={vanishing!r}, exploding={exploding!r}")
    if update_low >= update_high:
        raise ValueError(f"update_low must be < update_high, got update_low={update_low!r}, "
                         f"update_high={update_high!r}")
    if not monitor.records:
        raise ValueError("monitor has no records: train with it attached and call monitor.step() "
                         "after each optimizer step first")


def _finding(check: str, ok: bool, detail: str, value: float = math.nan) -> Finding:
    return Finding(check, ok, detail, REMEDIES[check], float(value))


def _non_finite(grads: dict[str, list[float]], history: History | None) -> Finding:
    bad = [n for n, values in grads.items() if not all(math.isfinite(v) for v in values)]
    diverged = history is not None and history.diverged
    if bad or diverged:
        where = f"in {_names(bad)}" if bad else f"the loss at step {history.diverged_at}"
        return _finding("non-finite", False, f"NaN or inf {where}", len(bad))
    return _finding("non-finite", True, "every recorded gradient is finite", 0)


def _gradient_ratio(monitor: GradientMonitor, grads: dict[str, list[float]]) -> tuple[float, str]:
    """:math:`r`, the first over the last layer's gradient norm (median over the steps; NaN when there is
    nothing to compare), and the sentence that reports it."""
    layers = [n for n in monitor.layers if n in grads]
    if len(layers) < 2:
        return math.nan, ""
    # a step where both norms are exactly 0 (every unit dead) carries no gradient to compare:
    # left out, not counted as an infinite ratio (the dead-units check reports it)
    pairs = [(f, last) for f, last in zip(grads[layers[0]], grads[layers[-1]])
             if math.isfinite(f) and math.isfinite(last) and (f > 0 or last > 0)]
    ratio = statistics.median(f / last if last > 0 else math.inf for f, last in pairs) if pairs else math.nan
    return ratio, f"{layers[0]} gets {ratio:.1e} × the gradient of {layers[-1]}"


def _vanishing(ratio: float, ratio_text: str, vanishing: float) -> Finding:
    if math.isnan(ratio):
        return _finding("vanishing", True, "fewer than two layers with finite gradients: nothing to compare")
    return _finding("vanishing", ratio >= vanishing, f"{ratio_text} (fails below {vanishing:.0e})", ratio)


def _exploding(ratio: float, ratio_text: str, history: History | None, exploding: float, spike: float) -> Finding:
    spike_text = ""
    spiked = False
    if history is not None:
        norms = [v for v in history.grad_norm if math.isfinite(v)]
        if norms and statistics.median(norms) > 0:
            peak = max(norms) / statistics.median(norms)
            spiked = peak > spike
            spike_text = f"; largest global norm {peak:.1f} × the median (fails above {spike:g})"
    if math.isnan(ratio) and not spike_text:
        return _finding("exploding", True, "nothing to compare")
    grew = not math.isnan(ratio) and ratio > exploding
    detail = (f"{ratio_text} (fails above {exploding:.0e})" if not math.isnan(ratio) else "") + spike_text
    return _finding("exploding", not (grew or spiked), detail.lstrip("; "), ratio)


def _updates(monitor: GradientMonitor, update_low: float, update_high: float) -> list[Finding]:
    """The frozen-layers and large-updates findings, from each layer's median update ratio.

    A layer whose ratio was NaN at a recorded step (its weights or their update were not finite) fails the
    large-updates check by name; the range and the two values are those of the other layers.
    """
    updates = _median_by_layer(monitor.history("update_ratio"))
    finite = {n: u for n, u in updates.items() if not math.isnan(u)}
    broken = [n for n in updates if n not in finite]
    frozen = [n for n, u in finite.items() if u < update_low]
    large = [n for n, u in finite.items() if u > update_high]
    if finite:
        span = f"median update ratios {min(finite.values()):.1e} to {max(finite.values()):.1e}"
    else:
        span = "no finite update ratio" if broken else "no weighted layer"
    too_large = "; ".join(([f"{_names(large)} above {update_high:.0e}"] if large else [])
                          + ([f"NaN in {_names(broken)} (weights or update not finite at a recorded step)"]
                             if broken else []))
    return [
        _finding("frozen layers", not frozen,
                 f"{_names(frozen)} below {update_low:.0e}; {span}" if frozen
                 else f"{span} (fail below {update_low:.0e})", min(finite.values(), default=math.nan)),
        _finding("large updates", not too_large,
                 f"{too_large}; {span}" if too_large
                 else f"{span} (fail above {update_high:.0e})", max(finite.values(), default=math.nan)),
    ]


def _unit_fractions(monitor: GradientMonitor, saturated: float, dead: float) -> list[Finding]:
    """The saturation and dead-units findings, from each layer's median fraction of such units."""
    findings = []
    for check, quantity, limit, what in (("saturation", "saturation", saturated, "saturated (sigmoid/tanh)"),
                                         ("dead units", "dead", dead, "dead (ReLU)")):
        fractions = _median_by_layer(monitor.history(quantity))
        if not fractions:
            findings.append(_finding(check, True, f"no layer to measure {what} units in"))
            continue
        worst = max(fractions, key=fractions.get)
        over = [n for n, v in fractions.items() if v > limit]
        also = [n for n in over if n != worst]       # the worst layer is named already
        findings.append(_finding(check, not over, f"{fractions[worst]:.0%} {what} in {worst}"
                                 + (f"; also over {limit:.0%} in {_names(also)}" if also
                                    else f" (fails above {limit:.0%})"), fractions[worst]))
    return findings


def _loss_spikes(history: History, loss_spike: float, max_spikes: int) -> Finding:
    steps = loss_spikes(history.loss, factor=loss_spike)
    shown = ", ".join(map(str, steps[:5])) + (" …" if len(steps) > 5 else "")
    return _finding("loss spikes", len(steps) <= max_spikes,
                    f"{len(steps)} steps with the loss above {loss_spike:g} × its recent median"
                    + (f" (at {shown})" if steps else "") + f"; fails above {max_spikes}", len(steps))
