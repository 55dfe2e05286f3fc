import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.diagnostics import GradientMonitor
from helpers.models import MLP, scale_init_
from helpers.training import History, _scheduler_kind, evaluate, fit


def _data(n=96, features=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
    return X, y.clamp_max(classes - 1)


def _fit(net, data=None, **kwargs):
    options = {"epochs": 3, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1),
               "loss_fn": F.cross_entropy, "progress": False, "batch_size": 16}
    options.update(kwargs)
    return fit(net, data or _data(), **options)


def test_history_counts_and_learning():
    torch.manual_seed(0)
    net = MLP(5, 3, width=16, depth=2)
    history = _fit(net, _data(n=192), epochs=20, val_data=_data(seed=1))
    assert history.steps == 20 * 12 and history.epochs == 20
    assert len(history.loss) == len(history.lr) == len(history.grad_norm) == len(history.accuracy) == 240
    assert len(history.val_loss) == len(history.val_accuracy) == 20
    assert history.final("loss") < 0.6 * history.loss[0]
    assert history.val_accuracy[-1] > 0.75  # chance is below 0.5
    assert not history.diverged and history.diverged_at is None


def test_same_seed_same_history():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = MLP(5, 3, width=16, depth=2)
        runs.append(_fit(net, seed=5))
    assert runs[0].loss == runs[1].loss and runs[0].grad_norm == runs[1].grad_norm


def test_grad_norm_is_recorded_before_clipping_and_clip_is_applied():
    torch.manual_seed(0)
    net = MLP(5, 3, width=16, depth=2)
    reference = MLP(5, 3, width=16, depth=2)
    reference.load_state_dict(net.state_dict())
    X, y = _data()
    calls = []

    def clip(params):
        calls.append(torch.nn.utils.clip_grad_norm_(params, 1e-3).item())

    history = _fit(net, (X, y), epochs=1, clip=clip, batch_size=len(X))
    F.cross_entropy(reference(X), y).backward()
    expected = torch.nn.utils.get_total_norm([p.grad for p in reference.parameters()]).item()
    assert history.grad_norm == pytest.approx([expected], rel=1e-5) and calls == pytest.approx([expected], rel=1e-5)
    moved = math.sqrt(sum(((a - b) ** 2).sum().item() for a, b in zip(net.parameters(), reference.parameters())))
    assert moved == pytest.approx(0.1 * 1e-3, rel=1e-3)  # lr * clipped norm


def test_scheduler_steps_every_step_and_lr_is_recorded_before_the_step():
    net = MLP(5, 3, width=8, depth=1)
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    history = _fit(net, epochs=1, optimizer=optimizer, scheduler=scheduler)
    assert history.lr == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_monitor_is_attached_and_stepped():
    net = MLP(5, 3, width=8, depth=2)
    monitor = GradientMonitor(net)
    history = _fit(net, monitor=monitor)
    assert len(monitor.records) == history.steps


def test_dataloader_and_regression_targets():
    X = torch.randn(40, 3)
    y = X.sum(dim=1, keepdim=True)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=10)
    net = MLP(3, 1, width=8, depth=1)
    history = _fit(net, loader, loss_fn=F.mse_loss, val_data=(X, y))
    assert history.steps == 12 and history.accuracy == []
    assert math.isnan(history.val_accuracy[0])


def test_divergence_guard_on_a_net_made_to_explode():
    torch.manual_seed(0)
    net = scale_init_(MLP(5, 3, width=32, depth=8, activation="relu"), gain=3.0, bias=0.0)
    finite = []  # the weights at every forward pass whose loss was finite

    def loss_fn(out, target):
        loss = F.cross_entropy(out, target)
        if torch.isfinite(loss):
            finite.append([p.detach().clone() for p in net.parameters()])
        return loss

    history = _fit(net, epochs=5, optimizer=torch.optim.SGD(net.parameters(), lr=1.0), loss_fn=loss_fn)
    assert history.diverged
    assert history.diverged_at == history.steps and history.steps < 30
    assert all(math.isfinite(v) for v in history.loss)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert all(torch.equal(p, k) for p, k in zip(net.parameters(), finite[-1]))


