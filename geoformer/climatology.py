"""Climatologies of an analysis, and the climatology at given valid times.

Two kinds, the WeatherBench 2 way: ``dayofyear_hour`` (a mean per calendar day and hour of
day, smoothed over days with a triangular window that wraps around the year) and
``time_mean`` (for data without seasons, e.g. Held-Suarez). The kind is stored in
``attrs["climatology_kind"]`` so that :func:`climatology_at` knows how to index it. Used by
the ACC in ``metrics`` and by the climatology / damped persistence forecasts in
``references``; xarray in, xarray out, reducing by dim name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["CLIMATOLOGY_KINDS", "compute_climatology", "climatology_at"]

CLIMATOLOGY_KINDS = ("dayofyear_hour", "time_mean")


def compute_climatology(ds: xr.Dataset, kind: str = "dayofyear_hour",
                        window_days: int = 61) -> xr.Dataset:
    """Climatology of an analysis dataset (time, [level], latitude, longitude).

    kind="dayofyear_hour": dims (dayofyear, hour, [level], latitude, longitude), dayofyear
        1..366 as ``time.dt.dayofyear`` counts it and hour the hours of day present in ``ds``.
        For each hour of day, the mean of each calendar day is smoothed over days with a
        triangular window of ``window_days`` (odd) days: day offset k in -h..h (h =
        (window_days - 1) / 2) has weight h + 1 - |k|, so the centre day weighs h + 1 and
        the outermost days 1. The window wraps around the year (day 366 is next to day 1),
        and days without data are left out of the weighted mean (weights renormalised), so
        day 366 of non-leap years and gaps are filled from their neighbours.
    kind="time_mean": dims ([level], latitude, longitude), the plain mean over time, for data
        without seasons (Held-Suarez).

    The kind is stored in ``attrs["climatology_kind"]``.
    """
    if "time" not in ds.dims:
        raise ValueError(f"dataset for the climatology is missing dims ['time']; it has dims "
                         f"{list(ds.dims)}")
    if kind == "time_mean":
        clim = ds.mean("time")
    elif kind == "dayofyear_hour":
        clim = _dayofyear_hour_climatology(ds, window_days)
    else:
        raise ValueError(f"unknown climatology kind {kind!r}; expected one of {CLIMATOLOGY_KINDS}")
    clim.attrs = {"climatology_kind": kind}
    if kind == "dayofyear_hour":
        clim.attrs.update(window_days=window_days, smoothing="triangular, wraps around the year")
    return clim


def _dayofyear_hour_climatology(ds: xr.Dataset, window_days: int) -> xr.Dataset:
    """Smoothed (dayofyear, hour, ...) climatology; see ``compute_climatology``."""
    if window_days < 1 or window_days % 2 == 0:
        raise ValueError(f"window_days must be a positive odd number, got {window_days}")
    days = np.arange(1, 367)
    per_hour = []
    hours = np.unique(ds["time"].dt.hour.values)
    for hour in hours:
        at_hour = ds.isel(time=(ds["time"].dt.hour == hour).values)
        daily = at_hour.groupby("time.dayofyear").mean("time").reindex(dayofyear=days)
        if daily.chunks:  # dask: one chunk per day, and per filled day, would make each
            daily = daily.chunk({"dayofyear": -1})  # roll of the window 366 tasks a field
        per_hour.append(_smooth_over_days(daily, window_days))
    clim = xr.concat(per_hour, dim=pd.Index(hours, name="hour"))
    return clim.transpose("dayofyear", "hour", ...)


def _smooth_over_days(daily: xr.Dataset, window_days: int) -> xr.Dataset:
    """Triangular, cyclic, NaN-skipping weighted mean along dayofyear (length 366)."""
    half = (window_days - 1) // 2
    total, weight_sum = 0.0, 0.0
    for offset in range(-half, half + 1):
        weight = half + 1 - abs(offset)
        shifted = daily.roll(dayofyear=-offset)  # shifted[d] = daily[d + offset], cyclic
        shifted = shifted.assign_coords(dayofyear=daily["dayofyear"])
        total = total + weight * shifted.fillna(0.0)
        weight_sum = weight_sum + weight * shifted.notnull()
    return total / weight_sum.where(weight_sum > 0)


def climatology_at(climatology: xr.Dataset, valid_times) -> xr.Dataset:
    """The climatology at given valid times, with the dims and coords of ``valid_times``.

    valid_times: DataArray of datetime64 with any dims (e.g. (time, prediction_timedelta)),
    or a 1-D array-like of datetimes (then the result has dim ``time``). Works for both
    climatology kinds; a time-mean climatology is broadcast to the valid times' dims.
    """
    valid_times = _as_time_array(valid_times)
    kind = climatology.attrs.get("climatology_kind")
    if kind == "time_mean":
        # per variable: Dataset.broadcast_like would also give surface variables a level dim
        return climatology.map(lambda da: da.broadcast_like(valid_times), keep_attrs=True)
    if kind != "dayofyear_hour":
        raise ValueError(f"climatology has attrs['climatology_kind'] = {kind!r}; expected one of "
                         f"{CLIMATOLOGY_KINDS} (make it with compute_climatology)")
    hours = valid_times.dt.hour
    missing = np.setdiff1d(np.unique(hours.values), climatology["hour"].values)
    if missing.size:
        raise ValueError(f"the climatology has no hour(s) of day {missing.tolist()} needed by the "
                         f"valid times; it has {climatology['hour'].values.tolist()}")
    picked = climatology.sel(dayofyear=valid_times.dt.dayofyear, hour=hours)
    return picked.drop_vars(["dayofyear", "hour"])


def _as_time_array(times) -> xr.DataArray:
    if isinstance(times, xr.DataArray):
        return times
    index = pd.DatetimeIndex(np.atleast_1d(np.asarray(times)))
    return xr.DataArray(index, dims="time", coords={"time": index})
