r"""Optimizers from scratch: SGD (momentum, Nesterov), Adam, AdamW and RAdam.

Each is a :class:`torch.optim.Optimizer` subclass with the same constructor arguments
and the same arithmetic as ``torch.optim``'s (the tests compare 100 steps in float64),
so schedulers, ``state_dict`` and :func:`helpers.training.fit` work with them unchanged.
The update rules are written one parameter at a time, for reading, not for speed.
"""

from __future__ import annotations

import torch

from helpers._checks import check_lr, check_real

__all__ = ["SGD", "Adam", "AdamW", "RAdam"]


def _check_betas(betas, name: str = "betas") -> tuple[float, float]:
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        check_real(f"{name}[{i}]", beta, minimum=0.0, maximum=1.0, strict_maximum=True)
    return float(betas[0]), float(betas[1])


# how each hyper-parameter is checked, in the constructors' defaults and in a parameter group's own values
_HYPER_CHECKS = {
    "lr": check_lr,
    "momentum": lambda name, v: check_real(name, v, minimum=0.0),
    "dampening": lambda name, v: check_real(name, v, minimum=0.0, maximum=1.0),
    "weight_decay": lambda name, v: check_real(name, v, minimum=0.0),
    "eps": lambda name, v: check_real(name, v, minimum=0.0),
    "betas": lambda name, v: _check_betas(v, name),
}


def _check_hyperparameters(values: dict, where: str = "") -> None:
    """Check every hyper-parameter of ``values`` that has a rule; ``where`` prefixes the names (a group's)."""
    for key, value in values.items():
        if key in _HYPER_CHECKS:
            _HYPER_CHECKS[key](f"{where}['{key}']" if where else key, value)


def _grad(p: torch.Tensor, maximize: bool) -> torch.Tensor:
    if p.grad.is_sparse:
        raise RuntimeError("these optimizers do not support sparse gradients")
    return -p.grad if maximize else p.grad