def test_divergence_guard_puts_back_the_weights_of_the_last_finite_loss():
    torch.manual_seed(0)
    net = MLP(5, 3, width=16, depth=2)
    at_call = []  # the weights each loss was computed with

    def loss_infinite_at_the_third_call(out, target):
        at_call.append([p.detach().clone() for p in net.parameters()])
        loss = F.cross_entropy(out, target)
        return loss * math.inf if len(at_call) == 3 else loss

    history = _fit(net, loss_fn=loss_infinite_at_the_third_call)
    assert history.diverged and history.diverged_at == 2 == history.steps and len(history.loss) == 2
    # the diverging step's weights (after step 1) are undone: back to those of the last finite loss
    assert not all(torch.equal(a, b) for a, b in zip(at_call[2], at_call[1]))
    assert all(torch.equal(p, k) for p, k in zip(net.parameters(), at_call[1]))


def test_divergence_guard_on_a_non_finite_gradient():
    net = MLP(2, 2, width=4, depth=1)
    X, y = torch.ones(4, 2), torch.zeros(4, dtype=torch.long)
    before = [p.detach().clone() for p in net.parameters()]

    def loss_with_infinite_gradient(out, target):
        return F.cross_entropy(out, target) + 0.0 * torch.sqrt(out - out).sum()  # d sqrt(0) = inf

    history = _fit(net, (X, y), loss_fn=loss_with_infinite_gradient)
    assert history.diverged and history.diverged_at == 0 and history.steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("kwargs, error, text", [
    ({"epochs": 0}, ValueError, "epochs must be an int >= 1, got 0"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"optimizer": "sgd"}, TypeError, "optimizer must be a torch.optim.Optimizer"),
    ({"loss_fn": None}, TypeError, "loss_fn must be callable"),
    ({"clip": 1.0}, TypeError, "clip must be callable"),
    ({"scheduler": 3}, TypeError, "scheduler"),
    ({"val_data": (torch.zeros(3, 5),)}, TypeError, "val_data"),
])
def test_bad_arguments_modify_nothing(kwargs, error, text):
    net = MLP(5, 3, width=8, depth=1)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(error, match=text):
        _fit(net, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("data, error, text", [
    ((torch.zeros(4, 5), torch.zeros(3, dtype=torch.long)), ValueError, "same length"),
    ((torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)), ValueError, "empty"),
    (42, TypeError, "train_data"),
])
def test_bad_training_data(data, error, text):
    net = MLP(5, 3, width=8, depth=1)
    with pytest.raises(error, match=text):
        fit(net, data, epochs=1, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_fn=F.cross_entropy)


