"""helpers._checks: the checks of modules, optimizers, callables and trainable models, written once."""

import pytest
import torch
from torch import nn

from helpers._checks import check_callable, check_module, check_optimizer, check_trainable


def test_each_check_returns_what_it_accepts():
    net = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    assert check_module("model", net) is net
    assert check_optimizer("optimizer", optimizer) is optimizer
    assert check_optimizer("optimizer", None, optional=True) is None
    assert check_callable("loss_fn", len) is len
    assert check_callable("clip", None, optional=True) is None
    assert check_trainable("model", net) is net


@pytest.mark.parametrize("call, error, text", [
    (lambda: check_module("model", "net"), TypeError, "model must be a torch.nn.Module, got str"),
    (lambda: check_optimizer("optimizer", 0.1), TypeError, "optimizer must be a torch.optim.Optimizer, got float"),
    (lambda: check_optimizer("optimizer", 0.1, optional=True), TypeError,
     "optimizer must be a torch.optim.Optimizer or None, got float"),
    (lambda: check_optimizer("optimizer", None), TypeError, "optimizer must be a torch.optim.Optimizer, got NoneType"),
    (lambda: check_callable("loss_fn", 3), TypeError, "loss_fn must be callable, got int"),
    (lambda: check_callable("clip", 3, optional=True), TypeError, "clip must be callable or None, got int"),
    (lambda: check_trainable("model", nn.Linear(2, 1).requires_grad_(False)), ValueError,
     "model has no parameter that requires a gradient"),
    (lambda: check_trainable("model", nn.ReLU(), why=" (all frozen)"), ValueError,
     "model has no parameter that requires a gradient (all frozen)"),
])
def test_each_check_names_the_argument_the_value_and_what_is_accepted(call, error, text):
    with pytest.raises(error) as caught:
        call()
    assert str(caught.value) == text
