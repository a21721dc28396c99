"""Pure post-processing: grid, hydrostatics, sigma -> pressure levels, the CF dataset contract.

Turns the model-level :class:`~.simulation.SigmaLevelFields` into the xarray dataset the rest of
geoformer reads (WeatherBench 2 names, levels from the surface up, latitude north to south, CF
attributes). Needs numpy and xarray only.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable

import numpy as np
import xarray as xr

from .simulation import SigmaLevelFields

# Pangu's levels, from the surface up (geoformer's internal order).
PRESSURE_LEVELS_HPA = (1000, 925, 850, 700, 600, 500, 400, 300, 250, 200, 150, 100, 50)

# dinosaur's constants (scales.IDEAL_GAS_CONSTANT = Cp * kappa, scales.GRAVITY_ACCELERATION):
# geopotential must use the model's values to be consistent with its dynamics.
GAS_CONSTANT = 1004.0 * 2.0 / 7.0  # J kg-1 K-1
GRAVITY = 9.80616  # m s-2
# Standard-atmosphere lapse rate, used only to extrapolate below the lowest model level.
LAPSE_RATE = 0.0065  # K m-1

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


def equiangular_latitudes(count: int) -> np.ndarray:
    """(H,) cell-centre latitudes without poles, north to south: 87.1875, ... for H = 32."""
    return 90.0 - (np.arange(count, dtype=np.float64) + 0.5) * 180.0 / count


def equiangular_longitudes(count: int) -> np.ndarray:
    """(W,) longitudes from 0 eastwards: 0, 5.625, ..., 354.375 for W = 64."""
    return np.arange(count, dtype=np.float64) * 360.0 / count



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
        "land": "none",  # maps are drawn without coastlines (geoformer.plots.has_land)
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
