"""Contracts of the trajectory GPT and its configuration at tiny sizes."""

import json
import math

import pytest
import torch

from fluidgpt.config import ConfigError, GPTConfig
from fluidgpt.gpt import (
    CausalSelfAttention,
    FluidGPT,
    KVCache,
    apply_rotary,
    particle_tokens,
    rotary_tables,
    sinusoidal_positions,
)
from tests.fluidgpt.factories import filled, gpt_config, paper_gpt_config, synthetic_cases

CONFIGS = {
    "default": {},
    "prefix-rotary": {"conditioning": "prefix", "positions": "rotary"},
    "sinusoidal-absolute": {"positions": "sinusoidal", "residual": False},
    "window": {"context": 4},
    "particle": {"layout": "particle"},
    "exact-gelu": {"activation": "gelu"},
}


def make(name: str, seed: int = 0) -> FluidGPT:
    torch.manual_seed(seed)
    cfg = paper_gpt_config() if name == "paper" else gpt_config(**CONFIGS[name])
    return FluidGPT(cfg)


def inputs(model: FluidGPT, batch: int = 2, steps: int = 6, seed: int = 0):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, steps, cfg.n_particles, cfg.n_features, generator=g)
    return states, torch.randn(batch, cfg.n_conditions, generator=g)


ALL = [*CONFIGS, "paper"]


@pytest.mark.parametrize("name", ALL)
def test_output_shape_and_finite(name):
    model = make(name)
    states, cond = inputs(model)
    out = model(states, cond)
    cfg = model.config
    assert out.shape == (*states.shape[:3], cfg.out_features)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_receives_a_gradient(name):
    model = make(name)
    states, cond = inputs(model)
    model(states, cond).square().mean().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, f"{n} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{n} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{n} received a zero gradient"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("t0", [0, 2])
