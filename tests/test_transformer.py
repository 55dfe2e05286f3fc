"""helpers.transformer equals PyTorch: attention, multi-head attention, RMSNorm inside the blocks;
the blocks' wiring, the stacked (ensemble) forward pass, the health metrics, and bad arguments."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.checkup import checkup, loss_spikes
from helpers.data import copy_task
from helpers.diagnostics import GradientMonitor, block_grad_norms
from helpers.ensemble import Ensemble, fit_ensemble
from helpers.training import History
from helpers.transformer import (
    MultiheadSelfAttention,
    TinyCausalLM,
    TransformerBlock,
    attention_stats,
    causal_mask,
    deepnorm_constants,
    ensemble_lm_loss,
    lm_loss,
    scaled_dot_product_attention,
)

DTYPES = [torch.float32, torch.float64]


def _qkv(dtype, shape=(2, 3, 5, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype, requires_grad=True) for _ in range(3)]


def _assert_attention_equals_torch(ours_qkv, torch_qkv, **kwargs):
    """Outputs and the gradients of q, k, v equal F.scaled_dot_product_attention's; returns our output."""
    ours = scaled_dot_product_attention(*ours_qkv, **kwargs)
    ref = F.scaled_dot_product_attention(*torch_qkv, **kwargs)
    tol = 1e-6 if ours.dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    ref.backward(grad)
    for a, b in zip(ours_qkv, torch_qkv):
        torch.testing.assert_close(a.grad, b.grad, rtol=tol * 10, atol=tol * 10)
    return ours


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_kind", ["none", "causal", "bool", "float"])
def test_attention_equals_torch_outputs_and_gradients(dtype, mask_kind):
    q, k, v = _qkv(dtype)
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    kwargs = {}
    if mask_kind == "causal":
        kwargs["is_causal"] = True
    elif mask_kind == "bool":
        kwargs["attn_mask"] = torch.rand(5, 5, generator=torch.Generator().manual_seed(1)) > 0.3
        kwargs["attn_mask"][:, 0] = True                      # every query sees at least one key
    elif mask_kind == "float":
        kwargs["attn_mask"] = torch.randn(5, 5, generator=torch.Generator().manual_seed(1), dtype=dtype)
    _assert_attention_equals_torch((q, k, v), (q2, k2, v2), **kwargs)


def test_attention_scale_and_causal_mask():
    q, k, v = _qkv(torch.float64)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, scale=0.3, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, scale=0.3, is_causal=True))
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # the first output is the first value: the first query sees only the first key
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, is_causal=True)[..., 0, :], v[..., 0, :])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_multihead_attention_equals_torch_after_loading_its_weights(bias, dtype):
    torch.manual_seed(0)
    E, h, T = 12, 3, 6
    ref = nn.MultiheadAttention(E, h, bias=bias, batch_first=True).to(dtype)
    ours = MultiheadSelfAttention(E, h, bias=bias).to(dtype)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(4, T, E, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=dtype)   # -inf above the diagonal
    expected = ref(x2, x2, x2, attn_mask=mask, need_weights=False)[0]
    got = ours(x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    grad = torch.randn_like(got)
    got.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x2.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(ours.in_proj.weight.grad, ref.in_proj_weight.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad, rtol=tol, atol=tol)


def test_multihead_attention_without_causal_mask_equals_torch():
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    ours = MultiheadSelfAttention(8, 2, causal=False)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-5)


def test_padding_mask_is_combined_with_the_causal_one():
    torch.manual_seed(2)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    ours = MultiheadSelfAttention(8, 2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 8)
    allowed = torch.ones(5, 5, dtype=torch.bool)
    allowed[:, 1] = False
    allowed[0, 0] = True
    expected_mask = ~(allowed & causal_mask(5))                   # torch's bool mask: True = masked out
    expected_mask[1, 0] = False
    torch.testing.assert_close(ours(x, allowed), ref(x, x, x, attn_mask=expected_mask, need_weights=False)[0],
                               rtol=1e-5, atol=1e-5)


