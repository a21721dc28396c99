"""GRIB files as weather centres write them, opened as one xarray Dataset (cfgrib + eccodes).

An operational file (NCEP GFS, ECMWF IFS and its open data, ERA5 from the CDS) mixes level
types: pressure levels, the surface, 2 m and 10 m above ground, mean sea level and many more.
cfgrib builds one hypercube per level type and set of levels and refuses a file that needs
several (its advice: pass ``filter_by_keys``). :func:`open_grib` opens them all with
``cfgrib.open_datasets`` and merges them into one Dataset:

- fields on pressure levels (``isobaricInhPa``) keep their names (t, u, v, gh, z, r, q);
- fields on ``surface``, ``meanSea`` and ``heightAboveGround`` (2t, 10u, 10v, prmsl, msl, sp,
  lsm, orog) keep theirs unless another level type uses the same name;
- every other field is renamed ``name_typeOfLevel`` (``t_surface`` where t is also on
  pressure levels, ``q_pressureFromGroundLayer``, ``gh_tropopause``), so no field stands in
  for another: GFS's q of the 30-0 hPa layer above ground is not specific humidity on
  pressure levels;
- level coordinates with one value are dropped, and so are the GRIB_* attributes and cfgrib's
  global attributes (its history, Conventions); ``institution`` is kept;
- ``time`` (run time) and ``step`` stay as dims: the schema turns them into valid times.

``filter_by_keys`` is cfgrib's: only fields matching every key are read, a list value
matching any of its items (``{"typeOfLevel": ["isobaricInhPa", "meanSea"]}``).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["PRESSURE_LEVELS", "SINGLE_LEVELS", "GribError", "open_grib", "parse_grib_filter",
           "valid_times"]

PRESSURE_LEVELS = "isobaricInhPa"
SINGLE_LEVELS = ("surface", "meanSea", "heightAboveGround")  # where 2t, 10u, msl, lsm live
_KEPT_DIMS = {"time", "step", "number", "latitude", "longitude", PRESSURE_LEVELS}


class GribError(ValueError):
    """A GRIB file that cannot be read as one dataset; the message names the file."""


def parse_grib_filter(items: Sequence[str]) -> dict[str, Any]:
    """['typeOfLevel=isobaricInhPa', 'shortName=t,gh', 'level=500'] -> cfgrib's filter_by_keys
    {'typeOfLevel': 'isobaricInhPa', 'shortName': ['t', 'gh'], 'level': 500}.

    Whole numbers become int (GRIB keys such as level and step are integers); a key given
    twice, or with comma-separated values, matches any of them.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise ValueError("--grib-filter expects KEY=VALUE (e.g. typeOfLevel=isobaricInhPa),"
                             f" found {item!r}")
        values = [_typed(v.strip()) for v in value.split(",") if v.strip()]
        if key in out:
            values = (out[key] if isinstance(out[key], list) else [out[key]]) + values
        out[key] = values[0] if len(values) == 1 else values
    return out


