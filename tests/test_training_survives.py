"""fit() survives: interruption, divergence, checkpoints and resuming, determinism."""

import copy
import dataclasses
import math
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.models import MLP, scale_init_
from helpers.schedulers import CosineAnnealing
from helpers.training import History, fit, load_checkpoint, save_checkpoint


def _data(n=96, features=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=g)
    y = ((X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()).clamp_max(2)
    return X, y


def _net(width=16, depth=2, dropout=0.1):
    """An MLP with dropout, which draws from the global RNG (so a resume must restore it)."""
    layers, features = [], 5
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU(), nn.Dropout(dropout)]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, 3))


def _setup(seed=0):
    """A net with dropout, Adam (state), a cosine schedule (state)."""
    torch.manual_seed(seed)
    net = _net()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    scheduler = CosineAnnealing(optimizer, total_steps=40)
    return net, optimizer, scheduler


def _fit(net, optimizer, scheduler, **kwargs):
    options = {"epochs": 5, "loss_fn": F.cross_entropy, "progress": False, "batch_size": 16, "seed": 3,
               "val_data": _data(seed=1)}
    options.update(kwargs)
    return fit(net, options.pop("data", _data()), optimizer=optimizer, scheduler=scheduler, **options)


def _weights(net):
    return [t.detach().clone() for t in net.state_dict().values()]


def _equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _consistent(history):
    """Every list of History, the ones added later too, has one entry per step or per epoch (or none)."""
    assert len(history.lr) == len(history.grad_norm) == history.steps
    for f in dataclasses.fields(History):
        values = getattr(history, f.name)
        if isinstance(values, list):
            per = f.metadata.get("per")
            assert per in ("step", "epoch"), f"History.{f.name} declares no per step / per epoch"
            assert len(values) in (0, history.steps if per == "step" else history.epochs), f.name


# ---------------------------------------------------------------------------------- determinism

def test_same_seed_gives_the_same_history_twice():
    runs = []
    for _ in range(2):
        net, optimizer, scheduler = _setup()
        runs.append((_fit(net, optimizer, scheduler), _weights(net)))
    (first, w1), (second, w2) = runs
    assert first.to_dict() == second.to_dict()
    assert _equal(w1, w2)


def test_another_shuffling_seed_gives_another_history():
    net, optimizer, scheduler = _setup()
    first = _fit(net, optimizer, scheduler, epochs=1)
    net, optimizer, scheduler = _setup()
    assert _fit(net, optimizer, scheduler, epochs=1, seed=4).loss != first.loss


# ---------------------------------------------------------------------------------- interruption

class _InterruptAt:
    """A loss function that raises KeyboardInterrupt at the forward pass of step ``at``."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, output, target):
        if not torch.is_grad_enabled():  # validation (evaluate runs without autograd) does not count
            return F.cross_entropy(output, target)
        if self.calls == self.at:
            raise KeyboardInterrupt
        self.calls += 1
        return F.cross_entropy(output, target)


def test_interrupt_during_a_step_returns_a_consistent_history_and_the_weights_of_the_last_step():
    net, optimizer, scheduler = _setup()
    reference = _fit(net, optimizer, scheduler, epochs=2)  # 2 epochs of 6 steps
    expected = _weights(net)

    net, optimizer, scheduler = _setup()
    history = _fit(net, optimizer, scheduler, epochs=5, loss_fn=_InterruptAt(12))  # first step of epoch 3
    assert history.interrupted and history.interrupted_at == 12 == history.steps
    assert history.epochs == 2 and not history.diverged
    _consistent(history)
    assert history.loss == reference.loss and history.val_loss == reference.val_loss
    assert _equal(_weights(net), expected)
    assert all(p.grad is None for p in net.parameters())


class _SignalInsideStep(torch.optim.SGD):
    """SGD that receives SIGINT halfway through updating its parameters, at step ``at``."""

    def __init__(self, params, at, **kwargs):
        super().__init__(params, **kwargs)
        self.at, self.steps = at, 0

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        half = len(params) // 2
        for i, p in enumerate(params):
            if self.steps == self.at and i == half:
                signal.raise_signal(signal.SIGINT)  # as Ctrl-C would, between two parameter updates
            p.add_(p.grad, alpha=-self.param_groups[0]["lr"])
        self.steps += 1


@pytest.fixture
def interactive_sigint():
    """Ctrl-C handled as in a terminal. A shell starts background jobs (CI runners, `make test &`)
    with SIGINT ignored, and fit rightly leaves an ignored SIGINT alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not hasattr(signal, "raise_signal"), reason="needs signal.raise_signal")