def test_qk_norm_normalises_queries_and_keys_and_bounds_the_logits():
    torch.manual_seed(0)
    plain, normed = MultiheadSelfAttention(8, 2), MultiheadSelfAttention(8, 2, qk_norm=True)
    normed.load_state_dict(plain.state_dict(), strict=False)
    assert {"q_norm.weight", "q_norm.bias", "k_norm.weight", "k_norm.bias"} <= set(normed.state_dict())
    with torch.no_grad():
        for m in (plain, normed):
            m.in_proj.weight.mul_(30.0)                 # huge query and key weights
    x = torch.randn(2, 6, 8)
    for m in (plain, normed):
        m.record_stats = True
        m(x)
    # with unit-gain LayerNorm the |q·k|/√d of 4-dim heads is at most √4 · 4 / √4 = 4
    assert normed.stats["max_logit"] <= 4 + 1e-4
    assert plain.stats["max_logit"] > 100


@pytest.mark.parametrize("position", ["post", "pre"])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_block_wiring_matches_its_formula(position, norm):
    torch.manual_seed(0)
    block = TransformerBlock(8, 2, 16, norm_position=position, norm=norm, residual_scale=1.5, branch_scale=0.5)
    x = torch.randn(3, 4, 8)

    def ffn(h):
        return block.ff2(block.act(block.ff1(h)))

    if position == "post":
        h = block.norm1(1.5 * x + 0.5 * block.attn(x))
        expected = block.norm2(1.5 * h + 0.5 * ffn(h))
    else:
        h = 1.5 * x + 0.5 * block.attn(block.norm1(x))
        expected = 1.5 * h + 0.5 * ffn(block.norm2(h))
    torch.testing.assert_close(block(x), expected)
    kind = nn.RMSNorm if norm == "rms" else nn.LayerNorm
    ref = kind(8)
    ref.load_state_dict(block.norm1.state_dict())
    torch.testing.assert_close(block.norm1(x), ref(x), rtol=1e-6, atol=1e-6)


def test_rezero_block_starts_as_the_identity_and_deepnorm_constants():
    block = TransformerBlock(8, 2, rezero=True)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(block(x), x)
    alpha, beta = deepnorm_constants(6)
    assert math.isclose(alpha, 12 ** 0.25) and math.isclose(beta, 48 ** -0.25)
    lm = TinyCausalLM(5, 8, 2, 6, 4, norm_position="post", residual="deepnorm")
    assert all(b.residual_scale == alpha and b.init_scale == beta for b in lm.blocks)
    scaled = TinyCausalLM(5, 8, 2, 8, 4, residual="scaled")
    assert all(math.isclose(b.branch_scale, 1 / 4) for b in scaled.blocks)


