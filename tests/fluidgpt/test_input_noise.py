"""train.input_noise: Gaussian noise on the teacher-forced inputs in training only; the
targets, validation and the rollout loss see the clean states."""

import pytest
import torch

from fluidgpt.config import ConfigError, TrainConfig
from fluidgpt.losses import masked_mse
from fluidgpt.module import GPTModule
from tests.fluidgpt.factories import filled, gpt_config, synthetic_cases


def _modules(noise: float):
    clean = GPTModule(gpt_config(), TrainConfig.from_preset("fluidgpt"))
    noisy = GPTModule(gpt_config(), TrainConfig.from_preset("fluidgpt", input_noise=noise))
    noisy.load_state_dict(clean.state_dict())
    return clean, noisy


def test_noise_perturbs_the_inputs_in_training_and_never_the_targets():
    cases = filled(synthetic_cases())
    clean, noisy = _modules(0.1)
    clean.train(), noisy.train()
    torch.manual_seed(0)
    got = noisy.losses(cases)["loss"]
    torch.manual_seed(0)
    states = cases["positions"]
    inputs = states[:, :-1] + 0.1 * torch.randn_like(states[:, :-1])
    pred = noisy.model(inputs, cases["conditions"])
    torch.testing.assert_close(got, masked_mse(pred, states[:, 1:], cases["valid"][:, 1:]))
    assert not torch.allclose(got, clean.losses(cases)["loss"])


def test_no_noise_in_evaluation():
    cases = filled(synthetic_cases())
    clean, noisy = _modules(0.1)
    clean.eval(), noisy.eval()
    torch.testing.assert_close(noisy.losses(cases)["loss"], clean.losses(cases)["loss"])


def test_negative_noise_is_refused():
    with pytest.raises(ConfigError, match="input_noise must be >= 0, found -0.1"):
        TrainConfig.from_preset("fluidgpt", input_noise=-0.1)