def _typed(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def open_grib(path: str | Path, filter_by_keys: Mapping[str, Any] | None = None,
              chunks: dict | str | None = None, notes: list[str] | None = None) -> xr.Dataset:
    """Every hypercube of a GRIB file (matching ``filter_by_keys``) merged into one Dataset.

    ``notes`` receives one line per thing done that a reader should know (hypercubes read,
    fields renamed or skipped). Raises GribError with the file's name when nothing matches,
    when the fields lie on different grids or when they do not combine.
    """
    import cfgrib

    path, fbk, local = str(path), dict(filter_by_keys or {}), []
    # cfgrib indexes the file once per field and hypercube: an index kept in a temporary folder
    # for this call is read back each time (7 s instead of 6 minutes for a 300-field GFS file)
    # and never written beside the data.
    with tempfile.TemporaryDirectory(prefix="geoformer-grib-") as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # xarray's merge defaults, in cfgrib
        backend = {"indexpath": os.path.join(tmp, "{short_hash}.idx"), "squeeze": False,
                   "filter_by_keys": fbk}
        try:
            cubes = cfgrib.open_datasets(path, backend_kwargs=backend, chunks=chunks)
        except KeyError as err:  # cfgrib's way of saying that no field matched
            if err.args != ("paramId",):
                raise
            cubes = []
    if not cubes:
        raise GribError(f"no GRIB field in {path}" + (f" matches the filter {fbk}" if fbk
                                                       else ""))
    institution = cubes[0].attrs.get("institution")
    cubes = _regular_grids(cubes, path, local)
    cleaned = [_clean(cube, local) for cube in cubes]
    renamed = _unambiguous_names(cleaned, local)
    _check_same_grid(renamed, path)
    try:
        ds = xr.merge(renamed, compat="no_conflicts", join="outer", combine_attrs="override")
    except (ValueError, xr.MergeError) as err:
        raise GribError(f"the fields of {path} do not combine into one dataset ({err}); read "
                        "a part with a filter, e.g. --grib-filter typeOfLevel=isobaricInhPa"
                        ) from err
    if institution:
        ds.attrs["institution"] = str(institution)
    types = sorted({t for t, _, _ in cleaned})
    read = f"GRIB: read {len(cubes)} hypercube(s) of {path} ({', '.join(types)})"
    if notes is not None:
        notes += [read + (f" matching {fbk}" if fbk else ""), *local]
    return ds


def _level_type(cube: xr.Dataset) -> str:
    kinds = {str(v.attrs.get("GRIB_typeOfLevel", "unknown")) for v in cube.data_vars.values()}
    return kinds.pop() if len(kinds) == 1 else "unknown"  # cfgrib groups by level type


def _regular_grids(cubes: list[xr.Dataset], path: str, notes: list[str]) -> list[xr.Dataset]:
    """Drop (with a note) hypercubes that are not on a latitude-longitude grid."""
    keep, skipped = [], []
    for cube in cubes:
        if "latitude" in cube.dims and "longitude" in cube.dims:
            keep.append(cube)
        else:
            grid = {str(v.attrs.get("GRIB_gridType", "?")) for v in cube.data_vars.values()}
            skipped.append(f"{', '.join(map(str, cube.data_vars))} ({'/'.join(sorted(grid))})")
    if skipped and not keep:
        raise GribError(f"{path}: no field is on a latitude-longitude grid "
                        f"({'; '.join(skipped)}); interpolate the file to one first (e.g. cdo "
                        "remapcon)")
    if skipped:
        notes.append("GRIB fields not on a latitude-longitude grid, skipped: "
                     + "; ".join(skipped))
    return keep


def _clean(cube: xr.Dataset, notes: list[str]) -> tuple[str, Any, xr.Dataset]:
    """(level type, its single level value or None, the cube without stale GRIB metadata)."""
    kind, level = _level_type(cube), None
    for dim in [d for d in cube.dims if d not in _KEPT_DIMS]:
        if cube.sizes[dim] == 1:
            if dim in cube.coords:
                level = cube[dim].values.item()
            cube = cube.squeeze(dim, drop=True)
    if "number" in cube.dims and cube.sizes["number"] == 1:
        member = int(cube["number"].values[0])
        cube = cube.squeeze("number", drop=True)
        if member:
            notes.append(f"GRIB: ensemble member {member} alone, read as one state")
    scalars = [c for c in cube.coords if cube[c].ndim == 0 and c not in ("time", "step")]
    cube = cube.drop_vars(scalars)
    for var in cube.variables.values():
        var.attrs = {k: v for k, v in var.attrs.items()
                     if not k.startswith("GRIB_") and k != "stored_direction"}
    cube.attrs = {}
    return kind, level, cube


def _unambiguous_names(cleaned: list[tuple[str, Any, xr.Dataset]],
                       notes: list[str]) -> list[xr.Dataset]:
    """Rename fields off pressure levels that share a name or live on other level types."""
    counts = Counter(str(n) for _, _, cube in cleaned for n in cube.data_vars)
    taken = {str(n) for kind, _, cube in cleaned if kind == PRESSURE_LEVELS
             for n in cube.data_vars}
    out, renames = [], []
    for kind, level, cube in cleaned:
        mapping = {}
        for name in map(str, cube.data_vars):
            if kind == PRESSURE_LEVELS or (kind in SINGLE_LEVELS and counts[name] == 1):
                continue
            new = f"{name}_{kind}"
            if new in taken and level is not None:
                new = f"{new}_{level:g}" if isinstance(level, float) else f"{new}_{level}"
            mapping[name] = new
            taken.add(new)
        if mapping:
            cube = cube.rename(mapping)
            renames += [f"{a} -> {b}" for a, b in mapping.items()]
        out.append(cube)
    if renames:
        shown = ", ".join(renames[:12]) + (f" and {len(renames) - 12} more"
                                           if len(renames) > 12 else "")
        notes.append("GRIB fields off pressure levels renamed after their level type, so "
                     f"none stands in for another: {shown}")
    return out


def _check_same_grid(cubes: list[xr.Dataset], path: str) -> None:
    def grid(cube: xr.Dataset) -> str:
        return (f"{', '.join(map(str, cube.data_vars))}: {cube.sizes['latitude']} x "
                f"{cube.sizes['longitude']}")

    for cube in cubes[1:]:
        for axis in ("latitude", "longitude"):
            a, b = cubes[0][axis].values, cube[axis].values
            if a.shape != b.shape or not np.allclose(a, b):
                raise GribError(f"{path} holds fields on different grids ({grid(cubes[0])}; "
                                f"{grid(cube)}); read one grid with a filter, e.g. "
                                "--grib-filter shortName=...")


def valid_times(ds: xr.Dataset) -> tuple[xr.Dataset, list[str], bool]:
    """cfgrib's run ``time`` + ``step`` (and ``valid_time``) -> one dim ``time`` of valid times.

    A single state (scalar time, or time and step of length 1) gets a time dim of length 1;
    one run at several steps becomes a time series of valid times. Returns the dataset, notes
    and whether it holds a single state. Data without ``step`` is left alone, but for a scalar
    time. Raises ValueError for several runs at several steps (forecasts, not states).
    """
    if "step" not in ds.variables or "time" not in ds.variables:
        if "time" in ds.coords and ds["time"].ndim == 0:
            ds = ds.expand_dims("time")
            return ds, [f"time: one state at {_stamp(ds['time'].values[0])} (a time dim of "
                        "length 1)"], True
        return ds, [], False
    if "step" in ds.dims and ds.sizes["step"] == 1:
        ds = ds.squeeze("step")
    if "step" in ds.dims and "time" in ds.dims:
        if ds.sizes["time"] > 1:
            raise ValueError(
                f"the data holds forecasts from {ds.sizes['time']} run times at "
                f"{ds.sizes['step']} steps each; geoformer reads states: select one step or one "
                "run time (for GRIB e.g. --grib-filter step=0)")
        ds = ds.squeeze("time")
    run, step = ds["time"].values, ds["step"].values
    valid = run + step  # (time,), (step,) or a scalar
    single = np.size(valid) == 1
    ds = ds.drop_vars([v for v in ("valid_time", "time") if v in ds.variables])
    if "step" in ds.dims:  # one run, several steps
        ds = ds.rename({"step": "time"}).assign_coords(time=("time", valid))
    elif np.ndim(valid) == 0:
        ds = ds.drop_vars("step").expand_dims(time=np.atleast_1d(valid))
    else:
        ds = ds.drop_vars("step").assign_coords(time=("time", valid))
    ds["time"].attrs = {"standard_name": "time", "long_name": "valid time"}
    hours = np.unique(np.atleast_1d(step / np.timedelta64(1, "h")))
    if not single and not hours.any():
        return ds, [], False  # analyses: the run times are the valid times
    text = (f"time: valid time = run time {_stamp(np.min(run))} + step "
            f"{', '.join(f'{h:g}' for h in hours[:8])}{' ...' if len(hours) > 8 else ''} h")
    if single:
        text += f": one state at {_stamp(np.ravel(valid)[0])} (a time dim of length 1)"
    return ds, [text], single


def _stamp(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m-%dT%H:%M}"
