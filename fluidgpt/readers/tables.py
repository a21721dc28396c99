"""Particle-track tables (CSV or Parquet, e.g. exported from Fluent) to canonical trajectories.

The column mapping says which source column holds each canonical quantity, e.g. for a
Fluent particle-history export::

    columns = {"particle": "Particle ID", "time": "Particle Residence Time",
               "x": "X", "y": "Y", "z": "Z", "u": "Particle X Velocity",
               "v": "Particle Y Velocity", "w": "Particle Z Velocity",
               "diameter": "Particle Diameter"}

(use the names of your own export). ``scale`` converts to SI, e.g. {"x": 1e-3, "y": 1e-3,
"z": 1e-3} for millimetres. A ``case`` column lets one table hold several cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..schema import canonical_dataset
from .tracks import TRACK_COLUMNS, check_track_table, resample_tracks

__all__ = ["read_track_table", "tracks_to_dataset"]

_OPTIONAL = ("u", "v", "w", "diameter", "case")


def read_track_table(path, columns: Mapping[str, str],
                     scale: Mapping[str, float] | None = None, **read_kwargs) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet track table into a canonical track table (SI units).

    columns: canonical name -> source column, for particle, time, x, y, z (required) and
    u, v, w, diameter, case (optional; u, v, w all or none). read_kwargs go to pandas.
    """
    path = Path(path)
    unknown = sorted(set(columns) - set(TRACK_COLUMNS) - {"case"})
    if unknown:
        raise ValueError(f"column mapping: unknown canonical names {unknown}; expected "
                         f"{list(TRACK_COLUMNS) + ['case']}")
    missing = [c for c in ("particle", "time", "x", "y", "z") if c not in columns]
    if missing:
        raise ValueError(f"column mapping: {missing} are required")
    if 0 < sum(c in columns for c in "uvw") < 3:
        raise ValueError("column mapping: give all of u, v, w or none of them")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            raw = pd.read_parquet(path, **read_kwargs)
        except ImportError as e:
            raise ImportError(f"{path}: reading Parquet needs pyarrow "
                              "(pip install pyarrow)") from e
    elif suffix in (".csv", ".txt", ".dat", ".tsv"):
        kwargs = {"sep": "\t"} if suffix == ".tsv" else {}
        raw = pd.read_csv(path, **{**kwargs, **read_kwargs})
    else:
        raise ValueError(f"{path}: unknown table format {suffix!r}; expected .csv, .tsv, "
                         ".txt, .dat or .parquet")
    absent = [src for src in columns.values() if src not in raw.columns]
    if absent:
        raise ValueError(f"{path}: columns {absent} not found; the file has "
                         f"{list(raw.columns)}")
    table = pd.DataFrame({name: raw[src] for name, src in columns.items()})
    for name, factor in (scale or {}).items():
        if name not in table.columns or name in ("particle", "case"):
            raise ValueError(f"scale: {name!r} is not a mapped numeric column")
        table[name] = table[name].astype(float) * factor
    return check_track_table(table, source=str(path))


def tracks_to_dataset(table: pd.DataFrame, times: np.ndarray, conditions,
                      condition_names: Sequence[str], condition_units=None,
                      particles: Sequence | None = None, diameter: float | None = None,
                      group=None, seed=None, attrs=None) -> xr.Dataset:
    """Resample a track table (one case, or several in a ``case`` column) onto `times`.

    conditions: (N, C) in the order of the sorted case labels (or (C,) for one case).
    particles: ids in the order wanted (default: the sorted ids of the first case); every
    case must contain them. diameter [m]: used when the table has no diameter column.
    """
    cases = sorted(table["case"].unique()) if "case" in table.columns else [None]
    conditions = np.atleast_2d(np.asarray(conditions, dtype=float))
    if conditions.shape != (len(cases), len(condition_names)):
        raise ValueError(f"conditions: expected shape ({len(cases)}, {len(condition_names)}) "
                         f"for cases {cases}, found {conditions.shape}")
    results = []
    for case in cases:
        part = table if case is None else table[table["case"] == case]
        ids = particles if particles is not None else (
            sorted(part["particle"].unique()) if not results else results[0].particle)
        traj = resample_tracks(part.drop(columns="case", errors="ignore"), times, ids)
        results.append(traj)
    d = np.stack([t.diameter for t in results])
    if np.isnan(d).any():
        if diameter is None:
            raise ValueError("the table has no diameter column: pass diameter=<metres>")
        d = np.where(np.isnan(d), diameter, d)
    return canonical_dataset(
        np.stack([t.position for t in results]), np.stack([t.valid for t in results]), times,
        conditions, condition_names, velocity=np.stack([t.velocity for t in results]),
        diameter=d, condition_units=condition_units, group=group, seed=seed,
        attrs={"source": "particle-track table", **(attrs or {})})
