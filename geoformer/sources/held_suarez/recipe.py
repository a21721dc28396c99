"""The Held-Suarez recipe: defaults, validation, hash, splits and the saved time axis.

A recipe is a plain dict (JSON-able, so it hashes); :func:`resolve_recipe` fills in
:data:`DEFAULT_RECIPE` and rejects what cannot be simulated exactly. Needs pandas and yaml only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Any

import numpy as np
import pandas as pd
import yaml

# Bump when the post-processing or the simulation's arithmetic changes, so cached stores built
# by older code are rebuilt. 2: XLA's CPU code generation pinned to SSE4.2; 3: the build in a
# child process with OpenBLAS's and numpy's CPU dispatch pinned too (isolated.py).
FORMAT_VERSION = 3

# The authoritative default recipe; datasets/held_suarez/recipe.yaml is a copy (tested equal).
DEFAULT_RECIPE: dict[str, Any] = {
    "resolution": "T21",
    "sigma_levels": 12,
    "dt_minutes": 60,
    "spinup_days": 200,
    "days": 720,
    "every_hours": 6,
    "seed": 0,
    "temperature_noise_kelvin": 0.1,
    "grid": {"latitudes": 32, "longitudes": 64},
    "start": "2000-01-01T00:00",
    "splits": {
        "train": ["2000-01-01T00:00", "2001-06-23T18:00"],
        "validation": ["2001-06-24T00:00", "2001-09-21T18:00"],
        "test": ["2001-09-22T00:00", "2001-12-20T18:00"],
    },
}
_SIMULATION_KEYS = tuple(k for k in DEFAULT_RECIPE if k != "splits")
_RESOLUTIONS = ("T21", "T31", "T42", "T85")
_SPLITS = ("train", "validation", "test")


def resolve_recipe(recipe: dict | None = None) -> dict[str, Any]:
    """Defaults overridden by ``recipe`` (top-level keys; nested values replace wholesale).

    Unknown keys, non-integer step counts and splits outside the simulated period are errors.
    """
    merged = copy.deepcopy(DEFAULT_RECIPE)
    recipe = copy.deepcopy(recipe or {})
    unknown = sorted(set(recipe) - set(DEFAULT_RECIPE))
    if unknown:
        raise ValueError(f"unknown Held-Suarez recipe keys {unknown}; expected {list(merged)}")
    merged.update(recipe)
    for key in ("spinup_days", "days"):  # 200 and 200.0 must hash alike
        if isinstance(merged[key], float) and merged[key].is_integer():
            merged[key] = int(merged[key])
    # YAML reads unquoted dates as datetimes; keep text so the recipe stays JSON (and hashable).
    merged["start"] = _time_text(merged["start"], "start")
    if isinstance(merged["splits"], dict):
        merged["splits"] = {
            k: [_time_text(t, f"splits.{k}") for t in v] if isinstance(v, (list, tuple)) else v
            for k, v in merged["splits"].items()
        }
    _check_simulation(merged)
    _check_splits(merged)
    return merged


def _time_text(value: Any, key: str) -> str:
    """A date as recipe text ('2000-01-01T00:00'); what is not a date is an error naming key."""
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise ValueError(f"{key}: expected a date and time such as '2000-01-01T00:00', found "
                         f"{value!r}")
    return value if isinstance(value, str) else stamp.strftime("%Y-%m-%dT%H:%M")


def load_recipe(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """A recipe YAML file (keys it omits take the defaults), validated; None: the default."""
    if path is None:
        return resolve_recipe()
    with open(path) as f:
        return resolve_recipe(yaml.safe_load(f) or {})


def recipe_hash(recipe: dict | None = None) -> str:
    """16 hex digits identifying the store a recipe (and this code's format version) builds."""
    payload = json.dumps(
        {"format_version": FORMAT_VERSION, "recipe": resolve_recipe(recipe)}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def split_slices(recipe: dict | None = None) -> dict[str, slice]:
    """{'train': slice(first, last), ...}: inclusive time ranges for ``ds.sel(time=...)``."""
    splits = resolve_recipe(recipe)["splits"]
    return {name: slice(*splits[name]) for name in _SPLITS}


def spread_initial_times(span: slice, lead_time: str | pd.Timedelta, n: int,
                         every: str = "6h") -> list[pd.Timestamp]:
    """At most ``n`` initial times spread evenly over ``span`` (a :func:`split_slices`
    entry), first and last included, on the ``every`` grid, each early enough for its
    forecast of ``lead_time`` to stay in the span."""
    times = pd.date_range(span.start, pd.Timestamp(span.stop) - pd.Timedelta(lead_time),
                          freq=every)
    pick = np.unique(np.linspace(0, len(times) - 1, n).round().astype(int))
    return list(times[pick])


def _check_simulation(recipe: dict) -> None:
    """Raise ValueError when the simulation part of a recipe cannot be run exactly."""
    if recipe["resolution"] not in _RESOLUTIONS:
        raise ValueError(
            f"resolution must be one of {_RESOLUTIONS}, found {recipe['resolution']!r}"
        )
    for key in ("sigma_levels", "dt_minutes", "every_hours"):
        if not (isinstance(recipe[key], int) and recipe[key] > 0):
            raise ValueError(f"{key} must be a positive integer, found {recipe[key]!r}")
    grid = recipe["grid"]
    if not (isinstance(grid, dict) and set(grid) == {"latitudes", "longitudes"}
            and all(isinstance(n, int) and n > 1 for n in grid.values())):
        raise ValueError(f"grid must be {{latitudes: int, longitudes: int}}, found {grid!r}")
    if (recipe["every_hours"] * 60) % recipe["dt_minutes"]:
        raise ValueError(
            f"every_hours={recipe['every_hours']} must be a whole number of time steps of "
            f"dt_minutes={recipe['dt_minutes']}"
        )
    for key in ("spinup_days", "days"):
        if isinstance(recipe[key], bool) or not isinstance(recipe[key], (int, float)):
            raise ValueError(f"{key} must be a number of days, found {recipe[key]!r}")
        hours = recipe[key] * 24
        if recipe[key] < 0 or not float(hours / recipe["every_hours"]).is_integer():
            raise ValueError(
                f"{key}={recipe[key]} must be >= 0 and a whole number of "
                f"every_hours={recipe['every_hours']} intervals"
            )
    if recipe["days"] <= 0:
        raise ValueError(f"days must be > 0, found {recipe['days']}")
    if isinstance(recipe["seed"], bool) or not isinstance(recipe["seed"], int):
        raise ValueError(f"seed must be an integer, found {recipe['seed']!r}")
    noise = recipe["temperature_noise_kelvin"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"temperature_noise_kelvin must be a number >= 0, found {noise!r}")
    pd.Timestamp(recipe["start"])  # raises on an unreadable date


def _check_splits(recipe: dict) -> None:
    """Raise ValueError unless train < validation < test lie inside the saved times."""
    splits = recipe["splits"]
    if not (isinstance(splits, dict) and set(splits) == set(_SPLITS)):
        raise ValueError(f"splits must have exactly the keys {_SPLITS}, found {splits!r}")
    times = _time_axis(recipe)
    previous_end = None
    for name in _SPLITS:
        if not (isinstance(splits[name], (list, tuple)) and len(splits[name]) == 2):
            raise ValueError(f"splits.{name}: expected [first, last] times, found "
                             f"{splits[name]!r}")
        first, last = (pd.Timestamp(t) for t in splits[name])
        if not times[0] <= first <= last <= times[-1]:
            raise ValueError(
                f"split {name} [{first}, {last}] must lie inside the simulated period "
                f"[{times[0]}, {times[-1]}]"
            )
        if previous_end is not None and first <= previous_end:
            raise ValueError(f"split {name} starts at {first}, before the previous one ends")
        previous_end = last


def _time_axis(recipe: dict) -> pd.DatetimeIndex:
    """(T,) nominal datetime64[ns] times of the saved states: start, start + every_hours, ..."""
    count = round(recipe["days"] * 24 / recipe["every_hours"])
    return pd.date_range(
        recipe["start"], periods=count, freq=f"{recipe['every_hours']}h"
    ).as_unit("ns")
