"""Specific humidity from relative humidity and temperature on pressure levels (opt-in).

Operational files often carry relative humidity instead of specific humidity on pressure
levels (NCEP GFS has r only). With it and temperature:

- saturation vapour pressure over liquid water, Bolton (1980, Mon. Wea. Rev. 108, eq. 10),
  a Magnus-type formula: e_s(T) = 611.2 Pa * exp(17.67 (T - 273.15) / (T - 29.65)), T in K;
- vapour pressure e = RH * e_s (RH as a fraction; GRIB's % divided by 100, negatives to 0);
- specific humidity q = eps * e / (p - (1 - eps) * e), with eps = R_d / R_v = 0.621981 and
  p the pressure of the level in Pa.

Below 0 degC centres define RH over ice or a water-ice mix (IFS: ice below -23 degC; NCEP's
post-processing mixes phases too); taking it over water then overestimates q, by about 20 %
at -20 degC and 50 % at -40 degC (e_s over water / over ice), where q itself is small.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["EPSILON", "RH_NAMES", "saturation_vapour_pressure", "specific_humidity",
           "specific_humidity_from_rh"]

EPSILON = 0.621981  # R_d / R_v: molar mass of water over that of dry air
RH_NAMES = ("relative_humidity", "r", "rh")  # names the loaders keep relative humidity under
_PERCENT = {"%", "percent", "pct"}
_FRACTION = {"1", "0-1", "(0 - 1)", "fraction", "dimensionless"}


def saturation_vapour_pressure(temperature):
    """Saturation vapour pressure over liquid water in Pa (Bolton 1980); temperature in K."""
    celsius = temperature - 273.15
    return 611.2 * np.exp(17.67 * celsius / (celsius + 243.5))


def specific_humidity(relative_humidity, temperature, pressure):
    """q in kg/kg from RH (fraction), temperature (K) and pressure (Pa); any broadcastable
    arrays."""
    e = relative_humidity * saturation_vapour_pressure(temperature)
    return EPSILON * e / (pressure - (1.0 - EPSILON) * e)


def specific_humidity_from_rh(ds: xr.Dataset, source: str = "the data") -> tuple[xr.DataArray,
                                                                                  str]:
    """(q on the dims of the relative humidity, a note naming the formula) for a dataset in
    the internal schema: ``temperature`` in K and relative humidity (one of RH_NAMES) on
    ``level`` in hPa. Raises ValueError naming what is missing."""
    name = next((n for n in RH_NAMES if n in ds.data_vars), None)
    if name is None or "temperature" not in ds.data_vars:
        raise ValueError(
            f"deriving specific humidity (--humidity-from-rh) needs relative humidity (one of "
            f"{list(RH_NAMES)}) and temperature on pressure levels; {source} has "
            f"{sorted(map(str, ds.data_vars))}")
    rh = ds[name]
    if "level" not in rh.dims or "level" not in ds["temperature"].dims:
        raise ValueError(f"{source}: relative humidity {name!r} has dims {rh.dims} and "
                         f"temperature {ds['temperature'].dims}; both must be on pressure levels")
    units = str(rh.attrs.get("units", "")).strip()
    if units in _PERCENT:
        fraction = rh / 100.0
    elif units in _FRACTION:
        fraction = rh
    else:
        raise ValueError(f"{source}: relative humidity {name!r} has units {units!r}; expected "
                         "'%' or a fraction ('1')")
    pressure = ds["level"].astype(np.float64) * 100.0  # hPa -> Pa
    q = specific_humidity(fraction.clip(min=0.0), ds["temperature"], pressure)
    note = (f"specific_humidity: derived from relative humidity {name!r} and temperature "
            f"(Bolton 1980 saturation vapour pressure over water, e = RH e_s, "
            f"q = eps e / (p - (1 - eps) e), eps = {EPSILON})")
    q = q.transpose(*rh.dims, ...).astype(np.float32)
    q.attrs = {}  # arithmetic may carry the level's or RH's attributes along
    return q, note
