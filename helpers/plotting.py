"""One function per recurring picture of the course. Each returns the matplotlib Axes."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from helpers._checks import check_callable, check_choice, check_int

__all__ = ["plot_layer_grad_norms", "plot_activation_histograms", "plot_training_curves",
           "plot_contour_trajectories", "plot_lr_schedules", "plot_lr_finder", "plot_seed_curves",
           "plot_seed_points"]


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    return ax


def _as_series(data) -> dict:
    """Accept one mapping {layer: value} or a mapping {label: {layer: value}}."""
    if data and all(isinstance(v, Mapping) for v in data.values()):
        return dict(data)
    return {None: data}


def plot_layer_grad_norms(norms, ax=None, title: str = "Gradient norm by layer",
                          ylabel: str = r"$\|\partial L / \partial W_\ell\|$ (log scale)"):
    """Gradient norm of each layer, input on the left, output on the right, on a log axis.

    Args:
        norms: ``{layer: norm}`` (e.g. from :func:`helpers.diagnostics.layer_grad_norms`),
            or ``{label: {layer: norm}}`` to compare several networks.
        ax: axes to draw on (a new figure if ``None``).
        title, ylabel: texts of the figure.
    """
    if not isinstance(norms, Mapping) or not norms:
        raise ValueError(f"norms must be a non-empty mapping {{layer: norm}} or {{label: {{layer: norm}}}}, "
                         f"got {norms!r}")
    ax = _axes(ax)
    for label, series in _as_series(norms).items():
        values = np.asarray(list(series.values()), dtype=float)
        values = np.where(values > 0, values, np.nan)  # zero norms cannot sit on a log axis
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (1 = next to the input)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if any(label is not None for label in _as_series(norms)):
        ax.legend(fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return ax


def plot_activation_histograms(activations: Mapping[str, torch.Tensor], layers: Sequence[str] | None = None,
                               bins: int = 60, value_range: tuple[float, float] | None = None,
                               ax=None, title: str = "Activations by layer",
                               xlabel: str = "activation value"):
    """Overlaid histograms (as densities) of several layers' activations.

    Args:
        activations: ``{layer: tensor}`` (e.g. :func:`helpers.diagnostics.capture_activations`).
        layers: which layers to draw (default: at most 6, spread from first to last).
        bins: number of bins.
        value_range: the histogram range (default: the data's range).
    """
    if not isinstance(activations, Mapping) or not activations:
        raise ValueError("activations must be a non-empty mapping {layer: tensor}")
    missing = [name for name in (layers or []) if name not in activations]
    if missing:
        raise ValueError(f"layers {missing} are not in activations; available: {list(activations)}")
    ax = _axes(ax)
    names = list(activations)
    if layers is None:
        picks = np.unique(np.linspace(0, len(names) - 1, min(6, len(names))).round().astype(int))
        layers = [names[i] for i in picks]
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(layers)))
    for colour, name in zip(colours, layers):
        values = activations[name].detach().float().cpu().reshape(-1).numpy()
        ax.hist(values, bins=bins, range=value_range, density=True, histtype="step",
                linewidth=1.5, color=colour, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize="small", title="layer")
    return ax


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_training_curves(histories, metric: str = "loss", smooth: int = 1, ax=None,
                         title: str | None = None, log_y: bool = False):
    """One curve per run: a per-step metric of :class:`helpers.training.History` against the step.

    Args:
        histories: ``{label: History}``.
        metric: ``"loss"``, ``"accuracy"``, ``"grad_norm"``, ``"lr"`` (per step) or
            ``"epoch_loss"``, ``"val_loss"``, ``"val_accuracy"`` (per epoch).
        smooth: width of a moving average (1: none).
        log_y: logarithmic y axis.
    """
    metrics = ("loss", "accuracy", "grad_norm", "lr", "epoch_loss", "val_loss", "val_accuracy")
    check_choice("metric", metric, metrics)
    check_int("smooth", smooth, minimum=1)
    ax = _axes(ax)
    per_epoch = metric in ("epoch_loss", "val_loss", "val_accuracy")
    for label, history in histories.items():
        values = _smooth(getattr(history, metric), smooth)
        start = 1 if per_epoch else (smooth if smooth > 1 else 1)
        ax.plot(np.arange(start, start + len(values)), values, label=label)
        if getattr(history, "diverged", False) and not per_epoch:
            # diverged_at indexes steps from 0, the axis counts them from 1
            ax.axvline(history.diverged_at + 1, color="red", linestyle=":", linewidth=1)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("epoch" if per_epoch else "step")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or f"{metric.replace('_', ' ')} during training")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def plot_contour_trajectories(fn, trajectories: Mapping[str, np.ndarray], xlim=(-2.0, 2.0),
                              ylim=(-2.0, 2.0), ax=None, title: str = "Gradient descent paths",
                              levels: int = 20):
    """Contours of a 2-D function with optimisation paths drawn on top.

    Args:
        fn: maps arrays ``x, y`` (same shape) to function values.
        trajectories: ``{label: array of shape (steps, 2)}``.
    """
    check_callable("fn", fn)
    check_int("levels", levels, minimum=1)
    ax = _axes(ax)
    gx, gy = np.meshgrid(np.linspace(*xlim, 200), np.linspace(*ylim, 200))
    values = fn(gx, gy)
    # levels at quantiles of the plotted values: evenly spread rings, near the minimum too
    ax.contour(gx, gy, values, levels=np.unique(np.quantile(values, np.linspace(0.005, 0.9, levels))),
               cmap="Greys", linewidths=0.7)
    for label, path in trajectories.items():
        path = np.asarray(path, dtype=float)
        ax.plot(path[:, 0], path[:, 1], marker=".", markersize=4, linewidth=1, label=label)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def plot_lr_schedules(schedules: Mapping[str, Sequence[float]], ax=None, title: str = "Learning-rate schedules",
                      log_y: bool = False):
    """One curve per schedule: the learning rate used at each step.

    Args:
        schedules: ``{label: [lr at step 0, lr at step 1, ...]}`` (e.g. ``History.lr``).
        log_y: logarithmic y axis (for exponential decay).
    """
    if not isinstance(schedules, Mapping) or not schedules:
        raise ValueError(f"schedules must be a non-empty mapping {{label: learning rates}}, got {schedules!r}")
    ax = _axes(ax)
    for label, lrs in schedules.items():
        lrs = np.asarray(lrs, dtype=float)
        ax.plot(np.arange(len(lrs)), lrs, label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def plot_lr_finder(result, ax=None, title: str = "LR range test", show_raw: bool = True):
    """Loss against learning rate (log x axis) from :func:`helpers.lr_finder.lr_finder`.

    Draws the smoothed loss (and the raw losses, faintly), a dotted line where the smoothed
    loss is lowest, and markers at the two suggestions: a tenth of that rate, and the
    steepest descent of the smoothed loss.
    """
    for name in ("lrs", "losses", "smoothed", "min_loss_lr", "steepest_lr"):
        if not hasattr(result, name):
            raise TypeError(f"result must be an LRFinderResult (from lr_finder), got {type(result).__name__}")
    ax = _axes(ax)
    lrs = np.asarray(result.lrs, dtype=float)
    if show_raw:
        ax.plot(lrs, result.losses, color="grey", alpha=0.35, linewidth=1, label="loss per batch")
    ax.plot(lrs, result.smoothed, label="smoothed loss")
    ax.axvline(result.min_loss_lr, color="black", linestyle=":", linewidth=1,
               label=f"lowest loss: {result.min_loss_lr:.1e}")
    for lr, colour, label in ((result.min_loss_lr / 10, "green", "lowest / 10"),
                              (result.steepest_lr, "red", "steepest descent")):
        index = int(np.argmin(np.abs(np.log(lrs) - np.log(lr))))
        ax.plot([lr], [result.smoothed[index]], "o", color=colour, label=f"{label}: {lr:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return ax


def _band(values, band: str):
    values = np.asarray(values, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN steps (every seed diverged) give NaN
        median = np.nanmedian(values, axis=-1)
        if band == "range":
            return median, np.nanmin(values, axis=-1), np.nanmax(values, axis=-1)
        return median, np.nanpercentile(values, 25, axis=-1), np.nanpercentile(values, 75, axis=-1)


def plot_seed_curves(curves: Mapping[str, np.ndarray], x=None, ax=None, title: str = "Median over seeds",
                     xlabel: str = "step", ylabel: str = "loss", band: str = "range", log_y: bool = False,
                     colors: Mapping[str, str] | None = None, smooth: int = 1):
    """One median curve per configuration with a shaded band over seeds.

    Args:
        curves: ``{label: values}``, values of shape (steps, seeds), e.g. a column block of
            :class:`helpers.ensemble.EnsembleHistory` ``loss``. NaN (a diverged seed) is left out.
        x: the x values (steps,); default 1, 2, ….
        band: ``"range"`` (min to max over seeds) or ``"iqr"`` (25th to 75th percentile).
        log_y: logarithmic y axis.
        colors: ``{label: colour}`` to keep one colour per configuration across panels.
        smooth: width of a moving average applied to each seed's curve first (1: none).

    Example:
        >>> ax = plot_seed_curves({"a": np.random.rand(20, 5)}, ylabel="accuracy")
    """
    check_choice("band", band, ("range", "iqr"))
    check_int("smooth", smooth, minimum=1)
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves must be a non-empty mapping {{label: array (steps, seeds)}}, got {curves!r}")
    if colors is not None and not isinstance(colors, Mapping):
        raise TypeError(f"colors must be a mapping {{label: colour}}, got {type(colors).__name__}")
    ax = _axes(ax)
    for k, (label, values) in enumerate(curves.items()):
        values = np.asarray(values, dtype=float)
        if values.ndim != 2:
            raise ValueError(f"curves[{label!r}] must have shape (steps, seeds), got {values.shape}")
        if x is not None and len(x) != len(values):
            raise ValueError(f"x must have one value per step of curves[{label!r}] ({len(values)}), got {len(x)}")
        width = min(smooth, len(values)) if len(values) else 1
        if width > 1:
            values = np.stack([_smooth(values[:, j], width) for j in range(values.shape[1])], axis=1)
        median, lo, hi = _band(values, band)
        steps = np.arange(1, len(median) + 1) + (width - 1) if x is None else np.asarray(x)[width - 1:]
        color = (colors or {}).get(label, f"C{k}")
        n = values.shape[1]
        what = f"median of {n}" if np.isfinite(values).all() else f"median of the running seeds, {n} in all"
        ax.plot(steps, median, color=color, label=f"{label} ({what})")
        ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)
    if log_y:
        ax.set_yscale("log")
    if ax.get_xscale() == "linear" and _whole_numbers(x):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # steps and epochs: no tick at epoch 2.5
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def _whole_numbers(x) -> bool:
    """Whether ``x`` (None: 1, 2, …) holds whole numbers only; labels or other objects are not numbers."""
    if x is None:
        return True
    try:
        values = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(values).all() and np.array_equal(values, np.round(values)))


def plot_seed_points(groups: Mapping[str, Sequence[float]], ax=None, title: str = "Per seed",
                     ylabel: str = "test accuracy", colors: Mapping[str, str] | None = None,
                     reference: float | None = None, reference_label: str = "chance", log_y: bool = False):
    """Every seed as a dot and the median as a bar, one column per configuration.

    Diverged seeds (NaN) are drawn as red crosses at the bottom of the axis and counted in the label.

    Args:
        groups: ``{label: per-seed values}``.
        colors: ``{label: colour}``, one colour per configuration across panels.
        reference: a horizontal line (e.g. chance level), labelled ``reference_label``.
        log_y: logarithmic y axis.

    Example:
        >>> ax = plot_seed_points({"ReLU": [0.9, 0.92, 0.91, 0.89, 0.9], "sigmoid": [0.1] * 5})
    """
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError(f"groups must be a non-empty mapping {{label: per-seed values}}, got {groups!r}")
    if colors is not None and not isinstance(colors, Mapping):
        raise TypeError(f"colors must be a mapping {{label: colour}}, got {type(colors).__name__}")
    ax = _axes(ax)
    labels = list(groups)
    for k, label in enumerate(labels):
        values = np.asarray(groups[label], dtype=float).reshape(-1)
        finite = values[np.isfinite(values)]
        color = (colors or {}).get(label, f"C{k}")
        offsets = np.linspace(-0.15, 0.15, max(len(values), 1))[:len(finite)]
        ax.scatter(k + offsets, finite, color=color, s=18, zorder=3)
        if finite.size:
            ax.hlines(np.median(finite), k - 0.3, k + 0.3, color=color, linewidth=2.5, zorder=2)
        if finite.size < values.size:
            ax.annotate(f"{values.size - finite.size} diverged", (k, 0.02), xycoords=("data", "axes fraction"),
                        ha="center", color="red", fontsize="small")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle=":", label=reference_label)
        ax.legend(fontsize="small")
    if log_y:
        ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return ax
