r"""Recurrent cells from scratch, and a sequence model that runs them or PyTorch's fused layers.

The three cells follow :class:`torch.nn.RNNCell`, :class:`torch.nn.LSTMCell` and
:class:`torch.nn.GRUCell` to the letter: the same constructor arguments, the same call
convention (batched ``(batch, input_size)`` or unbatched ``(input_size,)`` input, ``hx=None``
meaning zeros), the same parameter names and shapes (``weight_ih``, ``weight_hh``,
``bias_ih``, ``bias_hh``), the same gate order (LSTM: i, f, g, o; GRU: r, z, n) and the same
initialisation :math:`\mathcal U(-1/\sqrt{H}, 1/\sqrt{H})` drawn in the same order. A torch
cell's ``state_dict`` therefore loads strictly, and a shared seed gives identical weights.

:class:`SequenceModel` unrolls one of them over a batch of sequences (``backend="course"``,
slow, every hidden state visible for teaching) or calls :class:`torch.nn.RNN`/``LSTM``/``GRU``
(``backend="torch"``, fused and fast for training); :meth:`SequenceModel.to_backend` copies
the weights from one to the other.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helpers._checks import check_choice, check_int, check_real

__all__ = ["CELLS", "BACKENDS", "RNNCell", "LSTMCell", "GRUCell", "set_forget_bias_", "SequenceModel"]

CELLS = ("rnn", "lstm", "gru")
BACKENDS = ("course", "torch")


class _CellBase(nn.Module):
    """Parameters, initialisation and input checks shared by the three cells."""

    gates = 1  # number of stacked blocks of hidden_size rows in weight_ih and weight_hh

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__} ({bias!r})")
        self.bias = bias
        factory = {"device": device, "dtype": dtype}
        rows = self.gates * hidden_size
        # registered in torch's order so that a shared seed draws identical numbers
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(rows, **factory))
            self.bias_hh = nn.Parameter(torch.empty(rows, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Draw every parameter from :math:`\mathcal U(-1/\sqrt{H}, 1/\sqrt{H})`, as torch does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        return text if self.bias else text + ", bias=False"

    def _affine(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return :math:`x W_{ih}^\\top + b_{ih}` and :math:`h W_{hh}^\\top + b_{hh}`."""
        gi = x @ self.weight_ih.T
        gh = h @ self.weight_hh.T
        if self.bias:
            gi = gi + self.bias_ih
            gh = gh + self.bias_hh
        return gi, gh

    def _check_input(self, input: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Return the input as a batch (adding a batch axis to a 1-D input) and whether it was batched."""
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"input must be 1-D (input_size,) or 2-D (batch, input_size), "
                             f"got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input must have input_size={self.input_size} features in its last "
                             f"dimension, got shape {tuple(input.shape)}")
        batched = input.dim() == 2
        return (input if batched else input.unsqueeze(0)), batched

    def _check_state(self, name: str, state, x: torch.Tensor, batched: bool) -> torch.Tensor:
        """Zeros for ``None``; otherwise check the shape and return the state as a batch."""
        if state is None:
            return x.new_zeros(x.shape[0], self.hidden_size)
        if not isinstance(state, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(state).__name__}")
        expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        if tuple(state.shape) != expected:
            raise ValueError(f"{name} must have shape {expected} for this input, got {tuple(state.shape)}")
        return state if batched else state.unsqueeze(0)


class RNNCell(_CellBase):
    r"""An Elman recurrent cell, from scratch, interchangeable with :class:`torch.nn.RNNCell`.

    .. math::
        h' = \varphi\big(x W_{ih}^\top + b_{ih} + h W_{hh}^\top + b_{hh}\big),
        \qquad \varphi \in \{\tanh, \mathrm{ReLU}\}

    Args:
        input_size: features of the input :math:`x`.
        hidden_size: features of the hidden state :math:`h`.
        bias: if ``False``, no ``bias_ih`` and ``bias_hh``.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        device, dtype: where and in which type the parameters are created.

    Shapes: ``input`` (batch, input_size) or (input_size,); ``hx`` (batch, hidden_size),
    (hidden_size,) or ``None`` (zeros); output like ``hx``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> cell = RNNCell(3, 5)
        >>> reference = torch.nn.RNNCell(3, 5)
        >>> cell.load_state_dict(reference.state_dict())
        <All keys matched successfully>
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(cell(x), reference(x))
        True
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.nonlinearity == "tanh" else text + f", nonlinearity={self.nonlinearity!r}"

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        x, batched = self._check_input(input)
        h = self._check_state("hx", hx, x, batched)
        gi, gh = self._affine(x, h)
        pre = gi + gh
        h_new = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return h_new if batched else h_new.squeeze(0)


class LSTMCell(_CellBase):
    r"""A long short-term memory cell, from scratch, interchangeable with :class:`torch.nn.LSTMCell`.

    The four gates are stacked in the rows of the weights in torch's order i, f, g, o:

    .. math::
        \begin{aligned}
        \begin{bmatrix} a_i & a_f & a_g & a_o \end{bmatrix}
            &= x W_{ih}^\top + b_{ih} + h W_{hh}^\top + b_{hh} \\
        i = \sigma(a_i), \quad f &= \sigma(a_f), \quad g = \tanh(a_g), \quad o = \sigma(a_o) \\
        c' = f \odot c + i \odot g, &\qquad h' = o \odot \tanh(c')
        \end{aligned}

    The cell state's path :math:`c \to c'` is multiplied only by the forget gate
    :math:`f`: with :math:`f \approx 1` a gradient crosses many steps undamped.

    Args:
        input_size, hidden_size, bias, device, dtype: as for :class:`RNNCell`.

    Shapes: ``hx`` is a pair ``(h, c)`` of (batch, hidden_size) or (hidden_size,) tensors,
    or ``None`` (zeros); the output is the pair ``(h', c')``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> cell = LSTMCell(3, 5)
        >>> h, c = cell(torch.randn(4, 3))
        >>> h.shape, c.shape, cell.weight_ih.shape
        (torch.Size([4, 5]), torch.Size([4, 5]), torch.Size([20, 3]))
    """

    gates = 4

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        x, batched = self._check_input(input)
        if hx is None:
            h = c = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            if not (isinstance(hx, tuple | list) and len(hx) == 2):
                raise TypeError(f"hx must be None or a pair (h, c) of tensors, got {type(hx).__name__}")
            h = self._check_state("hx[0]", hx[0], x, batched)
            c = self._check_state("hx[1]", hx[1], x, batched)
        gi, gh = self._affine(x, h)
        a_i, a_f, a_g, a_o = (gi + gh).chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        if not batched:
            return h_new.squeeze(0), c_new.squeeze(0)
        return h_new, c_new


class GRUCell(_CellBase):
    r"""A gated recurrent unit, from scratch, interchangeable with :class:`torch.nn.GRUCell`.

    The three gates are stacked in torch's order r, z, n; the reset gate multiplies the
    *recurrent* part of the candidate only, after its bias (as in torch and cuDNN):

    .. math::
        \begin{aligned}
        r &= \sigma(x W_{ir}^\top + b_{ir} + h W_{hr}^\top + b_{hr}) \\
        z &= \sigma(x W_{iz}^\top + b_{iz} + h W_{hz}^\top + b_{hz}) \\
        n &= \tanh\big(x W_{in}^\top + b_{in} + r \odot (h W_{hn}^\top + b_{hn})\big) \\
        h' &= (1 - z) \odot n + z \odot h
        \end{aligned}

    :math:`z` is the share of the old state that is kept: :math:`z \approx 1` carries
    :math:`h` (and its gradient) across a step unchanged.

    Args:
        input_size, hidden_size, bias, device, dtype: as for :class:`RNNCell`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> cell = GRUCell(3, 5)
        >>> cell(torch.randn(3)).shape
        torch.Size([5])
    """

    gates = 3

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        x, batched = self._check_input(input)
        h = self._check_state("hx", hx, x, batched)
        gi, gh = self._affine(x, h)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h_new = (1 - z) * n + z * h
        return h_new if batched else h_new.squeeze(0)


def _keep_gate_rows(module: nn.Module, hidden_size: int) -> slice:
    """Rows of the gate that keeps the old state: LSTM's forget gate f, GRU's update gate z."""
    if isinstance(module, LSTMCell | nn.LSTMCell | nn.LSTM | GRUCell | nn.GRUCell | nn.GRU):
        return slice(hidden_size, 2 * hidden_size)  # second block in both i,f,g,o and r,z,n
    raise TypeError(f"module must be an LSTM or GRU (cell or layer) to have a forget gate, "
                    f"got {type(module).__name__}")


def set_forget_bias_(module: nn.Module, value: float = 1.0) -> nn.Module:
    r"""Set the bias of the gate that keeps the old state, in place, and return the module.

    For an LSTM that is the forget gate: with bias :math:`b_f` the gate starts at
    :math:`f = \sigma(b_f)` instead of :math:`\sigma(0) = \tfrac12`, so the cell state
    (and its gradient) decays like :math:`\sigma(b_f)^t` rather than :math:`2^{-t}` before
    training has taught the gate anything (Gers et al. 2000; Jozefowicz et al. 2015
    recommend :math:`b_f = 1`). For a GRU it is the update gate :math:`z`, the share of
    :math:`h` kept. torch keeps two biases, :math:`b_{ih}` and :math:`b_{hh}`, which add:
    the gate's block of ``bias_ih`` is set to ``value`` and that of ``bias_hh`` to 0 (for
    every layer of an :class:`torch.nn.LSTM`/``GRU``).

    Args:
        module: a course or torch LSTM/GRU cell, or a torch ``nn.LSTM``/``nn.GRU`` layer.
        value: the total bias of the gate.

    Example:
        >>> cell = set_forget_bias_(LSTMCell(2, 3), 1.0)
        >>> cell.bias_ih[3:6].tolist(), cell.bias_hh[3:6].tolist()
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    """
    rows = _keep_gate_rows(module, getattr(module, "hidden_size", 0))  # refuses a module of no such kind
    value = check_real("value", value)
    names = [n for n, _ in module.named_parameters() if n.startswith(("bias_ih", "bias_hh"))]
    if not names:
        raise ValueError(f"module has no biases (bias=False), so its forget bias cannot be set: {module}")
    parameters = dict(module.named_parameters())
    with torch.no_grad():
        for name in names:
            parameters[name][rows] = value if name.startswith("bias_ih") else 0.0
    return module


class SequenceModel(nn.Module):
    r"""A recurrent network that reads a sequence and predicts from its last hidden state.

    .. math::
        h_t = \mathrm{cell}(x_t, h_{t-1}), \quad t = 1..T, \qquad \hat y = h_T W_{out}^\top + b_{out}

    with ``num_layers`` cells stacked (layer :math:`\ell` reads layer :math:`\ell-1`'s
    states). ``backend="course"`` unrolls :class:`RNNCell`/:class:`LSTMCell`/:class:`GRUCell`
    in Python, one step at a time, so :meth:`hidden_states` can expose every :math:`h_t`;
    ``backend="torch"`` runs the same computation in :class:`torch.nn.RNN`/``LSTM``/``GRU``
    (``batch_first=True``), many times faster. Both draw their weights the same way, and
    :meth:`to_backend` copies them across, so the two give the same outputs.

    Args:
        cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        input_size: features per time step.
        hidden_size: size of each hidden state.
        output_size: features of the prediction.
        num_layers: stacked recurrent layers.
        nonlinearity: ``"tanh"`` or ``"relu"`` (only for ``cell="rnn"``).
        bias: whether the recurrent layers have biases.
        backend: ``"course"`` or ``"torch"``.
        forget_bias: if given, :func:`set_forget_bias_` with this value (LSTM, GRU only).

    Shapes: input (batch, time, input_size), output (batch, output_size).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> fast = SequenceModel("gru", 2, 8, 1, backend="torch")
        >>> slow = fast.to_backend("course")
        >>> x = torch.randn(4, 10, 2)
        >>> torch.allclose(fast(x), slow(x), atol=1e-6)
        True
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, output_size: int, *,
                 num_layers: int = 1, nonlinearity: str = "tanh", bias: bool = True,
                 backend: str = "course", forget_bias: float | None = None):
        super().__init__()
        self.cell = check_choice("cell", cell, CELLS)
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.output_size = check_int("output_size", output_size, minimum=1)
        self.num_layers = check_int("num_layers", num_layers, minimum=1)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        if cell != "rnn" and nonlinearity != "tanh":
            raise ValueError(f"nonlinearity applies to cell='rnn' only, got nonlinearity={nonlinearity!r} "
                             f"with cell={cell!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__} ({bias!r})")
        self.bias = bias
        self.backend = check_choice("backend", backend, BACKENDS)
        if forget_bias is not None:
            check_real("forget_bias", forget_bias)
            if cell == "rnn":
                raise ValueError("forget_bias needs a gated cell ('lstm' or 'gru'); cell='rnn' has no gate")
            if not bias:
                raise ValueError("forget_bias needs bias=True")
        self.forget_bias = forget_bias

        if backend == "course":
            sizes = [input_size] + [hidden_size] * (num_layers - 1)
            self.layers = nn.ModuleList(self._course_cell(size) for size in sizes)
        else:
            kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
            extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
            self.rnn = kind(input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=True, **extra)
        self.head = nn.Linear(hidden_size, output_size)
        if forget_bias is not None:
            for module in (self.layers if backend == "course" else [self.rnn]):
                set_forget_bias_(module, forget_bias)

    def _course_cell(self, input_size: int) -> nn.Module:
        if self.cell == "rnn":
            return RNNCell(input_size, self.hidden_size, self.bias, self.nonlinearity)
        return (LSTMCell if self.cell == "lstm" else GRUCell)(input_size, self.hidden_size, self.bias)

    def _check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[2] != self.input_size or x.shape[1] < 1:
            raise ValueError(f"x must have shape (batch, time >= 1, input_size={self.input_size}), "
                             f"got {tuple(x.shape)}")

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        r"""Run the course cells and return the last layer's states :math:`[h_1, \dots, h_T]`.

        Each :math:`h_t` is a node of the graph: call ``h.retain_grad()`` on them before
        ``backward()`` to read :math:`\partial L / \partial h_t` (back-propagation through time).
        Needs ``backend="course"`` (a fused layer has no per-step node to attach a gradient to).
        """
        if self.backend != "course":
            raise ValueError("hidden_states needs backend='course' (the fused torch layer exposes no "
                             "per-step graph node); use model.to_backend('course')")
        self._check_input(x)
        sequence = list(x.unbind(1))
        for layer in self.layers:
            state = None
            outputs = []
            for x_t in sequence:
                state = layer(x_t, state)
                outputs.append(state[0] if self.cell == "lstm" else state)
            sequence = outputs
        return sequence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "course":
            last = self.hidden_states(x)[-1]
        else:
            self._check_input(x)
            last = self.rnn(x)[0][:, -1]
        return self.head(last)

    def to_backend(self, backend: str) -> SequenceModel:
        """Return a new model with the other backend and the same weights (same device and dtype)."""
        check_choice("backend", backend, BACKENDS)
        other = SequenceModel(self.cell, self.input_size, self.hidden_size, self.output_size,
                              num_layers=self.num_layers, nonlinearity=self.nonlinearity, bias=self.bias,
                              backend=backend, forget_bias=self.forget_bias)
        reference = next(self.parameters())
        other = other.to(device=reference.device, dtype=reference.dtype)
        other.load_state_dict(_rename_state(self.state_dict(), self.backend, backend))
        return other


def _rename_state(state: dict, source: str, target: str) -> dict:
    """Map ``layers.{k}.weight_ih`` (course) to and from ``rnn.weight_ih_l{k}`` (torch)."""
    renamed = {}
    for name, value in state.items():
        if source == "course" and target == "torch" and name.startswith("layers."):
            _, k, parameter = name.split(".")
            name = f"rnn.{parameter}_l{k}"
        elif source == "torch" and target == "course" and name.startswith("rnn."):
            parameter, k = name[len("rnn."):].rsplit("_l", 1)
            name = f"layers.{k}.{parameter}"
        renamed[name] = value
    return renamed
