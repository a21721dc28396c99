"""LSTM / BiLSTM baselines and the nearest-training-case baseline."""

import json

import pytest
import torch

from fluidgpt.baselines import NearestCase, SequenceLSTM
from fluidgpt.config import ConfigError, LSTMConfig
from tests.fluidgpt.factories import K, P, T, filled, lstm_config, synthetic_cases


def lstm_parameters(inputs: int, hidden: int, layers: int, directions: int) -> int:
    """torch.nn.LSTM: per layer and direction 4 gates x (W_ih, W_hh, b_ih, b_hh)."""
    total = 0
    for layer in range(layers):
        n_in = inputs if layer == 0 else directions * hidden
        total += directions * 4 * hidden * (n_in + hidden + 2)
    return total


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("predict_conditions", [True, False])
def test_shapes(bidirectional, predict_conditions):
    model = SequenceLSTM(lstm_config(bidirectional=bidirectional,
                                     predict_conditions=predict_conditions))
    cases = filled(synthetic_cases())
    out = model(cases["positions"][:, 0], cases["conditions"], T)
    assert out.shape == (4, T, P, 3 + (K if predict_conditions else 0))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_parameter_receives_a_gradient(bidirectional):
    torch.manual_seed(0)
    model = SequenceLSTM(lstm_config(bidirectional=bidirectional))
    cases = filled(synthetic_cases())
    model(cases["positions"][:, 0], cases["conditions"], T).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_first_token_holds_the_first_step_and_the_conditions():
    model = SequenceLSTM(lstm_config())
    cases = filled(synthetic_cases())
    first, cond = cases["positions"][:, 0], cases["conditions"]
    base = model(first, cond, T)
    assert not torch.allclose(model(first + 1.0, cond, T), base)
    assert not torch.allclose(model(first, cond + 1.0, T), base)


@pytest.mark.parametrize("name,directions", [("paper-lstm", 1), ("paper-bilstm", 2)])
def test_paper_sizes_on_meta(name, directions):
    with torch.device("meta"):
        model = SequenceLSTM.from_preset(name)
    d = 8 * 196  # width d = the raw token size
    assert model.config.token_size == model.config.width == d
    expected = lstm_parameters(d, d, 4, directions) + (directions * d * d + d)
    assert model.num_parameters() == expected


def test_bad_inputs_and_configs():
    model = SequenceLSTM(lstm_config())
    with pytest.raises(ValueError, match=r"first step must be \(B, P, F\) = \(B, 3, 3\)"):
        model(torch.zeros(2, 4, 3), torch.zeros(2, K), T)
    with pytest.raises(ValueError, match=r"conditions must be \(B, K\)"):
        model(torch.zeros(2, P, 3), torch.zeros(2, K + 1), T)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        model(torch.zeros(2, P, 3), torch.zeros(2, K), 0)
    with pytest.raises(ConfigError, match="n_layer must be positive"):
        lstm_config(n_layer=0)
    with pytest.raises(ConfigError, match=r"unknown LSTM config key\(s\) \['layers'\]"):
        LSTMConfig.from_dict({"layers": 4})


def test_presets_serialise_to_plain_values():
    for name in LSTMConfig.PRESETS:
        d = LSTMConfig.from_preset(name).to_dict()
        assert json.loads(json.dumps(d)) == d and LSTMConfig.from_dict(d).to_dict() == d


# ------------------------------------------------------------------------------- nearest
def grid_cases():
    """3 x 3 grid of conditions (each case's outputs identify it)."""
    a, b = torch.meshgrid(torch.arange(3.0), torch.arange(3.0), indexing="ij")
    cond = torch.stack([a.flatten(), b.flatten()], dim=1)  # (9, 2)
    traj = torch.arange(9.0)[:, None, None, None].expand(9, T, P, 3).clone()
    erosion = torch.arange(9.0)[:, None].expand(9, 5).clone()
    return cond, traj, erosion


def test_nearest_case_copies_the_closest_training_case():
    cond, traj, erosion = grid_cases()
    nearest = NearestCase().fit(cond, trajectories=traj, erosion=erosion)
    query = torch.tensor([[0.1, 1.8], [2.4, 0.4], [1.0, 1.0]])
    expected = torch.tensor([2, 6, 4])  # (0, 2), (2, 0), (1, 1) in row-major order
    out = nearest.predict(query)
    assert torch.equal(out["index"], expected)
    assert torch.equal(out["trajectories"], traj[expected])
    assert torch.equal(out["erosion"], erosion[expected])


def test_nearest_case_weights_drop_a_condition_and_ties_go_to_the_first_case():
    cond, traj, _ = grid_cases()
    nearest = NearestCase(weights=[1.0, 0.0]).fit(cond, trajectories=traj)
    # The second condition is ignored: cases 3, 4, 5 tie at distance 0; the first wins.
    assert nearest.index(torch.tensor([[1.0, 100.0]])).item() == 3
    assert NearestCase().fit(cond).index(torch.tensor([[1.0, 100.0]])).item() == 5


def test_nearest_case_errors():
    cond, traj, _ = grid_cases()
    with pytest.raises(RuntimeError, match="fit"):
        NearestCase().index(cond)
    with pytest.raises(ValueError, match="trajectories has 8 cases, conditions have 9"):
        NearestCase().fit(cond, trajectories=traj[:8])
    with pytest.raises(ValueError, match=r"conditions must be \(B, 2\)"):
        NearestCase().fit(cond).index(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="3 weights for 2 conditions"):
        NearestCase(weights=[1.0, 1.0, 1.0]).fit(cond)
    with pytest.raises(ValueError, match="non-negative"):
        NearestCase(weights=[1.0, -1.0])
