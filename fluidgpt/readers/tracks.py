"""Particle tracks as a long table, resampled onto a common time grid.

Every reader first produces a *track table*: a pandas DataFrame with one row per (particle,
sample) and the columns ``particle`` (any hashable id), ``time`` [s], ``x y z`` [m] and
optionally ``u v w`` [m s-1] and ``diameter`` [m]. ``resample_tracks`` turns it into the
dense arrays of the canonical dataset for one case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["TRACK_COLUMNS", "Trajectories", "resample_tracks", "check_track_table",
           "uniform_times"]

TRACK_COLUMNS = ("particle", "time", "x", "y", "z", "u", "v", "w", "diameter")
_REQUIRED = ("particle", "time", "x", "y", "z")


@dataclass(frozen=True)
class Trajectories:
    """Trajectories of one case on a common time grid.

    position, velocity: (P, T, 3) [m], [m s-1]; valid: (P, T) bool; diameter: (P,) [m]
    (NaN when the table had none); time: (T,) [s]; particle: (P,) ids in row order.
    """

    position: np.ndarray
    velocity: np.ndarray
    valid: np.ndarray
    diameter: np.ndarray
    time: np.ndarray
    particle: np.ndarray

    def __post_init__(self):
        P, T = self.valid.shape
        for name, shape in (("position", (P, T, 3)), ("velocity", (P, T, 3)),
                            ("diameter", (P,)), ("time", (T,)), ("particle", (P,))):
            if getattr(self, name).shape != shape:
                raise ValueError(f"Trajectories.{name}: expected shape {shape}, found "
                                 f"{getattr(self, name).shape}")


def check_track_table(table: pd.DataFrame, source: str = "track table") -> pd.DataFrame:
    """Check the columns and values of a track table; returns it sorted by (case,) particle,
    time, with repeated samples of a particle at one time dropped (the last kept)."""
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing}; found {list(table.columns)}")
    numeric = [c for c in TRACK_COLUMNS[1:] if c in table.columns]
    bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(table[c])]
    if bad:
        raise ValueError(f"{source}: columns {bad} are not numeric")
    finite = np.isfinite(table[numeric].to_numpy(dtype=float)).all(axis=0)
    if not finite.all():
        raise ValueError(f"{source}: NaN or inf in columns "
                         f"{[c for c, ok in zip(numeric, finite) if not ok]}")
    keys = ["case", "particle", "time"] if "case" in table.columns else ["particle", "time"]
    return table.sort_values(keys, kind="stable").drop_duplicates(keys, keep="last")


def uniform_times(n_steps: int, interval: float, start: float = 0.0) -> np.ndarray:
    """(T,) sample times start + k * interval [s]."""
    return start + interval * np.arange(n_steps)


def _interp_hold(t_new: np.ndarray, t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linear interpolation of (S, C) values at t_new, holding the end values outside."""
    return np.stack([np.interp(t_new, t, values[:, c]) for c in range(values.shape[1])], -1)


def resample_tracks(table: pd.DataFrame, times: np.ndarray,
                    particles: Sequence | None = None) -> Trajectories:
    """Resample a track table onto `times` (T,) [s], linearly between samples.

    A particle is valid from its first to its last sample (with a relative tolerance of
    1e-9 of the time span); outside that, position and velocity hold the nearest sample.
    Velocities missing from the table are the time derivative of the positions.
    particles: ids to keep, in this order (all, sorted, when None); an id absent from the
    table is an error.
    """
    table = check_track_table(table)
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or len(times) < 2 or not (np.diff(times) > 0).all():
        raise ValueError("times must be a 1-D strictly increasing array of >= 2 values")
    groups = dict(tuple(table.groupby("particle", sort=True)))
    ids = list(groups) if particles is None else list(particles)
    absent = [p for p in ids if p not in groups]
    if absent:
        raise ValueError(f"particles {absent[:5]}{'...' if len(absent) > 5 else ''} "
                         f"are not in the track table")
    has_u = all(c in table.columns for c in "uvw")
    has_d = "diameter" in table.columns
    P, T = len(ids), len(times)
    position, velocity = np.zeros((P, T, 3)), np.zeros((P, T, 3))
    valid = np.zeros((P, T), dtype=bool)
    diameter = np.full(P, np.nan)
    tol = 1e-9 * max(times[-1] - times[0], 1e-30)
    for i, pid in enumerate(ids):
        g = groups[pid]
        t = g["time"].to_numpy(float)
        xyz = g[["x", "y", "z"]].to_numpy(float)
        if has_u:
            uvw = g[["u", "v", "w"]].to_numpy(float)
        elif len(t) > 1:
            uvw = np.gradient(xyz, t, axis=0)
        else:
            uvw = np.zeros_like(xyz)
        position[i] = _interp_hold(times, t, xyz)
        velocity[i] = _interp_hold(times, t, uvw)
        valid[i] = (times >= t[0] - tol) & (times <= t[-1] + tol)
        if has_d:
            diameter[i] = g["diameter"].to_numpy(float)[-1]
    return Trajectories(position, velocity, valid, diameter, times, np.asarray(ids))
