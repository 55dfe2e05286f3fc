"""helpers.checkup: each check fires on the network built to have that problem, and only then."""

import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checkup import CHECKS, REMEDIES, checkup
from helpers.diagnostics import GradientMonitor
from helpers.init import init_weights_
from helpers.models import MLP
from helpers.training import History, fit


def _train(net, steps=6, lr=0.05, batch=None, monitor_every=1):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, net.in_features, generator=g)
    y = torch.randint(0, net.out_features, (64,), generator=g)
    monitor = GradientMonitor(net, every=monitor_every)
    history = fit(net, (x, y), epochs=steps, optimizer=torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9),
                  loss_fn=F.cross_entropy, monitor=monitor, progress=False, batch_size=batch or 64)
    return monitor, history


def _net(seed=0, **kwargs):
    torch.manual_seed(seed)
    options = {"width": 32, "depth": 4, "activation": "tanh"} | kwargs
    return MLP(16, 4, **options)


def test_a_healthy_net_passes_every_check():
    monitor, history = _train(_net())
    report = checkup(monitor, history)
    assert report.healthy, str(report)
    assert [f.check for f in report.findings] == list(CHECKS)


def test_deep_sigmoid_net_is_flagged_vanishing_and_frozen():
    report = checkup(*_train(_net(depth=20, activation="sigmoid")))
    assert report.problems == ["vanishing", "frozen layers"]
    assert "try:" in str(report) and REMEDIES["vanishing"] in str(report)


def test_large_init_tanh_net_is_flagged_saturated():
    net = _net(depth=8)
    init_weights_(net, "normal", std=1.0, generator=torch.Generator().manual_seed(0))
    report = checkup(*_train(net))
    assert "saturation" in report.problems
    assert "vanishing" not in report.problems


def test_unit_fraction_message_names_each_layer_once():
    net = _net(depth=8)
    init_weights_(net, "normal", std=1.0, generator=torch.Generator().manual_seed(0))
    text = next(f.detail for f in checkup(*_train(net)).findings if f.check == "saturation")
    worst = text.split(" in ")[1].split(";")[0]
    named = [n.strip() for n in text.replace(" and ", ", ").replace(";", ",").split(" in ", 1)[1].split(",")]
    assert named.count(worst) == 1, text


def test_relu_at_a_huge_learning_rate_has_dead_units_and_large_updates():
    report = checkup(*_train(_net(activation="relu"), lr=3.0))
    assert {"dead units", "large updates"} <= set(report.problems)


def test_exploding_ratio_is_flagged():
    # tanh with N(0, 1) weights: forward saturated, backward growing by sigma_w * sqrt(width) per layer
    net = _net(depth=16)
    init_weights_(net, "normal", std=1.0, generator=torch.Generator().manual_seed(0))
    report = checkup(*_train(net, lr=1e-3))
    assert {"exploding", "saturation"} <= set(report.problems), str(report)
    assert "vanishing" not in report.problems


def test_steps_without_any_gradient_are_left_out_of_the_ratio():
    # a net whose units all died has 0 gradient in the first and last layer: 0/0 is no evidence of
    # exploding gradients, and the ratio is the median over the steps that had a gradient
    monitor, history = _train(_net(depth=20, activation="sigmoid"))
    for record in monitor.records[:2]:
        record.grad_norm = {name: 0.0 for name in record.grad_norm}
    report = checkup(monitor, history)
    assert "exploding" not in report.problems and "vanishing" in report.problems
    first, last = list(monitor.layers)[0], list(monitor.layers)[-1]
    kept = [r.grad_norm for r in monitor.records[2:]]
    assert report["vanishing"].value == statistics.median(g[first] / g[last] for g in kept)


def test_a_gradient_spike_in_the_history_is_flagged_exploding():
    monitor, history = _train(_net())
    history.grad_norm[3] = 1000 * max(history.grad_norm)
    assert "exploding" in checkup(monitor, history).problems
    assert "exploding" not in checkup(monitor).problems      # without the history: nothing to see


def test_non_finite_gradients_and_divergence_are_flagged():
    monitor, history = _train(_net())
    monitor.records[-1].grad_norm["fc2"] = math.nan
    report = checkup(monitor)
    assert report["non-finite"].ok is False and "fc2" in report["non-finite"].detail
    monitor.records[-1].grad_norm["fc2"] = 1.0
    history.diverged, history.diverged_at = True, 5
    assert "step 5" in checkup(monitor, history)["non-finite"].detail


def test_thresholds_move_the_verdict():
    monitor, history = _train(_net())
    assert checkup(monitor).healthy
    assert "frozen layers" in checkup(monitor, update_low=0.05, update_high=1.0).problems
    assert "large updates" in checkup(monitor, update_high=1e-4).problems