def test_output_at_step_t_ignores_later_inputs(name, t0):
    model = make(name).eval()
    states, cond = inputs(model)
    out = model(states, cond)
    perturbed = states.clone()
    perturbed[:, t0 + 1:] += 10.0 * torch.randn_like(perturbed[:, t0 + 1:])
    out2 = model(perturbed, cond)
    torch.testing.assert_close(out2[:, :t0 + 1], out[:, :t0 + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(out2[:, t0 + 1], out[:, t0 + 1], atol=1e-3)  # the test can fail


@pytest.mark.parametrize("name", ALL)
def test_conditions_change_the_prediction(name):
    model = make(name).eval()
    states, cond = inputs(model)
    assert not torch.allclose(model(states, cond), model(states, cond + 1.0), atol=1e-4)


def test_chunked_kv_cache_equals_one_pass():
    model = make("default").double().eval()
    states, cond = (x.double() for x in inputs(model, steps=7))
    full = model(states, cond)
    cache = KVCache()
    parts = [model(states[:, :3], cond, start=0, cache=cache),
             model(states[:, 3:6], cond, start=3, cache=cache),  # several new tokens at once
             model(states[:, 6:], cond, start=6, cache=cache)]
    assert cache.length() == 7 and len(cache.layers) == model.config.n_layer
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-10)


def test_residual_output_is_input_plus_change():
    model = make("default")
    states, cond = inputs(model)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    torch.testing.assert_close(model(states, cond), states)
    absolute = FluidGPT(model.config.replace(residual=False))
    with torch.no_grad():
        absolute.head.weight.zero_()
        absolute.head.bias.zero_()
    assert torch.count_nonzero(absolute(states, cond)) == 0


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = FluidGPT(gpt_config(dropout=0.5))
    states, cond = inputs(model)
    model.train()
    assert not torch.equal(model(states, cond), model(states, cond))
    model.eval()
    assert torch.equal(model(states, cond), model(states, cond))


# ------------------------------------------------------------------------------ paper model
def test_paper_token_is_every_particle_state_then_the_conditions():
    cases = filled(synthetic_cases(n=2, particles=3, conditions=5))
    states, cond = cases["positions"], cases["conditions"]
    tokens = particle_tokens(states, cond)
    assert tokens.shape == (2, states.shape[1], 3 * 8)
    for p in range(3):
        slot = tokens[:, :, 8 * p: 8 * (p + 1)]
        torch.testing.assert_close(slot[..., :3], states[:, :, p])
        torch.testing.assert_close(slot[..., 3:], cond[:, None].expand(-1, states.shape[1], -1))


def test_paper_size_on_meta_without_allocating():
    with torch.device("meta"):
        model = FluidGPT(GPTConfig.from_preset("paper"))
    cfg = model.config
    d = cfg.width
    assert cfg.n_particles == 196 and cfg.n_conditions == 5
    assert d == cfg.token_size == 8 * 196
    # Per block: ln 2d, qkv 3d^2 + 3d, proj d^2 + d, ln 2d, fc 4d^2 + 4d, proj 4d^2 + d
    # = 12 d^2 + 13 d; four blocks, final LayerNorm 2d, Linear(d, d) d^2 + d.
    expected = 4 * (12 * d * d + 13 * d) + 2 * d + d * d + d
    assert model.num_parameters() == expected
    assert 115e6 < expected < 125e6  # published: about 120 M
    assert all(p.device.type == "meta" for p in model.parameters())
    assert not [n for n, _ in model.named_parameters() if "embed" in n]  # raw tokens
    assert model.head.in_features == model.head.out_features == d
    assert [len(model.blocks), model.blocks[0].attn.n_head] == [4, 2]
    assert model.blocks[0].mlp.act.approximate == "tanh"
    assert model.blocks[0].mlp.fc.out_features == 4 * d


def test_paper_blocks_are_pre_norm():
    # Pre-norm: both branches read a normalised copy, so a huge input passes through the
    # residual stream unchanged plus an O(1) update; a post-norm block would normalise it.
    block = make("paper").blocks[0].eval()
    x = 1e4 * torch.randn(1, 3, block.ln1.normalized_shape[0])
    out = block(x)
    assert out.abs().max() > 1e3
    assert (out - x).abs().max() < 10


def test_trphysx_positions_have_one_frequency_on_every_odd_dimension():
    d = 8
    pos = torch.arange(4.0)
    pe = sinusoidal_positions(pos, d, trphysx=True)
    standard = sinusoidal_positions(pos, d)
    for i in range(d // 2):
        w = 10000.0 ** (-2 * i / d)
        torch.testing.assert_close(pe[:, 2 * i], torch.sin(pos * w))
        torch.testing.assert_close(standard[:, 2 * i], torch.sin(pos * w))
        torch.testing.assert_close(standard[:, 2 * i + 1], torch.cos(pos * w))
        torch.testing.assert_close(pe[:, 2 * i + 1], torch.cos(pos))  # the quirk
    assert pe[0, 1] == 1.0 and pe[2, 7] == pytest.approx(math.cos(2.0))


def test_paper_positions_are_the_trphysx_table():
    model = make("paper")
    d = model.config.width
    table = sinusoidal_positions(torch.arange(model.config.max_steps), d, trphysx=True)
    assert torch.equal(model.pos_table, table)
    assert "pos_table" not in model.state_dict()  # fixed, not stored


def test_rotary_scores_depend_only_on_relative_position():
    hs = 8
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, hs, generator=g), torch.randn(1, 1, 1, hs, generator=g)

    def score(m, n):
        cq, sq = rotary_tables(torch.tensor([m]), hs)
        ck, sk = rotary_tables(torch.tensor([n]), hs)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    torch.testing.assert_close(score(3, 1), score(10, 8))
    assert not torch.allclose(score(3, 1), score(3, 2))
    c, s = rotary_tables(torch.tensor([5]), hs)
    torch.testing.assert_close(apply_rotary(q, c, s).norm(), q.norm())


def test_no_weight_decay_holds_biases_norms_and_positions_only():
    model = make("default")
    skip = model.no_weight_decay()
    assert "pos_embed.weight" in skip and "ln_f.weight" in skip and "head.bias" in skip
    assert "head.weight" not in skip and "blocks.0.attn.qkv.weight" not in skip


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("shape,cond_shape,message", [
    ((2, 4, 4, 3), (2, 2), r"\(B, T, 3, 3\)"),
    ((2, 4, 3), (2, 2), r"states must be"),
    ((2, 4, 3, 3), (2, 5), r"conditions must be \(B, K\) = \(2, 2\)"),
    ((2, 17, 3, 3), (2, 2), r"outside the 16 positions"),
])
def test_inputs_that_do_not_match_the_config_are_rejected(shape, cond_shape, message):
    model = make("default")
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape), torch.zeros(cond_shape))


def test_cache_misuse_is_rejected():
    model = make("default")
    states, cond = inputs(model)
    cache = KVCache()
    model(states[:, :2], cond, start=0, cache=cache)
    with pytest.raises(ValueError, match="cache holds 2 tokens"):
        model(states[:, 2:3], cond, start=3, cache=cache)
    with pytest.raises(ValueError, match="sliding context"):
        make("window")(states[:, :1], cond, cache=KVCache())


# --------------------------------------------------------------------------------- config
def test_presets_serialise_to_plain_values_and_round_trip():
    for name in GPTConfig.PRESETS:
        config = GPTConfig.from_preset(name)
        d = config.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert GPTConfig.from_dict(d) == config


def test_preset_overrides_resize_the_raw_token():
    config = GPTConfig.from_preset("paper", n_particles=10, n_conditions=3)
    assert config.width == 10 * 6 and config.out_features == 6 and config.d_model is None


