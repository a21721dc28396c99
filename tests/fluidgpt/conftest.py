"""Tiny fluidgpt datasets made in the repo: nothing is fetched, no solver is run."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from fluidgpt.schema import PHYSICAL_CONDITIONS, canonical_dataset

DATA = Path(__file__).parent / "data"
TINY_CASE = DATA / "openfoam_case_tiny"

#: The small grid of mock_trajectories: 2 x 2 x 3 x 1 x 2 = 24 cases.
MOCK_GRID = {
    "main_inlet_speed": (6.0, 12.0),
    "side_inlet_speed": (15.0, 30.0),
    "particle_diameter": (2e-5, 5e-5, 1e-4),
    "particle_density": (2650.0,),
    "restitution": (0.6, 0.9),
}


def mock_trajectories(n_particles: int = 4, n_steps: int = 6, n_faces: int = 10,
                      dt: float = 0.005, seed: int = 0, grid: dict | None = None):
    """A canonical dataset over a small condition grid, with toy but condition-driven physics.

    Particles start across a branch at y = -0.1 m, rise at the side speed and drift along x
    at the main speed (a larger diameter turns more slowly); a particle leaves (valid False)
    once y > 0.5 m. Erosion on `n_faces` wall faces along x grows with speed and diameter.
    """
    grid = dict(MOCK_GRID if grid is None else grid)
    conds = np.array(list(itertools.product(*(grid[c] for c in PHYSICAL_CONDITIONS))))
    N, P, T = len(conds), n_particles, n_steps
    rng = np.random.default_rng(seed)
    start = np.stack([0.15 + 0.03 * rng.random(P), np.full(P, -0.1),
                      0.035 + 0.03 * rng.random(P)], axis=-1)            # (P, 3)
    t = dt * np.arange(T)                                                 # (T,)
    main, side, d = conds[:, 0], conds[:, 1], conds[:, 2]
    turn = 1.0 - np.exp(-t[None, :] / (d[:, None] * 1e3))                 # (N, T)
    vx = main[:, None] * turn                                            # (N, T)
    vy = side[:, None] * (1.0 - turn)
    x = start[None, :, None, 0] + np.cumsum(vx * dt, axis=1)[:, None, :]  # (N, P, T)
    y = start[None, :, None, 1] + np.cumsum(vy * dt, axis=1)[:, None, :]
    z = np.broadcast_to(start[None, :, None, 2], x.shape)
    position = np.stack([x, y, z], axis=-1)                              # (N, P, T, 3)
    velocity = np.broadcast_to(np.stack([vx, vy, 0 * vx], -1)[:, None], position.shape)
    valid = np.cumsum(y > 0.5, axis=2) == 0                               # (N, P, T)
    last = np.maximum(valid.sum(axis=2) - 1, 0)                           # (N, P)
    held = np.take_along_axis(position, last[..., None, None], axis=2)    # (N, P, 1, 3)
    position = np.where(valid[..., None], position, held)
    face_x = np.linspace(0.0, 0.7, n_faces)
    rate = (1e-3 * (main * side)[:, None] * d[:, None] * 1e3
            * np.exp(-((face_x[None, :] - 0.6) / 0.1) ** 2))             # (N, F)
    return canonical_dataset(
        position, valid, t, conds, PHYSICAL_CONDITIONS, velocity=velocity,
        diameter=np.broadcast_to(d[:, None], (N, P)), erosion_rate=rate,
        face_centre=np.stack([face_x, np.zeros(n_faces), np.full(n_faces, 0.05)], -1),
        face_area=np.full(n_faces, 1e-4), patch=["wallBend"] * n_faces,
        seed=np.full(N, seed), attrs={"title": "mock_trajectories"})


@pytest.fixture
def mock_ds():
    return mock_trajectories()


@pytest.fixture
def tiny_case():
    if not TINY_CASE.is_dir():
        pytest.skip(f"{TINY_CASE} is missing")
    return TINY_CASE