def test_ctrl_c_inside_the_optimizer_step_is_held_back_until_the_step_is_whole(interactive_sigint):
    torch.manual_seed(0)
    net = MLP(5, 3, width=16, depth=2)
    start = copy.deepcopy(net.state_dict())
    reference = fit(net, _data(), epochs=1, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                    loss_fn=F.cross_entropy, progress=False, batch_size=16)
    after_four = None

    torch.manual_seed(0)
    net = MLP(5, 3, width=16, depth=2)
    net.load_state_dict(start)
    previous = signal.getsignal(signal.SIGINT)
    history = fit(net, _data(), epochs=1, optimizer=_SignalInsideStep(net.parameters(), at=3, lr=0.1),
                  loss_fn=F.cross_entropy, progress=False, batch_size=16)
    assert signal.getsignal(signal.SIGINT) is previous  # fit put the handler back
    assert history.interrupted and history.steps == 4     # steps 0..3 complete, step 3 applied whole
    assert history.loss == reference.loss[:4]
    # the weights are those after exactly four whole steps
    torch.manual_seed(0)
    check = MLP(5, 3, width=16, depth=2)
    check.load_state_dict(start)
    fit(check, _data(), epochs=1, optimizer=torch.optim.SGD(check.parameters(), lr=0.1),
        loss_fn=_InterruptAt(4), progress=False, batch_size=16)
    after_four = _weights(check)
    assert _equal(_weights(net), after_four)


def test_keyboard_interrupt_raised_by_the_optimizer_itself_undoes_the_half_step():
    class Breaks(torch.optim.SGD):
        @torch.no_grad()
        def step(self, closure=None):
            params = [p for g in self.param_groups for p in g["params"]]
            params[0].add_(1000.0)  # half-applied ...
            raise KeyboardInterrupt  # ... then interrupted

    torch.manual_seed(0)
    net = MLP(5, 3, width=16, depth=2)
    before = _weights(net)
    history = fit(net, _data(), epochs=1, optimizer=Breaks(net.parameters(), lr=0.1), loss_fn=F.cross_entropy,
                  progress=False, batch_size=16)
    assert history.interrupted and history.steps == 0 and history.loss == []
    assert _equal(_weights(net), before)


def test_interrupt_while_an_epoch_ends_keeps_its_steps_but_not_the_epoch():
    class InterruptValidation:
        """Raises KeyboardInterrupt in the second validation pass (evaluate runs without autograd)."""

        def __init__(self):
            self.validations = 0

        def __call__(self, output, target):
            if not torch.is_grad_enabled():
                self.validations += 1
                if self.validations == 2:
                    raise KeyboardInterrupt
            return F.cross_entropy(output, target)

    net, optimizer, scheduler = _setup()
    reference = _fit(net, optimizer, scheduler, epochs=2)
    net, optimizer, scheduler = _setup()
    history = _fit(net, optimizer, scheduler, epochs=5, loss_fn=InterruptValidation())
    assert history.interrupted and history.interrupted_at == 12 == history.steps  # epoch 2's steps stay
    assert history.epochs == 1 and history.epoch_loss == reference.epoch_loss[:1]  # its end does not
    _consistent(history)
    assert history.loss == reference.loss and history.val_loss == reference.val_loss[:1]


# ---------------------------------------------------------------------------------- divergence

def test_divergence_guard_restores_the_last_finite_weights():
    torch.manual_seed(0)
    net = scale_init_(MLP(5, 3, width=32, depth=8, activation="relu"), gain=3.0, bias=0.0)
    seen = []

    def loss_fn(out, target):
        loss = F.cross_entropy(out, target)
        seen.append((bool(torch.isfinite(loss)), _weights(net)))
        return loss

    history = fit(net, _data(), epochs=5, optimizer=torch.optim.SGD(net.parameters(), lr=1.0), loss_fn=loss_fn,
                  progress=False, batch_size=16)
    assert history.diverged and not history.interrupted
    # the loss blew up (the weights of the forward pass before are restored), or the loss was
    # finite but the gradient was not (that forward pass's weights are kept): either way the
    # model holds the weights of the last forward pass whose loss was finite
    last_finite = [weights for finite, weights in seen if finite][-1]
    assert _equal(_weights(net), last_finite)
    assert all(torch.isfinite(t).all() for t in _weights(net))
    _consistent(history)


# ---------------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_with_weights_only_loading(tmp_path):
    net, optimizer, scheduler = _setup()
    history = _fit(net, optimizer, scheduler, epochs=2)
    path = save_checkpoint(tmp_path / "ckpt.pt", net, optimizer, scheduler, history, epoch=2)
    payload = torch.load(path, weights_only=True)  # nothing in it needs pickle's code execution
    assert payload["epoch"] == 2 and not (tmp_path / "ckpt.pt.tmp").exists()

    other, other_optimizer, other_scheduler = _setup(seed=1)
    info = load_checkpoint(path, other, other_optimizer, other_scheduler)
    assert info["epoch"] == 2 and info["history"].to_dict() == history.to_dict()
    assert _equal(_weights(other), _weights(net))
    assert other_scheduler.state_dict() == scheduler.state_dict()
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_a_checkpoint_that_does_not_fit_is_refused_and_changes_nothing(tmp_path):
    net, optimizer, scheduler = _setup()
    path = save_checkpoint(tmp_path / "ckpt.pt", net, optimizer, scheduler)
    wider = _net(width=32)
    before = _weights(wider)
    with pytest.raises(ValueError, match="shapes differ"):
        load_checkpoint(path, wider)
    assert _equal(_weights(wider), before)
    deeper = _net(depth=3)
    with pytest.raises(ValueError, match="missing keys"):
        load_checkpoint(path, deeper)
    bare = save_checkpoint(tmp_path / "bare.pt", net)
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(bare, net, optimizer)


