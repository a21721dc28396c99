"""Particle-track tables (CSV or Parquet, e.g. exported from Fluent) to canonical trajectories.

The column mapping says which source column holds each canonical quantity, e.g. for a
Fluent particle-history export::

    columns = {"particle": "Particle ID", "time": "Particle Residence Time",
               "x": "X", "y": "Y", "z": "Z", "u": "Particle X Velocity",
               "v": "Particle Y Velocity", "w": "Particle Z Velocity",
               "diameter": "Particle Diameter"}

(use the names of your own export). A header that names its unit at its end (``X [mm]``,
``Particle Residence Time (s)``, ``Particle X Velocity [m/s]``, ``Diameter [um]``) is
converted to SI (a note in ``table.attrs["notes"]``), and refused when the unit is unknown;
``units`` names the unit of a column whose header names none (or an unknown one), e.g.
{"x": "mm"}, and ``scale`` gives its factor to SI instead, e.g. {"x": 1e-3}. A ``case``
column lets one table hold several cases (a table of several runs without one is refused).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..schema import canonical_dataset, check_condition
from .tracks import TRACK_COLUMNS, _plain, check_track_table, resample_tracks
from .units import QUANTITY, SI_UNIT, column_unit, known_units, si_factor

__all__ = ["TABLE_SUFFIXES", "read_table", "read_track_table", "track_table", "tracks_to_dataset",
           "read_case_conditions", "case_conditions", "table_dataset"]

_OPTIONAL = ("u", "v", "w", "diameter", "case")
_FORMATS = ".csv, .tsv, .txt, .dat or .parquet"
#: The file name endings of track tables.
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".parquet", ".pq")


def _check_mapping(columns: Mapping[str, str]) -> None:
    unknown = sorted(set(columns) - set(TRACK_COLUMNS) - {"case"})
    if unknown:
        raise ValueError(f"column mapping: unknown canonical names {unknown}; expected "
                         f"{list(TRACK_COLUMNS) + ['case']}")
    missing = [c for c in ("particle", "time", "x", "y", "z") if c not in columns]
    if missing:
        raise ValueError(f"column mapping: {missing} are required")
    if 0 < sum(c in columns for c in "uvw") < 3:
        raise ValueError("column mapping: give all of u, v, w or none of them")


def read_table(path, **read_kwargs) -> pd.DataFrame:
    """A CSV / TSV / Parquet file as read (no column checked); a file that cannot be read is
    an error naming it. read_kwargs go to pandas."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: unknown table format {suffix!r}; expected {_FORMATS}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such track table")
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path, **read_kwargs)
        except ImportError as e:
            raise ImportError(f"{path}: reading Parquet needs pyarrow "
                              "(pip install pyarrow)") from e
        except (ValueError, OSError) as e:
            raise ValueError(f"{path}: not a readable Parquet table ({_first_line(e)})") from None
    kwargs = {"sep": "\t"} if suffix == ".tsv" else {}
    try:
        return pd.read_csv(path, **{**kwargs, **read_kwargs})
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty file (expected a header line and one row per "
                         "particle sample)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV table ({_first_line(e)})") from None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _to_si(table: pd.DataFrame, columns: Mapping[str, str], scale: Mapping[str, float],
           units: Mapping[str, str], path) -> list[str]:
    """Convert the columns whose header names a unit or that have one in ``units`` (in
    place); returns the notes."""
    notes = []
    for name, src in columns.items():
        try:
            unit = column_unit(name, src, units.get(name))
        except ValueError as e:
            raise ValueError(f"{path}: column {src!r} ({name}): {e}") from None
        if unit is None:
            continue
        factor = si_factor(unit, QUANTITY[name])
        si = SI_UNIT[QUANTITY[name]]
        if factor is None and name not in scale:
            raise ValueError(f"{path}: column {src!r} ({name}): expected a {QUANTITY[name]} "
                             f"unit ({known_units(QUANTITY[name])}), found {unit!r}; rename "
                             f"the column or give scale={{{name!r}: factor to {si}}}")
        if factor is not None and name in scale:
            raise ValueError(f"{path}: column {src!r} is in {unit}, which the reader "
                             f"converts to {si}: leave {name!r} out of scale")
        if factor is not None and factor != 1.0:
            table[name] = table[name].astype(float) * factor
            notes.append(f"{name}: {src!r} converted from {unit} to {si} (x {factor:g})")
    return notes


