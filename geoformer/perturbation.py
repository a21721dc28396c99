"""Pangu-Weather's ensemble perturbations: fractal Perlin noise on the (latitude, longitude) grid.

Bi et al. (2023, Methods, "ensemble"; the released pseudocode's ``PerlinNoise``) add Perlin
noise to the initial upper-air and surface fields, with 3 octaves, persistence 0.5,
12 periods and a noise scale of 0.2. Where the scale applies is not stated; here it is in
normalised space, i.e. in units of each field's standard deviation (the checkpoint's
normalisation statistics), so one scale suits every variable and level.

The noise is periodic in longitude (gradient lattice wrapped at 360 deg) and not in latitude.
Each octave's 2D Perlin noise is bounded by sqrt(2)/2; the fractal sum is divided by that
bound and by the sum of the octave amplitudes, so |noise| <= 1 and a perturbation is at most
``scale`` standard deviations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PERTURBATIONS", "perlin_noise", "ensemble_noise", "perturb"]

#: Perturbation methods known to :func:`ensemble_noise`.
PERTURBATIONS = ("perlin",)


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)  # Perlin's 6t^5 - 15t^4 + 10t^3


def _octave(lat: np.ndarray, lon: np.ndarray, cells: tuple[int, int],
            angles: np.ndarray) -> np.ndarray:
    """One octave at points (H, W) from gradient angles (F, ny + 1, nx) -> (F, H, W)."""
    ny, nx = cells
    y = (90.0 - lat) / 180.0 * ny  # 0 at the north pole, ny at the south pole
    x = lon / 360.0 * nx  # not wrapped: lon 360 lands on lattice column nx == column 0
    iy = np.clip(np.floor(y).astype(int), 0, ny - 1)
    ix = np.floor(x).astype(int)
    fy, fx = y - iy, x - ix
    gx, gy = np.cos(angles), np.sin(angles)  # (F, ny + 1, nx) unit gradients

    def corner(dy: int, dx: int) -> np.ndarray:
        j, i = iy + dy, (ix + dx) % nx  # longitude wraps: the noise is periodic
        return gx[:, j, i] * (fx - dx) + gy[:, j, i] * (fy - dy)  # (F, H, W)

    u, v = _fade(fx), _fade(fy)
    top = corner(0, 0) + u * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + u * (corner(1, 1) - corner(1, 0))
    return top + v * (bottom - top)


def perlin_noise(latitude: Sequence[float], longitude: Sequence[float],
                 rng: np.random.Generator, n: int = 1, period: int = 12, octaves: int = 3,
                 persistence: float = 0.5) -> np.ndarray:
    """``n`` independent fractal Perlin fields on a grid -> (n, H, W), each within [-1, 1].

    Args:
        latitude: (H,) degrees in [-90, 90]; longitude: (W,) degrees (any range: 0 and 360
            give the same value).
        rng: the source of the random gradients (numpy Generator).
        period: lattice cells along the whole longitude circle (and along pole-to-pole
            latitude) at the first octave; octave k has ``period * 2**k``.
        octaves: number of octaves; octave k has amplitude ``persistence**k``.
    """
    if period < 1 or octaves < 1 or not 0 < persistence:
        raise ValueError(f"Perlin noise needs period >= 1, octaves >= 1 and persistence > 0; "
                         f"found {period}, {octaves}, {persistence}")
    lat2, lon2 = np.meshgrid(np.asarray(latitude, float), np.asarray(longitude, float),
                             indexing="ij")  # (H, W)
    total = np.zeros((n, *lat2.shape))
    for k in range(octaves):
        cells = (period * 2**k, period * 2**k)
        angles = rng.uniform(0.0, 2 * np.pi, size=(n, cells[0] + 1, cells[1]))
        total += persistence**k * _octave(lat2, lon2, cells, angles)
    amplitude = sum(persistence**k for k in range(octaves)) * np.sqrt(0.5)
    return total / amplitude  # (n, H, W)


def ensemble_noise(members: int, n_upper: tuple[int, int], n_surface: int,
                   latitude: Sequence[float], longitude: Sequence[float],
                   scale: float = 0.2, seed: int = 0, draw: int = 0,
                   perturbation: str = "perlin", **perlin) -> tuple[np.ndarray, np.ndarray]:
    """Normalised-space perturbations for an ensemble, control first.

    Member 0 is zero (the control); members 1..N-1 get ``scale`` times independent Perlin
    fields for every variable and level. Member m's noise depends only on (seed, draw, m), so
    it is the same whatever N is; ``draw`` tells initial times apart.

    Returns (upper (N, V, Z, H, W), surface (N, S, H, W)) as float32.
    """
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}; known: {list(PERTURBATIONS)}")
    if members < 1:
        raise ValueError(f"an ensemble needs at least 1 member, found {members}")
    if not scale >= 0:
        raise ValueError(f"the perturbation scale must be >= 0, found {scale}")
    V, Z = n_upper
    H, W = len(latitude), len(longitude)
    upper = np.zeros((members, V, Z, H, W), np.float32)
    surface = np.zeros((members, n_surface, H, W), np.float32)
    for m in range(1, members):
        rng = np.random.default_rng([seed, draw, m])
        fields = scale * perlin_noise(latitude, longitude, rng, n=V * Z + n_surface, **perlin)
        upper[m] = fields[:V * Z].reshape(V, Z, H, W)  # (V, Z, H, W)
        surface[m] = fields[V * Z:]  # (S, H, W)
    return upper, surface


def perturb(upper: np.ndarray, surface: np.ndarray, members: int,
            latitude: Sequence[float], longitude: Sequence[float], scale: float = 0.2,
            seed: int = 0, draw: int = 0, perturbation: str = "perlin",
            **perlin) -> tuple[np.ndarray, np.ndarray]:
    """A normalised initial state (V, Z, H, W), (S, H, W) -> an ensemble (N, V, Z, H, W),
    (N, S, H, W): member 0 is the state itself, the others carry :func:`ensemble_noise`."""
    du, ds = ensemble_noise(members, upper.shape[-4:-2], surface.shape[-3], latitude,
                            longitude, scale, seed, draw, perturbation, **perlin)
    return upper[None] + du, surface[None] + ds
