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
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import itertools
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

__all__ = [
    "DEFAULT_RECIPE",
    "PRESSURE_LEVELS_HPA",
    "SigmaLevelFields",
    "build_held_suarez",
    "default_cache_dir",
    "equiangular_latitudes",
    "equiangular_longitudes",
    "geopotential_on_sigma",
    "load_or_build_held_suarez",
    "load_recipe",
    "recipe_hash",
    "resolve_recipe",
    "sigma_to_pressure",
    "simulate_held_suarez",
    "split_slices",
    "summarize_held_suarez",
    "to_pressure_dataset",
]

log = logging.getLogger(__name__)

# Pangu's levels, from the surface up (geoformer's internal order).
PRESSURE_LEVELS_HPA = (1000, 925, 850, 700, 600, 500, 400, 300, 250, 200, 150, 100, 50)

# dinosaur's constants (scales.IDEAL_GAS_CONSTANT = Cp * kappa, scales.GRAVITY_ACCELERATION):
# geopotential must use the model's values to be consistent with its dynamics.
GAS_CONSTANT = 1004.0 * 2.0 / 7.0  # J kg-1 K-1
GRAVITY = 9.80616  # m s-2
# Standard-atmosphere lapse rate, used only to extrapolate below the lowest model level.
LAPSE_RATE = 0.0065  # K m-1

# Bump when the post-processing changes, so cached stores built by older code are rebuilt.
FORMAT_VERSION = 1

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
_INSTALL_HINT = (
    'Building the Held-Suarez dataset needs jax and dinosaur: pip install "sciforecast[simulation]"'
)

# (units, standard_name, long_name) of every variable of the contract.
_ATTRS = {
    "geopotential": ("m2 s-2", "geopotential", "Geopotential"),
    "temperature": ("K", "air_temperature", "Temperature"),
    "u_component_of_wind": ("m s-1", "eastward_wind", "U component of wind"),
    "v_component_of_wind": ("m s-1", "northward_wind", "V component of wind"),
    "mean_sea_level_pressure": ("Pa", "air_pressure_at_mean_sea_level", "Mean sea level pressure"),
    "surface_pressure": ("Pa", "surface_air_pressure", "Surface pressure"),
    "10m_u_component_of_wind": ("m s-1", "eastward_wind", "10 metre U wind component (proxy)"),
    "10m_v_component_of_wind": ("m s-1", "northward_wind", "10 metre V wind component (proxy)"),
    "2m_temperature": ("K", "air_temperature", "2 metre temperature (proxy)"),
    "land_sea_mask": ("1", "land_binary_mask", "Land-sea mask (all sea)"),
    "soil_type": ("1", "soil_type", "Soil type (none)"),
    "geopotential_at_surface": ("m2 s-2", "surface_geopotential", "Geopotential at the surface"),
}


# --------------------------------------------------------------------------------------------
# Recipe
# --------------------------------------------------------------------------------------------


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
    merged["start"] = _time_text(merged["start"])
    if isinstance(merged["splits"], dict):
        merged["splits"] = {
            k: [_time_text(t) for t in v] if isinstance(v, (list, tuple)) else v
            for k, v in merged["splits"].items()
        }
    _check_simulation(merged)
    _check_splits(merged)
    return merged


def _time_text(value: Any) -> Any:
    return value if isinstance(value, str) else pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M")


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
        hours = recipe[key] * 24
        if recipe[key] < 0 or not float(hours / recipe["every_hours"]).is_integer():
            raise ValueError(
                f"{key}={recipe[key]} must be >= 0 and a whole number of "
                f"every_hours={recipe['every_hours']} intervals"
            )
    if recipe["days"] <= 0:
        raise ValueError(f"days must be > 0, found {recipe['days']}")
    pd.Timestamp(recipe["start"])  # raises on an unreadable date


def _check_splits(recipe: dict) -> None:
    """Raise ValueError unless train < validation < test lie inside the saved times."""
    splits = recipe["splits"]
    if not (isinstance(splits, dict) and set(splits) == set(_SPLITS)):
        raise ValueError(f"splits must have exactly the keys {_SPLITS}, found {splits!r}")
    times = _time_axis(recipe)
    previous_end = None
    for name in _SPLITS:
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


# --------------------------------------------------------------------------------------------
# Pure post-processing: grid, hydrostatics, sigma -> pressure, the dataset contract
# --------------------------------------------------------------------------------------------