def test_block_is_causal():
    torch.manual_seed(0)
    lm = TinyCausalLM(7, 16, 2, 2, 6, norm_position="post")
    tokens = torch.randint(0, 7, (2, 6))
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 7
    a, b = lm(tokens), lm(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("kwargs", [dict(norm_position="pre"), dict(norm_position="post", norm="rms", qk_norm=True),
                                    dict(norm_position="post", residual="deepnorm"), dict(residual="rezero"),
                                    dict(residual="scaled", norm="rms", activation="relu")])
def test_stacked_forward_equals_the_members(kwargs):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        m = TinyCausalLM(11, 16, 2, 2, 8, d_ff=32, **kwargs)
        with torch.no_grad():
            for p in m.parameters():
                if p.dim() == 1:
                    p.normal_(0.5, 0.3)            # non-trivial gains, biases and gates
        models.append(m)
    ens = Ensemble(models)
    assert ens.backend == "stacked"
    X, y = copy_task(6, length=4)
    torch.testing.assert_close(ens(X), torch.stack([m(X) for m in models]), rtol=1e-5, atol=1e-5)
    losses = ensemble_lm_loss(z_loss=[0.0, 1e-3, 0.1])(ens(X), y)
    for i, m in enumerate(models):
        torch.testing.assert_close(losses[i], lm_loss(m(X), y, z_loss=[0.0, 1e-3, 0.1][i]), rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(losses.sum(), ens.parameters())
    lm_loss(models[1](X), y, z_loss=1e-3).backward()
    for (name, _), g in zip(ens.params.items(), grads):
        torch.testing.assert_close(g[1], dict(models[1].named_parameters())[name].grad, rtol=1e-4, atol=1e-5)


def test_fit_ensemble_trains_the_lm_on_the_copy_task():
    X, y = copy_task(256, length=3, vocab=5)
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(TinyCausalLM(6, 16, 2, 1, 6, d_ff=32))
    hist = fit_ensemble(Ensemble(models), (X, y), epochs=6, lr=1e-2, optimizer="adam", loss=ensemble_lm_loss(),
                        batch_size=32, progress_bar=False)
    assert (hist.loss[:5].mean(0) > 1.0).all() and (hist.loss[-5:].mean(0) < 0.2).all()


def test_lm_loss_ignores_masked_targets_and_adds_z_loss():
    logits = torch.randn(2, 3, 4)
    targets = torch.tensor([[1, -100, 2], [-100, 0, 3]])
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(lm_loss(logits, targets), expected)
    z = torch.logsumexp(logits[keep], dim=-1).square().mean()
    torch.testing.assert_close(lm_loss(logits, targets, z_loss=0.1), expected + 0.1 * z)


def test_copy_task_has_its_documented_structure():
    X, y = copy_task(50, length=5, vocab=7, seed=3)
    assert X.shape == y.shape == (50, 10) and X.dtype == torch.long
    assert (X[:, 5] == 7).all() and (y[:, 4] == 7).all()
    assert torch.equal(y[:, 5:], X[:, :5]) and (y[:, :4] == -100).all()
    assert torch.equal(X[:, 1:], y[:, :-1].where(y[:, :-1] != -100, X[:, 1:]))
    assert torch.equal(copy_task(50, 5, 7, seed=3)[0], X) and not torch.equal(copy_task(50, 5, 7, seed=4)[0], X)
    with pytest.raises(ValueError, match="vocab"):
        copy_task(4, vocab=1)


def test_monitor_stats_and_checkup_on_the_lm():
    torch.manual_seed(0)
    lm = TinyCausalLM(11, 16, 2, 3, 8, d_ff=32)
    X, y = copy_task(64, length=4)
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    history = History()
    with GradientMonitor(lm) as monitor:
        for _ in range(4):
            opt.zero_grad()
            loss = lm_loss(lm(X), y)
            loss.backward()
            opt.step()
            monitor.step()
            history.loss.append(loss.item())
    names = list(monitor.records[-1].grad_norm)
    assert "blocks.0.attn.in_proj" in names and "blocks.2.ff2" in names and names[-1] == "head"
    assert list(block_grad_norms(lm)) == ["blocks.0", "blocks.1", "blocks.2"]
    stats = attention_stats(lm, X[:8])
    assert list(stats) == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn"]
    for s in stats.values():
        assert 0 < s["max_logit"] and 0 <= s["entropy"] <= math.log(8)
    assert lm.training and not any(m.record_stats for m in lm.modules() if isinstance(m, MultiheadSelfAttention))
    report = checkup(monitor, history, loss_spike=2.0)
    assert report.findings[-1].check == "loss spikes" and report["loss spikes"].ok
    spiky = History(loss=[1.0] * 12 + [5.0] + [1.0] * 3)
    assert not checkup(monitor, spiky, loss_spike=2.0)["loss spikes"].ok
    assert "loss spikes" not in [f.check for f in checkup(monitor, history).findings]


def test_loss_spikes_rule():
    assert loss_spikes([1.0] * 10 + [2.5]) == [10]
    assert loss_spikes([1.0] * 10 + [1.9]) == []                 # not twice the median
    assert loss_spikes([0.01] * 10 + [0.05]) == []               # five times, but a rise of 0.04 only
    assert loss_spikes([1.0] * 10 + [math.nan]) == [10]
    assert loss_spikes([1.0] * 4 + [3.0], window=4) == [4]


def test_attention_entropy_is_log_t_for_uniform_attention():
    attn = MultiheadSelfAttention(4, 1, causal=False)
    with torch.no_grad():
        attn.in_proj.weight[:8].zero_()              # q = k = 0: every logit 0, uniform weights
    attn.record_stats = True
    attn(torch.randn(1, 5, 4))
    assert math.isclose(float(attn.stats["entropy"]), math.log(5), rel_tol=1e-6)
    assert float(attn.stats["max_logit"]) == 0.0


# ---------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("build, error, words", [
    (lambda: MultiheadSelfAttention(10, 3), ValueError, ["num_heads", "embed_dim=10", "num_heads=3"]),
    (lambda: MultiheadSelfAttention(8, 2, norm="batch"), ValueError, ["norm", "'layer'", "'batch'"]),
    (lambda: MultiheadSelfAttention(8.0, 2), TypeError, ["embed_dim", "8.0"]),
    (lambda: MultiheadSelfAttention(8, 2, qk_norm=1), TypeError, ["qk_norm", "bool"]),
    (lambda: TransformerBlock(8, 2, norm_position="middle"), ValueError, ["norm_position", "'post'", "'middle'"]),
    (lambda: TransformerBlock(8, 2, residual_scale=0.0), ValueError, ["residual_scale", "0.0"]),
    (lambda: TransformerBlock(8, 2, activation="tanh"), ValueError, ["activation", "'gelu'", "'tanh'"]),
    (lambda: TransformerBlock(8, 2, d_ff=0), ValueError, ["d_ff", ">= 1"]),
    (lambda: TinyCausalLM(11, residual="fixup"), ValueError, ["residual", "'deepnorm'", "'fixup'"]),
    (lambda: TinyCausalLM(1), ValueError, ["vocab_size", ">= 2"]),
    (lambda: deepnorm_constants(0), ValueError, ["num_layers"]),
    (lambda: scaled_dot_product_attention(torch.ones(2, 3), torch.ones(2, 4), torch.ones(2, 4)), ValueError,
     ["query and key", "3", "4"]),
    (lambda: scaled_dot_product_attention(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), scale="1"),
     TypeError, ["scale", "'1'"]),
    (lambda: scaled_dot_product_attention(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3),
                                          scale=torch.ones(2)), TypeError, ["scale", "0-d", "(2,)"]),
    (lambda: scaled_dot_product_attention(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3),
                                          attn_mask=torch.ones(2, 2, dtype=torch.bool), is_causal=True),
     ValueError, ["attn_mask", "is_causal"]),
    (lambda: lm_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), z_loss=-1.0), ValueError,
     ["z_loss"]),
    (lambda: TinyCausalLM(5, 8, 2, 1, 4)(torch.zeros(1, 5, dtype=torch.long)), ValueError, ["max_len=4", "5"]),
    (lambda: TinyCausalLM(5, 8, 2, 1, 4)(torch.zeros(1, 3)), TypeError, ["tokens", "integer"]),
    (lambda: attention_stats(nn.Linear(2, 2), torch.zeros(1, 2)), ValueError, ["MultiheadSelfAttention"]),
    (lambda: loss_spikes([1.0], factor=1.0), ValueError, ["factor"]),
])
def test_bad_arguments_are_named(build, error, words):
    with pytest.raises(error) as info:
        build()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_refused_load_or_call_modifies_nothing():
    torch.manual_seed(0)
    lm = TinyCausalLM(5, 8, 2, 2, 4)
    before = copy.deepcopy(lm.state_dict())
    with pytest.raises(ValueError):
        lm(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(RuntimeError):
        lm.blocks[0].attn.load_state_dict(nn.MultiheadAttention(6, 2, batch_first=True).state_dict())
    for name, value in lm.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_default_initialisation_is_xavier():
    torch.manual_seed(0)
    attn = MultiheadSelfAttention(64, 4)
    bound = math.sqrt(6 / 128)
    for part in attn.in_proj.weight.chunk(3):
        assert part.abs().max() <= bound and part.std() > 0.8 * bound / math.sqrt(3)
    assert (attn.in_proj.bias == 0).all() and (attn.out_proj.bias == 0).all()


# ---------------------------------------------------------------------------- hostile-review fixes

def _fully_masked_masks(dtype):
    allowed = torch.rand(5, 5, generator=torch.Generator().manual_seed(3)) > 0.4
    allowed[:, 0] = True
    allowed[0] = False                                    # query 0 may attend to nothing
    allowed[3] = False
    additive = torch.zeros(5, 5, dtype=dtype).masked_fill(~allowed, -math.inf)
    return [allowed, additive]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", [0, 1], ids=["bool", "float"])
def test_fully_masked_rows_output_zero_like_torch(dtype, which):
    """torch's safe softmax: a query that may attend to nothing outputs 0 and passes no gradient."""
    mask = _fully_masked_masks(dtype)[which]
    q, k, v = _qkv(dtype)
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    ours = _assert_attention_equals_torch((q, k, v), (q2, k2, v2), attn_mask=mask)
    assert not ours.isnan().any() and (ours[..., 0, :] == 0).all() and (ours[..., 3, :] == 0).all()
    assert not any(t.grad.isnan().any() for t in (q, k, v))


def test_multihead_attention_with_a_fully_masked_row_equals_torch():
    torch.manual_seed(4)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    ours = MultiheadSelfAttention(8, 2, causal=False)
    ours.load_state_dict(ref.state_dict())
    allowed = torch.ones(5, 5, dtype=torch.bool)
    allowed[2] = False
    x = torch.randn(3, 5, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    got = ours(x, allowed)
    # torch's module gives NaN on that row (its own softmax); its functional form is the reference
    q, k, v = F.linear(x2, ref.in_proj_weight, ref.in_proj_bias).view(3, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed).transpose(1, 2).reshape(3, 5, 8)
    expected = ref.out_proj(heads)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    got.sum().backward()
    expected.sum().backward()
    assert not x.grad.isnan().any()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)
    # the causal module (every row keeps its diagonal unless the mask removes it) takes the same path
    causal = MultiheadSelfAttention(8, 2)
    assert not causal(torch.randn(2, 5, 8), allowed).isnan().any()


@pytest.mark.parametrize("scale", [0.0, -0.7, torch.tensor(0.5), torch.tensor(-2.0, dtype=torch.float64)])
def test_attention_accepts_every_scale_torch_accepts(scale):
    q, k, v = _qkv(torch.float64)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, scale=scale),
                               F.scaled_dot_product_attention(q, k, v, scale=scale))


