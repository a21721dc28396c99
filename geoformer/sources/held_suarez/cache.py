"""The whole chain run end to end: in memory, into an atomic zarr store, or via the cache.

:func:`simulate_held_suarez` returns the dataset in memory; :func:`build_held_suarez` streams it
to a zarr store written aside and renamed into place; :func:`load_or_build_held_suarez` reuses
the store in the cache directory whose recorded recipe hash matches, else builds it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pandas as pd
import xarray as xr

from ...atomic import atomic_write, checksummed
from .isolated import RECORD_KEYS, run_build
from .postprocess import _global_attrs, to_pressure_dataset
from .recipe import DEFAULT_RECIPE, _check_simulation, recipe_hash, resolve_recipe
from .simulation import _dinosaur_version, _simulate_blocks

log = logging.getLogger(__name__)


def simulate_held_suarez(
    days: float,
    spinup_days: float = 200,
    every_hours: int = 6,
    resolution: str = "T21",
    seed: int = 0,
    *,
    sigma_levels: int = DEFAULT_RECIPE["sigma_levels"],
    dt_minutes: int = DEFAULT_RECIPE["dt_minutes"],
    temperature_noise_kelvin: float = DEFAULT_RECIPE["temperature_noise_kelvin"],
    grid: tuple[int, int] = (32, 64),
    start: str = DEFAULT_RECIPE["start"],
) -> xr.Dataset:
    """Run Held-Suarez and return the dataset contract in memory.

    days of output saved every ``every_hours`` (the first at ``start``, after ``spinup_days``
    discarded), on a ``grid`` = (H, W) equiangular grid without poles. The simulation runs in a
    pinned child process (:mod:`.isolated`), which hands it over through a temporary zarr
    store under $TMPDIR. Memory: about 0.47 MB per saved time at 32 x 64 (two years: 1.3 GB);
    :func:`build_held_suarez` streams to disk instead.
    """
    recipe = {
        "resolution": resolution, "sigma_levels": sigma_levels, "dt_minutes": dt_minutes,
        "spinup_days": spinup_days, "days": days, "every_hours": every_hours, "seed": seed,
        "temperature_noise_kelvin": temperature_noise_kelvin,
        "grid": {"latitudes": grid[0], "longitudes": grid[1]}, "start": start,
    }
    _check_simulation(recipe)
    # The simulation runs in a pinned child process (isolated.py), which hands it back as a
    # temporary zarr store.
    with tempfile.TemporaryDirectory(prefix="held-suarez-") as tmp:
        run_build(recipe, Path(tmp) / "simulation.zarr", store=False)
        with xr.open_zarr(Path(tmp) / "simulation.zarr") as stored:
            return stored.load().drop_encoding()  # not the temporary store's chunks


def default_cache_dir() -> Path:
    """$SCIFORECAST_CACHE, else ~/.cache/sciforecast."""
    return Path(os.environ.get("SCIFORECAST_CACHE") or Path.home() / ".cache" / "sciforecast")


def build_held_suarez(
    path: str | os.PathLike, recipe: dict | None = None, overwrite: bool = False
) -> Path:
    """Simulate the recipe and write the zarr store at ``path``, atomically.

    The store is written to a hidden sibling directory and renamed into place only once it is
    complete, so ``path`` is either absent, the previous store, or the whole new one. One time
    step per chunk, full spatial chunks. Raises FileExistsError if ``path`` exists and not
    ``overwrite``.
    """
    path = Path(path)
    recipe = resolve_recipe(recipe)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The simulation runs in a pinned child process (isolated.py) that writes the store aside.
    return atomic_write(path, lambda tmp: run_build(recipe, Path(tmp)), overwrite=overwrite)


def _build_attrs(recipe: dict, record: dict[str, str]) -> dict[str, str]:
    """The global attributes, with what the build's CPU code paths were pinned to
    (:mod:`.isolated`: the same simulation on any x86-64 machine)."""
    attrs = _global_attrs(recipe, _dinosaur_version())
    attrs.update({key: record[key] for key in RECORD_KEYS})
    attrs["history"] += (f"; CPU code paths: XLA {record['xla_cpu_max_isa']}, OpenBLAS "
                         f"{record['openblas_coretype']}, numpy {record['numpy_cpu_dispatch']}")
    return attrs


def write_store(path: Path, recipe: dict, record: dict[str, str], with_hash: bool = True) -> None:
    """Simulate ``recipe`` in this process and write the zarr store ``path`` (new) in
    blocks of saved times; what the pinned build process runs."""
    attrs = _build_attrs(recipe, record)
    if with_hash:
        attrs["recipe_hash"] = recipe_hash(recipe)
    for index, fields in enumerate(_simulate_blocks(recipe)):
        ds = to_pressure_dataset(fields, attrs=attrs)
        if index == 0:
            ds.to_zarr(path, mode="w-", encoding=checksummed(ds, _encoding(ds)), **_ZARR)
        else:
            # Statics and the fixed coordinates were written with the first block.
            ds = ds.drop_vars([n for n, v in ds.variables.items() if "time" not in v.dims])
            ds.to_zarr(path, append_dim="time", **_ZARR)


# Zarr format 2 (like WeatherBench 2's stores) with consolidated metadata, which format 3 does
# not standardise; its default Blosc shuffle also compresses these fields better.
_ZARR = {"zarr_format": 2, "consolidated": True}


def _encoding(ds: xr.Dataset) -> dict[str, dict]:
    """One time step per chunk, full spatial chunks; time as integer hours."""
    encoding: dict[str, dict] = {
        name: {"chunks": tuple(1 if d == "time" else n for d, n in var.sizes.items())}
        for name, var in ds.data_vars.items()
    }
    encoding["time"] = {
        "units": f"hours since {pd.Timestamp(ds.time.values[0]).isoformat()}",
        "calendar": "proleptic_gregorian",
        "dtype": "int64",
    }
    return encoding


def _store_hash(path: Path) -> str | None:
    """The recipe hash recorded in a store, or None if it is not a readable store."""
    try:
        with xr.open_zarr(path) as ds:
            return ds.attrs.get("recipe_hash")
    except Exception:  # any unreadable or foreign directory is simply not a cache hit
        return None


def load_or_build_held_suarez(
    cache_dir: str | os.PathLike | None = None, recipe: dict | None = None
) -> Path:
    """The cached store for ``recipe`` if its recipe hash matches, else a freshly built one.

    The store is ``<cache_dir>/held_suarez-<hash>.zarr`` (cache_dir defaults to
    :func:`default_cache_dir`). A cache hit needs neither jax nor dinosaur.
    """
    recipe = resolve_recipe(recipe)
    digest = recipe_hash(recipe)
    path = Path(cache_dir or default_cache_dir()) / f"held_suarez-{digest}.zarr"
    if _store_hash(path) == digest:
        log.info("Held-Suarez store found in the cache: %s", path)
        return path
    log.info("building the Held-Suarez store %s (a few minutes)", path)
    try:
        return build_held_suarez(path, recipe, overwrite=path.exists())
    except FileExistsError:
        # Another process finished the same store first: use it if it is the right one.
        if _store_hash(path) == digest:
            return path
        raise
