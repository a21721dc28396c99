"""Generation: KV-cached rollout equals full recompute; the paper's sliding window."""

import pytest
import torch

from fluidgpt.gpt import FluidGPT
from fluidgpt.rollout import rollout
from tests.fluidgpt.factories import gpt_config, paper_gpt_config

CACHED = {
    "learned-add": {},
    "rotary-prefix": {"conditioning": "prefix", "positions": "rotary"},
    "sinusoidal-prefix": {"conditioning": "prefix", "positions": "sinusoidal",
                          "residual": False},
    "particle-layout": {"layout": "particle", "conditioning": "prefix"},
}


def model_and_inputs(config, first_steps=1, seed=0):
    torch.manual_seed(seed)
    model = FluidGPT(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    first = torch.randn(2, first_steps, config.n_particles, config.n_features, generator=g)
    return model, first, torch.randn(2, config.n_conditions, generator=g)


@pytest.mark.parametrize("name", CACHED)
@pytest.mark.parametrize("first_steps", [1, 3])
def test_kv_cached_rollout_equals_full_recompute(name, first_steps):
    model, first, cond = model_and_inputs(gpt_config(**CACHED[name]), first_steps)
    model, first, cond = model.double(), first.double(), cond.double()
    steps = model.config.max_steps - first_steps + 1  # up to the last position
    with torch.no_grad():
        cached = rollout(model, first, cond, steps)
        full = rollout(model, first, cond, steps, use_cache=False)
    assert cached.shape == (2, first_steps + steps, *first.shape[2:])
    assert torch.equal(cached[:, :first_steps], first)
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-10)
    assert not torch.allclose(cached[:, -1], cached[:, -2])  # it did generate something


def test_kv_cached_rollout_matches_in_float32():
    model, first, cond = model_and_inputs(gpt_config())
    with torch.no_grad():
        torch.testing.assert_close(rollout(model, first, cond, 12),
                                   rollout(model, first, cond, 12, use_cache=False),
                                   rtol=1e-5, atol=1e-5)


def test_each_generated_step_is_the_one_step_prediction_of_the_trajectory_so_far():
    model, first, cond = model_and_inputs(gpt_config())
    with torch.no_grad():
        traj = rollout(model, first, cond, 6)
        one_step = model(traj[:, :-1], cond)  # teacher-forced on the generated trajectory
    torch.testing.assert_close(one_step[:, -1], traj[:, -1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one_step, traj[:, 1:], rtol=1e-5, atol=1e-5)


def test_paper_rollout_uses_a_sliding_window_with_positions_restarting_at_zero():
    cfg = paper_gpt_config()
    model, first, cond = model_and_inputs(cfg, first_steps=6)
    with torch.no_grad():
        traj = rollout(model, first, cond, 3)
        # Step 6 from steps 2..5 at positions 0..3 (not 2..5), whole-token output cut to x, y, z.
        expected = model(first[:, 2:6], cond, start=0)[:, -1, :, :3]
        torch.testing.assert_close(traj[:, 6], expected)
        assert not torch.allclose(model(first[:, 2:6], cond, start=2)[:, -1, :, :3], expected)
        early = first.clone()
        early[:, :2] += 5.0  # outside the 4-step window: no effect
        torch.testing.assert_close(rollout(model, early, cond, 3)[:, 6:], traj[:, 6:])
        late = first.clone()
        late[:, 2] += 5.0  # inside the window
        assert not torch.allclose(rollout(model, late, cond, 1)[:, 6], traj[:, 6])


def test_paper_rollout_reinserts_the_known_conditions():
    cfg = paper_gpt_config()
    model, first, cond = model_and_inputs(cfg)
    with torch.no_grad():
        traj = rollout(model, first, cond, 5)
        # Step 2 must come from step 1 with the TRUE conditions, not the predicted slots.
        expected = model(traj[:, :2], cond)[:, -1, :, :3]
    torch.testing.assert_close(traj[:, 2], expected)
    assert traj.shape[-1] == 3


def test_rollout_is_differentiable_for_multi_step_training():
    model, first, cond = model_and_inputs(gpt_config())
    model.train()
    rollout(model, first, cond, 4)[:, 1:].square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_zero_negative_and_too_many_steps():
    model, first, cond = model_and_inputs(gpt_config())
    assert torch.equal(rollout(model, first, cond, 0), first)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        rollout(model, first, cond, -1)
    with pytest.raises(ValueError, match="outside the 16 positions"):
        rollout(model, first, cond, model.config.max_steps + 1)
