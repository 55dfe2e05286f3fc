"""Forward and backward pass of N stacked Linear/activation chains, written out by hand.

:func:`helpers.ensemble.fit_ensemble` spends most of a step in batched matrix products
(``torch.bmm``) over tensors of N members. For the commonest model — ``nn.Linear`` layers,
each followed by nothing or by one of PyTorch's elementwise activations (ReLU, tanh,
sigmoid, leaky ReLU, ELU, SELU, GELU, SiLU/Swish, Mish) — the backward pass is short enough
to write out: per layer one product for the weight's gradient, one sum for the bias's and
one product (then the activation's derivative) for the layer below. Running it outside
autograd saves the engine's bookkeeping (a graph node, saved tensors and a gradient
buffer per operation): on 2 CPU cores the step of ``benchmarks/ensemble.py`` takes about
5 % less time (median of 16 paired runs; 0.86 to 1.07 of the autograd path's time), and a
20-layer GELU, ELU, leaky-ReLU or Mish net at 1 thread ~10 % less (15 members, 5 epochs).

The arithmetic is autograd's own, kernel for kernel (``baddbmm``'s backward formulas and
the derivative kernels autograd itself calls: ``threshold_backward``, ``tanh_backward``,
``sigmoid_backward`` from the output; ``leaky_relu_backward``, ``elu_backward``,
``gelu_backward``, ``silu_backward``, ``mish_backward`` from the input, with the module's own
constants); the loss and its gradient with respect to the output still come from autograd.
``fit_ensemble`` takes this path for its built-in losses only, with gradients enabled, every
parameter trainable, and nothing set that only autograd's path would see or apply: a hook on a
parameter or an activation, autocast, anomaly detection, saved-tensor hooks, a torch-function
mode, a global module hook, or an activation changed since the plan was made (checked at each
step); everything else takes the autograd path. ``tests/test_stacked_chain.py`` checks that both
paths give the same numbers, bit for bit, including the sign of a zero gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["chain_plan", "chain_forward_backward"]

_aten = torch.ops.aten
# activations whose derivative autograd computes from their output (grad, output) ...
_FROM_OUTPUT = {nn.ReLU: lambda grad, out: _aten.threshold_backward(grad, out, 0),
                nn.Tanh: _aten.tanh_backward,
                nn.Sigmoid: _aten.sigmoid_backward}
_IN_PLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_}
# ... and those it computes from their input (grad, input, module), as autograd records them for the
# out-of-place forward (SELU is ELU with SELU's alpha and scale, the doubles torch itself uses)
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_FROM_INPUT = {nn.LeakyReLU: lambda grad, x, m: _aten.leaky_relu_backward(grad, x, m.negative_slope, False),
               nn.ELU: lambda grad, x, m: _aten.elu_backward(grad, m.alpha, 1, 1, False, x),
               nn.SELU: lambda grad, x, m: _aten.elu_backward(grad, _SELU_ALPHA, _SELU_SCALE, 1, False, x),
               nn.GELU: lambda grad, x, m: _aten.gelu_backward(grad, x, approximate=m.approximate),
               nn.SiLU: lambda grad, x, m: _aten.silu_backward(grad, x),
               nn.Mish: lambda grad, x, m: _aten.mish_backward(grad, x)}

# one entry per Linear layer: weight name, bias name (or None), activation module after it (or None)
Plan = list[tuple[str, str | None, nn.Module | None]]


# the constants each module passes to its kernel: plain numbers only (a tensor or a NumPy float32 is
# accepted by the module's forward but not by the derivative's kernel)
_CONSTANTS = {nn.LeakyReLU: ("negative_slope",), nn.ELU: ("alpha",)}


def _covered(module: nn.Module) -> bool:
    """Whether this path reproduces what autograd would do with ``module``, as it is now."""
    if (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
            or module._backward_pre_hooks or "forward" in module.__dict__):
        return False                     # a hook or a replaced forward: only autograd's path sees it
    if type(module) in _FROM_OUTPUT:
        return True
    if type(module) not in _FROM_INPUT or getattr(module, "inplace", False):
        return False                     # in place, autograd takes the derivative from the output
    return all(type(getattr(module, c)) in (int, float, bool) for c in _CONSTANTS.get(type(module), ()))


def chain_plan(model: nn.Module, trainable: set[str]) -> Plan | None:
    """The layers of ``model`` if it is a chain this module can run, else ``None``.

    A chain is an ``nn.Sequential`` (e.g. :class:`helpers.models.MLP` without norm,
    residual blocks or dropout) of ``nn.Linear`` layers, each followed by at most one of
    PyTorch's ``nn.ReLU``, ``nn.Tanh``, ``nn.Sigmoid``, ``nn.LeakyReLU``, ``nn.ELU``, ``nn.SELU``,
    ``nn.GELU``, ``nn.SiLU``, ``nn.Mish`` (exactly these types; the last six not in place, their
    constants plain numbers; no hook on an activation), whose Linear weights and biases are
    exactly the parameters in ``trainable`` (none frozen, none elsewhere). The plan holds the
    activation modules: a change to one after planning is caught by planning again and comparing.
    """
    if not isinstance(model, nn.Sequential) or getattr(model, "residual", False):
        return None
    plan: Plan = []
    for name, module in model.named_children():
        if type(module) is nn.Linear:
            plan.append((f"{name}.weight", f"{name}.bias" if module.bias is not None else None, None))
        elif _covered(module) and plan and plan[-1][2] is None:
            plan[-1] = (*plan[-1][:2], module)
        else:
            return None
    covered = {name for entry in plan for name in entry[:2] if name is not None}
    return plan if plan and covered == trainable else None   # a frozen or an outside parameter: autograd's path


def chain_forward_backward(plan: Plan, params: dict[str, torch.Tensor], x: torch.Tensor, target,
                           loss_fn: Callable, into: dict[str, torch.Tensor] | None = None,
                           ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Output, per-member losses and the gradient of their sum, for every parameter of the chain.

    Args:
        plan: from :func:`chain_plan`.
        params: stacked parameters by name; Linear weights (N, in, out), biases (N, out).
        x: input, (B, in) shared by all members or (N, B, in).
        target: what ``loss_fn`` compares the output with.
        loss_fn: (output (N, B, out), target) -> per-member losses (N,). It must depend on the
            parameters only through the output: a penalty on the weights inside it would get
            no gradient here (:func:`~helpers.ensemble.fit_ensemble` sends such losses to autograd).
        into: where to write each parameter's gradient (contiguous, shaped like the parameter), by
            name; ``None``: new tensors.

    Returns:
        ``(output, losses, grads)``: output (N, B, out) detached, losses (N,) detached,
        and a dict name -> gradient shaped like the parameter.
    """
    weights = [params[w].detach() for w, _, _ in plan]
    with torch.no_grad():
        h = x.expand(weights[0].shape[0], *x.shape) if x.dim() == 2 else x
        inputs, before = [], []          # each layer's input; its activation's input where the derivative needs it
        for (_, bias, act), weight in zip(plan, weights):
            inputs.append(h)
            h = torch.bmm(h, weight) if bias is None else torch.baddbmm(params[bias].detach().unsqueeze(1), h, weight)
            before.append(h if type(act) in _FROM_INPUT else None)
            if type(act) in _FROM_OUTPUT:
                _IN_PLACE[type(act)](h)      # h is a fresh product: nobody else holds it
            elif act is not None:
                h = act(h)
    out = h.requires_grad_()
    with torch.enable_grad():
        losses = loss_fn(out, target)
        grad, = torch.autograd.grad(losses.sum(), out)
    out.requires_grad_(False)
    return out, losses.detach(), _backward(plan, params, weights, inputs, before, out, grad, into or {})


@torch.no_grad()
def _backward(plan, params, weights, inputs, before, out, grad, into) -> dict[str, torch.Tensor]:
    grads = {}
    for k in reversed(range(len(plan))):
        name, bias, act = plan[k]
        if type(act) in _FROM_INPUT:
            grad = _FROM_INPUT[type(act)](grad, before[k], act)
        elif act is not None:
            grad = _FROM_OUTPUT[type(act)](grad, inputs[k + 1] if k + 1 < len(plan) else out)
        grads[name] = torch.bmm(inputs[k].transpose(1, 2), grad, out=into.get(name))
        if bias is not None:
            # with one example autograd passes the gradient on as it is; a sum would turn -0.0 into +0.0
            if grad.shape[1] != 1:
                grads[bias] = torch.sum(grad, dim=1, out=into.get(bias))
            else:
                grads[bias] = into[bias].copy_(grad[:, 0]) if bias in into else grad[:, 0].clone()
        if k > 0:
            grad = torch.bmm(grad, weights[k].transpose(1, 2))
    return grads