def _real_view(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as pairs of reals (a view, trailing dimension 2), as torch.optim treats it."""
    return torch.view_as_real(t) if t.is_complex() else t


def _scalar_dtype() -> torch.dtype:
    """The dtype torch.optim stores ``step`` in: float64 under a float64 default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _advance_step(state: dict) -> float:
    """Add one to ``state["step"]`` (a tensor, as torch.optim stores it) and return it as a Python float.

    The bias corrections are then computed in double precision from this float, as
    ``torch.optim``'s single-tensor kernels do (``step_t.item()``).
    """
    step = state["step"]
    if not torch.is_tensor(step):  # an old state dict (torch < 1.12 stored an int)
        step = state["step"] = torch.tensor(float(step), dtype=_scalar_dtype())
    step += 1
    return step.item()


# what torch.optim stores for its implementation options when they are not given
_IMPLEMENTATION_DEFAULTS = {"foreach": None, "differentiable": False, "fused": None, "capturable": False}
# why the per-parameter updates here cannot honour the others
_NOT_HONOURED = {
    "differentiable": "a step runs in place under torch.no_grad(), so autograd cannot differentiate through it",
    "fused": "there is no fused kernel: the update is written one parameter at a time, for reading",
    "capturable": "a step reads the step count on the host, which a CUDA graph cannot capture",
}


def _implementation_options(optimizer: str, foreach, **options) -> dict:
    """torch.optim's implementation options, checked, as torch stores them in the defaults.

    ``foreach`` (None, True or False) chooses how torch loops over the parameters, not what a
    step computes: every value gives the same numbers here. ``differentiable``, ``fused`` and
    ``capturable`` change what a step is; they are accepted when off (False, or None for fused)
    and refused when on, naming torch's optimizer, which has them.
    """
    if foreach is not None and not isinstance(foreach, bool):
        raise TypeError(f"foreach must be None, True or False, got {type(foreach).__name__} ({foreach!r})")
    for name, value in options.items():
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
        if value:
            raise ValueError(f"{name}=True is not supported by helpers.optim.{optimizer}: {_NOT_HONOURED[name]}; "
                             f"pass {name}=False, or use torch.optim.{optimizer}")
    return {"foreach": foreach, **options}


def _adam_defaults(lr, betas, eps, weight_decay, options: dict, **flags) -> dict:
    """Validated hyper-parameters of the Adam family (``options``: :func:`_implementation_options`), as defaults."""
    _check_hyperparameters({"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
    return {"lr": lr, "betas": (float(betas[0]), float(betas[1])), "eps": eps, "weight_decay": weight_decay,
            **{name: bool(value) for name, value in flags.items()}, **options}


def _adam_moments(p, g, group, state, *, decoupled: bool, amsgrad: bool = False, complex_decay: bool = False):
    r"""Weight decay, then the moment estimates shared by Adam, AdamW and RAdam; returns ``(t, m, v)``.

    .. math:: m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    Decoupled decay shrinks the weights, :math:`p \leftarrow (1 - \eta\lambda) p`; otherwise
    :math:`\lambda p` is added to the gradient (L2), which the moments then rescale.

    A complex parameter is treated as pairs of reals (``torch.view_as_real``), as in
    ``torch.optim``: its real and imaginary parts each get their own second moment
    :math:`(\operatorname{Re} g)^2` and :math:`(\operatorname{Im} g)^2` (not :math:`g\cdot g`, which is complex).
    The returned ``m`` and ``v`` are such real views (the state keeps the complex tensors).
    ``complex_decay=True`` applies the decay to the complex tensors, before that view (as
    ``torch.optim.Adam``'s single-tensor kernel does), ``False`` to the real view (as
    ``torch.optim.RAdam``'s does): complex arithmetic rounds :math:`g + \lambda p` differently.
    """
    lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
    if not state:
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
        if amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(p)
    t = _advance_step(state)
    if not complex_decay:
        p, g = _real_view(p), _real_view(g)
    if wd != 0:
        if decoupled:
            p.mul_(1 - lr * wd)
        else:
            g = g.add(p, alpha=wd)
    p, g = _real_view(p), _real_view(g)
    m, v = _real_view(state["exp_avg"]), _real_view(state["exp_avg_sq"])
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    return t, m, v


class _PerParameter(torch.optim.Optimizer):
    """Runs the closure, then ``self._update(p, g, group, state)`` for every parameter with a gradient."""

    def add_param_group(self, param_group: dict) -> None:
        """torch's, once the group's own hyper-parameters pass the checks the constructor's defaults pass
        (torch takes ``lr=-1`` in a group and ascends): a bad one is refused before the group is added."""
        if isinstance(param_group, dict):
            where = f"param_groups[{len(self.param_groups)}]"
            _check_hyperparameters(param_group, where)
            self._check_group({**self.defaults, **param_group}, where)
        super().add_param_group(param_group)

    def _check_group(self, group: dict, where: str) -> None:
        """Rules between a group's hyper-parameters (its own values over the defaults)."""

    @torch.no_grad()
    def step(self, closure=None):
        """Take one step; ``closure`` re-evaluates the model and returns the loss (optional)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    self._update(p, _grad(p, group["maximize"]), group, state)
                    if not state:       # nothing kept (SGD without momentum): no entry, as in torch's state
                        del self.state[p]
        return loss

    def _update(self, p: torch.Tensor, g: torch.Tensor, group: dict, state: dict) -> None:
        raise NotImplementedError

    _flags: tuple[str, ...] = ("maximize",)
    _options: tuple[str, ...] = ("foreach", "differentiable")  # torch's implementation options this class takes

    def __setstate__(self, state: dict) -> None:
        """Accept every state dict torch.optim loads: missing flags are False, an int ``step`` a tensor.

        A state dict whose groups turn on an option the updates here cannot honour (``fused``,
        ``capturable``, ``differentiable``) is refused before anything is loaded.
        """
        for group in state.get("param_groups", []):
            options = {k: group[k] for k in _NOT_HONOURED if k in self._options and k in group}
            _implementation_options(type(self).__name__, group.get("foreach"), **options)
        super().__setstate__(state)
        for group in self.param_groups:
            for flag in self._flags:
                group.setdefault(flag, False)
            for option in self._options:
                group.setdefault(option, _IMPLEMENTATION_DEFAULTS[option])
            for p in group["params"]:
                p_state = self.state.get(p, {})
                if "step" in p_state and not torch.is_tensor(p_state["step"]):
                    p_state["step"] = torch.tensor(float(p_state["step"]), dtype=_scalar_dtype())


def _check_nesterov(nesterov, momentum, dampening, where: str) -> None:
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"{where}nesterov=True needs momentum > 0 and dampening = 0, got momentum={momentum!r}, "
                         f"dampening={dampening!r}")


class SGD(_PerParameter):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    With gradient :math:`g_t`, weight decay :math:`\lambda`, momentum :math:`\mu`,
    dampening :math:`\tau` and learning rate :math:`\eta`:

    .. math::
        d_t = g_t + \lambda \theta_{t-1}, \qquad
        b_t = \begin{cases} d_t & t = 1 \\ \mu b_{t-1} + (1-\tau) d_t & t > 1 \end{cases}, \qquad
        \theta_t = \theta_{t-1} - \eta \cdot \begin{cases}
            d_t + \mu b_t & \text{Nesterov} \\ b_t & \text{otherwise} \end{cases}

    (without momentum the step is :math:`\eta d_t`). Weight decay here is an L2 penalty
    added to the gradient.

    Args:
        params: parameters or parameter groups.
        lr: :math:`\eta \ge 0`.
        momentum: :math:`\mu \ge 0`.
        dampening: :math:`\tau`, in [0, 1].
        weight_decay: :math:`\lambda \ge 0`.
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: ascend instead of descend.
        foreach, differentiable, fused: torch's implementation options, for drop-in use:
            ``foreach`` may be None, True or False (the numbers are the same); ``differentiable``
            and ``fused`` must be off (False, None), as there is no such implementation here.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = SGD([w], lr=0.1, momentum=0.9)
        >>> for _ in range(2):
        ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        >>> round(w.item(), 4)  # 1 - 0.2 = 0.8, then 0.8 - 0.1 * (0.9 * 2 + 1.6)
        0.46
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None):
        options = _implementation_options("SGD", foreach, differentiable=differentiable, fused=fused)
        _check_hyperparameters({"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay})
        _check_nesterov(nesterov, momentum, dampening, "")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": bool(nesterov), "maximize": bool(maximize), **options}
        super().__init__(params, defaults)

    _flags = ("maximize", "nesterov")
    _options = ("foreach", "differentiable", "fused")

    def _check_group(self, group: dict, where: str) -> None:
        _check_nesterov(group["nesterov"], group["momentum"], group["dampening"], f"{where}: ")

    def _update(self, p, d, group, state):
        lr, mu, tau, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
        if wd != 0:
            d = d.add(p, alpha=wd)
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.detach().clone()
            else:
                buf.mul_(mu).add_(d, alpha=1 - tau)
            d = d.add(buf, alpha=mu) if group["nesterov"] else buf
        p.add_(d, alpha=-lr)


class Adam(_PerParameter):
    r"""Adam (Kingma & Ba 2015), with L2 weight decay added to the gradient.

    .. math::
        g_t &\leftarrow g_t + \lambda\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\,
                   \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    With ``amsgrad`` the running maximum of :math:`v_t` replaces :math:`v_t` in the denominator.
    Because the decay term passes through :math:`1/\sqrt{v_t}`, weights with large
    gradients are decayed less: use :class:`AdamW` for real weight decay.

    Args:
        params: parameters or parameter groups.
        lr: :math:`\eta \ge 0`.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: :math:`\epsilon \ge 0`.
        weight_decay: :math:`\lambda \ge 0` (an L2 penalty).
        amsgrad: use the running maximum of the second moment.
        maximize: ascend instead of descend.
        decoupled_weight_decay: shrink the weights directly, as :class:`AdamW` (torch >= 2.6 has
            the same flag).
        foreach, capturable, differentiable, fused: torch's implementation options, for drop-in
            use: ``foreach`` may be None, True or False (the numbers are the same); the others must
            be off (False, None), as there is no such implementation here.

    A complex parameter is treated as pairs of reals (each part has its own second moment),
    and ``lr`` may be a one-element tensor, as in ``torch.optim.Adam``. The weight decay of a
    complex parameter is applied in complex arithmetic, before that view, as in torch's
    single-tensor kernel (its default on the CPU, ``foreach=False``), to the bit; torch's
    ``foreach`` kernel (its default for CUDA tensors) adds the L2 term to the real view,
    which rounds :math:`g + \lambda\theta` differently in the last bit.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = Adam([w], lr=0.1)
        >>> (w * torch.tensor([5.0, -0.01])).sum().backward(); opt.step()
        >>> w.detach()  # the first step moves every coordinate by lr, whatever its gradient
        tensor([ 0.9000, -0.9000])
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False):
        options = _implementation_options(type(self).__name__, foreach, capturable=capturable,
                                          differentiable=differentiable, fused=fused)
        super().__init__(params, _adam_defaults(lr, betas, eps, weight_decay, options, amsgrad=amsgrad,
                                                maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))

    _flags = ("maximize", "amsgrad", "decoupled_weight_decay")
    _options = ("foreach", "capturable", "differentiable", "fused")

    def _update(self, p, g, group, state):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        t, m, v = _adam_moments(p, g, group, state, decoupled=group["decoupled_weight_decay"],
                                amsgrad=group["amsgrad"], complex_decay=True)
        if group["amsgrad"]:
            v_max = _real_view(state["max_exp_avg_sq"])
            torch.maximum(v_max, v, out=v_max)
            v = v_max
        bias1, bias2 = 1 - beta1 ** t, 1 - beta2 ** t
        denom = (v.sqrt() / bias2 ** 0.5).add_(eps)
        _real_view(p).addcdiv_(m, denom, value=-(lr / bias1))


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    The weights shrink directly, before the Adam step, by the same factor for every weight:

    .. math::
        \theta_{t-1} \leftarrow (1 - \eta\lambda)\,\theta_{t-1}, \qquad
        \theta_t = \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\,
                   \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    with :math:`m_t, v_t` the moments of the raw gradient (see :class:`Adam`).

    Args:
        params, lr, betas, eps, amsgrad, maximize: as for :class:`Adam`.
        weight_decay: :math:`\lambda \ge 0`, default 0.01 like ``torch.optim.AdamW``.
        foreach, capturable, differentiable, fused: as for :class:`Adam`.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([2.0]))
        >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
        >>> w.grad = torch.zeros(1); opt.step(); w.detach()  # zero gradient: only the decay acts
        tensor([1.9000])
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True, foreach=foreach, capturable=capturable,
                         differentiable=differentiable, fused=fused)

    def __setstate__(self, state: dict) -> None:
        """As ``torch.optim.AdamW``: a loaded state dict always gets decoupled decay."""
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


