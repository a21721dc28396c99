"""Erosion models: the paper's Conv3d stack and the pooled default with a magnitude head."""

import json

import pytest
import torch

from fluidgpt.cnn import (
    ErosionNet,
    PaperErosionCNN,
    build_erosion_model,
    conv_stack_shape,
    join_erosion,
    paper_volume,
    pattern_modes,
    split_erosion,
)
from fluidgpt.config import ConfigError, ErosionConfig
from tests.fluidgpt.factories import FACES, K, P, T, erosion_config, filled, synthetic_cases

ARCHS = {
    "paper": {"arch": "paper", "magnitude_head": False},
    "paper+magnitude": {"arch": "paper", "magnitude_head": True},
    "pooled": {"arch": "pooled"},
    "paper+modes": {"arch": "paper", "magnitude_head": True, "output_modes": 3},
    "pooled+modes": {"arch": "pooled", "output_modes": 3},
}


def make(name, seed=0):
    torch.manual_seed(seed)
    model = build_erosion_model(erosion_config(**ARCHS[name]))
    if model.config.output_modes:   # as fitted on training maps (a zero basis passes nothing)
        head = model.head if model.config.arch == "paper" else model.pattern
        head.set_basis(*pattern_modes(torch.rand(8, FACES), model.config.output_modes))
    return model


def batch():
    cases = filled(synthetic_cases())
    return cases["positions"], cases["conditions"], cases["valid"]


@pytest.mark.parametrize("name", ARCHS)
def test_output_shapes_and_magnitude_head(name):
    model = make(name)
    traj, cond, valid = batch()
    pred = model(traj, cond, valid)
    assert pred.pattern.shape == (4, FACES) and torch.isfinite(pred.pattern).all()
    if model.config.magnitude_head:
        assert pred.log_peak.shape == (4,) and torch.isfinite(pred.log_peak).all()
    else:
        assert pred.log_peak is None


@pytest.mark.parametrize("name", ARCHS)
def test_every_parameter_receives_a_gradient(name):
    model = make(name)
    traj, cond, valid = batch()
    pred = model(traj, cond, valid)
    loss = pred.pattern.square().mean()
    if pred.log_peak is not None:
        loss = loss + pred.log_peak.square().mean()
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_paper_volume_layout():
    traj, cond, _ = batch()
    vol = paper_volume(traj, cond)
    assert vol.shape == (4, 1, T, 3 + K, P)
    for p in range(P):
        torch.testing.assert_close(vol[:, 0, :, :3, p], traj[:, :, p])
        torch.testing.assert_close(vol[:, 0, :, 3:, p], cond[:, None].expand(-1, T, -1))


def test_conv_stack_shape_by_hand_and_against_the_layers():
    # The paper's volume: conv n -> n + 1, pool m -> m // 2 + 1, four times:
    # T 50 -> 26 -> 14 -> 8 -> 5; channels 8 -> 5 -> 4 -> 3 -> 3; P 196 -> 99 -> 51 -> 27 -> 15.
    assert conv_stack_shape((50, 8, 196), 4) == (5, 3, 15)
    config = ErosionConfig.from_preset("paper")
    with torch.device("meta"):
        model = PaperErosionCNN(config)
        h = model.features(torch.empty(1, 1, 50, 8, 196))
    assert tuple(h.shape) == (1, 40, 5, 3, 15)
    assert model.head.linear.in_features == 40 * 5 * 3 * 15


def test_paper_size_on_meta():
    with torch.device("meta"):
        model = PaperErosionCNN(ErosionConfig.from_preset("paper"))
    convs, c_in = 0, 1
    for c_out in (10, 20, 30, 40):
        convs += c_out * c_in * 2**3 + c_out
        c_in = c_out
    faces = 38312
    assert model.num_parameters() == convs + 9000 * faces + faces
    assert isinstance(model.act, torch.nn.LeakyReLU)


