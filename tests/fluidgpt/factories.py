"""Tiny tensor factories for the fluidgpt network tests: everything is made here."""

from __future__ import annotations

import torch
import torch.utils.data

from fluidgpt.config import ErosionConfig, GPTConfig, LSTMConfig

P, K, T, FACES = 3, 2, 8, 6  # particles, conditions, steps, wall faces


def gpt_config(**overrides) -> GPTConfig:
    """The default design at a size that runs in milliseconds (dropout off for equalities)."""
    values = dict(n_particles=P, n_features=3, n_conditions=K, d_model=16, n_layer=2,
                  n_head=2, dropout=0.0, max_steps=16, name="test")
    values.update(overrides)
    return GPTConfig(**values)


def paper_gpt_config(**overrides) -> GPTConfig:
    """The paper's layout (raw 8-number-per-particle tokens, K = 5) with P = 2: d = 16."""
    values = dict(n_particles=2, n_conditions=5, max_steps=16)
    values.update(overrides)
    return GPTConfig.from_preset("paper", **values)


def lstm_config(**overrides) -> LSTMConfig:
    values = dict(n_particles=P, n_conditions=K, hidden=12, n_layer=2, name="test")
    values.update(overrides)
    return LSTMConfig(**values)


def erosion_config(**overrides) -> ErosionConfig:
    values = dict(n_steps=T, n_particles=P, n_conditions=K, n_faces=FACES, hidden=16,
                  filters=(2, 3), name="test")
    values.update(overrides)
    return ErosionConfig(**values)


def synthetic_cases(n: int = 4, steps: int = T, particles: int = P, conditions: int = K,
                    faces: int = FACES, seed: int = 0) -> dict[str, torch.Tensor]:
    """Smooth trajectories driven by the conditions, with a particle leaving the domain.

    Every particle starts at its own fixed injection point and moves with a velocity that is
    a fixed linear function of the case's conditions, plus a little gravity; particle 0 of
    case 0 leaves after step steps - 3 (valid False, positions NaN there). Erosion of face j
    is exp(conditions . a_j) > 0.

    Returns positions and velocity (n, steps, particles, 3), conditions (n, conditions),
    valid (n, steps, particles) bool and erosion (n, faces).
    """
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(n, conditions, generator=g)
    start = torch.randn(particles, 3, generator=g)  # (P, 3)
    mix = torch.randn(conditions, particles, 3, generator=g) * 0.5
    vel0 = torch.einsum("nk,kpd->npd", cond, mix)  # (n, P, 3)
    t = torch.linspace(0.0, 1.0, steps)[None, :, None, None]  # (1, T, 1, 1)
    gravity = torch.tensor([0.0, 0.0, -0.5])
    positions = start + vel0[:, None] * t + 0.5 * gravity * t**2  # (n, T, P, 3)
    velocity = (vel0[:, None] + gravity * t).expand_as(positions).clone()  # (n, T, P, 3)
    valid = torch.ones(n, steps, particles, dtype=torch.bool)
    valid[0, steps - 2:, 0] = False
    positions[~valid] = float("nan")
    velocity[~valid] = float("nan")
    erosion = torch.exp(cond @ (torch.randn(conditions, faces, generator=g) * 0.5))
    return {"positions": positions, "velocity": velocity, "conditions": cond, "valid": valid,
            "erosion": erosion}


def filled(cases: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The cases with invalid entries replaced by zeros, as a data pipeline feeds a network."""
    out = dict(cases)
    for name in ("positions", "velocity"):
        out[name] = torch.nan_to_num(cases[name], nan=0.0)
    return out


def loader(cases: dict[str, torch.Tensor], batch_size: int,
           shuffle: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader of batch dicts over the cases (a stand-in for the real dataset)."""
    n = cases["conditions"].shape[0]
    items = [{k: v[i] for k, v in cases.items()} for i in range(n)]
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=shuffle)