@pytest.mark.parametrize("overrides,message", [
    ({"embedding": "raw"}, r"raw tokens carry the conditions"),
    ({"conditioning": "repeat"}, r"does not go with"),
    ({"d_model": 15}, r"does not divide into 2 heads"),
    ({"positions": "alibi"}, r"positions must be"),
    ({"positions": "rotary", "d_model": 6, "n_head": 2}, r"even head size"),
    ({"predict_conditions": True}, r"predict_conditions needs raw tokens"),
    ({"dropout": 1.0}, r"dropout"),
    ({"context": 20}, r"context must be in \[0, max_steps=16\]"),
    ({"layout": "grid"}, r"layout must be 'case' or 'particle'"),
    ({"activation": "relu"}, r"activation must be 'gelu_tanh' or 'gelu', found 'relu'"),
    ({"attn_dropout": 1.0}, r"attn_dropout must be None or in \[0, 1\), found 1.0"),
])
def test_bad_configurations_fail_with_a_clear_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        gpt_config(**overrides)


def test_raw_tokens_fix_d_model():
    with pytest.raises(ConfigError, match=r"fix d_model to P \(F \+ K\) = 16"):
        paper_gpt_config(d_model=32)


def test_unknown_keys_and_presets_are_errors():
    with pytest.raises(ConfigError, match=r"unknown GPT config key\(s\) \['n_embd'\]"):
        GPTConfig.from_dict({"n_embd": 12})
    with pytest.raises(ConfigError, match="unknown GPT preset 'gpt4'"):
        GPTConfig.from_preset("gpt4")


def test_particle_layout_predicts_each_path_from_that_path_alone():
    """Layout "particle": one network for every particle, blind to the other particles."""
    model = make("particle").eval()
    states, cond = inputs(model)
    out = model(states, cond)
    perturbed = states.clone()
    perturbed[:, :, 1:] += 10.0 * torch.randn_like(perturbed[:, :, 1:])  # all but particle 0
    out2 = model(perturbed, cond)
    torch.testing.assert_close(out2[:, :, 0], out[:, :, 0], rtol=0, atol=1e-6)
    assert not torch.allclose(out2[:, :, 1:], out[:, :, 1:], atol=1e-3)  # the test can fail
    perm = torch.randperm(states.shape[2], generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model(states[:, :, perm], cond), out[:, :, perm],
                               rtol=0, atol=1e-6)
    few = model(states[:, :, :2], cond)  # any number of particles
    torch.testing.assert_close(few, out[:, :, :2], rtol=0, atol=1e-6)


def test_case_layout_mixes_the_particles():
    model = make("default").eval()
    states, cond = inputs(model)
    perturbed = states.clone()
    perturbed[:, :, 1:] += 10.0 * torch.randn_like(perturbed[:, :, 1:])
    assert not torch.allclose(model(perturbed, cond)[:, :, 0], model(states, cond)[:, :, 0],
                              atol=1e-3)


def test_particle_layout_needs_a_learned_embedding():
    with pytest.raises(ConfigError, match=r"layout 'particle' needs a learned embedding"):
        GPTConfig.from_preset("paper", n_particles=4, layout="particle")


@pytest.mark.parametrize("activation,gelu", [
    ("gelu_tanh", lambda h: 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi)
                                                      * (h + 0.044715 * h ** 3)))),
    ("gelu", lambda h: 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))),
])
def test_mlp_activation_is_the_configured_gelu(activation, gelu):
    model = FluidGPT(gpt_config(activation=activation)).eval()
    mlp = model.blocks[0].mlp
    x = 10 * torch.randn(2, 5, model.config.width, generator=torch.Generator().manual_seed(1))
    expected = mlp.proj(gelu(mlp.fc(x)))
    torch.testing.assert_close(mlp(x), expected, rtol=1e-5, atol=1e-6)


def test_default_activation_is_gpt2s_tanh_gelu_so_older_checkpoints_rebuild_the_same():
    assert GPTConfig().activation == "gelu_tanh"
    assert GPTConfig.from_dict({k: v for k, v in GPTConfig().to_dict().items()
                                if k != "activation"}).activation == "gelu_tanh"


@pytest.mark.parametrize("attn_dropout,dropped", [(None, True), (0.0, False), (0.5, True)])
def test_attention_weight_dropout_follows_attn_dropout(attn_dropout, dropped):
    """attn_dropout None takes ``dropout`` (GPT-2); 0 keeps every attention weight in
    training, whatever the residual dropout."""
    torch.manual_seed(0)
    attn = CausalSelfAttention(8, 2, dropout=0.5, attn_dropout=attn_dropout)
    attn.resid_drop = torch.nn.Identity()  # the residual dropout aside
    x = torch.randn(3, 7, 8)
    reference = attn.eval()(x)
    attn.train()
    assert torch.equal(attn(x), reference) is not dropped
    if dropped:
        assert not torch.equal(attn(x), attn(x))


def test_attn_dropout_is_read_from_the_config():
    model = FluidGPT(gpt_config(dropout=0.2, attn_dropout=0.0))
    assert [b.attn.dropout for b in model.blocks] == [0.0] * model.config.n_layer
    assert [b.attn.dropout for b in FluidGPT(gpt_config(dropout=0.2)).blocks][0] == 0.2