def test_model_without_trainable_parameters():
    net = nn.Sequential(nn.Linear(2, 2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter"):
        fit(net, _data(features=2), epochs=1, optimizer=optimizer, loss_fn=F.cross_entropy, progress=False)


def test_evaluate_restores_training_mode():
    net = MLP(5, 3, width=8, depth=1).train()
    loss, accuracy = evaluate(net, _data(), F.cross_entropy)
    assert net.training and loss > 0 and 0 <= accuracy <= 1


def test_history_final_checks_its_argument():
    with pytest.raises(ValueError, match="metric"):
        History().final("steps")
    assert math.isnan(History().final("loss"))


def test_progress_bar_path_runs(monkeypatch):
    monkeypatch.setenv("COURSE_PROGRESS", "1")
    net = MLP(5, 3, width=8, depth=1)
    assert _fit(net, progress=True).steps == 18


def test_clip_firing_is_recorded():
    import functools

    from helpers.clipping import adaptive_clip_grad_, clip_grad_norm_, clip_grad_value_

    torch.manual_seed(0)
    for clip, expect_all in ((functools.partial(clip_grad_norm_, max_norm=1e-4), True),
                             (functools.partial(clip_grad_value_, clip_value=1e-6), True),
                             (functools.partial(clip_grad_norm_, max_norm=1e6), False),
                             (functools.partial(adaptive_clip_grad_, clipping=1e-6), True)):
        net = MLP(5, 3, width=16, depth=2)
        history = _fit(net, clip=clip)
        assert len(history.clipped) == len(history.clipped_grad_norm) == history.steps
        assert all(history.clipped) if expect_all else not any(history.clipped)
        assert history.clip_fraction == (1.0 if expect_all else 0.0)
        if expect_all:
            assert all(a < b for a, b in zip(history.clipped_grad_norm, history.grad_norm))
        else:
            assert history.clipped_grad_norm == pytest.approx(history.grad_norm, rel=1e-6)


def test_clip_fraction_counts_the_steps_where_the_norm_exceeded_the_threshold():
    from helpers.clipping import clip_grad_norm_

    torch.manual_seed(0)
    net = MLP(5, 3, width=16, depth=2)
    threshold = 0.5
    history = _fit(net, epochs=5, clip=lambda p: clip_grad_norm_(p, threshold))
    expected = [n > threshold for n in history.grad_norm]
    assert 0 < sum(expected) < len(expected)  # the threshold sits inside the observed range
    assert history.clipped == expected
    for before, after, fired in zip(history.grad_norm, history.clipped_grad_norm, history.clipped):
        assert after == pytest.approx(threshold if fired else before, rel=1e-5)


def test_without_clip_nothing_is_recorded():
    history = _fit(MLP(5, 3, width=8, depth=1))
    assert history.clipped == [] and history.clipped_grad_norm == [] and math.isnan(history.clip_fraction)


# ---- issue 16: resume_from with another optimizer or scheduler kind fails before modifying anything


def _resume_world(tmp_path, make_opt, make_sched):
    import os

    from helpers.schedulers import CosineAnnealing  # noqa: F401

    torch.manual_seed(0)
    X, y = torch.randn(64, 3), torch.randn(64, 1)
    net = torch.nn.Linear(3, 1)
    opt = make_opt(net)
    path = os.path.join(tmp_path, "ckpt.pt")
    fit(net, (X, y), epochs=1, optimizer=opt, loss_fn=torch.nn.functional.mse_loss,
        scheduler=make_sched(opt) if make_sched else None, checkpoint_path=path, progress=False)
    return X, y, path


@pytest.mark.parametrize("case", ["optimizer kind", "scheduler kind", "scheduler None", "old checkpoint optimizer",
                                  "old checkpoint scheduler"])
def test_resume_from_another_kind_raises_and_modifies_nothing(tmp_path, case):
    from helpers import optim as hoptim
    from helpers.schedulers import CosineAnnealing, StepDecay

    X, y, path = _resume_world(tmp_path, lambda n: hoptim.AdamW(n.parameters(), lr=0.01),
                               lambda o: CosineAnnealing(o, total_steps=10))
    if case.startswith("old"):
        payload = torch.load(path, weights_only=True)
        del payload["optimizer_kind"], payload["scheduler_kind"]
        torch.save(payload, path)
    torch.manual_seed(1)
    net = torch.nn.Linear(3, 1)
    if "optimizer" in case:
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = hoptim.AdamW(net.parameters(), lr=0.01)
    sched = None if case == "scheduler None" else (
        CosineAnnealing(opt, total_steps=10) if "optimizer" in case else StepDecay(opt, 2))
    before = ({k: v.clone() for k, v in net.state_dict().items()}, copy.deepcopy(opt.state_dict()),
              sched.state_dict() if sched else None)
    with pytest.raises(ValueError, match="resume_from holds the state of"):
        fit(net, (X, y), epochs=2, optimizer=opt, loss_fn=torch.nn.functional.mse_loss, scheduler=sched,
            resume_from=path, progress=False)
    assert all(torch.equal(v, before[0][k]) for k, v in net.state_dict().items())
    assert opt.state_dict() == before[1]
    assert sched is None or sched.state_dict() == before[2]


def test_resume_from_same_kind_and_torch_counterpart_still_works(tmp_path):
    from helpers import optim as hoptim
    from helpers.schedulers import CosineAnnealing

    X, y, path = _resume_world(tmp_path, lambda n: hoptim.AdamW(n.parameters(), lr=0.01),
                               lambda o: CosineAnnealing(o, total_steps=10))
    for make in (lambda n: hoptim.AdamW(n.parameters(), lr=0.01), lambda n: torch.optim.AdamW(n.parameters(), lr=0.01)):
        net = torch.nn.Linear(3, 1)
        opt = make(net)
        history = fit(net, (X, y), epochs=2, optimizer=opt, loss_fn=torch.nn.functional.mse_loss,
                      scheduler=CosineAnnealing(opt, total_steps=10), resume_from=path, progress=False)
        assert history.steps > 0 and len(history.epoch_loss) == 2


_L = torch.optim.lr_scheduler
_INNER = {"step": lambda o: _L.StepLR(o, 3, 0.5), "exp": lambda o: _L.ExponentialLR(o, 0.9),
          "cos": lambda o: _L.CosineAnnealingLR(o, 20), "lin": lambda o: _L.LinearLR(o, 1.0, 0.5, 10)}


def _chained(*names):
    return lambda o: _L.ChainedScheduler([_INNER[n](o) for n in names])


def _sequential(*names):
    return lambda o: _L.SequentialLR(o, [_INNER[n](o) for n in names], milestones=list(range(2, 2 * len(names), 2)))


def _nested(*names):
    return lambda o: _L.ChainedScheduler([_L.SequentialLR(o, [_INNER[n](o) for n in names], milestones=[2]),
                                          _INNER["exp"](o)])


_SAVED = _chained("step", "exp")  # the checkpoint's scheduler: ChainedScheduler[StepLR, ExponentialLR]
_OTHER_COMPOSITES = {
    "other inner kinds (hostile r13)": _chained("cos", "lin"),
    "same kinds, other order": _chained("exp", "step"),
    "one inner scheduler fewer": _chained("step"),
    "one inner scheduler more": _chained("step", "exp", "lin"),
    "SequentialLR of the same kinds": _sequential("step", "exp"),
    "the second inner kind differs": _chained("step", "lin"),
    "nested: a SequentialLR inside": _nested("step", "exp"),
}


def _refused_and_untouched(path, X, y, make_sched, old_kind=None):
    """fit(resume_from=path) and load_checkpoint with ``make_sched``'s scheduler raise and modify nothing."""
    from helpers.training import load_checkpoint

    if old_kind != "keep":
        payload = torch.load(path, weights_only=True)
        payload["scheduler_kind"] = old_kind  # as written before inner kinds were recorded (or before any kind)
        torch.save(payload, path)
    for call, name in ((lambda net, opt, sched: fit(net, (X, y), epochs=2, optimizer=opt, loss_fn=F.mse_loss,
                                                   scheduler=sched, resume_from=path, progress=False),
                        "resume_from"),
                       (lambda net, opt, sched: load_checkpoint(path, net, opt, sched), "path")):
        net = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        sched = make_sched(opt)
        before = (copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict()))
        with pytest.raises(ValueError, match=f"{name} holds the state of scheduler .*but fit got scheduler "
                                             f"{re.escape(_scheduler_kind(sched))}; pass a scheduler of the kind"):
            call(net, opt, sched)
        assert all(torch.equal(v, before[0][k]) for k, v in net.state_dict().items())
        assert opt.state_dict() == before[1] and sched.state_dict() == before[2]


@pytest.mark.parametrize("case", sorted(_OTHER_COMPOSITES))
@pytest.mark.parametrize("old_kind", ["keep", "ChainedScheduler", None])
def test_resume_refuses_a_composite_scheduler_with_other_inner_kinds(tmp_path, case, old_kind):
    X, y, path = _resume_world(tmp_path, lambda n: torch.optim.SGD(n.parameters(), lr=0.1), _SAVED)
    _refused_and_untouched(path, X, y, _OTHER_COMPOSITES[case], old_kind)


def test_resume_names_the_inner_kinds_in_the_error(tmp_path):
    X, y, path = _resume_world(tmp_path, lambda n: torch.optim.SGD(n.parameters(), lr=0.1), _SAVED)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    expected = ("resume_from holds the state of scheduler ChainedScheduler[StepLR, ExponentialLR], but fit got "
                "scheduler ChainedScheduler[CosineAnnealingLR, LinearLR]; pass a scheduler of the kind that wrote "
                "the checkpoint")
    with pytest.raises(ValueError, match=re.escape(expected)):
        fit(net, (X, y), epochs=2, optimizer=opt, loss_fn=F.mse_loss, scheduler=_chained("cos", "lin")(opt),
            resume_from=path, progress=False)


@pytest.mark.parametrize("old_kind", ["keep", "ChainedScheduler", None])
@pytest.mark.parametrize("make", [_chained("step", "exp"), _nested("step", "lin")], ids=["chained", "nested"])
def test_resume_with_the_same_composite_continues_like_an_uninterrupted_run(tmp_path, make, old_kind):
    X, y, path = _resume_world(tmp_path, lambda n: torch.optim.SGD(n.parameters(), lr=0.1), make)
    if old_kind != "keep":
        payload = torch.load(path, weights_only=True)
        payload["scheduler_kind"] = old_kind
        torch.save(payload, path)
    torch.manual_seed(0)  # _resume_world's data and initial weights
    torch.randn(64, 3), torch.randn(64, 1)
    full_net = torch.nn.Linear(3, 1)
    full_opt = torch.optim.SGD(full_net.parameters(), lr=0.1)
    fit(full_net, (X, y), epochs=2, optimizer=full_opt, loss_fn=F.mse_loss, scheduler=make(full_opt), progress=False)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    fit(net, (X, y), epochs=2, optimizer=opt, loss_fn=F.mse_loss, scheduler=make(opt), resume_from=path,
        progress=False)
    assert opt.param_groups[0]["lr"] == full_opt.param_groups[0]["lr"]
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), full_net.parameters()))


