"""Climatologies of an analysis, and the climatology at given valid times.

Two kinds, the WeatherBench 2 way: ``dayofyear_hour`` (a mean per calendar day and hour of
day, smoothed over days with a triangular window that wraps around the year) and
``time_mean`` (for data without seasons, e.g. Held-Suarez). The kind is stored in
``attrs["climatology_kind"]`` so that :func:`climatology_at` knows how to index it. Used by
the ACC in ``metrics`` and by the climatology / damped persistence forecasts in
``references``; xarray in, xarray out, reducing by dim name.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["CLIMATOLOGY_KINDS", "compute_climatology", "climatology_and_last_steps",
           "climatology_at"]

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
    return _climatology(ds, kind, window_days)


def _climatology(ds: xr.Dataset, kind: str, window_days: int,
                 keep: tuple | None = None) -> xr.Dataset:
    """``compute_climatology``; keep: see ``_numpy_climatology`` (day-of-year kind only)."""
    if "time" not in ds.dims:
        raise ValueError(f"dataset for the climatology is missing dims ['time']; it has dims "
                         f"{list(ds.dims)}")
    if kind == "time_mean":
        clim = ds.mean("time")
    elif kind == "dayofyear_hour":
        clim = _dayofyear_hour_climatology(ds, window_days, keep)
    else:
        raise ValueError(f"unknown climatology kind {kind!r}; expected one of {CLIMATOLOGY_KINDS}")
    clim.attrs = {"climatology_kind": kind}
    if kind == "dayofyear_hour":
        clim.attrs.update(window_days=window_days, smoothing="triangular, wraps around the year")
    return clim


def climatology_and_last_steps(ds: xr.Dataset, last: int, kind: str = "dayofyear_hour",
                               window_days: int = 61) -> tuple[xr.Dataset, xr.Dataset]:
    """``compute_climatology(ds, kind, window_days)`` (computed) and the last ``last`` time
    steps of ``ds``, loaded: what ``evaluate`` needs for ACC and the climatology reference
    and for fitting damped persistence on the end of the training period. For lazily
    indexed (not dask) data and the day-of-year kind, the data are read once: the last
    steps are copied out of each hour of day as the climatology reads it (reading them again
    took about a tenth of ``evaluate``'s time); otherwise the two are read one after the
    other. The numbers are those of the two calls."""
    if last < 1:
        raise ValueError(f"last must be a positive number of time steps, got {last}")
    if kind != "dayofyear_hour" or ds.chunks or "time" not in ds.dims:
        return (compute_climatology(ds, kind, window_days).compute(),
                ds.isel(time=slice(-last, None)).load())
    kept: dict = {}
    clim = _climatology(ds, kind, window_days, keep=(slice(-last, None), kept))
    return clim, kept["dataset"]


def _dayofyear_hour_climatology(ds: xr.Dataset, window_days: int,
                                keep: tuple | None = None) -> xr.Dataset:
    """Smoothed (dayofyear, hour, ...) climatology; see ``compute_climatology``."""
    if window_days < 1 or window_days % 2 == 0:
        raise ValueError(f"window_days must be a positive odd number, got {window_days}")
    days = np.arange(1, 367)
    hours = np.unique(ds["time"].dt.hour.values)
    if not ds.chunks:  # lazily indexed or in memory
        return _numpy_climatology(ds, days, hours, (window_days - 1) // 2, keep)
    per_hour = []
    for hour in hours:
        at_hour = ds.isel(time=(ds["time"].dt.hour == hour).values)
        daily = at_hour.groupby("time.dayofyear").mean("time").reindex(dayofyear=days)
        # dask: one chunk per day, and per filled day, would make each roll of the window
        daily = daily.chunk({"dayofyear": -1})  # 366 tasks a field
        per_hour.append(_smooth_over_days(daily, window_days))
    clim = xr.concat(per_hour, dim=pd.Index(hours, name="hour"))
    return clim.transpose("dayofyear", "hour", ...)


def _numpy_climatology(ds: xr.Dataset, days: np.ndarray, hours: np.ndarray,
                       half: int, keep: tuple | None = None) -> xr.Dataset:
    """``_dayofyear_hour_climatology`` of numpy data, the same numbers as the xarray path
    (groupby mean, reindex, triangular mean, concat of the hours), written out: xarray
    without flox reduces the 366 groups one Dataset at a time and concatenates them, which
    made the climatology the slowest step of ``evaluate``. Each hour of day is read once;
    its daily means are smoothed in a second thread while the next hour is read (reading
    kept about one core of two busy; each column is smoothed alone, so the same numbers).
    keep: (a slice of the time steps, a dict): those steps, as read, are put in the dict
    as a loaded Dataset under "dataset" (``climatology_and_last_steps``)."""
    daily = {name: np.full((days.size, hours.size, *(da.sizes[d] for d in da.dims
                                                      if d != "time")), np.nan,
                             np.result_type(da.dtype, np.float32))  # integers: a float mean
             for name, da in ds.data_vars.items()}
    at = {int(d): i for i, d in enumerate(days)}
    hour_of = ds["time"].dt.hour.values
    if keep is not None:
        wanted = np.arange(ds.sizes["time"])[keep[0]]
        kept = {name: np.empty((wanted.size, *(da.sizes[d] for d in da.dims if d != "time")),
                               da.dtype) for name, da in ds.data_vars.items()}
    smoothed = {name: np.empty(values.shape, np.result_type(values.dtype, np.float64))
                for name, values in daily.items()}

    def smooth(name: str, j: int) -> None:
        smoothed[name][:, j] = _triangular_mean(daily[name][:, j], half, axis=0)

    with ThreadPoolExecutor(1) as pool:
        pending = [pool.submit(smooth, name, j) for j, name in _read_hours(
            ds, hours, hour_of, at, daily, None if keep is None else (wanted, kept))]
        for job in pending:
            job.result()
    out = {name: xr.Variable(("dayofyear", "hour", *(d for d in da.dims if d != "time")),
                             smoothed.pop(name), attrs=da.attrs)
           for name, da in ds.data_vars.items()}
    coords = {k: v for k, v in ds.coords.items() if "time" not in v.dims}
    if keep is not None:
        last = ds.isel(time=wanted)  # lazily indexed: only the coordinates are read
        keep[1]["dataset"] = xr.Dataset(
            {name: xr.Variable(("time", *(d for d in da.dims if d != "time")), kept[name],
                               attrs=da.attrs).transpose(*da.dims)
             for name, da in last.data_vars.items()},
            coords=last.coords.to_dataset().load().coords, attrs=ds.attrs)
    return xr.Dataset(out, coords={**coords, "dayofyear": days, "hour": hours})


def _read_hours(ds: xr.Dataset, hours: np.ndarray, hour_of: np.ndarray, at: dict,
                daily: dict, keep: tuple | None):
    """Read ``ds`` an hour of day at a time into the daily means ``daily[name][:, j]``
    (and the kept steps, ``keep`` = (their positions, arrays by name)); yields (j, name)
    as each variable's daily means of hour j are complete."""
    if keep is not None:
        wanted, kept = keep
    for j, hour in enumerate(hours):
        at_hour = ds.isel(time=hour_of == hour).load()
        doy = at_hour["time"].dt.dayofyear.values
        groups = [(at[int(d)], np.flatnonzero(doy == d)) for d in np.unique(doy)]
        if keep is not None:  # which of this hour's steps are kept, and where they go
            steps = np.flatnonzero(hour_of == hour)
            into, mine = np.flatnonzero(hour_of[wanted] == hour), np.isin(steps, wanted)
        for name, da in at_hour.data_vars.items():
            x = da.transpose("time", ...).values
            _daily_means(x, groups, daily[name][:, j])
            if keep is not None:
                kept[name][into] = x[mine]
            yield j, name


def _daily_means(x: np.ndarray, groups: list, out: np.ndarray) -> None:
    """The NaN-skipping mean over axis 0 of ``x[index]`` into ``out[day]`` for each (day,
    index) of ``groups``, as xarray's groupby mean computes it (sum in the dtype of x,
    divided in float64); NaN where a point has no value."""
    complete = not np.isnan(x).any()
    with np.errstate(invalid="ignore", divide="ignore"):
        for day, index in groups:
            if complete:  # the same numbers, fewer passes
                out[day] = x[index].sum(axis=0, dtype=x.dtype) / np.float64(index.size)
            else:
                block = x[index]
                valid = ~np.isnan(block)
                total = np.where(valid, block, 0).sum(axis=0, dtype=x.dtype)
                out[day] = total / valid.sum(axis=0)


def _smooth_over_days(daily: xr.Dataset, window_days: int) -> xr.Dataset:
    """Triangular, cyclic, NaN-skipping weighted mean along dayofyear (length 366)."""
    half = (window_days - 1) // 2
    return xr.apply_ufunc(_triangular_mean, daily, kwargs={"half": half},
                          input_core_dims=[["dayofyear"]], output_core_dims=[["dayofyear"]],
                          dask="parallelized", output_dtypes=[np.float64], keep_attrs=True)


def _triangular_mean(values: np.ndarray, half: int, axis: int = -1) -> np.ndarray:
    """``_smooth_over_days`` on an axis (the days) of a numpy array: for each day d, the sum over
    offsets k = -half..half of (half + 1 - |k|) x[d + k] (cyclic; NaN counted as 0), in
    that order and in the dtype of x, divided (in float64) by the sum of the weights of the
    non-NaN terms; NaN where there is none. In place, a block of columns at a time (so the
    buffers stay in cache): a roll, a fillna, a product and a sum of whole Datasets per
    offset made this the slowest step of ``evaluate``; the numbers are the same."""
    x = np.moveaxis(values, axis, 0)  # days first: each shift is two contiguous slices
    n, shape = x.shape[0], x.shape
    x = x.reshape(n, -1)
    valid = ~np.isnan(x)
    if valid.size and (valid.all(axis=1) == valid.any(axis=1)).all():
        valid = valid[:, :1]  # the gaps are whole days: one weight sum for every column
    weight_sum = np.zeros(valid.shape, dtype=np.float64)
    shifts = [(half + 1 - abs(offset), offset % n) for offset in range(-half, half + 1)]
    for weight, k in shifts:  # shifted[d] = x[(d + offset) % n], k = offset % n
        weight_sum[:n - k] += weight * valid[k:]
        weight_sum[n - k:] += weight * valid[:k]
    weight_sum[weight_sum == 0] = np.nan
    mean = np.empty(x.shape, dtype=np.result_type(x.dtype, np.float64))
    width = max(1, 2**18 // max(n, 1))
    for first in range(0, x.shape[1], width):
        cols = slice(first, first + width)
        filled = np.where(np.isnan(x[:, cols]), 0, x[:, cols])
        total, term = np.zeros_like(filled), np.empty_like(filled)
        for weight, k in shifts:
            np.multiply(filled[k:], weight, out=term[:n - k])
            np.multiply(filled[:k], weight, out=term[n - k:])
            np.add(total, term, out=total)
        np.divide(total, weight_sum if weight_sum.shape[1] == 1 else weight_sum[:, cols],
                  out=mean[:, cols])
    return np.moveaxis(mean.reshape(shape), 0, axis)


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