def test_single_layer_and_activation_free_models_pass_what_cannot_be_measured():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 2))
    with GradientMonitor(net) as monitor:
        net(torch.randn(3, 4)).sum().backward()
        torch.optim.SGD(net.parameters(), lr=1e-3).step()
        monitor.step()
    report = checkup(monitor)
    assert report.healthy
    assert "nothing to compare" in report["vanishing"].detail
    assert "no layer" in report["saturation"].detail


def test_values_are_the_measured_numbers():
    net = _net(depth=6)
    monitor, _ = _train(net, steps=1)
    report = checkup(monitor)
    grads = monitor.history("grad_norm")
    assert report["vanishing"].value == pytest.approx(grads["fc1"][0] / grads["out"][0], rel=1e-12)
    ratios = monitor.history("update_ratio")
    assert report["frozen layers"].value == min(r[0] for r in ratios.values())
    assert report["large updates"].value == max(r[0] for r in ratios.values())
    assert report["saturation"].value == max(s[0] for s in monitor.history("saturation").values())
    assert report["non-finite"].value == 0 and math.isnan(report["dead units"].value)


def test_report_lookup_and_text():
    report = checkup(*_train(_net()))
    assert report["vanishing"].check == "vanishing"
    with pytest.raises(KeyError, match="no check named 'speed'"):
        report["speed"]
    assert str(report).count("\n") == len(CHECKS) - 1          # one line per passing check
    assert all(line.startswith("✓") for line in str(report).splitlines())


@pytest.mark.parametrize("kwargs, error, words", [
    ({"monitor": "net"}, TypeError, "monitor must be a helpers.diagnostics.GradientMonitor, got str"),
    ({"history": {}}, TypeError, "history must be a helpers.training.History"),
    ({"vanishing": 0.0}, ValueError, "vanishing must be > 0.0"),
    ({"exploding": "big"}, TypeError, "exploding must be a real number"),
    ({"vanishing": 10.0, "exploding": 1.0}, ValueError, "vanishing must be < exploding"),
    ({"update_low": 0.5, "update_high": 0.1}, ValueError, "update_low must be < update_high"),
    ({"saturated": 1.5}, ValueError, "saturated must be <= 1.0"),
    ({"dead": math.nan}, ValueError, "dead must be finite"),
    ({"spike": -1.0}, ValueError, "spike must be > 0.0"),
])
def test_bad_arguments_are_named(kwargs, error, words):
    monitor, _ = _train(_net(), steps=1)
    before = [list(r.grad_norm.values()) for r in monitor.records]
    arguments = {"monitor": monitor} | kwargs
    with pytest.raises(error, match=words):
        checkup(**arguments)
    assert [list(r.grad_norm.values()) for r in monitor.records] == before


def test_a_monitor_without_records_is_refused():
    with pytest.raises(ValueError, match="monitor has no records"):
        checkup(GradientMonitor(_net()))


def test_history_type_is_the_training_history():
    monitor, _ = _train(_net(), steps=1)
    assert checkup(monitor, History()).healthy


def _with_nan_update(layer):
    """A trained monitor whose update ratio of ``layer`` is NaN at one recorded step (its weights went NaN)."""
    monitor, _ = _train(_net(), steps=3)
    monitor.records[1].update_ratio[layer] = math.nan
    return monitor


@pytest.mark.parametrize("layer", ["fc1", "out"])
def test_a_nan_update_ratio_fails_large_updates_by_name_and_leaves_the_range_to_the_other_layers(layer):
    # min/max with a NaN printed 'median update ratios nan to nan' and gave NaN values
    monitor = _with_nan_update(layer)
    others = {n: statistics.median(v) for n, v in monitor.history("update_ratio").items() if n != layer}
    report = checkup(monitor)
    assert report["frozen layers"].ok and report["frozen layers"].value == min(others.values())
    large = report["large updates"]
    assert not large.ok and large.value == max(others.values())
    assert f"NaN in {layer} (weights or update not finite" in large.detail
    assert f"median update ratios {min(others.values()):.1e} to {max(others.values()):.1e}" in large.detail
    assert "nan" not in report["frozen layers"].detail


def test_nan_update_ratios_in_every_layer_leave_no_range():
    monitor = _with_nan_update("fc1")
    for record in monitor.records:
        record.update_ratio.update(dict.fromkeys(record.update_ratio, math.nan))
    report = checkup(monitor)
    assert report["frozen layers"].ok and math.isnan(report["frozen layers"].value)
    assert report["frozen layers"].detail.startswith("no finite update ratio")
    assert not report["large updates"].ok and math.isnan(report["large updates"].value)


def test_a_large_and_a_nan_layer_are_both_named():
    monitor = _with_nan_update("fc1")
    detail = checkup(monitor, update_low=1e-12, update_high=1e-9)["large updates"].detail
    assert "above 1e-09" in detail and "NaN in fc1" in detail