def test_evaluate_iterates_in_order():
    from helpers.training import evaluate

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            seen.append(x[:, 0].clone())
            return x[:, :1] * 0 + self.w

    X = torch.arange(10.0).reshape(10, 1)
    evaluate(Recorder(), (X, torch.zeros(10, 1)), F.mse_loss, batch_size=4)
    assert torch.equal(torch.cat(seen), torch.arange(10.0))


def test_fit_accepts_a_list_of_batches():
    torch.manual_seed(0)
    X, y = torch.randn(64, 3), torch.randn(64, 1)
    net = torch.nn.Linear(3, 1)
    batches = [(X[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    history = fit(net, batches, epochs=2, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                  loss_fn=F.mse_loss, progress=False)
    assert history.steps == 8


def test_fit_grad_norm_does_not_underflow():
    torch.manual_seed(0)
    X, y = torch.randn(32, 3), torch.randn(32, 1)
    net = torch.nn.Linear(3, 1)

    def tiny_loss(out, target):
        return F.mse_loss(out, target) * 1e-30

    history = fit(net, (X, y), epochs=1, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_fn=tiny_loss,
                  batch_size=32, progress=False)
    expected = math.sqrt(sum(float(torch.linalg.vector_norm(p.grad.double())) ** 2 for p in net.parameters()))
    assert history.grad_norm[0] > 0 and history.grad_norm[0] == pytest.approx(expected, rel=1e-5)


def _exact_global_norm(params):
    """The global 2-norm in float64 with the largest entry divided out (the truth for finite entries)."""
    flat = torch.cat([p.grad.detach().double().flatten() for p in params])
    peak = float(flat.abs().max())
    return peak * float(torch.linalg.vector_norm(flat / peak))


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e19), (torch.float32, 1e35), (torch.float64, 1e200)])
def test_huge_finite_gradients_are_recorded_and_are_no_divergence(dtype, scale):
    # F1: every gradient entry is finite, but the float32 (float64) squares of the norm overflow
    torch.manual_seed(0)
    net = nn.Linear(64, 64).to(dtype)
    X, y = torch.randn(32, 64, dtype=dtype), torch.zeros(32, 64, dtype=dtype)

    def loss_fn(out, target):
        return (out - target).sum() * scale

    history = fit(net, (X, y), epochs=2, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_fn=loss_fn,
                  progress=False, batch_size=32)
    net.zero_grad()
    loss_fn(net(X), y).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in net.parameters())
    assert not history.diverged and history.steps == 2
    assert history.grad_norm == pytest.approx([_exact_global_norm(net.parameters())] * 2, rel=1e-6)


