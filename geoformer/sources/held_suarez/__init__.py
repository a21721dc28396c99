"""The built-in Held-Suarez dataset: a dry idealised atmosphere made on demand with dinosaur.

Held & Suarez (1994) forcing (Newtonian relaxation of temperature to a zonally symmetric
equilibrium and Rayleigh drag near the surface) drives the primitive equations of the
``dinosaur`` spectral dynamical core on sigma levels. From a resting isothermal atmosphere
with 0.1 K of noise (which breaks the zonal symmetry), the model spins up, then every
``every_hours`` its state is

1. evaluated from its spherical harmonics directly on the 32 x 64 equiangular grid without
   poles (spectral interpolation: exact for the truncated model state, so neither the smoothing
   of conservative regridding nor the error of bilinear interpolation),
2. integrated hydrostatically for geopotential on the model levels (surface geopotential 0,
   the model's own discretisation), and
3. interpolated linearly in log-pressure to the 13 Pangu pressure levels
   (see :func:`sigma_to_pressure` for what happens above the top level and below the ground).

The result follows the contract the rest of geoformer reads (WeatherBench 2 names, levels from
the surface up, latitude north to south, CF attributes). The planet has no orography, no
seasons, no diurnal cycle and no water; dates are nominal and the surface variables are
proxies from the lowest model level. It must never be presented as ERA5.

Needs the ``simulation`` extra (``pip install "sciforecast[simulation]"``) only to *build* a
store: reading a cached one, and every pure function here, needs numpy and xarray only.

Files, in the order the data flows:

- ``recipe.py``: the default recipe, its validation and hash, the splits and the time axis;
- ``simulation.py``: the dinosaur driver, yielding :class:`SigmaLevelFields` on model levels;
- ``postprocess.py``: grid, hydrostatics, sigma -> pressure levels and the CF dataset contract;
- ``reference.py``: whether a store is the reference build (the one the docs' scores use);
- ``isolated.py``: the build in a child process with the CPU-chosen code paths of XLA,
  OpenBLAS and numpy pinned, so that a store is the same simulation on any x86-64 machine;
- ``cache.py``: the whole chain in memory (:func:`simulate_held_suarez`), into an atomic zarr
  store (:func:`build_held_suarez`), or through the on-disk cache
  (:func:`load_or_build_held_suarez`).
"""

from __future__ import annotations

from .cache import (
    build_held_suarez,
    default_cache_dir,
    load_or_build_held_suarez,
    simulate_held_suarez,
)
from .isolated import current_record, pinned_environment
from .postprocess import GAS_CONSTANT as GAS_CONSTANT
from .postprocess import GRAVITY as GRAVITY
from .postprocess import LAPSE_RATE as LAPSE_RATE
from .postprocess import (
    PRESSURE_LEVELS_HPA,
    equiangular_latitudes,
    equiangular_longitudes,
    geopotential_on_sigma,
    sigma_to_pressure,
    summarize_held_suarez,
    to_pressure_dataset,
)
from .recipe import (
    DEFAULT_RECIPE,
    load_recipe,
    recipe_hash,
    resolve_recipe,
    split_slices,
    spread_initial_times,
)
from .recipe import FORMAT_VERSION as FORMAT_VERSION
from .reference import check_reference_build, fingerprint
from .simulation import SigmaLevelFields

__all__ = [
    "DEFAULT_RECIPE",
    "PRESSURE_LEVELS_HPA",
    "SigmaLevelFields",
    "build_held_suarez",
    "check_reference_build",
    "current_record",
    "default_cache_dir",
    "equiangular_latitudes",
    "equiangular_longitudes",
    "fingerprint",
    "geopotential_on_sigma",
    "load_or_build_held_suarez",
    "load_recipe",
    "pinned_environment",
    "recipe_hash",
    "resolve_recipe",
    "sigma_to_pressure",
    "simulate_held_suarez",
    "split_slices",
    "spread_initial_times",
    "summarize_held_suarez",
    "to_pressure_dataset",
]