def test_a_pickle_with_code_is_not_loaded(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": History()}, path)  # a custom class: needs full unpickling
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(path, MLP(5, 3, width=16, depth=2))


@pytest.mark.parametrize("call, error, text", [
    (lambda p, n: save_checkpoint(3, n), TypeError, "path"),
    (lambda p, n: save_checkpoint(p / "missing-dir" / "c.pt", n), ValueError, "path"),
    (lambda p, n: save_checkpoint(p / "c.pt", "net"), TypeError, "model"),
    (lambda p, n: save_checkpoint(p / "c.pt", n, epoch=-1), ValueError, "epoch"),
    (lambda p, n: save_checkpoint(p / "c.pt", n, history={"loss": []}), TypeError, "history"),
    (lambda p, n: load_checkpoint(p / "nothing.pt", n), ValueError, "path"),
    (lambda p, n: fit(n, _data(), epochs=1, optimizer=torch.optim.SGD(n.parameters()), loss_fn=F.cross_entropy,
                      resume_from=p / "nothing.pt"), ValueError, "resume_from"),
    (lambda p, n: fit(n, _data(), epochs=1, optimizer=torch.optim.SGD(n.parameters()), loss_fn=F.cross_entropy,
                      checkpoint_path=1.5), TypeError, "checkpoint_path"),
])
def test_bad_checkpoint_arguments(tmp_path, call, error, text):
    net = MLP(5, 3, width=16, depth=2)
    before = _weights(net)
    with pytest.raises(error, match=text):
        call(tmp_path, net)
    assert _equal(_weights(net), before)


def test_resuming_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    net, optimizer, scheduler = _setup()
    uninterrupted = _fit(net, optimizer, scheduler, epochs=5)
    expected = _weights(net)

    # a run stopped by Ctrl-C in epoch 4; its last checkpoint is from the end of epoch 3
    path = tmp_path / "run.pt"
    net, optimizer, scheduler = _setup()
    stopped = _fit(net, optimizer, scheduler, epochs=5, checkpoint_path=path,
                   loss_fn=_InterruptAt(3 * 6 + 2))
    assert stopped.interrupted and stopped.epochs == 3

    # a fresh process would build everything anew (other initial weights, other global RNG state)
    net, optimizer, scheduler = _setup(seed=123)
    torch.manual_seed(999)
    resumed = _fit(net, optimizer, scheduler, epochs=5, resume_from=path)
    assert resumed.to_dict() == uninterrupted.to_dict()
    assert _equal(_weights(net), expected)


def test_resuming_with_other_batches_is_refused(tmp_path):
    net, optimizer, scheduler = _setup()
    _fit(net, optimizer, scheduler, epochs=1, checkpoint_path=tmp_path / "c.pt")
    before = _weights(net)
    with pytest.raises(ValueError, match="seed"):
        _fit(net, optimizer, scheduler, epochs=2, resume_from=tmp_path / "c.pt", seed=4)
    later = save_checkpoint(tmp_path / "later.pt", net, optimizer, scheduler, History(), epoch=3, seed=3,
                            batch_size=16)
    with pytest.raises(ValueError, match="epochs"):
        _fit(net, optimizer, scheduler, epochs=1, resume_from=later)
    assert _equal(_weights(net), before)


def test_resuming_a_finished_run_trains_no_more(tmp_path):
    net, optimizer, scheduler = _setup()
    done = _fit(net, optimizer, scheduler, epochs=2, checkpoint_path=tmp_path / "c.pt")
    weights = _weights(net)
    again = _fit(net, optimizer, scheduler, epochs=2, resume_from=tmp_path / "c.pt")
    assert again.to_dict() == done.to_dict() and _equal(_weights(net), weights)


def test_history_from_dict_checks_its_input():
    assert History.from_dict(History(loss=[1.0]).to_dict()).loss == [1.0]
    with pytest.raises(ValueError, match="steps_done"):
        History.from_dict({"steps_done": 3})
    with pytest.raises(TypeError, match="values"):
        History.from_dict([1.0])
    assert math.isnan(History.from_dict({}).final())


def test_an_interrupt_that_leaves_grad_mode_off_does_not_leave_it_off_after_fit():
    # e.g. Ctrl-C landing as a no_grad block exits: the learner's next cell must still be able to train
    net, optimizer, scheduler = _setup()
    calls = []

    def loss_fn(out, target):
        calls.append(1)
        if len(calls) == 5:
            torch.set_grad_enabled(False)
            raise KeyboardInterrupt
        return F.cross_entropy(out, target)

    history = _fit(net, optimizer, scheduler, loss_fn=loss_fn)
    assert history.interrupted and history.steps == 4
    assert torch.is_grad_enabled()
    _consistent(history)