def equiangular_latitudes(count: int) -> np.ndarray:
    """(H,) cell-centre latitudes without poles, north to south: 87.1875, ... for H = 32."""
    return 90.0 - (np.arange(count, dtype=np.float64) + 0.5) * 180.0 / count


def equiangular_longitudes(count: int) -> np.ndarray:
    """(W,) longitudes from 0 eastwards: 0, 5.625, ..., 354.375 for W = 64."""
    return np.arange(count, dtype=np.float64) * 360.0 / count


@dataclass(frozen=True)
class SigmaLevelFields:
    """Model-level output of T saved states on the output grid (latitude north to south).

    time: (T,) datetime64[ns]. sigma: (N,) layer centres, top to bottom (increasing).
    temperature (K), u, v (m s-1): (T, N, H, W). surface_pressure (Pa): (T, H, W).
    """

    time: np.ndarray
    sigma: np.ndarray
    temperature: np.ndarray
    u: np.ndarray
    v: np.ndarray
    surface_pressure: np.ndarray

    def __post_init__(self):
        T, N = len(self.time), len(self.sigma)
        if not np.all(np.diff(self.sigma) > 0) or not 0 < self.sigma[0] < self.sigma[-1] < 1:
            raise ValueError(f"sigma must increase strictly inside (0, 1), found {self.sigma}")
        for name in ("temperature", "u", "v"):
            shape = getattr(self, name).shape
            if len(shape) != 4 or shape[:2] != (T, N):
                raise ValueError(f"{name} must be (T={T}, N={N}, H, W), found {shape}")
        if self.surface_pressure.shape != (T, *self.temperature.shape[2:]):
            raise ValueError(
                f"surface_pressure must be (T, H, W) = {(T, *self.temperature.shape[2:])}, "
                f"found {self.surface_pressure.shape}"
            )


def geopotential_on_sigma(
    temperature: np.ndarray, sigma: np.ndarray, gas_constant: float = GAS_CONSTANT
) -> np.ndarray:
    """Geopotential (m2 s-2) at sigma-layer centres over a flat surface (geopotential 0).

    temperature: (..., N, H, W) K at centres ``sigma`` (N,), top to bottom. The discretisation
    is dinosaur's (Durran's): the lowest layer is isothermal from the ground to its centre,
    Phi_N = R T_N ln(1 / sigma_N), and each layer above adds the trapezoid
    R (T_k + T_k+1) / 2 ln(sigma_k+1 / sigma_k). Returns (..., N, H, W).
    """
    log_sigma = np.log(np.asarray(sigma, dtype=np.float64))[:, None, None]  # (N, 1, 1)
    lowest = -gas_constant * temperature[..., -1:, :, :] * log_sigma[-1]  # (..., 1, H, W)
    steps = (
        gas_constant * 0.5 * (temperature[..., 1:, :, :] + temperature[..., :-1, :, :])
        * np.diff(log_sigma, axis=0)
    )  # (..., N-1, H, W): Phi_k - Phi_k+1
    above = np.flip(np.cumsum(np.flip(steps, axis=-3), axis=-3), axis=-3)
    return np.concatenate([above + lowest, lowest], axis=-3)