class RAdam(_PerParameter):
    r"""Rectified Adam (Liu et al. 2020): no adaptive step until the variance estimate is reliable.

    With :math:`\rho_\infty = \frac{2}{1-\beta_2} - 1` and
    :math:`\rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}` (the length of the
    moving average, in samples), the bias-corrected momentum :math:`\hat m_t = m_t/(1-\beta_1^t)` and

    .. math::
        \theta_t = \theta_{t-1} - \eta\,\hat m_t \cdot \begin{cases}
        r_t \dfrac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\
        1 & \text{otherwise (plain momentum SGD)}
        \end{cases}, \qquad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\,\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\,\rho_t}}

    For :math:`\beta_2 = 0.999` the first 5 steps are momentum SGD steps and the
    rectifier :math:`r_t` then grows slowly towards 1: a built-in warm-up.

    Args:
        params, lr, betas, eps, maximize: as for :class:`Adam`.
        weight_decay: :math:`\lambda \ge 0`.
        decoupled_weight_decay: shrink the weights directly (as :class:`AdamW`) instead of
            adding :math:`\lambda\theta` to the gradient (default, as ``torch.optim.RAdam``).
        foreach, capturable, differentiable: as for :class:`Adam` (torch's RAdam has no ``fused``).

    A complex parameter is treated as pairs of reals, its weight decay included (applied to
    the real view, as in ``torch.optim.RAdam``'s single-tensor kernel, to the bit).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = RAdam([w], lr=0.1)
        >>> w.grad = torch.tensor([0.5]); opt.step(); w.detach()  # step 1: lr * gradient
        tensor([0.9500])
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False):
        options = _implementation_options("RAdam", foreach, capturable=capturable, differentiable=differentiable)
        super().__init__(params, _adam_defaults(lr, betas, eps, weight_decay, options,
                                                decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))

    @staticmethod
    def rectification(step: int, beta2: float) -> float | None:
        r"""The rectifier :math:`r_t`, or ``None`` while :math:`\rho_t \le 5` (no adaptive step yet).

        Example:
            >>> RAdam.rectification(5, 0.999) is None, round(RAdam.rectification(6, 0.999), 4)
            (True, 0.0258)
        """
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2 ** step / (1 - beta2 ** step)
        if rho_t <= 5:
            return None
        return ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5

    _flags = ("maximize", "decoupled_weight_decay")
    _options = ("foreach", "capturable", "differentiable")

    def _update(self, p, g, group, state):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        t, m, v = _adam_moments(p, g, group, state, decoupled=group["decoupled_weight_decay"])
        m_hat = m / (1 - beta1 ** t)
        r = self.rectification(t, beta2)
        if r is None:
            _real_view(p).add_(m_hat * lr, alpha=-1.0)
        else:
            adaptive = (1 - beta2 ** t) ** 0.5 / v.sqrt().add_(eps)
            _real_view(p).add_(m_hat * lr * adaptive * r, alpha=-1.0)
