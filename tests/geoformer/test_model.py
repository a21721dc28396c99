"""Contracts of the whole network at tiny sizes: shapes, gradients, symmetries, paths."""

import io

import pytest
import torch

from geoformer import GeoFormer, GeoFormerConfig
from tests.conftest import random_inputs, tiny_config, tiny_model


@pytest.mark.parametrize("overrides", [
    {},  # 10 x 32: padding in level, latitude at both stages
    {"grid": (33, 64), "window": (2, 4, 8)},  # odd latitude count
    {"grid": (121, 240), "patch": (2, 4, 4), "window": (2, 6, 10)},  # 1.5 deg with poles
    {"grid": (32, 64), "levels": (1000,), "patch": (1, 2, 2), "window": (1, 4, 8)},
])
def test_output_has_input_shapes(overrides):
    model = tiny_model(**overrides)
    upper, surface = random_inputs(model.config, batch=1)
    out_u, out_s = model(upper, surface)
    assert out_u.shape == upper.shape and out_s.shape == surface.shape
    assert torch.isfinite(out_u).all() and torch.isfinite(out_s).all()


def test_released_grid_runs_on_meta_without_allocating():
    with torch.device("meta"):
        model = GeoFormer.from_preset("pangu", grid=(721, 1440))
        upper = torch.empty(1, 5, 13, 721, 1440)
        surface = torch.empty(1, 4, 721, 1440)
        out_u, out_s = model(upper, surface)
    assert out_u.shape == (1, 5, 13, 721, 1440) and out_s.shape == (1, 4, 721, 1440)
    assert out_u.device.type == "meta"


def test_every_parameter_receives_a_gradient(tiny):
    upper, surface = random_inputs(tiny.config)
    out_u, out_s = tiny(upper, surface)
    (out_u.square().mean() + out_s.square().mean()).backward()
    for name, p in tiny.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} received a zero gradient"