def test_a_norm_beyond_float64_with_finite_entries_is_recorded_as_inf_and_training_goes_on():
    net = nn.Linear(8, 8).double()
    net.weight.register_hook(lambda g: torch.full_like(g, 1e308))   # finite entries, a norm beyond float64
    history = fit(net, (torch.randn(4, 8, dtype=torch.float64), torch.zeros(4, 8, dtype=torch.float64)), epochs=1,
                  optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_fn=F.mse_loss, progress=False)
    assert not history.diverged and history.grad_norm == [math.inf]


def test_an_infinite_gradient_entry_among_huge_ones_is_still_a_divergence():
    torch.manual_seed(0)
    net = nn.Linear(4, 4)
    corner = torch.zeros(4, 4, dtype=torch.bool)
    corner[0, 0] = True
    net.weight.register_hook(lambda g: torch.where(corner, math.inf, g * 1e19))
    before = [p.detach().clone() for p in net.parameters()]
    history = fit(net, (torch.randn(8, 4), torch.zeros(8, 4)), epochs=1,
                  optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_fn=F.mse_loss, progress=False)
    assert history.diverged and history.diverged_at == 0 and history.steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_clipping_huge_gradients_inside_fit_is_torchs_clipping():
    # torch's clip_grad_norm_ divides by a float32 total norm that overflowed: the gradients become 0. fit does not
    # change that; it records the true norm before clipping and the norm after it
    import functools

    from helpers.clipping import clip_grad_norm_

    torch.manual_seed(0)
    net = nn.Linear(64, 64)
    X, y = torch.randn(32, 64), torch.zeros(32, 64)

    def loss_fn(out, target):
        return (out - target).sum() * 1e19

    twin = copy.deepcopy(net)
    loss_fn(twin(X), y).backward()
    torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
    history = fit(net, (X, y), epochs=1, optimizer=torch.optim.SGD(net.parameters(), lr=1.0), loss_fn=loss_fn,
                  progress=False, batch_size=32, clip=functools.partial(clip_grad_norm_, max_norm=1.0))
    torch.optim.SGD(twin.parameters(), lr=1.0).step()
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), twin.parameters()))
    assert not history.diverged and history.clipped == [True]
    assert history.grad_norm[0] > 1e21 and history.clipped_grad_norm == [0.0]