def test_pooled_model_ignores_what_invalid_steps_hold():
    model = make("pooled").eval()
    traj, cond, valid = batch()
    assert not valid.all()
    junk = traj.clone()
    junk[~valid] = 123.0
    torch.testing.assert_close(model(junk, cond, valid).pattern, model(traj, cond, valid).pattern)
    changed = traj.clone()
    changed[valid] += 1.0
    assert not torch.allclose(model(changed, cond, valid).pattern,
                              model(traj, cond, valid).pattern)


def test_split_and_join_erosion_round_trip():
    rate = synthetic_cases()["erosion"] * 1e-6  # kg m^-2 s^-1
    pattern, log_peak = split_erosion(rate)
    assert torch.allclose(pattern.amax(dim=1), torch.ones(4))
    torch.testing.assert_close(log_peak, rate.amax(dim=1).log())
    torch.testing.assert_close(join_erosion(pattern, log_peak), rate)
    zero = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="no positive value"):
        split_erosion(zero)
    pattern, log_peak = split_erosion(zero, floor=1e-12)
    assert torch.count_nonzero(pattern) == 0
    assert log_peak.item() == pytest.approx(torch.tensor(1e-12).log().item())


def test_bad_inputs_and_configs():
    model = make("pooled")
    traj, cond, valid = batch()
    with pytest.raises(ValueError, match=r"trajectories must be \(B, T, P, F\) = \(B, 8, 3, 3\)"):
        model(traj[:, :5], cond)
    with pytest.raises(ValueError, match=r"conditions must be \(B, K\)"):
        model(traj, cond[:, :1])
    with pytest.raises(ValueError, match=r"valid must be \(B, T, P\)"):
        model(traj, cond, valid[:, :2])
    with pytest.raises(ConfigError, match="arch must be 'paper' or 'pooled'"):
        erosion_config(arch="unet")
    with pytest.raises(ConfigError, match="filters"):
        erosion_config(filters=())


def test_presets_serialise_to_plain_values():
    for name in ErosionConfig.PRESETS:
        d = ErosionConfig.from_preset(name).to_dict()
        assert json.loads(json.dumps(d)) == d and ErosionConfig.from_dict(d).to_dict() == d
    assert isinstance(build_erosion_model(erosion_config(arch="pooled")), ErosionNet)


def test_pattern_modes_whiten_and_reconstruct_the_training_patterns():
    torch.manual_seed(0)
    patterns = torch.rand(6, 40, dtype=torch.float64)
    mean, basis = pattern_modes(patterns, 10)
    assert basis.shape == (5, 40)   # at most N - 1 modes carry variance
    torch.testing.assert_close(mean, patterns.mean(0))
    # coefficients of the training patterns have unit variance and rebuild them exactly
    gram = basis @ basis.T
    coef = (patterns - mean) @ basis.T @ torch.linalg.inv(gram)      # (N, k)
    torch.testing.assert_close(mean + coef @ basis, patterns)
    torch.testing.assert_close(coef.square().mean(0), torch.ones(5, dtype=torch.float64))
    _, two = pattern_modes(patterns, 2)
    torch.testing.assert_close(two, basis[:2])


@pytest.mark.parametrize("name", ["paper+modes", "pooled+modes"])
def test_output_basis_keeps_every_prediction_in_its_span(name):
    model = make(name)
    torch.manual_seed(1)
    mean, basis = pattern_modes(torch.rand(5, FACES), 3)
    head = model.head if name.startswith("paper") else model.pattern
    head.set_basis(mean, basis)
    traj, cond, valid = batch()
    with torch.no_grad():
        raw = head(torch.randn(4, head.linear.in_features))
    # raw - mean lies in the span of the 3 modes: its projection out of it is zero
    q, _ = torch.linalg.qr(basis.T)                                  # (faces, 3)
    residual = (raw - mean) - (raw - mean) @ q @ q.T
    assert residual.abs().max() < 1e-5
    assert model(traj, cond, valid).pattern.shape == (4, FACES)
    assert {"head.mean", "head.basis"} <= set(model.state_dict()) or \
        {"pattern.mean", "pattern.basis"} <= set(model.state_dict())
    with pytest.raises(ValueError, match="the basis must be"):
        head.set_basis(mean, torch.zeros(4, FACES))
