r"""Transformers from scratch: attention, a block with pre- or post-layer-norm, a tiny causal language model.

Everything here is written from tensors up and proved equal to PyTorch by
``tests/test_transformer.py``:

* :func:`scaled_dot_product_attention` equals :func:`torch.nn.functional.scaled_dot_product_attention`
  (outputs and gradients, boolean and additive masks, the causal mask);
* :class:`MultiheadSelfAttention` equals :class:`torch.nn.MultiheadAttention` (``batch_first=True``,
  no dropout) once it has loaded that module's ``state_dict`` (``in_proj_weight`` of shape
  (3E, E) holding :math:`W_Q; W_K; W_V`, ``in_proj_bias``, ``out_proj``).

On top of them, :class:`TransformerBlock` wires attention and a feed-forward network with the
layer norm *after* the residual addition (``"post"``, Vaswani et al. 2017) or *before* the branch
(``"pre"``, Xiong et al. 2020), with LayerNorm or RMSNorm, residual scaling (DeepNorm's
:math:`\alpha`/:math:`\beta`, a constant such as :math:`1/\sqrt{2L}`, ReZero's learned gate) and
optional QK-normalisation; :class:`TinyCausalLM` stacks them. :func:`attention_stats` reads the
two health metrics of attention, the largest attention logit and the attention entropy
(:func:`helpers.diagnostics.block_grad_norms` sums the gradient norms per block).

Every linear layer is an ``nn.Linear`` (the attention's input projection too, loaded from torch's
``in_proj_weight`` layout by a state-dict hook), so :class:`helpers.diagnostics.GradientMonitor`
and :func:`helpers.checkup.checkup` watch these models like any other.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F
from torch import nn

from helpers import init as course_init
from helpers._checks import check_bool, check_choice, check_int, check_module, check_real
from helpers._modes import kept_modes
from helpers._moved import moved
from helpers.normalization import LayerNorm, RMSNorm

__all__ = ["NORM_POSITIONS", "NORMS", "RESIDUALS", "ACTIVATIONS", "causal_mask", "attention_logits",
           "scaled_dot_product_attention", "MultiheadSelfAttention", "deepnorm_constants", "TransformerBlock",
           "TinyCausalLM", "lm_loss", "ensemble_lm_loss", "attention_stats"]
# moved by the layering (issue 19): importing them from here says where they are now
__getattr__ = moved(__name__, {"block_grad_norms": "helpers.diagnostics"})

NORM_POSITIONS = ("post", "pre")
NORMS = ("layer", "rms")
RESIDUALS = ("standard", "scaled", "deepnorm", "rezero")
ACTIVATIONS = ("gelu", "relu")


def causal_mask(length: int, device=None) -> torch.Tensor:
    r"""The boolean causal mask of a sequence of ``length`` positions: ``mask[i, j] = j <= i``.

    ``True`` means "may attend", the convention of
    :func:`torch.nn.functional.scaled_dot_product_attention` (``nn.MultiheadAttention``'s boolean
    ``attn_mask`` uses the opposite one: ``True`` there means "masked out").

    Example:
        >>> causal_mask(3).int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
    """
    check_int("length", length, minimum=1)
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def _check_qkv(query, key, value) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., length, features), got shape "
                             f"{tuple(t.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key must have the same last dimension, got {query.shape[-1]} and "
                         f"{key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key and value must have the same length (dimension -2), got {key.shape[-2]} and "
                         f"{value.shape[-2]}")


def _check_scale(scale):
    """torch accepts any real scale (0 and negative ones too) and a 0-d tensor; returns a float."""
    if isinstance(scale, torch.Tensor):
        if scale.dim() != 0 or scale.dtype == torch.bool or scale.is_complex():
            raise TypeError(f"scale must be a real number, a 0-d real tensor or None, got a tensor of shape "
                            f"{tuple(scale.shape)} and dtype {scale.dtype}")
        scale = scale.item()
    return check_real("scale", scale)


def _check_mask(attn_mask, query_dtype: torch.dtype) -> None:
    """torch's rule: a bool mask, or a float one of torch.float32 or the query's dtype."""
    if not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"attn_mask must be a tensor or None, got {type(attn_mask).__name__}")
    if attn_mask.dtype != torch.bool and attn_mask.dtype not in (torch.float32, query_dtype):
        raise TypeError(f"attn_mask must be a bool tensor or a float one (torch.float32 or the query's dtype "
                        f"{query_dtype}), got dtype {attn_mask.dtype} (as torch's scaled_dot_product_attention)")


def attention_logits(query: torch.Tensor, key: torch.Tensor, attn_mask: torch.Tensor | None = None,
                     is_causal: bool = False, scale: float | None = None) -> torch.Tensor:
    r"""The masked attention logits :math:`s = QK^\top \cdot \text{scale}` (``-inf`` where masked).

    See :func:`scaled_dot_product_attention` for the arguments; returns shape (..., L, S).
    """
    _check_qkv(query, key, key)
    check_bool("is_causal", is_causal)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else _check_scale(scale)
    if is_causal and attn_mask is not None:
        raise ValueError("give attn_mask or is_causal=True, not both (as torch's scaled_dot_product_attention)")
    if attn_mask is not None:
        _check_mask(attn_mask, query.dtype)
    scores = (query @ key.transpose(-2, -1)) * scale
    L, S = scores.shape[-2:]
    if is_causal:
        attn_mask = torch.ones(L, S, dtype=torch.bool, device=scores.device).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask.to(scores.dtype)
    return scores


def _safe_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension that gives 0 (not NaN) on a row where every logit is -inf.

    torch's ``scaled_dot_product_attention`` does the same (its ``_safe_softmax``): a query that may
    attend to nothing outputs 0, and no gradient flows from that row (no NaN in any gradient).
    """
    dead = (scores == -math.inf).all(dim=-1, keepdim=True)
    if not dead.any():
        return torch.softmax(scores, dim=-1)
    return torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                                 scale: float | None = None) -> torch.Tensor:
    r"""Scaled dot-product attention, from scratch (equal to ``F.scaled_dot_product_attention``).

    .. math::
        \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\Big(\frac{QK^\top}{\sqrt{d_k}} + M\Big)V,

    with :math:`M_{ij} = 0` where query :math:`i` may attend to key :math:`j` and :math:`-\infty`
    where it may not (the causal mask allows :math:`j \le i`). The :math:`1/\sqrt{d_k}` keeps the
    logits of unit-variance queries and keys at unit variance, so that the softmax starts soft
    rather than saturated (a saturated softmax passes almost no gradient).

    Args:
        query: (..., L, E) queries.
        key: (..., S, E) keys.
        value: (..., S, Ev) values.
        attn_mask: ``None``; a boolean mask broadcastable to (..., L, S), ``True`` = may attend;
            or a float mask (``torch.float32`` or the query's dtype) added to the logits. A query
            whose row is masked everywhere (all ``False``, or all ``-inf``) outputs 0 and passes no
            gradient, as torch's function does.
        is_causal: apply the causal mask (then ``attn_mask`` must be ``None``).
        scale: the factor of the logits, any real number or a 0-d tensor (as torch);
            ``None`` means :math:`1/\sqrt{E}`.

    Returns:
        (..., L, Ev).

    Raises:
        TypeError: a non-tensor input or mask, a mask of an integer dtype (torch refuses them too),
            a non-bool ``is_causal``, a non-real ``scale``.
        ValueError: mismatched shapes, a non-finite ``scale``, or both ``attn_mask`` and ``is_causal``.

    Example:
        >>> q = k = v = torch.eye(3).unsqueeze(0)
        >>> scaled_dot_product_attention(q, k, v, is_causal=True)[0, 0]
        tensor([1., 0., 0.])

    Source: Vaswani et al., "Attention Is All You Need", NeurIPS 2017, §3.2.1 (equation 1).
    """
    _check_qkv(query, key, value)
    scores = attention_logits(query, key, attn_mask, is_causal, scale)
    return _safe_softmax(scores) @ value


