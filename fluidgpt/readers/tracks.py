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
    time.

    Rows that repeat a (case,) particle, time key with the same values are dropped, with a
    note in ``attrs["notes"]``; rows that repeat a key with other values are an error (without
    a case column: the table holds several runs, which need one).
    """
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing}; found {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{source}: no rows (expected one row per particle sample)")
    numeric = [c for c in TRACK_COLUMNS[1:] if c in table.columns]
    for c in numeric:
        if not pd.api.types.is_numeric_dtype(table[c]):
            bad = pd.to_numeric(table[c], errors="coerce").isna() & table[c].notna()
            first = int(np.argmax(bad.to_numpy())) if bad.any() else 0
            raise ValueError(f"{source}: column {c!r}: expected numbers, found "
                             f"{table[c].iloc[first]!r} (data row {first + 1})")
    finite = np.isfinite(table[numeric].to_numpy(dtype=float))  # (rows, columns)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(f"{source}: NaN or inf in columns "
                         f"{[c for c, ok in zip(numeric, finite.all(0)) if not ok]} (first: "
                         f"{numeric[col]!r}, data row {row + 1}); expected finite numbers")
    keys = ["case", "particle", "time"] if "case" in table.columns else ["particle", "time"]
    table = table.sort_values(keys, kind="stable")
    return _drop_duplicates(table, keys, source)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _drop_duplicates(table: pd.DataFrame, keys: list[str], source: str) -> pd.DataFrame:
    """The table without rows that repeat a key with the same values (noted); a key repeated
    with other values is an error naming the key and the values."""
    notes = list(table.attrs.get("notes", []))
    repeated = table.duplicated(keys, keep=False)
    if repeated.any():
        rows = table[repeated]
        values = [c for c in table.columns if c not in keys]
        differs = rows.groupby(keys, sort=False)[values].nunique(dropna=False).gt(1)
        conflicts = differs.any(axis=1)
        if conflicts.any():
            first = conflicts[conflicts].index[0]
            first = first if isinstance(first, tuple) else (first,)
            group = rows[(rows[keys] == pd.Series(first, index=keys)).all(axis=1)]
            a, b = group.iloc[0], group.iloc[1]
            what = ", ".join(f"{c}={_plain(a[c])!r} vs {_plain(b[c])!r}"
                             for c in values if a[c] != b[c])
            key = ", ".join(f"{k}={_plain(v)!r}" for k, v in zip(keys, first))
            n = int(conflicts.sum())
            if "case" in keys:
                raise ValueError(f"{source}: conflicting duplicate rows for {key}: {what} "
                                 f"({n} key(s) repeat with other values); expected one row "
                                 "per (case, particle, time)")
            raise ValueError(f"{source}: rows repeat {key} with other values: {what} ({n} "
                             "(particle, time) pair(s)); a table of several runs needs a case "
                             "column (columns={'case': ...}, or --column case=HEADER), a "
                             "single run one row per (particle, time)")
        dropped = int(table.duplicated(keys).sum())
        notes.append(f"{source}: dropped {dropped} exact duplicate row(s) (same {keys} and "
                     "values)")
        table = table.drop_duplicates(keys, keep="first")
    table.attrs["notes"] = notes
    return table


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