def test_a_float32_mask_with_float64_queries_is_accepted_like_torch():
    q, k, v = _qkv(torch.float64)
    mask = torch.randn(5, 5, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("mask_dtype", [torch.long, torch.int32, torch.uint8, torch.float16])
def test_masks_torch_refuses_are_refused(mask_dtype):
    q, k, v = _qkv(torch.float32)
    mask = torch.zeros(5, 5, dtype=mask_dtype)
    with pytest.raises(RuntimeError):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with pytest.raises(TypeError) as info:
        scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert "attn_mask" in str(info.value) and str(mask_dtype) in str(info.value) and "bool" in str(info.value)
    mha = MultiheadSelfAttention(8, 2)
    with pytest.raises(TypeError, match="attn_mask"):
        mha(torch.randn(2, 5, 8), torch.zeros(5, 5, dtype=mask_dtype))


def test_multihead_attention_masks_and_inputs_get_clear_errors():
    torch.manual_seed(0)
    mha = MultiheadSelfAttention(8, 2)
    before = copy.deepcopy(mha.state_dict())
    x = torch.randn(2, 4, 8)
    cases = [
        (lambda: mha(x, torch.ones(6, 6, dtype=torch.bool)), ValueError, ["attn_mask", "(6, 6)", "(4, 4)"]),
        (lambda: mha(x, [[True]]), TypeError, ["attn_mask", "list"]),
        (lambda: mha(x, torch.zeros(4, 4, dtype=torch.float64)), TypeError, ["attn_mask", "torch.float64"]),
        (lambda: mha([1, 2]), TypeError, ["x", "list"]),
        (lambda: mha(torch.randn(2, 4, 6)), ValueError, ["x", "(2, 4, 6)"]),
    ]
    for build, error, words in cases:
        with pytest.raises(error) as info:
            build()
        for word in words:
            assert word in str(info.value), (word, str(info.value))
    for name, value in mha.state_dict().items():
        assert torch.equal(value, before[name]), name
    # what torch accepts works: an empty sequence with an empty mask, a float32 mask
    assert mha(torch.randn(2, 0, 8), torch.ones(0, 0, dtype=torch.bool)).shape == (2, 0, 8)
    assert mha(x, torch.zeros(4, 4)).shape == (2, 4, 8)


@pytest.mark.parametrize("tokens, error, words", [
    (torch.tensor([[0, 7]]), ValueError, ["tokens", "vocab_size", "[0, 5)", "7"]),
    (torch.tensor([[0, -1]]), ValueError, ["tokens", "vocab_size", "-1"]),
    (torch.tensor([[True, False]]), TypeError, ["tokens", "integer", "torch.bool"]),
    (torch.zeros(1, 3), TypeError, ["tokens", "integer", "torch.float32"]),
    ([[0, 1]], TypeError, ["tokens", "list"]),
    (torch.zeros(3, dtype=torch.long), ValueError, ["tokens", "(3,)"]),
])
def test_lm_tokens_get_clear_errors(tokens, error, words):
    torch.manual_seed(0)
    lm = TinyCausalLM(5, d_model=8, num_heads=2, num_layers=2, max_len=6)
    with pytest.raises(error) as info:
        lm(tokens)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_block_grad_norms_refuses_a_model_without_gradients():
    torch.manual_seed(0)
    lm = TinyCausalLM(5, d_model=8, num_heads=2, num_layers=2, max_len=4)
    with pytest.raises(ValueError, match="backward"):
        block_grad_norms(lm)
    with pytest.raises(TypeError, match="model"):
        block_grad_norms("x")
    lm(torch.zeros(2, 4, dtype=torch.long)).sum().backward()
    assert all(v > 0 for v in block_grad_norms(lm).values())
    lm.zero_grad()
    with pytest.raises(ValueError, match="backward"):
        block_grad_norms(lm)


@pytest.mark.parametrize("z_loss", [0.0, 1e-4, 1e-2, [1e-2, 0.0, 0.5]])
def test_ensemble_lm_loss_equals_lm_loss_bit_for_bit(z_loss):
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(3, 4, 7, 11, generator=g) * 3
        targets = torch.randint(0, 11, (4, 7), generator=g)
        targets[0, :2] = -100
        zs = z_loss if isinstance(z_loss, list) else [z_loss] * 3
        expected = torch.stack([lm_loss(logits[i], targets, zs[i]) for i in range(3)])
        assert torch.equal(ensemble_lm_loss(z_loss)(logits, targets), expected), seed


def test_loss_spikes_is_scale_sensible_for_negative_losses_and_checks_its_input():
    assert loss_spikes([-10.0] * 10 + [-9.5]) == []              # a 5 % rise, not a spike
    assert loss_spikes([-10.0] * 10 + [1.0]) == [10]             # 110 % of |median|
    assert loss_spikes([-0.05] * 10 + [0.2]) == [10]             # rise 0.25 > 2 × 0.05 and > 0.1
    # for a positive median the rule is L > factor × median, as before
    assert loss_spikes([2.0] * 10 + [4.01]) == [10] and loss_spikes([2.0] * 10 + [3.99]) == []
    assert loss_spikes(torch.tensor([1.0] * 10 + [3.0])) == [10]
    assert loss_spikes([torch.tensor(1.0)] * 10 + [torch.tensor(3.0)]) == [10]
    for bad, words in (([[1.0, 2.0]] * 12, ["losses", "1-D", "[1.0, 2.0]"]),
                       (torch.ones(12, 2), ["losses", "1-D", "(12, 2)"]),
                       (None, ["losses", "NoneType"]),
                       ("1234", ["losses", "str"])):
        with pytest.raises(TypeError) as info:
            loss_spikes(bad)
        for word in words:
            assert word in str(info.value), (word, str(info.value))


def test_attention_stats_puts_every_module_back_in_its_own_mode():
    # F3: model.train(was_training) set every sub-module to the root's mode
    torch.manual_seed(0)
    lm = TinyCausalLM(5, d_model=8, num_heads=2, num_layers=2, max_len=4)
    lm.train()
    lm.blocks[0].eval()
    modes = [m.training for m in lm.modules()]
    attention_stats(lm, torch.zeros(2, 4, dtype=torch.long))
    assert [m.training for m in lm.modules()] == modes


@pytest.mark.parametrize("flag", [True, False])
def test_attention_stats_leaves_each_layers_flag_and_stats_as_they_were(flag):
    # it used to switch a user's record_stats=True off and overwrite the stats recorded in training
    torch.manual_seed(0)
    lm = TinyCausalLM(5, d_model=8, num_heads=2, num_layers=2, max_len=4)
    first, second = (block.attn for block in lm.blocks)
    first.record_stats = flag
    lm(torch.randint(0, 5, (2, 4)))
    before = dict(first.stats)
    stats = attention_stats(lm, torch.zeros(2, 4, dtype=torch.long))
    assert (first.record_stats, second.record_stats) == (flag, False)
    assert first.stats.keys() == before.keys() and all(torch.equal(before[k], first.stats[k]) for k in before)
    assert second.stats == {} and set(stats) == {"blocks.0.attn", "blocks.1.attn"}


def test_attention_stats_restores_the_flags_on_an_error():
    lm = TinyCausalLM(5, d_model=8, num_heads=2, num_layers=1, max_len=4)
    attn = lm.blocks[0].attn
    attn.record_stats = True
    with pytest.raises(ValueError, match="max_len"):
        attention_stats(lm, torch.zeros(2, 9, dtype=torch.long))       # longer than max_len
    assert attn.record_stats is True and attn.stats == {}