def sigma_to_pressure(
    fields: SigmaLevelFields,
    levels_hpa: Iterable[int] = PRESSURE_LEVELS_HPA,
    gas_constant: float = GAS_CONSTANT,
    gravity: float = GRAVITY,
    lapse_rate: float = LAPSE_RATE,
) -> dict[str, np.ndarray]:
    """Geopotential, temperature, u and v (T, Z, H, W) on pressure levels, in float64.

    Between the top layer centre and the ground: linear in log-pressure, the ground being an
    extra point with geopotential 0, temperature extrapolated from the lowest layer with the
    standard lapse rate, and the lowest layer's wind.
    Above the top layer centre (only with few layers): isothermal, the top wind, and the
    hydrostatic geopotential of an isothermal layer.
    Below the ground (p > surface pressure, as 1000 hPa often is): the ECMWF convention,
    temperature rising with the standard lapse rate from the surface value and the hydrostatic
    geopotential of that profile (negative), the lowest layer's wind.
    """
    sigma = np.asarray(fields.sigma, dtype=np.float64)
    temperature = fields.temperature.astype(np.float64)
    phi = geopotential_on_sigma(temperature, sigma, gas_constant)  # (T, N, H, W)
    exponent = gas_constant * lapse_rate / gravity  # T ~ p ** exponent along the lapse rate
    t_surface = temperature[:, -1] * sigma[-1] ** -exponent  # (T, H, W)

    levels_pa = 100.0 * np.asarray(list(levels_hpa), dtype=np.float64)
    x = np.log(levels_pa[None, :, None, None] / fields.surface_pressure[:, None])  # (T, Z, H, W)
    x_source = np.log(np.append(sigma, 1.0))  # (N+1,): the layer centres, then the ground

    interpolate = _column_interpolator(x, x_source)

    def with_ground(f: np.ndarray, ground: np.ndarray) -> np.ndarray:
        return np.concatenate([f, ground[:, None]], axis=1)  # (T, N+1, H, W)

    out = {
        "geopotential": interpolate(with_ground(phi, np.zeros_like(t_surface))),
        "temperature": interpolate(with_ground(temperature, t_surface)),
        "u_component_of_wind": interpolate(with_ground(fields.u, fields.u[:, -1])),
        "v_component_of_wind": interpolate(with_ground(fields.v, fields.v[:, -1])),
    }  # wind and temperature are already constant beyond both ends (see _column_interpolator)

    above = x < x_source[0]
    top_t, top_phi = temperature[:, :1], phi[:, :1]  # (T, 1, H, W)
    out["geopotential"] = np.where(
        above, top_phi + gas_constant * top_t * (x_source[0] - x), out["geopotential"]
    )
    below = x > 0.0
    t_below = t_surface[:, None] * np.exp(exponent * x)  # (T, Z, H, W)
    out["temperature"] = np.where(below, t_below, out["temperature"])
    out["geopotential"] = np.where(
        below, -(gravity / lapse_rate) * (t_below - t_surface[:, None]), out["geopotential"]
    )
    return out


def _column_interpolator(
    x: np.ndarray, x_source: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """Linear interpolation along axis 1 from ``x_source`` to ``x``, constant beyond both ends.

    x: (T, Z, H, W) targets; x_source: (M,) increasing. The returned function maps
    f (T, M, H, W) to (T, Z, H, W); the brackets and weights are found once for all fields.
    """
    upper = np.clip(np.searchsorted(x_source, x), 1, len(x_source) - 1)  # (T, Z, H, W)
    x0, x1 = x_source[upper - 1], x_source[upper]
    weight = np.clip((x - x0) / (x1 - x0), 0.0, 1.0)

    def interpolate(f: np.ndarray) -> np.ndarray:
        f0 = np.take_along_axis(f, upper - 1, axis=1)
        f1 = np.take_along_axis(f, upper, axis=1)
        return f0 + weight * (f1 - f0)

    return interpolate


def to_pressure_dataset(
    fields: SigmaLevelFields,
    levels_hpa: Iterable[int] = PRESSURE_LEVELS_HPA,
    attrs: dict[str, str] | None = None,
) -> xr.Dataset:
    """The dataset contract from model-level fields: upper air, surface proxies and statics.

    Upper air (time, level, latitude, longitude), surface (time, latitude, longitude) and
    statics (latitude, longitude), all float32 with CF attributes; ``attrs`` become the global
    attributes.
    """
    levels = np.asarray(list(levels_hpa), dtype=np.int64)
    H, W = fields.surface_pressure.shape[1:]
    coords = _coordinates(fields.time, levels, H, W)
    upper = sigma_to_pressure(fields, levels)
    lowest = f"proxy: lowest model level (sigma={float(fields.sigma[-1]):.4f})"
    flat = "equals surface_pressure: the planet has no orography"
    surface = {
        "mean_sea_level_pressure": (fields.surface_pressure, flat),
        "surface_pressure": (fields.surface_pressure, None),
        "10m_u_component_of_wind": (fields.u[:, -1], lowest),
        "10m_v_component_of_wind": (fields.v[:, -1], lowest),
        "2m_temperature": (fields.temperature[:, -1], lowest),
    }
    zeros = np.zeros((H, W), dtype=np.float32)
    static = {
        "land_sea_mask": "no land: aquaplanet",
        "soil_type": "no land: aquaplanet",
        "geopotential_at_surface": "no orography",
    }
    data_vars = {}
    for name, values in upper.items():
        data_vars[name] = _variable(("time", "level", "latitude", "longitude"), values, name)
    for name, (values, comment) in surface.items():
        data_vars[name] = _variable(("time", "latitude", "longitude"), values, name, comment)
    for name, comment in static.items():
        data_vars[name] = _variable(("latitude", "longitude"), zeros, name, comment)
    return xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))