def _make_norm(kind: str, size: int) -> nn.Module:
    return LayerNorm(size) if kind == "layer" else RMSNorm(size)


class MultiheadSelfAttention(nn.Module):
    r"""Multi-head self-attention from scratch, loading :class:`torch.nn.MultiheadAttention`'s weights.

    With :math:`h` heads of size :math:`d = E/h` and input :math:`X` (B, T, E):

    .. math::
        [Q\;K\;V] = X W_{in}^\top + b_{in}, \quad
        \text{head}_i = \operatorname{softmax}\!\Big(\frac{\hat Q_i \hat K_i^\top}{\sqrt d} + M\Big) V_i, \quad
        \operatorname{MHA}(X) = [\text{head}_1 \dots \text{head}_h] W_O^\top + b_O,

    where :math:`\hat Q_i = Q_i`, :math:`\hat K_i = K_i`, or with ``qk_norm=True`` their layer norm (or
    RMS norm) over the head's :math:`d` features (QK-normalisation: the logits can then no longer grow
    with the scale of :math:`W_Q, W_K`).

    The input projection is an ``nn.Linear`` named ``in_proj`` (weight (3E, E), rows
    :math:`W_Q; W_K; W_V`), the output projection ``out_proj``; a state dict of
    ``nn.MultiheadAttention(E, h, batch_first=True)`` (keys ``in_proj_weight``, ``in_proj_bias``,
    ``out_proj.*``) loads into it strictly. Initialisation: Xavier-uniform per projection,
    :math:`W_V` and :math:`W_O` multiplied by ``init_scale``, zero biases.

    After a forward pass with ``record_stats = True`` the attribute ``stats`` holds the largest
    attention logit (over allowed positions) and the mean attention entropy in nats (see
    :func:`attention_stats`).

    Args:
        embed_dim: E, the model width, >= 1.
        num_heads: h, which must divide E.
        bias: learn biases in the projections.
        causal: apply the causal mask.
        qk_norm: normalise queries and keys per head (Dehghani et al. 2023; Wortsman et al. 2023).
        norm: ``"layer"`` or ``"rms"``, the normalisation used by ``qk_norm``.
        init_scale: > 0, the gain of :math:`W_V, W_O` at initialisation (DeepNorm's :math:`\beta`).

    Shape:
        input (B, T, E) → output (B, T, E).

    Raises:
        TypeError, ValueError: a bad argument (named, with the value received and what is
        accepted), before anything is built.

    Example:
        >>> mha = MultiheadSelfAttention(8, 2)
        >>> mha(torch.randn(3, 5, 8)).shape
        torch.Size([3, 5, 8])

    Source: Vaswani et al. 2017, §3.2.2; PyTorch's ``nn.MultiheadAttention`` for the weight layout.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, bias: bool = True, causal: bool = True,
                 qk_norm: bool = False, norm: str = "layer", init_scale: float = 1.0):
        check_int("embed_dim", embed_dim, minimum=1)
        check_int("num_heads", num_heads, minimum=1)
        if embed_dim % num_heads:
            raise ValueError(f"num_heads must divide embed_dim, got embed_dim={embed_dim}, num_heads={num_heads}")
        for name, value in (("bias", bias), ("causal", causal), ("qk_norm", qk_norm)):
            check_bool(name, value)
        check_choice("norm", norm, NORMS)
        init_scale = check_real("init_scale", init_scale, minimum=0.0, strict_minimum=True)
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.causal, self.qk_norm, self.init_scale = causal, qk_norm, init_scale
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        if qk_norm:
            self.q_norm = _make_norm(norm, self.head_dim)
            self.k_norm = _make_norm(norm, self.head_dim)
        self.record_stats = False
        self.stats: dict[str, torch.Tensor] = {}
        self._register_load_state_dict_pre_hook(self._from_torch_layout)
        self.reset_parameters()

    @staticmethod
    def _from_torch_layout(state_dict, prefix, *_args):
        # nn.MultiheadAttention keeps the input projection as two bare parameters
        for torch_name, own in (("in_proj_weight", "in_proj.weight"), ("in_proj_bias", "in_proj.bias")):
            if prefix + torch_name in state_dict:
                state_dict[prefix + own] = state_dict.pop(prefix + torch_name)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        E = self.embed_dim
        w = self.in_proj.weight
        course_init.xavier_uniform_(w[:E])
        course_init.xavier_uniform_(w[E:2 * E])
        course_init.xavier_uniform_(w[2 * E:], gain=self.init_scale)
        course_init.xavier_uniform_(self.out_proj.weight, gain=self.init_scale)
        for layer in (self.in_proj, self.out_proj):
            if layer.bias is not None:
                layer.bias.zero_()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a (batch, length, {self.embed_dim}) tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"x must be a (batch, length, {self.embed_dim}) tensor, got shape {tuple(x.shape)}")
        B, T, E = x.shape
        if attn_mask is not None:
            _check_mask(attn_mask, x.dtype)
            try:
                torch.broadcast_shapes(attn_mask.shape, (B, self.num_heads, T, T))
            except RuntimeError:
                raise ValueError(f"attn_mask must broadcast to (batch, heads, length, length) = "
                                 f"{(B, self.num_heads, T, T)}, e.g. ({T}, {T}); got shape "
                                 f"{tuple(attn_mask.shape)}") from None
        q, k, v = self.in_proj(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.causal and attn_mask is None:
            scores = attention_logits(q, k, is_causal=True)
        else:
            mask = attn_mask
            if self.causal:
                causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                mask = causal & mask if mask.dtype == torch.bool else mask.masked_fill(~causal, -math.inf)
            scores = attention_logits(q, k, mask)
        weights = _safe_softmax(scores)
        if self.record_stats:
            with torch.no_grad():
                allowed = torch.isfinite(scores)
                self.stats = {"max_logit": scores.detach().abs().where(allowed, 0.0).amax(),
                              "entropy": torch.special.entr(weights.detach()).sum(-1).mean()}
        heads = (weights @ v).transpose(1, 2).reshape(B, T, E)
        return self.out_proj(heads)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}, qk_norm={self.qk_norm}"


def deepnorm_constants(num_layers: int) -> tuple[float, float]:
    r"""DeepNorm's :math:`(\alpha, \beta)` for a decoder-only stack of ``num_layers`` blocks.

    .. math:: \alpha = (2N)^{1/4}, \qquad \beta = (8N)^{-1/4}

    :math:`\alpha` up-weights the skip, :math:`x_{l+1} = \operatorname{LN}(\alpha x_l + G(x_l))`;
    :math:`\beta` scales down the initial weights of the value, output and feed-forward projections.
    Together they bound the size of each update of the model's output by a constant independent of
    :math:`N`.

    Example:
        >>> [round(c, 4) for c in deepnorm_constants(8)]
        [2.0, 0.3536]

    Source: Wang et al., "DeepNet: Scaling Transformers to 1,000 Layers", 2022, §3 and Table 1
    (decoder-only row).
    """
    check_int("num_layers", num_layers, minimum=1)
    return (2 * num_layers) ** 0.25, (8 * num_layers) ** -0.25


class TransformerBlock(nn.Module):
    r"""One Transformer block: self-attention and a feed-forward network, each with a residual connection.

    With :math:`F_1` = attention, :math:`F_2(x) = W_2\,\varphi(W_1 x + b_1) + b_2`, skip weight
    :math:`\alpha` (``residual_scale``) and branch weight :math:`c` (``branch_scale``, times ReZero's
    learned gate :math:`g` when ``rezero=True``), each sub-layer computes

    .. math::
        \text{post:}\quad x \leftarrow \operatorname{N}(\alpha x + c\,F(x)) \qquad\qquad
        \text{pre:}\quad x \leftarrow \alpha x + c\,F(\operatorname{N}(x))

    where N is LayerNorm or RMSNorm. Post-LN (the 2017 wiring) normalises the sum, so every gradient
    on the way down passes through a normalisation per sub-layer; pre-LN leaves an identity path
    from the output to the input, which is why it trains without warm-up (Xiong et al. 2020).

    Args:
        d_model: the width E, >= 1.
        num_heads: attention heads, dividing ``d_model``.
        d_ff: hidden width of the feed-forward network (default ``4 * d_model``).
        norm_position: ``"post"`` or ``"pre"``.
        norm: ``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm, Zhang & Sennrich 2019).
        qk_norm: normalise queries and keys per head (see :class:`MultiheadSelfAttention`).
        residual_scale: :math:`\alpha` > 0 (DeepNorm's up-weighted skip).
        branch_scale: :math:`c` > 0 (e.g. :math:`1/\sqrt{2L}`).
        init_scale: :math:`\beta` > 0, the gain of the value, output and feed-forward weights at
            initialisation (DeepNorm).
        rezero: multiply each branch by a learned scalar initialised at 0 (Bachlechner et al. 2020).
        activation: ``"gelu"`` or ``"relu"`` (an ``nn.Module``, so the monitor sees it).
        causal: causal attention.

    Shape:
        (B, T, E) → (B, T, E).

    Raises:
        TypeError, ValueError: a bad argument (named, with the value received and what is
        accepted), before anything is built.

    Example:
        >>> block = TransformerBlock(16, 2, norm_position="pre", norm="rms")
        >>> block(torch.randn(4, 6, 16)).shape
        torch.Size([4, 6, 16])

    Source: Vaswani et al. 2017, §3.1 (post-LN); Xiong et al., "On Layer Normalization in the
    Transformer Architecture", ICML 2020, §3 and Figure 1 (pre-LN); Wang et al. 2022 (DeepNorm);
    Bachlechner et al., "ReZero is All You Need", 2020.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, *, norm_position: str = "pre",
                 norm: str = "layer", qk_norm: bool = False, residual_scale: float = 1.0,
                 branch_scale: float = 1.0, init_scale: float = 1.0, rezero: bool = False,
                 activation: str = "gelu", causal: bool = True):
        check_int("d_model", d_model, minimum=1)
        check_int("num_heads", num_heads, minimum=1)
        if d_model % num_heads:
            raise ValueError(f"num_heads must divide d_model, got d_model={d_model}, num_heads={num_heads}")
        d_ff = 4 * d_model if d_ff is None else check_int("d_ff", d_ff, minimum=1)
        check_choice("norm_position", norm_position, NORM_POSITIONS)
        check_choice("norm", norm, NORMS)
        check_choice("activation", activation, ACTIVATIONS)
        for name, value in (("qk_norm", qk_norm), ("rezero", rezero), ("causal", causal)):
            check_bool(name, value)
        residual_scale = check_real("residual_scale", residual_scale, minimum=0.0, strict_minimum=True)
        branch_scale = check_real("branch_scale", branch_scale, minimum=0.0, strict_minimum=True)
        init_scale = check_real("init_scale", init_scale, minimum=0.0, strict_minimum=True)
        super().__init__()
        self.norm_position, self.residual_scale, self.branch_scale = norm_position, residual_scale, branch_scale
        self.init_scale = init_scale
        self.norm1 = _make_norm(norm, d_model)
        self.attn = MultiheadSelfAttention(d_model, num_heads, causal=causal, qk_norm=qk_norm, norm=norm,
                                           init_scale=init_scale)
        self.norm2 = _make_norm(norm, d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.ff2 = nn.Linear(d_ff, d_model)
        self.gate = nn.Parameter(torch.zeros(2)) if rezero else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.attn.reset_parameters()
        for layer in (self.ff1, self.ff2):
            course_init.xavier_uniform_(layer.weight, gain=self.init_scale)
            layer.bias.zero_()

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff2(self.act(self.ff1(x)))

    def _add(self, x: torch.Tensor, branch: torch.Tensor, i: int) -> torch.Tensor:
        scale = self.branch_scale if self.gate is None else self.branch_scale * self.gate[i]
        skip = x if self.residual_scale == 1.0 else self.residual_scale * x
        return skip + scale * branch if not isinstance(scale, Real) or scale != 1.0 else skip + branch

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_position == "post":
            x = self.norm1(self._add(x, self.attn(x, attn_mask), 0))
            return self.norm2(self._add(x, self._ffn(x), 1))
        x = self._add(x, self.attn(self.norm1(x), attn_mask), 0)
        return self._add(x, self._ffn(self.norm2(x)), 1)


class TinyCausalLM(nn.Module):
    r"""A small decoder-only language model: embeddings, ``num_layers`` :class:`TransformerBlock`\ s, a linear head.

    .. math::
        h_0 = E_{tok}[x_t] + E_{pos}[t], \qquad h_\ell = \text{Block}_\ell(h_{\ell-1}), \qquad
        \text{logits}_t = W_{out}\, \tilde h_L

    with :math:`\tilde h_L = \operatorname{N}(h_L)` for pre-LN (a final norm, as GPT-2) and
    :math:`h_L` for post-LN (already normalised). Embeddings start at :math:`\mathcal N(0, 1)`
    (PyTorch's default), every weight matrix Xavier-uniform, biases zero.

    ``residual`` picks the residual scaling of all blocks at once:

    * ``"standard"``: :math:`\alpha = c = \beta = 1`;
    * ``"scaled"``: branches multiplied by :math:`c = 1/\sqrt{2L}` (two sub-layers per block);
    * ``"deepnorm"``: :math:`(\alpha, \beta)` = :func:`deepnorm_constants` (L) (meant for post-LN);
    * ``"rezero"``: each branch multiplied by a learned gate initialised at 0.

    Args:
        vocab_size: number of tokens, >= 2.
        d_model, num_heads, d_ff: see :class:`TransformerBlock`.
        num_layers: L, the number of blocks, >= 1.
        max_len: the longest sequence, >= 1 (size of the positional embedding).
        norm_position, norm, qk_norm, activation: as :class:`TransformerBlock`.
        residual: one of ``"standard"``, ``"scaled"``, ``"deepnorm"``, ``"rezero"``.

    Shape:
        tokens (B, T) integers in [0, vocab_size), T <= max_len → logits (B, T, vocab_size).

    Raises:
        TypeError, ValueError: a bad argument (named, with the value received and what is
        accepted), before anything is built. ``forward``: TypeError for tokens that are not an
        integer tensor (bool, float, a list); ValueError for the wrong shape, a length above
        ``max_len`` or a token outside [0, ``vocab_size``).

    Example:
        >>> lm = TinyCausalLM(11, d_model=16, num_heads=2, num_layers=2, max_len=12)
        >>> lm(torch.zeros(3, 12, dtype=torch.long)).shape
        torch.Size([3, 12, 11])

    Source: Radford et al. 2019 (GPT-2: pre-LN with a final norm); Vaswani et al. 2017 (post-LN).
    """

    def __init__(self, vocab_size: int, d_model: int = 32, num_heads: int = 2, num_layers: int = 2,
                 max_len: int = 16, d_ff: int | None = None, *, norm_position: str = "pre", norm: str = "layer",
                 qk_norm: bool = False, residual: str = "standard", activation: str = "gelu"):
        check_int("vocab_size", vocab_size, minimum=2)
        check_int("num_layers", num_layers, minimum=1)
        check_int("max_len", max_len, minimum=1)
        check_choice("residual", residual, RESIDUALS)
        alpha, beta, c = 1.0, 1.0, 1.0
        if residual == "deepnorm":
            alpha, beta = deepnorm_constants(num_layers)
        elif residual == "scaled":
            c = 1.0 / math.sqrt(2 * num_layers)
        # the block checks the rest before anything is assigned to self
        blocks = [TransformerBlock(d_model, num_heads, d_ff, norm_position=norm_position, norm=norm,
                                   qk_norm=qk_norm, residual_scale=alpha, branch_scale=c, init_scale=beta,
                                   rezero=residual == "rezero", activation=activation)
                  for _ in range(num_layers)]
        super().__init__()
        self.vocab_size, self.max_len, self.norm_position, self.residual = vocab_size, max_len, norm_position, residual
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(blocks)
        self.norm = _make_norm(norm, d_model) if norm_position == "pre" else nn.Identity()
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        course_init.xavier_uniform_(self.head.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a (batch, length) integer tensor, got {type(tokens).__name__}")
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise TypeError(f"tokens must be a (batch, length) integer tensor (e.g. torch.long), got dtype "
                            f"{tokens.dtype}")
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be a (batch, length) integer tensor, got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"tokens are {tokens.shape[1]} long; this model takes at most max_len={self.max_len}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"tokens must lie in [0, vocab_size) = [0, {self.vocab_size}), got values from "
                             f"{int(tokens.min())} to {int(tokens.max())}")
        h = self.tok(tokens) + self.pos.weight[:tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


    def stacked_forward(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                        tokens: torch.Tensor) -> torch.Tensor:
        r"""The forward pass of N models at once, for :class:`helpers.ensemble.Ensemble`.

        ``params[name]`` stacks the N members' parameter ``name`` (as in :meth:`state_dict`) on a
        leading axis; every matrix product is a batched one (``torch.bmm``), so N small models cost
        about as many operations as one. ``tokens`` is (B, T), seen by every member, or (N, B, T).
        Returns logits (N, B, T, vocab_size), equal to the members' own forward passes (tested).
        """
        n = next(iter(params.values())).shape[0]
        if tokens.dim() == 2:
            tokens = tokens.expand(n, *tokens.shape)
        if tokens.dim() != 3 or tokens.shape[0] != n or tokens.is_floating_point():
            raise ValueError(f"tokens must be (B, T) or (N={n}, B, T) integers, got {tuple(tokens.shape)}")
        _, B, T = tokens.shape
        if T > self.max_len:
            raise ValueError(f"tokens are {T} long; this model takes at most max_len={self.max_len}")
        # the embedding as a product with one-hot rows: exact, and its backward is a matrix product too
        # (indexing N stacked tables and scattering the gradient back is several times slower on a CPU)
        table = params["tok.weight"]
        one_hot = F.one_hot(tokens.reshape(n, B * T), table.shape[1]).to(table.dtype)
        E = table.shape[-1]
        h = (torch.bmm(one_hot, table).view(n, B, T, E) + params["pos.weight"][:, None, :T]).reshape(n, B * T, E)
        mask = causal_mask(T, device=h.device)
        for i, block in enumerate(self.blocks):
            p = f"blocks.{i}."
            attn = block.attn
            kind = "layer" if isinstance(block.norm1, LayerNorm) else "rms"
            eps = block.norm1.eps

            def add(x, branch, j, block=block, p=p):
                c = block.branch_scale * (params[p + "gate"][:, j].view(n, 1, 1) if block.gate is not None else 1.0)
                skip = x if block.residual_scale == 1.0 else block.residual_scale * x
                return skip + branch if isinstance(c, float) and c == 1.0 else skip + c * branch

            def attention(x, attn=attn, p=p, kind=kind):
                qkv = _stacked_linear(x, params, p + "attn.in_proj.")
                # split the last dimension (its backward is one cheap concatenation), then (n, B, heads, T, d)
                q, k, v = (t.view(n, B, T, attn.num_heads, attn.head_dim).transpose(2, 3) for t in qkv.split(E, -1))
                if attn.qk_norm:
                    q = _stacked_norm(q, params, p + "attn.q_norm.", kind, attn.q_norm.eps)
                    k = _stacked_norm(k, params, p + "attn.k_norm.", kind, attn.k_norm.eps)
                scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(attn.head_dim))
                if attn.causal:
                    scores = scores.masked_fill(~mask, -math.inf)
                weights = (scores - scores.amax(dim=-1, keepdim=True)).exp()   # torch.softmax is ~6x slower
                weights = weights / weights.sum(dim=-1, keepdim=True)           # on rows this short
                heads = (weights @ v).permute(0, 1, 3, 2, 4).reshape(n, B * T, E)
                return _stacked_linear(heads, params, p + "attn.out_proj.")

            def ffn(x, block=block, p=p):
                hidden = _stacked_linear(x, params, p + "ff1.")
                hidden = F.gelu(hidden) if isinstance(block.act, nn.GELU) else torch.relu(hidden)
                return _stacked_linear(hidden, params, p + "ff2.")

            if block.norm_position == "post":
                h = _stacked_norm(add(h, attention(h), 0), params, p + "norm1.", kind, eps)
                h = _stacked_norm(add(h, ffn(h), 1), params, p + "norm2.", kind, eps)
            else:
                h = add(h, attention(_stacked_norm(h, params, p + "norm1.", kind, eps)), 0)
                h = add(h, ffn(_stacked_norm(h, params, p + "norm2.", kind, eps)), 1)
        if self.norm_position == "pre":
            h = _stacked_norm(h, params, "norm.", "layer" if isinstance(self.norm, LayerNorm) else "rms",
                              self.norm.eps)
        return torch.bmm(h, params["head.weight"].transpose(1, 2)).view(n, B, T, -1)

def lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0) -> torch.Tensor:
    r"""Mean next-token cross-entropy over the targets that are not ``-100``, plus an optional z-loss.

    .. math:: L = \frac1{|P|}\sum_{t \in P} \Big(-\log \operatorname{softmax}(z_t)_{y_t}
              + \lambda_z \log^2 \textstyle\sum_v e^{z_{t,v}}\Big)

    The z-loss term pulls the log-normaliser :math:`\log Z` of the output softmax towards 0 and
    so keeps the output logits from drifting to large values (Chowdhery et al. 2022, PaLM §5;
    Wortsman et al. 2023, §3.1.2).

    Args:
        logits: (..., T, V).
        targets: (..., T) integer tokens, ``-100`` where no loss is taken.
        z_loss: :math:`\lambda_z` >= 0 (Wortsman et al. use :math:`10^{-4}`).

    Returns:
        a scalar tensor.

    Example:
        >>> float(lm_loss(torch.zeros(1, 2, 4), torch.tensor([[1, -100]])))  # log 4
        1.3862943649291992
    """
    z_loss = check_real("z_loss", z_loss, minimum=0.0)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have the shape of logits without its last (vocabulary) dimension, "
                         f"{tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
    flat, target = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = (target != -100).to(flat.dtype)
    count = keep.sum()
    # sum / count rather than cross_entropy's own mean, so that ensemble_lm_loss (which must
    # reduce per member) rounds the same way and gives the same bits
    loss = F.cross_entropy(flat, target, ignore_index=-100, reduction="none").sum() / count
    if z_loss:
        log_z = torch.logsumexp(flat, dim=-1)
        loss = loss + z_loss * (log_z.square() * keep).sum() / count
    return loss