def read_track_table(path, columns: Mapping[str, str],
                     scale: Mapping[str, float] | None = None,
                     units: Mapping[str, str] | None = None, **read_kwargs) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet track table into a canonical track table (SI units).

    columns: canonical name -> source column, for particle, time, x, y, z (required) and
    u, v, w, diameter, case (optional; u, v, w all or none). Units named in the headers or
    in ``units`` are converted (module doc); scale: factors to SI of the others.
    read_kwargs go to pandas. The table's ``attrs`` hold ``source`` (the path) and
    ``notes`` (conversions, exact duplicate rows dropped).
    """
    _check_mapping(columns)
    return track_table(read_table(path, **read_kwargs), columns, scale, units, Path(path))


def track_table(raw: pd.DataFrame, columns: Mapping[str, str],
                scale: Mapping[str, float] | None = None,
                units: Mapping[str, str] | None = None, path="track table") -> pd.DataFrame:
    """:func:`read_track_table` of a table already read (:func:`read_table`) from ``path``
    (named in the messages)."""
    _check_mapping(columns)
    scale, units = dict(scale or {}), dict(units or {})
    absent = [src for src in columns.values() if src not in raw.columns]
    if absent:
        raise ValueError(f"{path}: columns {absent} not found; the file has "
                         f"{list(raw.columns)}")
    if raw.empty:
        raise ValueError(f"{path}: no rows (expected one row per particle sample)")
    table = pd.DataFrame({name: raw[src] for name, src in columns.items()})
    for what, given in (("scale", scale), ("units", units)):
        for name in given:
            if name not in table.columns or name in ("particle", "case"):
                raise ValueError(f"{what}: {name!r} is not a mapped numeric column")
    out = check_track_table(table, source=str(path))  # values as in the file, in messages
    notes = _to_si(out, columns, scale, units, path)
    for name, factor in scale.items():
        out[name] = out[name].astype(float) * factor
        notes.append(f"{name}: {columns[name]!r} multiplied by {factor:g} (scale)")
    out.attrs.update(source=str(path), notes=[*notes, *out.attrs.get("notes", [])])
    return out


def _case_particles(table: pd.DataFrame, cases: list, particles: Sequence | None,
                    source: str) -> list:
    """The particle ids every case must hold: ``particles``, or the sorted union of the
    cases' ids; a case without some of them is an error naming the case and the ids."""
    held = {case: set(table["particle"] if case is None else
                      table.loc[table["case"] == case, "particle"]) for case in cases}
    ids = list(particles) if particles is not None else sorted(set().union(*held.values()))
    for case, have in held.items():
        lacking = [_plain(p) for p in ids if p not in have]
        if lacking:
            where = "the table" if case is None else f"case {_plain(case)!r}"
            whose = "of particles=" if particles is not None else "that other cases hold"
            raise ValueError(f"{source}: {where} lacks particles {lacking[:5]}"
                             f"{' ...' if len(lacking) > 5 else ''} ({len(lacking)} of "
                             f"{len(ids)}) {whose}; expected the same particles in every case "
                             "(pass particles=[...] to keep a common subset)")
    return ids


def tracks_to_dataset(table: pd.DataFrame, times: np.ndarray, conditions,
                      condition_names: Sequence[str], condition_units=None,
                      particles: Sequence | None = None, diameter: float | None = None,
                      group=None, seed=None, attrs=None, wall=None) -> xr.Dataset:
    """Resample a track table (one case, or several in a ``case`` column) onto `times`.

    conditions: (N, C) in the order of the sorted case labels (or (C,) for one case).
    particles: ids in the order wanted (default: the sorted ids of all cases); every case
    must contain them. diameter [m]: used when the table has no diameter column. wall:
    erosion_rate (N, F) and its face arguments of :func:`~fluidgpt.schema.canonical_dataset`.
    The table's ``attrs["notes"]`` (from :func:`read_track_table`) go to the dataset's
    ``notes`` attribute; the particle ids, and the case labels of a ``case`` column, are the
    ``particle`` and ``case`` coordinates.
    """
    source = table.attrs.get("source", "track table")
    cases = sorted(table["case"].unique()) if "case" in table.columns else [None]
    conditions = np.atleast_2d(np.asarray(conditions, dtype=float))
    if conditions.shape != (len(cases), len(condition_names)):
        raise ValueError(f"conditions: expected shape ({len(cases)}, {len(condition_names)}) "
                         f"for cases {[_plain(c) for c in cases]}, found {conditions.shape}")
    ids = _case_particles(table, cases, particles, source)
    results = []
    for case in cases:
        part = table if case is None else table[table["case"] == case]
        results.append(resample_tracks(part.drop(columns="case", errors="ignore"), times, ids))
    d = np.stack([t.diameter for t in results])
    if np.isnan(d).any():
        if diameter is None:
            raise ValueError(f"{source}: the table has no diameter column: pass "
                             "diameter=<metres>")
        d = np.where(np.isnan(d), diameter, d)
    notes = "; ".join(table.attrs.get("notes", []))
    ds = canonical_dataset(
        np.stack([t.position for t in results]), np.stack([t.valid for t in results]), times,
        conditions, condition_names, velocity=np.stack([t.velocity for t in results]),
        diameter=d, condition_units=condition_units, group=group, seed=seed,
        attrs={"source": "particle-track table", **({"notes": notes} if notes else {}),
               **(attrs or {})}, **(wall or {}))
    labels = {"particle": ("particle", _labels(ids), {"long_name": "particle label"})}
    if cases != [None]:
        labels["case"] = ("case", _labels(cases), {"long_name": "case label"})
    return ds.assign_coords(labels)