def _variable(dims: tuple[str, ...], values: np.ndarray, name: str, comment: str | None = None):
    units, standard_name, long_name = _ATTRS[name]
    attrs = {"units": units, "standard_name": standard_name, "long_name": long_name}
    if comment:
        attrs["comment"] = comment
    return xr.Variable(dims, np.asarray(values, dtype=np.float32), attrs)


def _coordinates(time: np.ndarray, levels: np.ndarray, H: int, W: int) -> dict[str, xr.Variable]:
    return {
        "time": xr.Variable(
            "time", np.asarray(time, dtype="datetime64[ns]"),
            {"standard_name": "time", "long_name": "nominal time (no calendar in the model)"},
        ),
        "level": xr.Variable(
            "level", levels,
            {"units": "hPa", "standard_name": "air_pressure", "long_name": "pressure level",
             "positive": "down"},
        ),
        "latitude": xr.Variable(
            "latitude", equiangular_latitudes(H),
            {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"},
        ),
        "longitude": xr.Variable(
            "longitude", equiangular_longitudes(W),
            {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
        ),
    }


def _global_attrs(recipe: dict, dinosaur_version: str) -> dict[str, str]:
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "title": "Held-Suarez idealised dry atmosphere (sciforecast built-in dataset)",
        "source": (
            f"dinosaur {dinosaur_version} Held-Suarez (1994) forcing, primitive equations, "
            f"{recipe['resolution']} spectral, {recipe['sigma_levels']} equidistant sigma levels, "
            f"{recipe['dt_minutes']} min step"
        ),
        "history": (
            f"{created} built by sciforecast geoformer.sources.held_suarez: "
            f"{recipe['spinup_days']} days of spin-up discarded, then {recipe['days']} days saved "
            f"every {recipe['every_hours']} h; spectral evaluation on the equiangular grid; "
            "sigma to pressure linear in log-pressure"
        ),
        "comment": (
            "Dry idealised simulation with nominal dates: no seasons, no diurnal cycle, no "
            "orography, no land, no water. 10 m winds and 2 m temperature are proxies from "
            "the lowest model level; mean sea level pressure equals surface pressure. Not ERA5 "
            "and not to be presented as such."
        ),
        "references": "Held, I. M. and M. J. Suarez (1994), BAMS 75, 1825-1830",
        "Conventions": "CF-1.8",
        "recipe": json.dumps(recipe, sort_keys=True),
    }


def summarize_held_suarez(ds: xr.Dataset) -> dict[str, float]:
    """Sanity numbers: jet, eddies, Z500 and T850 of a Held-Suarez dataset.

    u250_zonal_time_mean_max: the strongest 250 hPa zonal- and time-mean westerly (m s-1);
    u250_eddy_std: the standard deviation of u250 about its zonal mean (m s-1);
    z500_min, z500_max (m2 s-2), t850_min, t850_max (K), surface_pressure_mean (Pa).
    """
    u250 = ds["u_component_of_wind"].sel(level=250)
    z500 = ds["geopotential"].sel(level=500)
    t850 = ds["temperature"].sel(level=850)
    return {
        "u250_zonal_time_mean_max": float(u250.mean(["time", "longitude"]).max()),
        "u250_eddy_std": float((u250 - u250.mean("longitude")).std()),
        "z500_min": float(z500.min()),
        "z500_max": float(z500.max()),
        "t850_min": float(t850.min()),
        "t850_max": float(t850.max()),
        "surface_pressure_mean": float(ds["surface_pressure"].mean()),
    }


# --------------------------------------------------------------------------------------------
# Simulation with dinosaur (imported only here)
# --------------------------------------------------------------------------------------------


def _import_dinosaur():
    try:
        import dinosaur  # noqa: F401
        import jax  # noqa: F401
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return dinosaur


def _dinosaur_version() -> str:
    try:
        return metadata.version("dinosaur")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class _Model:
    """A ready-to-run Held-Suarez model.

    advance: modal state -> modal state one output interval later.
    evaluate: (list of modal states, their (T,) times) -> SigmaLevelFields on the output grid.
    """

    initial_state: Any
    advance: Callable[[Any], Any]
    evaluate: Callable[[list, np.ndarray], SigmaLevelFields]


def _held_suarez_model(recipe: dict) -> _Model:
    """dinosaur's sigma-coordinate primitive equations with Held-Suarez forcing."""
    _import_dinosaur()
    import jax
    from dinosaur import (
        coordinate_systems,
        held_suarez,
        primitive_equations,
        primitive_equations_states,
        scales,
        sigma_coordinates,
        spherical_harmonic,
        time_integration,
        xarray_utils,
    )

    units = scales.units
    impl = spherical_harmonic.FastSphericalHarmonics
    grid = getattr(spherical_harmonic.Grid, recipe["resolution"])(spherical_harmonics_impl=impl)
    coords = coordinate_systems.CoordinateSystem(
        horizontal=grid,
        vertical=sigma_coordinates.SigmaCoordinates.equidistant(recipe["sigma_levels"]),
    )
    specs = primitive_equations.PrimitiveEquationsSpecs.from_si()
    initial_fn, aux = primitive_equations_states.isothermal_rest_atmosphere(
        coords, specs, p0=1e5 * units.pascal
    )
    reference_temperature = aux[xarray_utils.REF_TEMP_KEY]
    key = jax.random.PRNGKey(recipe["seed"])
    state = initial_fn(key)  # uniform 1000 hPa: the key only draws a perturbation of size 0
    # The rest state is exactly zonally symmetric and would stay so: perturb it.
    noise = recipe["temperature_noise_kelvin"] * jax.random.normal(key, coords.nodal_shape)
    state.temperature_variation = state.temperature_variation + grid.to_modal(
        specs.nondimensionalize(noise * units.degK)
    )

    dynamics = primitive_equations.PrimitiveEquationsSigma(
        reference_temperature, grid.to_modal(aux[xarray_utils.OROGRAPHY]), coords, specs
    )
    forcing = held_suarez.HeldSuarezForcingSigma(
        coords=coords, physics_specs=specs, reference_temperature=reference_temperature
    )
    # Integer minutes and hours keep the step count exact (no rounding of pint quantities).
    dt = specs.nondimensionalize(recipe["dt_minutes"] * units.minute)
    step = time_integration.imex_rk_sil3(
        time_integration.compose_equations([dynamics, forcing]), dt
    )
    # dinosaur's default exponential filter damps the smallest scales (scaled by dt / tau).
    step = time_integration.step_with_filters(
        step, [time_integration.exponential_step_filter(grid, dt)]
    )
    steps_per_output = recipe["every_hours"] * 60 // recipe["dt_minutes"]
    advance = jax.jit(time_integration.repeated(step, steps_per_output))

    output_grid = _output_grid(grid, recipe["grid"]["latitudes"], recipe["grid"]["longitudes"])
    nodal = jax.jit(jax.vmap(lambda s: _nodal_fields(s, output_grid, reference_temperature)))
    scale = {
        "temperature": specs.dimensionalize(1.0, units.degK).m,
        "wind": specs.dimensionalize(1.0, units.m / units.s).m,
        "pressure": specs.dimensionalize(1.0, units.pascal).m,
    }
    sigma = np.asarray(coords.vertical.centers, dtype=np.float64)

    def evaluate(states: list, times: np.ndarray) -> SigmaLevelFields:
        stacked = jax.tree.map(lambda *xs: jax.numpy.stack(xs), *states)
        t, u, v, ps = (_to_hw(np.asarray(a, dtype=np.float64)) for a in nodal(stacked))
        return SigmaLevelFields(
            time=times, sigma=sigma, temperature=t * scale["temperature"],
            u=u * scale["wind"], v=v * scale["wind"], surface_pressure=ps * scale["pressure"],
        )

    return _Model(initial_state=state, advance=advance, evaluate=evaluate)


def _output_grid(model_grid, latitudes: int, longitudes: int):
    """The model's spherical harmonics evaluated on an equiangular grid without poles."""
    from dinosaur import spherical_harmonic

    return spherical_harmonic.Grid(
        longitude_wavenumbers=model_grid.longitude_wavenumbers,
        total_wavenumbers=model_grid.total_wavenumbers,
        longitude_nodes=longitudes,
        latitude_nodes=latitudes,
        latitude_spacing="equiangular",
        spherical_harmonics_impl=model_grid.spherical_harmonics_impl,
        radius=model_grid.radius,
    )


def _nodal_fields(state, grid, reference_temperature):
    """Non-dimensional T, u, v (N, lon, lat) and surface pressure (lon, lat) on ``grid``."""
    import jax.numpy as jnp
    from dinosaur import spherical_harmonic

    temperature = grid.to_nodal(state.temperature_variation) + reference_temperature[:, None, None]
    u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, state.vorticity, state.divergence)
    surface_pressure = jnp.exp(grid.to_nodal(state.log_surface_pressure)[0])
    return temperature, u, v, surface_pressure