def _mixed_modes(root_training: bool):
    """A model whose modules are not all in one mode: a BatchNorm frozen in eval mode inside a training model,
    or a Dropout left in training mode inside an evaluating one."""
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 3)))
    net.train(root_training)
    net[1].train(not root_training)
    net[2][0].train(root_training)
    net[2].train(not root_training)     # a container in the other mode, its child in the root's
    return net


def _modes(net):
    return [m.training for m in net.modules()]


@pytest.mark.parametrize("root_training", [True, False])
def test_evaluate_puts_every_module_back_in_its_own_mode(root_training):
    # F3: model.train(was_training) set every sub-module to the root's mode
    net = _mixed_modes(root_training)
    modes = _modes(net)
    evaluate(net, _data(), F.cross_entropy)
    assert _modes(net) == modes

    def failing_loss(out, target):
        raise RuntimeError("loss failed")

    with pytest.raises(RuntimeError, match="loss failed"):
        evaluate(net, _data(), failing_loss)
    assert _modes(net) == modes


def test_kept_modes_calls_train_only_where_a_mode_differs():
    from helpers._modes import kept_modes

    calls = []

    class Counting(nn.Linear):
        def train(self, mode=True):
            calls.append(mode)
            return super().train(mode)

    net = nn.Sequential(Counting(2, 2), nn.BatchNorm1d(2))
    net[1].eval()
    with kept_modes(net):
        pass
    assert calls == []
    with kept_modes(net):
        net[0].training = False
    assert calls == [True] and _modes(net) == [True, True, False]


def test_evaluate_a_model_without_parameters_runs_where_the_data_are():
    X, y = _data()
    loss, accuracy = evaluate(nn.Identity(), (X[:, :3], y), F.cross_entropy)
    assert loss == pytest.approx(float(F.cross_entropy(X[:, :3], y))) and 0 <= accuracy <= 1


@pytest.mark.parametrize("data", [
    lambda X, y: [],
    lambda X, y: (),
    lambda X, y: iter([]),
    lambda X, y: (b for b in []),
    lambda X, y: [(X[:0], y[:0])],
    lambda X, y: ((X[:0], y[:0]) for _ in range(3)),
], ids=["empty list", "empty tuple", "empty iterator", "empty generator", "one empty batch", "only empty batches"])
def test_evaluate_on_no_example_says_the_set_is_empty(data):
    X, y = _data()
    net = _mixed_modes(True)
    modes = _modes(net)
    with pytest.raises(ValueError, match="data (is empty|holds no example)"):
        evaluate(net, data(X, y), F.cross_entropy)
    assert _modes(net) == modes