def ensemble_lm_loss(z_loss=0.0):
    """:func:`lm_loss` for :func:`helpers.ensemble.fit_ensemble`: (N, B, T, V) logits → (N,) losses.

    Member i's loss is computed with the same operations in the same order as
    ``lm_loss(logits[i], targets, z_loss_i)`` (tested bit-for-bit on this machine's float path;
    a different reduction order elsewhere could differ by float32 rounding, ~1e-7 relative).

    Args:
        z_loss: :math:`\\lambda_z` >= 0, one number or one per member (a sequence of N numbers).

    Example:
        >>> ensemble_lm_loss()(torch.zeros(2, 1, 3, 4), torch.zeros(1, 3, dtype=torch.long)).shape
        torch.Size([2])
    """
    if isinstance(z_loss, list | tuple):
        if not z_loss:
            raise ValueError("z_loss as a sequence needs one number per member, got an empty one")
        z_loss = torch.tensor([check_real("z_loss entries", z, minimum=0.0) for z in z_loss], dtype=torch.float64)
    else:
        z_loss = check_real("z_loss", z_loss, minimum=0.0)

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = out.shape[0]
        target = target.expand(n, *target.shape) if target.dim() == out.dim() - 2 else target
        flat = out.reshape(-1, out.shape[-1])
        tflat = target.reshape(-1)
        keep = (tflat != -100).to(out.dtype).view(n, -1)
        count = keep.sum(1)
        # the same operations, in the same order, as lm_loss: the mean cross-entropy, then
        # z · (sum of the kept log² Z) / count
        ce = F.cross_entropy(flat, tflat, ignore_index=-100, reduction="none").view(n, -1).sum(1) / count
        if isinstance(z_loss, torch.Tensor):
            if z_loss.numel() != n:
                raise ValueError(f"z_loss has {z_loss.numel()} entries for an ensemble of {n} members")
            z = z_loss.to(device=out.device, dtype=out.dtype)
        elif z_loss:
            z = z_loss
        else:
            return ce
        log_z = torch.logsumexp(flat, dim=-1).view(n, -1)
        return ce + z * (log_z.square() * keep).sum(1) / count

    return loss