def _to_hw(a: np.ndarray) -> np.ndarray:
    """dinosaur's nodal (..., W, H) with latitude south to north -> (..., H, W) north to south."""
    return np.flip(np.swapaxes(a, -1, -2), axis=-2)  # (..., H, W)


def _simulate_blocks(recipe: dict, block_size: int = 120) -> Iterator[SigmaLevelFields]:
    """Spin up, then yield the saved states in blocks of at most ``block_size`` times."""
    model = _held_suarez_model(recipe)
    intervals_per_day = 24 // recipe["every_hours"] if 24 % recipe["every_hours"] == 0 else None
    spinup = round(recipe["spinup_days"] * 24 / recipe["every_hours"])
    times = _time_axis(recipe).to_numpy()
    started = time.perf_counter()

    def states() -> Iterator[Any]:
        state = model.initial_state
        for _ in range(spinup):
            state = model.advance(state)
        log.info("Held-Suarez spin-up of %s days took %.0f s", recipe["spinup_days"],
                 time.perf_counter() - started)
        yield state
        for _ in range(len(times) - 1):
            state = model.advance(state)
            yield state

    trajectory = states()
    for first in range(0, len(times), block_size):
        block_times = times[first:first + block_size]
        block = list(itertools.islice(trajectory, len(block_times)))
        yield model.evaluate(block, block_times)
        if intervals_per_day:
            log.info("Held-Suarez day %d of %s saved (%.0f s)",
                     (first + len(block_times)) // intervals_per_day, recipe["days"],
                     time.perf_counter() - started)


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
    discarded), on a ``grid`` = (H, W) equiangular grid without poles. Memory: about
    0.47 MB per saved time at 32 x 64 (two years: 1.3 GB); :func:`build_held_suarez`
    streams to disk instead.
    """
    recipe = {
        "resolution": resolution, "sigma_levels": sigma_levels, "dt_minutes": dt_minutes,
        "spinup_days": spinup_days, "days": days, "every_hours": every_hours, "seed": seed,
        "temperature_noise_kelvin": temperature_noise_kelvin,
        "grid": {"latitudes": grid[0], "longitudes": grid[1]}, "start": start,
    }
    _check_simulation(recipe)
    blocks = [to_pressure_dataset(b) for b in _simulate_blocks(recipe)]
    ds = xr.concat(blocks, dim="time", data_vars="minimal", coords="minimal",
                   compat="override", join="exact")
    ds.attrs = _global_attrs(recipe, _dinosaur_version())
    return ds


# --------------------------------------------------------------------------------------------
# Stores: atomic build and cache
# --------------------------------------------------------------------------------------------


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
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _write_store(tmp, recipe)
        _move_into_place(tmp, path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_store(tmp: Path, recipe: dict) -> None:
    attrs = _global_attrs(recipe, _dinosaur_version())
    attrs["recipe_hash"] = recipe_hash(recipe)
    for index, fields in enumerate(_simulate_blocks(recipe)):
        ds = to_pressure_dataset(fields, attrs=attrs)
        if index == 0:
            ds.to_zarr(tmp, mode="w-", encoding=_encoding(ds), **_ZARR)
        else:
            # Statics and the fixed coordinates were written with the first block.
            ds = ds.drop_vars([n for n, v in ds.variables.items() if "time" not in v.dims])
            ds.to_zarr(tmp, append_dim="time", **_ZARR)


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


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; an old store at ``path`` is removed only after the swap."""
    old = None
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} appeared while building; not replacing it")
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        if old is not None:  # put the previous store back
            os.rename(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