def test_evaluate_skips_empty_batches():
    X, y = _data()
    net = MLP(5, 3, width=8, depth=1)
    expected = evaluate(net, [(X[:40], y[:40]), (X[40:], y[40:])], F.cross_entropy)
    assert evaluate(net, [(X[:40], y[:40]), (X[:0], y[:0]), (X[40:], y[40:])], F.cross_entropy) == expected


@pytest.mark.parametrize("data, text", [
    (lambda X, y: {"train": (X, y)}, "got dict .iterating it gives its keys"),
    (lambda X, y: "xy", "got str .iterating it gives its characters"),
    (lambda X, y: iter([(X, y), (X, y, y)]), r"batch 1 is \['Tensor', 'Tensor', 'Tensor'\]"),
    (lambda X, y: iter([(X, y), X]), "batch 1 is Tensor"),
    (lambda X, y: iter([(X, y.tolist())]), r"batch 0 is \['Tensor', 'list'\]"),
], ids=["dict", "str", "a triple", "a bare tensor", "a list as y"])
def test_evaluate_says_which_batch_is_not_a_pair(data, text):
    X, y = _data()
    with pytest.raises(TypeError, match=f"data .*{text}"):
        evaluate(MLP(5, 3, width=8, depth=1), data(X, y), F.cross_entropy)


def test_fit_keeps_a_frozen_batch_norm_frozen_and_trains_a_model_left_in_eval_mode():
    # a BatchNorm put in eval mode inside a training model keeps its running statistics, as in a plain loop;
    # a model left in eval mode as a whole (after an evaluation) is trained, every module of it
    X, y = _data()
    frozen = _mixed_modes(True)
    before = frozen[1].running_mean.clone()
    fit(frozen, (X, y), epochs=1, optimizer=torch.optim.SGD(frozen.parameters(), lr=0.1), loss_fn=F.cross_entropy,
        progress=False, batch_size=32)
    assert torch.equal(frozen[1].running_mean, before) and not frozen[1].training

    everything = _mixed_modes(True).eval()
    fit(everything, (X, y), epochs=1, optimizer=torch.optim.SGD(everything.parameters(), lr=0.1),
        loss_fn=F.cross_entropy, progress=False, batch_size=32)
    assert all(m.training for m in everything.modules())
    assert not torch.equal(everything[1].running_mean, before)


def test_a_batch_without_examples_is_skipped():
    torch.manual_seed(0)
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    with_empty, without = nn.Linear(4, 3), nn.Linear(4, 3)
    without.load_state_dict(with_empty.state_dict())
    runs = []
    for net, batches in ((with_empty, [(X[:16], y[:16]), (X[:0], y[:0]), (X[16:], y[16:])]),
                         (without, [(X[:16], y[:16]), (X[16:], y[16:])])):
        runs.append(fit(net, batches, epochs=2, optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
                        loss_fn=F.cross_entropy, progress=False))
    assert not runs[0].diverged and runs[0].loss == runs[1].loss and runs[0].steps == 4
    assert torch.equal(with_empty.weight, without.weight)


@pytest.mark.parametrize("factor", [0.0, 1e-30, 1e25])
def test_fit_records_the_exact_gradient_norm_of_complex_weights(factor):
    # a zero, tiny or overflowing norm is recomputed in float64, which torch refuses for a complex tensor
    torch.manual_seed(0)
    net = nn.Linear(3, 2, dtype=torch.complex64)
    X, y = torch.randn(4, 3, dtype=torch.complex64), torch.zeros(4, 2)

    def loss_fn(out, target):
        return factor * (out.abs() - target).square().mean()

    twin = copy.deepcopy(net)
    loss_fn(twin(X), y).backward()
    grads = [torch.view_as_real(p.grad).double() for p in twin.parameters()]
    expected = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
    history = fit(net, (X, y), epochs=1, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_fn=loss_fn,
                  progress=False, batch_size=4)
    assert history.grad_norm == [pytest.approx(expected, rel=1e-6)]
