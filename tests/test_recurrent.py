"""The course's recurrent cells equal torch's, and SequenceModel's two backends agree."""

import pytest
import torch
from torch import nn

from helpers.recurrent import GRUCell, LSTMCell, RNNCell, SequenceModel, set_forget_bias_

D = torch.float64

CASES = [  # (course cell, torch cell, constructor kwargs)
    (RNNCell, nn.RNNCell, {}),
    (RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    (RNNCell, nn.RNNCell, {"bias": False}),
    (LSTMCell, nn.LSTMCell, {}),
    (LSTMCell, nn.LSTMCell, {"bias": False}),
    (GRUCell, nn.GRUCell, {}),
    (GRUCell, nn.GRUCell, {"bias": False}),
]
IDS = [f"{c.__name__}-{k}" for c, _, k in CASES]


def pair(course_cls, torch_cls, kwargs, input_size=3, hidden_size=5):
    reference = torch_cls(input_size, hidden_size, dtype=D, **kwargs)
    cell = course_cls(input_size, hidden_size, dtype=D, **kwargs)
    cell.load_state_dict(reference.state_dict(), strict=True)
    return cell, reference


def state(cls, batch, hidden_size, g):
    shape = (batch, hidden_size) if batch else (hidden_size,)
    if cls in (LSTMCell, nn.LSTMCell):
        return tuple(torch.randn(*shape, generator=g, dtype=D, requires_grad=True) for _ in range(2))
    return torch.randn(*shape, generator=g, dtype=D, requires_grad=True)


def flat(output):
    return torch.cat([o.reshape(-1) for o in output]) if isinstance(output, tuple) else output.reshape(-1)


@pytest.mark.parametrize(("course_cls", "torch_cls", "kwargs"), CASES, ids=IDS)
def test_same_parameters_names_shapes_and_seeded_values(course_cls, torch_cls, kwargs):
    torch.manual_seed(4)
    reference = torch_cls(3, 5, **kwargs)
    torch.manual_seed(4)
    cell = course_cls(3, 5, **kwargs)
    ours, theirs = dict(cell.named_parameters()), dict(reference.named_parameters())
    assert list(ours) == list(theirs)
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    assert (cell.bias_ih is None) == (reference.bias_ih is None)


@pytest.mark.parametrize(("course_cls", "torch_cls", "kwargs"), CASES, ids=IDS)
@pytest.mark.parametrize("batch", [4, 0], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_state", [True, False], ids=["hx", "hx=None"])
def test_outputs_and_gradients_equal_torch(course_cls, torch_cls, kwargs, batch, with_state):
    g = torch.Generator().manual_seed(7)
    cell, reference = pair(course_cls, torch_cls, kwargs)
    x = torch.randn(*((batch, 3) if batch else (3,)), generator=g, dtype=D, requires_grad=True)
    hx = state(course_cls, batch, 5, g) if with_state else None
    ours, theirs = cell(x, hx), reference(x, hx)
    assert type(ours) is type(theirs)
    assert flat(ours).shape == flat(theirs).shape
    torch.testing.assert_close(flat(ours), flat(theirs), rtol=1e-12, atol=1e-12)

    weights = torch.randn(flat(theirs).shape, generator=g, dtype=D)
    inputs = [x, *(hx if isinstance(hx, tuple) else [hx] if hx is not None else [])]
    grads_ours = torch.autograd.grad(flat(ours) @ weights, inputs + list(cell.parameters()))
    grads_theirs = torch.autograd.grad(flat(theirs) @ weights, inputs + list(reference.parameters()))
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("course_cls", "torch_cls", "kwargs"), CASES[::2], ids=IDS[::2])
def test_unrolled_over_many_steps_stays_equal(course_cls, torch_cls, kwargs):
    g = torch.Generator().manual_seed(8)
    cell, reference = pair(course_cls, torch_cls, kwargs)
    xs = torch.randn(30, 2, 3, generator=g, dtype=D)
    h_ours = h_theirs = None
    for x in xs:
        h_ours, h_theirs = cell(x, h_ours), reference(x, h_theirs)
    torch.testing.assert_close(flat(h_ours), flat(h_theirs), rtol=1e-10, atol=1e-12)


def test_gate_order_lstm_forget_gate_is_second_block():
    cell = LSTMCell(1, 1, dtype=D)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
        cell.bias_hh.zero_()
        cell.bias_ih.copy_(torch.tensor([50.0, -50.0, 0.5, 50.0], dtype=D))  # i=1, f=0, g=tanh(.5), o=1
    h, c = cell(torch.zeros(1, 1, dtype=D), (torch.zeros(1, 1, dtype=D), torch.full((1, 1), 3.0, dtype=D)))
    torch.testing.assert_close(c, torch.tanh(torch.tensor([[0.5]], dtype=D)))  # old c = 3 forgotten


def test_gru_reset_gate_multiplies_recurrent_bias_too():
    reference = nn.GRUCell(2, 3, dtype=D)
    cell = GRUCell(2, 3, dtype=D)
    cell.load_state_dict(reference.state_dict())
    with torch.no_grad():
        for module in (cell, reference):
            module.bias_hh[6:].fill_(5.0)  # b_hn: inside r * (...), unlike b_in
    x, h = torch.randn(4, 2, dtype=D), torch.randn(4, 3, dtype=D)
    torch.testing.assert_close(cell(x, h), reference(x, h))


def test_float32_close_to_torch():
    torch.manual_seed(0)
    reference = nn.LSTMCell(6, 8)
    cell = LSTMCell(6, 8)
    cell.load_state_dict(reference.state_dict())
    x = torch.randn(16, 6)
    torch.testing.assert_close(cell(x)[0], reference(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_bad_inputs_name_the_argument(cls):
    cell = cls(3, 4)
    with pytest.raises(ValueError, match="input_size=3"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match="input must be 1-D"):
        cell(torch.randn(2, 2, 3))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        cell([1.0, 2.0, 3.0])
    bad = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"hx.* must have shape \(2, 4\)"):
        cell(torch.randn(2, 3), (bad, bad) if cls is LSTMCell else bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="hidden_size"):
        RNNCell(3, 0)
    with pytest.raises(TypeError, match="input_size"):
        GRUCell(3.0, 4)
    with pytest.raises(ValueError, match="nonlinearity"):
        RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="bias"):
        LSTMCell(3, 4, bias=1)
    with pytest.raises(TypeError, match="hx must be None or a pair"):
        LSTMCell(3, 4)(torch.randn(2, 3), torch.randn(2, 4))


def test_repr_mentions_non_defaults():
    assert repr(RNNCell(2, 3, bias=False, nonlinearity="relu")) == "RNNCell(2, 3, bias=False, nonlinearity='relu')"


# --- forget-gate bias ---------------------------------------------------------------------


@pytest.mark.parametrize("module", [LSTMCell(2, 3), nn.LSTMCell(2, 3), nn.LSTM(2, 3, num_layers=2),
                                    GRUCell(2, 3), nn.GRU(2, 3)], ids=lambda m: type(m).__name__)
def test_set_forget_bias_sets_the_keep_gate_only(module):
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    assert set_forget_bias_(module, 1.5) is module
    for name, p in module.named_parameters():
        changed = p.detach().clone()
        if name.startswith("bias_ih"):
            assert torch.all(changed[3:6] == 1.5)
        elif name.startswith("bias_hh"):
            assert torch.all(changed[3:6] == 0.0)
        else:
            assert torch.equal(changed, before[name])
        if name.startswith("bias"):
            keep = torch.ones(len(changed), dtype=torch.bool)
            keep[3:6] = False
            assert torch.equal(changed[keep], before[name][keep])


def test_forget_bias_makes_the_lstm_forget_gate_start_at_sigmoid_of_it():
    cell = set_forget_bias_(LSTMCell(1, 1, dtype=D), 1.0)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
        cell.bias_ih[[0, 2, 3]] = 0.0
        cell.bias_hh.zero_()
    _, c = cell(torch.zeros(1, dtype=D), (torch.zeros(1, dtype=D), torch.ones(1, dtype=D)))
    torch.testing.assert_close(c, torch.sigmoid(torch.ones(1, dtype=D)))


def test_set_forget_bias_rejects_what_has_no_forget_gate():
    with pytest.raises(TypeError, match="LSTM or GRU"):
        set_forget_bias_(RNNCell(2, 3))
    with pytest.raises(ValueError, match="bias=False"):
        set_forget_bias_(LSTMCell(2, 3, bias=False))
    cell = LSTMCell(2, 3)
    before = cell.bias_ih.detach().clone()
    with pytest.raises(ValueError, match="value"):
        set_forget_bias_(cell, float("nan"))
    assert torch.equal(cell.bias_ih, before)


# --- SequenceModel ------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_backends_agree_after_copying_weights(cell, num_layers):
    torch.manual_seed(0)
    fast = SequenceModel(cell, 2, 6, 3, num_layers=num_layers, backend="torch").double()
    slow = fast.to_backend("course")
    assert slow.backend == "course" and next(slow.parameters()).dtype == D
    x = torch.randn(5, 9, 2, dtype=D)
    torch.testing.assert_close(slow(x), fast(x), rtol=1e-10, atol=1e-12)
    # and back again, exactly the same numbers
    back = slow.to_backend("torch")
    for (na, a), (nb, b) in zip(fast.state_dict().items(), back.state_dict().items()):
        assert na == nb and torch.equal(a, b)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backends_agree_in_gradients(cell):
    torch.manual_seed(1)
    slow = SequenceModel(cell, 2, 4, 1, backend="course").double()
    fast = slow.to_backend("torch")
    x = torch.randn(3, 12, 2, dtype=D)
    slow(x).square().sum().backward()
    fast(x).square().sum().backward()
    fast_grads = {n: p.grad for n, p in fast.named_parameters()}
    for name, p in slow.named_parameters():
        if name.startswith("layers."):
            _, k, parameter = name.split(".")
            name = f"rnn.{parameter}_l{k}"
        torch.testing.assert_close(p.grad, fast_grads[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_same_seed_gives_the_same_weights_in_both_backends(cell):
    torch.manual_seed(3)
    slow = SequenceModel(cell, 2, 4, 1, num_layers=2, backend="course")
    torch.manual_seed(3)
    fast = SequenceModel(cell, 2, 4, 1, num_layers=2, backend="torch")
    x = torch.randn(2, 5, 2)
    torch.testing.assert_close(slow(x), fast(x), rtol=1e-5, atol=1e-6)


def test_forget_bias_option_in_both_backends():
    for backend in ("course", "torch"):
        model = SequenceModel("lstm", 2, 4, 1, num_layers=2, backend=backend, forget_bias=1.0)
        biases = [p for n, p in model.named_parameters() if "bias_ih" in n]
        assert len(biases) == 2 and all(torch.all(b[4:8] == 1.0) for b in biases)
    copied = SequenceModel("gru", 2, 4, 1, forget_bias=2.0).to_backend("torch")
    assert torch.all(copied.rnn.bias_ih_l0[4:8] == 2.0)


def test_hidden_states_expose_the_gradient_through_time():
    torch.manual_seed(0)
    model = SequenceModel("rnn", 2, 4, 1)
    states = model.hidden_states(torch.randn(3, 7, 2))
    assert len(states) == 7 and states[0].shape == (3, 4)
    for h in states:
        h.retain_grad()
    model.head(states[-1]).sum().backward()
    assert all(h.grad is not None for h in states)
    with pytest.raises(ValueError, match="backend='course'"):
        model.to_backend("torch").hidden_states(torch.randn(3, 7, 2))


def test_relu_rnn_backends_agree():
    torch.manual_seed(0)
    slow = SequenceModel("rnn", 2, 4, 1, nonlinearity="relu", bias=False).double()
    fast = slow.to_backend("torch")
    x = torch.randn(3, 6, 2, dtype=D)
    torch.testing.assert_close(slow(x), fast(x))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"cell": "lstmm"}, ValueError, "cell"),
    ({"backend": "cudnn"}, ValueError, "backend"),
    ({"num_layers": 0}, ValueError, "num_layers"),
    ({"cell": "gru", "nonlinearity": "relu"}, ValueError, "nonlinearity"),
    ({"cell": "rnn", "forget_bias": 1.0}, ValueError, "forget_bias"),
    ({"forget_bias": 1.0, "bias": False}, ValueError, "forget_bias"),
    ({"hidden_size": 2.5}, TypeError, "hidden_size"),
])
def test_sequence_model_bad_arguments(kwargs, error, match):
    arguments = {"cell": "lstm", "input_size": 2, "hidden_size": 4, "output_size": 1} | kwargs
    with pytest.raises(error, match=match):
        SequenceModel(**arguments)


def test_sequence_model_bad_input():
    model = SequenceModel("gru", 2, 4, 1)
    with pytest.raises(ValueError, match=r"\(batch, time >= 1, input_size=2\)"):
        model(torch.randn(3, 2))
    with pytest.raises(ValueError, match="input_size=2"):
        model.to_backend("torch")(torch.randn(3, 5, 3))