@torch.no_grad()
def attention_stats(model: nn.Module, tokens: torch.Tensor) -> dict[str, dict[str, float]]:
    r"""The two health metrics of every attention layer of ``model`` on one batch.

    * ``max_logit``: :math:`\max |s_{ij}|` over the allowed positions of all heads, with
      :math:`s = QK^\top/\sqrt d`. Without QK-normalisation it can grow without bound during
      training (attention logit growth, Dehghani et al. 2023);
    * ``entropy``: the mean over heads and queries of :math:`-\sum_j p_{ij}\log p_{ij}` (nats).
      It collapses towards 0 when the logits grow: each query attends to one key, the softmax
      saturates and passes almost no gradient.

    Args:
        model: a module containing :class:`MultiheadSelfAttention` layers.
        tokens: a batch the model takes.

    Returns:
        dict {attention module name: {"max_logit": float, "entropy": float}}, from input to output.
        Each layer's ``record_stats`` flag, ``stats`` and mode are left as they were, also on an error.

    Example:
        >>> lm = TinyCausalLM(5, d_model=8, num_heads=2, num_layers=1, max_len=4)
        >>> sorted(attention_stats(lm, torch.zeros(2, 4, dtype=torch.long))["blocks.0.attn"])
        ['entropy', 'max_logit']
    """
    check_module("model", model)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, MultiheadSelfAttention)}
    if not layers:
        raise ValueError(f"model has no MultiheadSelfAttention layer, got {type(model).__name__}")
    kept = {m: (m.record_stats, m.stats) for m in layers.values()}
    with kept_modes(model):
        model.eval()
        try:
            for m in layers.values():
                m.record_stats = True
            model(tokens)
            return {name: {k: float(v) for k, v in m.stats.items()} for name, m in layers.items()}
        finally:
            for m, (flag, stats) in kept.items():
                m.record_stats, m.stats = flag, stats


# ---------------------------------------------------------------------------- many models at once

def _stacked_norm(h: torch.Tensor, params: dict, prefix: str, kind: str, eps: float | None) -> torch.Tensor:
    """LayerNorm/RMSNorm over the last dimension with one weight (and bias) per member: h is (N, …, E)."""
    view = (h.shape[0],) + (1,) * (h.dim() - 2) + (h.shape[-1],)
    if kind == "layer":
        y = F.layer_norm(h, h.shape[-1:], eps=eps)   # torch.var_mean is ~6x slower on rows this short
        return torch.addcmul(params[prefix + "bias"].view(view), y, params[prefix + "weight"].view(view))
    eps = torch.finfo(h.dtype).eps if eps is None else eps
    y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y * params[prefix + "weight"].view(view)


def _stacked_linear(h: torch.Tensor, params: dict, prefix: str) -> torch.Tensor:
    """h (N, M, in) → (N, M, out) with each member's own weight (N, out, in) and bias (N, out)."""
    weight = params[prefix + "weight"].transpose(1, 2)
    bias = params.get(prefix + "bias")
    return torch.bmm(h, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), h, weight)