@pytest.mark.parametrize("overrides", [{}, {"grid": (33, 64), "window": (2, 4, 8)}])
def test_rolling_by_whole_stage2_windows_rolls_the_output(overrides):
    model = tiny_model(**overrides).eval()
    cfg = model.config
    step = 2 * cfg.window[2] * cfg.patch[2]  # grid points in one stage-2 longitude window
    upper, surface = random_inputs(cfg, batch=1)
    out_u, out_s = model(upper, surface)
    model.set_constants(torch.roll(model.constants, step, dims=-1))
    rolled_u, rolled_s = model(torch.roll(upper, step, dims=-1), torch.roll(surface, step, dims=-1))
    torch.testing.assert_close(rolled_u, torch.roll(out_u, step, dims=-1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rolled_s, torch.roll(out_s, step, dims=-1), rtol=1e-4, atol=1e-5)


def _copy_with(model, **changes):
    other = GeoFormer(model.config.replace(**changes))
    other.load_state_dict(model.state_dict())
    return other


def test_sdpa_equals_reference_in_the_whole_network(tiny):
    reference = _copy_with(tiny, attention="reference")
    upper, surface = random_inputs(tiny.config)
    for a, b in zip(tiny(upper, surface), reference(upper, surface)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_activation_checkpointing_changes_nothing(tiny):
    tiny.train()
    checkpointed = _copy_with(tiny, checkpoint_activations=True).train()
    upper, surface = random_inputs(tiny.config)
    grads = []
    for model in (tiny, checkpointed):
        out_u, out_s = model(upper, surface)
        (out_u.square().mean() + out_s.abs().mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


def test_bf16_autocast_runs_and_stays_finite(tiny):
    upper, surface = random_inputs(tiny.config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_u, out_s = tiny(upper, surface)
        loss = out_u.float().abs().mean() + out_s.float().abs().mean()
    loss.backward()
    assert out_u.shape == upper.shape and torch.isfinite(out_u.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in tiny.parameters())


def test_constants_are_buffers_that_matter(tiny):
    upper, surface = random_inputs(tiny.config, batch=1)
    assert "constants" in tiny.state_dict()
    assert "constants" not in dict(tiny.named_parameters())
    before = tiny(upper, surface)[1]
    tiny.set_constants(torch.zeros_like(tiny.constants))
    after = tiny(upper, surface)[1]
    assert not torch.allclose(before, after)


def test_constants_default_to_zeros_and_are_checked():
    model = GeoFormer(tiny_config())
    assert torch.count_nonzero(model.constants) == 0
    with pytest.raises(ValueError, match=r"\(K, H, W\) = \(1, 10, 32\)"):
        model.set_constants(torch.zeros(3, 10, 32))
    with pytest.raises(ValueError, match="NaN"):
        model.set_constants(torch.full((1, 10, 32), float("nan")))


@pytest.mark.parametrize("upper_shape,surface_shape,message", [
    ((1, 3, 3, 10, 32), (1, 2, 10, 32), r"upper-air input must be .*\(B, 2, 3, 10, 32\)"),
    ((1, 2, 3, 12, 32), (1, 2, 10, 32), r"geopotential.*found \(1, 2, 3, 12, 32\)"),
    ((1, 2, 3, 10, 32), (1, 1, 10, 32), r"surface input must be .*mean_sea_level_pressure"),
    ((2, 2, 3, 10, 32), (1, 2, 10, 32), r"batch"),
    ((2, 3, 10, 32), (1, 2, 10, 32), r"\(B, V, Z, H, W\)"),
])
def test_inputs_that_do_not_match_the_config_are_rejected(tiny, upper_shape, surface_shape,
                                                          message):
    with pytest.raises(ValueError, match=message):
        tiny(torch.zeros(upper_shape), torch.zeros(surface_shape))


def test_bias_tables_are_excluded_from_weight_decay(tiny):
    skip = tiny.no_weight_decay()
    tables = {n for n, _ in tiny.named_parameters() if n.endswith("bias_table")}
    assert tables and tables <= skip
    groups = tiny.param_groups(weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(tiny.parameters()))
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert all(id(p) not in decayed for n, p in tiny.named_parameters() if n in tables)
    assert any(p.ndim >= 2 for p in groups[0]["params"])


def test_drop_path_rates_follow_the_paper():
    with torch.device("meta"):
        model = GeoFormer.from_preset("pangu")
    rates = [0.2 * i / 7 for i in range(8)]

    def stage_rates(stage):
        return [getattr(b.drop_path, "drop_prob", 0.0) for b in stage.blocks]

    assert stage_rates(model.stage1) == pytest.approx(rates[:2])
    assert stage_rates(model.stage4) == pytest.approx(rates[:2])
    assert stage_rates(model.stage2) == pytest.approx(rates[2:])
    assert stage_rates(model.stage3) == pytest.approx(rates[2:])


def test_blocks_alternate_plain_and_shifted_windows(tiny):
    for stage in (tiny.stage1, tiny.stage2, tiny.stage3, tiny.stage4):
        shifts = [b.shift for b in stage.blocks]
        assert shifts == [(0, 0, 0), (1, 1, 2)]


def test_blocks_are_post_norm(tiny):
    # Post-norm: the residual branch output is normalised, so a block whose attention and MLP
    # produce huge values still adds a bounded update (LayerNorm output has unit variance).
    block = tiny.stage1.blocks[0].eval()
    with torch.no_grad():
        block.attn.proj.weight.mul_(1e4)
        block.mlp.fc2.weight.mul_(1e4)
    x = torch.randn(1, 3, 5, 16, 8)  # (B, Z, H, W, C)
    update = block(x) - x
    assert update.abs().max() < 20


def test_checkpoint_round_trip_with_weights_only(tiny):
    buf = io.BytesIO()
    torch.save({"config": tiny.config.to_dict(), "state_dict": tiny.state_dict()}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    model = GeoFormer(GeoFormerConfig.from_dict(loaded["config"]))
    model.load_state_dict(loaded["state_dict"])
    upper, surface = random_inputs(tiny.config)
    tiny.eval()
    model.eval()
    for a, b in zip(tiny(upper, surface), model(upper, surface)):
        assert torch.equal(a, b)


def _blocks(model):
    return [b for s in (model.stage1, model.stage2, model.stage3, model.stage4)
            for b in s.blocks]


@pytest.mark.parametrize("convert", [lambda m: m, lambda m: m.double(),
                                     lambda m: m.to("cpu", torch.float16)])
def test_blocks_of_one_geometry_share_their_buffers_and_keep_their_values(convert):
    model = convert(tiny_model(depths=(2, 4, 4, 2)))
    seen: dict = {}
    for block in _blocks(model):
        # the shared values are the block's own: recompute them for this block
        into, back = block._window_indices()
        assert torch.equal(block.to_windows, into) and torch.equal(block.from_windows, back)
        key = (block.grid, block.shift)
        if key in seen:
            assert block.to_windows.data_ptr() == seen[key].to_windows.data_ptr()
            if block.attn_mask is not None:
                assert block.attn_mask.data_ptr() == seen[key].attn_mask.data_ptr()
        seen.setdefault(key, block)
    first = _blocks(model)[0].attn.position_index
    assert all(b.attn.position_index.data_ptr() == first.data_ptr() for b in _blocks(model))
    # stages 1 and 4 (one grid) and 2 and 3 (the other): 2 grids x 2 shifts
    assert len(seen) == 4