def _labels(values: Sequence) -> np.ndarray:
    """Labels as one array: numbers stay numbers (int64, else float64), others become text."""
    values = [_plain(v) for v in values]
    for kind, dtype in ((int, np.int64), ((int, float), np.float64)):
        if all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
            return np.asarray(values, dtype=dtype)
    return np.asarray([str(v) for v in values], dtype=str)


def read_case_conditions(path, cases: Sequence) -> tuple[list[str], np.ndarray]:
    """The conditions of each case from a CSV: one column per condition and, when the track
    table has cases, a ``case`` column with every case label once (compared as text).

    cases: the sorted case labels of the track table ([None]: one case, one row; one case
    also takes one row without a ``case`` column).
    Returns the condition names and the (N, C) values in the order of ``cases``.
    """
    return case_conditions(read_table(path), cases, Path(path))


def case_conditions(raw: pd.DataFrame, cases: Sequence, path) -> tuple[list[str], np.ndarray]:
    """:func:`read_case_conditions` of a table already read from ``path`` (a file, or a
    place in one: named in the messages)."""
    if raw.empty:
        raise ValueError(f"{path}: no rows (expected one row of conditions per case)")
    if cases == [None] or (len(cases) == 1 and "case" not in raw.columns):
        if len(raw) != 1:
            raise ValueError(f"{path}: expected one row (the track table has no case "
                             f"column), found {len(raw)}")
        table = raw.drop(columns="case", errors="ignore")
    else:
        if "case" not in raw.columns:
            raise ValueError(f"{path}: expected a 'case' column with the labels "
                             f"{[_plain(c) for c in cases]}, found {list(raw.columns)}")
        labels = raw["case"].astype(str)
        twice = sorted(set(labels[labels.duplicated()]))
        wanted = [str(_plain(c)) for c in cases]
        lacking = [c for c in wanted if c not in set(labels)]
        extra = sorted(set(labels) - set(wanted))
        if twice or lacking or extra:
            raise ValueError(f"{path}: expected each case of the tracks once ({wanted}); "
                             + "; ".join(
                                 f"{what} {found}" for what, found in
                                 (("repeated", twice), ("missing", lacking), ("unknown", extra))
                                 if found))
        table = raw.set_index(labels).drop(columns="case").loc[wanted]
    if table.shape[1] == 0:
        raise ValueError(f"{path}: no condition columns")
    for name in table.columns:
        values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            bad = table[name][~np.isfinite(values)].iloc[0]
            raise ValueError(f"{path}: condition {name!r}: expected finite numbers, found "
                             f"{_plain(bad)!r}")
        for label, value in zip(table.index, values):
            problem = check_condition(str(name), value)
            if problem:
                where = "" if cases == [None] else f" (case {label!r})"
                raise ValueError(f"{path}: {problem}{where}")
    return [str(c) for c in table.columns], table.to_numpy(dtype=float)


def table_dataset(path, columns: Mapping[str, str], conditions_path, times: np.ndarray,
                  diameter: float | None = None) -> xr.Dataset:
    """A track table and a conditions CSV (:func:`read_case_conditions`) -> the canonical
    dataset on ``times`` (T,) [s] (what ``fluidgpt dataset table`` writes)."""
    table = read_track_table(path, columns)
    cases = sorted(table["case"].unique()) if "case" in table.columns else [None]
    names, values = read_case_conditions(conditions_path, cases)
    return tracks_to_dataset(table, times, values, names, diameter=diameter,
                             attrs={"source": f"particle-track table {Path(path).name}"})
