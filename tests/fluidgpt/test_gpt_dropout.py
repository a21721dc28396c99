"""The GPT's CPU dropout and unfused attention against torch's definitions."""

import pytest
import torch
import torch.nn.functional as F

from fluidgpt.gpt import CausalSelfAttention, Dropout, FluidGPT, attention, dropout
from tests.fluidgpt.factories import gpt_config


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_zeroes_a_fraction_p_and_scales_the_rest_by_the_kept_fraction(p):
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 1.0  # no zeros of its own
    y = dropout(x, p)
    zeroed = (y == 0).float().mean().item()
    assert abs(zeroed - p) < 0.002  # 1e6 draws: the fraction's sd is below 5e-4
    drop = round(p * 65536)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] * (65536 / (65536 - drop)), rtol=1e-6, atol=0)
    assert abs(y.mean().item() / x.mean().item() - 1) < 0.015  # unbiased (sd 0.003 at p 0.9)


def test_dropout_draws_are_independent_across_elements_and_calls():
    torch.manual_seed(1)
    x = torch.ones(200_000)
    a, b = dropout(x, 0.5) == 0, dropout(x, 0.5) == 0
    both = (a & b).float().mean().item()
    assert abs(both - 0.25) < 0.005  # two calls: independent masks
    neighbours = (a[:-1] & a[1:]).float().mean().item()
    assert abs(neighbours - 0.25) < 0.005  # the four 16-bit parts of one 64-bit draw too


def test_dropout_is_reproducible_from_the_seed_and_off_outside_training():
    x = torch.randn(5, 7, 3)
    torch.manual_seed(3)
    first = dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.3), first)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_refuses_a_probability_outside_0_1(p):
    with pytest.raises(ValueError, match="dropout probability must be in"):
        dropout(torch.ones(4), p)


def test_dropout_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(4)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    kept = y.detach() != 0
    scale = 65536 / (65536 - round(0.25 * 65536))
    assert torch.allclose(x.grad, kept.float() * scale)


def test_dropout_module_has_no_state_and_follows_train_and_eval():
    layer = Dropout(0.5)
    assert layer.state_dict() == {}
    x = torch.ones(1000)
    assert torch.equal(layer.eval()(x), x)
    assert (layer.train()(x) == 0).any()


def test_gpt_checkpoint_keys_do_not_depend_on_the_dropout_module():
    model = FluidGPT(gpt_config(dropout=0.2))
    assert not any("drop" in key for key in model.state_dict())


@pytest.mark.parametrize("past", [0, 3])
@pytest.mark.parametrize("new", [1, 5])
def test_attention_of_the_last_tokens_equals_full_causal_attention(past, new):
    """Queries of the last ``new`` tokens against all past + new keys give the last rows of
    causal attention over the whole sequence (what a KV cache relies on)."""
    g = torch.Generator().manual_seed(5)
    q_all, k, v = (torch.randn(2, 3, past + new, 4, generator=g) for _ in range(3))
    full = F.scaled_dot_product_attention(q_all, k, v, is_causal=True)
    assert torch.allclose(attention(q_all[:, :, past:], k, v), full[:, :, past:], atol=1e-6)


def test_attention_needs_at_least_as_many_keys_as_queries():
    q, k = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 2, 4)
    with pytest.raises(ValueError, match="at least as many keys as queries"):
        attention(q, k, k)


def test_attention_dropout_drops_weights_after_the_softmax():
    """The same draws applied by hand to softmax(q k^T / sqrt(hs)) give the same output."""
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    torch.manual_seed(7)
    out = attention(q, k, v, 0.5)
    scores = (q @ k.transpose(-2, -1)) / 2.0
    scores = scores.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf"))
    torch.manual_seed(7)
    assert torch.allclose(out, dropout(scores.softmax(-1), 0.5) @ v, atol=1e-6)
    assert not torch.allclose(out, attention(q, k, v), atol=1e-3)


def test_cpu_training_with_attention_dropout_uses_the_unfused_attention(monkeypatch):
    import fluidgpt.gpt as gpt

    calls = []

    def counted(q, k, v, p=0.0):
        calls.append(p)
        return attention(q, k, v, p)

    monkeypatch.setattr(gpt, "attention", counted)
    attn = CausalSelfAttention(8, 2, dropout=0.0, attn_dropout=0.25)
    x = torch.randn(2, 5, 8)
    attn.eval()(x)
    assert calls == []  # evaluation: torch's fused kernel
    attn.train()(x)
    assert calls == [0.25]


def test_training_attention_on_the_cpu_stays_causal():
    torch.manual_seed(8)
    attn = CausalSelfAttention(8, 2, dropout=0.0, attn_dropout=0.3).train()
    x = torch.randn(2, 6, 8)
    later = x.clone()
    later[:, 4:] += 1.0
    torch.manual_seed(9)
    a = attn(x)
    torch.manual_seed(9)
    b = attn(later)
    assert torch.equal(a[:, :4], b[:, :4])
    assert not torch.equal(a[:, 4:], b[:, 4:])
