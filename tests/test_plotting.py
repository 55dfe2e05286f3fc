"""helpers.plotting: every figure labelled, the seed curves' median and band, bad arguments refused."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from helpers.plotting import (
    plot_activation_histograms,
    plot_contour_trajectories,
    plot_layer_grad_norms,
    plot_seed_curves,
    plot_seed_points,
    plot_training_curves,
)
from helpers.training import History


def _labelled(ax):
    return ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_plot_layer_grad_norms_one_or_many_series_with_zeros():
    ax = plot_layer_grad_norms({"fc1": 0.0, "fc2": 1e-3, "out": 1.0})
    assert ax.get_yscale() == "log" and _labelled(ax)
    ax = plot_layer_grad_norms({"a": {"fc1": 1.0, "out": 2.0}, "b": {"fc1": 3.0, "out": 4.0}})
    assert len(ax.get_lines()) == 2 and ax.get_legend() is not None


def test_plot_activation_histograms_picks_layers():
    acts = {f"act{i}": torch.randn(100, 8) for i in range(1, 21)}
    ax = plot_activation_histograms(acts)
    assert _labelled(ax) and len(ax.get_legend().get_texts()) == 6


def test_plot_training_curves_marks_divergence():
    h = History(loss=[3.0, 2.0, 1.0, 0.5], diverged=True, diverged_at=4, epoch_loss=[2.0], val_accuracy=[0.5])
    ax = plot_training_curves({"run": h}, smooth=2)
    assert _labelled(ax) and len(ax.get_lines()) == 2
    # step index 4 (from 0) is step 5 on the axis, which counts steps from 1 like the curve
    curve, marker = ax.get_lines()
    assert list(marker.get_xdata()) == [5, 5]
    assert list(plot_training_curves({"run": h}).get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    assert _labelled(plot_training_curves({"run": h}, metric="val_accuracy"))


def test_plot_contour_trajectories():
    ax = plot_contour_trajectories(lambda a, b: a**2 + 3 * b**2, {"gd": np.array([[1.0, 1.0], [0.5, 0.2]])})
    assert _labelled(ax)
    plt.close("all")


@pytest.mark.parametrize("call, error, text", [
    (lambda: plot_layer_grad_norms({}), ValueError, "norms must be a non-empty mapping"),
    (lambda: plot_activation_histograms({"act1": torch.zeros(3)}, layers=["act9"]), ValueError, "act9"),
    (lambda: plot_training_curves({"run": History()}, metric="losses"), ValueError, "metric must be one of"),
    (lambda: plot_training_curves({"run": History()}, smooth=0), ValueError, "smooth"),
])
def test_plotting_bad_arguments(call, error, text):
    with pytest.raises(error, match=text):
        call()


def test_seed_curves_draw_a_median_and_a_band_per_configuration():
    values = np.arange(30, dtype=float).reshape(10, 3)
    values[5:, 2] = np.nan                                    # one seed diverged half-way
    ax = plot_seed_curves({"a": values}, colors={"a": "C3"})
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata()[:5], values[:5, 1])
    np.testing.assert_allclose(line.get_ydata()[5:], np.median(values[5:, :2], axis=1))
    assert line.get_color() == "C3" and len(ax.collections) == 1
    with pytest.raises(ValueError, match="shape \\(steps, seeds\\)"):
        plot_seed_curves({"a": np.ones(3)})
    ax = plot_seed_curves({"four epochs": np.random.default_rng(0).random((4, 5))}, xlabel="epoch")
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)       # no tick at epoch 2.5
    ax = plot_seed_curves({"a": np.ones((4, 2))}, x=[0.0, 0.5, 1.0, 1.5])
    ax.figure.canvas.draw()
    assert not all(float(t).is_integer() for t in ax.get_xticks())  # fractional x keeps its ticks
    ax = plot_seed_curves({"a": np.ones((3, 2))}, x=["ep0", "ep1", "ep2"])     # labels: a category axis
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ep0", "ep1", "ep2"]
    _, ax = plt.subplots()
    ax.set_xscale("log")
    plot_seed_curves({"a": np.ones((3, 2))}, x=[1, 10, 100], ax=ax)
    assert type(ax.xaxis.get_major_locator()).__name__ == "LogLocator"
    ax = plot_seed_points({"x": [1.0, 2.0, np.nan, 3.0, 4.0]}, reference=0.5)
    assert "1 diverged" in [t.get_text() for t in ax.texts]
    plt.close("all")
