"""Reference forecasts a model must beat, written as forecast stores.

Each function returns a Dataset with dims (time, prediction_timedelta, [level], latitude,
longitude), ``time`` being the initialisation time, so references are scored by exactly the
same code as a model (``scores.score_table``):

* persistence: the analysis at the initial time, for every lead.
* climatology: the climatology at the valid time.
* damped persistence: clim(valid) + r (x0 - clim(init)), with r fitted per variable, level
  and lead by area-weighted least squares on training data. It is the best forecast of the
  form "climatology plus a scaled initial anomaly", so it beats persistence and climatology.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .area import latitude_weights
from .climatology import climatology_at
from .metrics import align_grid, check_no_nan

__all__ = [
    "persistence",
    "climatology_forecast",
    "fit_damped_persistence",
    "damped_persistence",
]

STORE_DIMS = ("time", "prediction_timedelta", "level", "latitude", "longitude")


def persistence(truth: xr.Dataset, init_times, lead_times) -> xr.Dataset:
    """Forecast store holding truth(init) at every lead.

    truth: analysis (time, [level], latitude, longitude); init_times: datetimes, all in
    truth; lead_times: timedeltas (e.g. ``pd.to_timedelta([24, 72], unit="h")``).
    """
    initial = _at_times(truth, init_times, "truth")
    leads = _leads(lead_times)
    return _as_store(initial.expand_dims(prediction_timedelta=leads))


def climatology_forecast(climatology: xr.Dataset, init_times, lead_times,
                         like: xr.Dataset | None = None) -> xr.Dataset:
    """Forecast store holding the climatology at each valid time init + lead.

    climatology: from ``climatology.compute_climatology``. like: optional analysis whose
    variables the forecast keeps and whose latitude/longitude order it takes (the grids must
    hold the same points).
    """
    valid = _valid_times(init_times, lead_times)
    if like is not None:
        missing = [v for v in like.data_vars if v not in climatology.data_vars]
        if missing:
            raise ValueError(f"climatology is missing variables {missing} of the dataset given "
                             f"as like")
        climatology = climatology[list(like.data_vars)]
    forecast = climatology_at(climatology, valid)  # before align_grid: it may copy
    if like is not None:
        forecast = align_grid(like, forecast, labels=("like", "climatology"))
    forecast.attrs = {}
    return _as_store(forecast)


def fit_damped_persistence(train_truth: xr.Dataset, climatology: xr.Dataset,
                           lead_times) -> xr.Dataset:
    """Damping coefficients r per variable, (prediction_timedelta, [level]), dimensionless.

    Least squares over all training pairs (t0, t0 + lead) with both times in train_truth:
    r = sum_w(a0 at) / sum_w(a0^2), a = truth minus the climatology at its own time, the
    sums running over pairs, latitude and longitude with area weights (``latitude_weights``).
    """
    check_no_nan(train_truth, "training truth")
    weights = latitude_weights(train_truth["latitude"])
    times = train_truth["time"].values
    leads = _leads(lead_times)
    pairs = []
    for lead in leads.values:
        later = times + lead
        has_pair = np.isin(later, times)
        if not has_pair.any():
            raise ValueError(f"no training pair for lead {pd.Timedelta(lead)}: no time t0 with "
                             f"t0 + lead also in the training data")
        pairs.append((_positions(times, times[has_pair]), _positions(times, later[has_pair])))
    fitted = {}
    w = np.asarray(weights.values, dtype=np.float64)
    for name in train_truth.data_vars:  # one float64 anomaly at a time, not all of them
        one = train_truth[[name]]
        anomaly = (one - _clim_on(climatology, one, one["time"]))[name]
        rest = [d for d in anomaly.dims if d not in ("time", "latitude", "longitude")]
        # (rest, time, latitude, longitude) in float64: each weighted sum below is then one
        # contiguous dot per level (xarray's products and sums of whole arrays per lead made
        # this fit slower than all the scoring)
        a = np.ascontiguousarray(anomaly.transpose(*rest, "time", "latitude", "longitude")
                                 .values, dtype=np.float64)
        a = a.reshape(-1, *a.shape[-3:])
        aw = a * w[:, None]
        r = np.stack([num / den for num, den in _lagged_sums(aw, a, pairs)])  # (lead, rest)
        shape = [leads.size, *(anomaly.sizes[d] for d in rest)]
        fitted[name] = xr.DataArray(
            r.reshape(shape), dims=("prediction_timedelta", *rest),
            coords={"prediction_timedelta": leads, **{d: anomaly[d] for d in rest
                                                      if d in anomaly.coords}},
            attrs=one[name].attrs)
    return xr.Dataset(fitted)


def _lagged_sums(aw: np.ndarray, a: np.ndarray, pairs: list) -> list:
    """[(sum(aw[:, first] * a[:, later]), sum(aw[:, first] * a[:, first]))] per (first,
    later) of ``pairs``, each summed over all axes but the first (rest, time, lat, lon).

    The pairs lie within a few steps of each other (lead / time step), so every sum is a
    sum of entries of the band of the Gram matrix aw[t] . a[t + d], d = 0..D, which matrix
    products of blocks of times compute at once (BLAS-3, for all leads together): the
    one-dot-per-lead loop (``_dot``) read both arrays twice per lead and was bound by memory
    bandwidth. The sums then differ from the loop's in the last digits (another order).
    Falls back to the loop when the band is wide against the number of leads, and when a
    later step lies before its first (times not in order, or a negative lead)."""
    steps = a.shape[1]
    index = [(np.arange(steps)[first], np.arange(steps)[later]) for first, later in pairs]
    width = max((int((later - first).max()) for first, later in index if first.size),
                default=0)
    backwards = any(first.size and (later < first).any() for first, later in index)
    if backwards or width + 1 > max(64, 8 * len(pairs)):  # times out of order, or few leads
        return [(_dot(aw[:, first], a[:, later]), _dot(aw[:, first], a[:, first]))
                for first, later in pairs]
    rest = a.shape[0]
    x, y = aw.reshape(rest, steps, -1), a.reshape(rest, steps, -1)
    band = np.zeros((rest, steps, width + 1))  # band[:, t, d] = x[:, t] . y[:, t + d]
    block = 64
    rows, lags = np.meshgrid(np.arange(block), np.arange(width + 1), indexing="ij")
    for start in range(0, steps, block):
        stop, end = min(steps, start + block), min(steps, start + block + width)
        keep = (rows < stop - start) & (rows + lags < end - start)
        i, d = rows[keep], lags[keep]
        for k in range(rest):
            products = x[k, start:stop] @ y[k, start:end].T
            band[k, start + i, d] = products[i, i + d]
    return [(band[:, first, later - first].sum(axis=1), band[:, first, 0].sum(axis=1))
            for first, later in index]


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sum(x[i] * y[i]) for each i of the first axis: views, one BLAS dot each."""
    return np.array([np.dot(x[i].ravel(), y[i].ravel()) for i in range(x.shape[0])])


def _positions(times: np.ndarray, wanted: np.ndarray) -> slice | np.ndarray:
    """Where ``wanted`` lie in ``times``: a slice when they are consecutive."""
    at = pd.Index(times).get_indexer(wanted)
    if at.size and (np.diff(at) == 1).all():
        return slice(int(at[0]), int(at[-1]) + 1)
    return at


def damped_persistence(truth: xr.Dataset, climatology: xr.Dataset, coefficients: xr.Dataset,
                       init_times, lead_times) -> xr.Dataset:
    """Forecast store: clim(valid) + r(lead) (truth(init) - clim(init)).

    coefficients: from ``fit_damped_persistence``; must hold every lead asked for and every
    variable (and level) of ``truth``.
    """
    leads = _leads(lead_times)
    missing_leads = np.setdiff1d(leads.values, coefficients["prediction_timedelta"].values)
    if missing_leads.size:
        raise ValueError(f"coefficients were not fitted for lead(s) "
                         f"{[str(pd.Timedelta(x)) for x in missing_leads]}")
    missing = [v for v in truth.data_vars if v not in coefficients.data_vars]
    if missing:
        raise ValueError(f"coefficients are missing variables {missing}")
    initial = _at_times(truth, init_times, "truth")
    initial_anomaly = initial - _clim_on(climatology, initial, initial["time"])
    valid = _valid_times(init_times, lead_times)
    r = coefficients[list(truth.data_vars)].sel(prediction_timedelta=leads.values)
    forecast = _clim_on(climatology, truth, valid) + r * initial_anomaly
    return _as_store(forecast)


# --------------------------------------------------------------------------- helpers


def _clim_on(climatology: xr.Dataset, like: xr.Dataset, times: xr.DataArray) -> xr.Dataset:
    """Climatology at ``times`` on ``like``'s variables, levels and latitude/longitude order."""
    missing = [v for v in like.data_vars if v not in climatology.data_vars]
    if missing:
        raise ValueError(f"climatology is missing variables {missing}")
    clim = climatology_at(climatology[list(like.data_vars)], times)  # then levels: no copy
    if "level" in like.dims:                                        # of the whole climatology
        clim = clim.sel(level=like["level"].values)
    clim.attrs = {}
    return align_grid(like, clim, labels=("truth", "climatology"))


def _at_times(truth: xr.Dataset, times, what: str) -> xr.Dataset:
    times = pd.DatetimeIndex(np.atleast_1d(np.asarray(times)))
    missing = times[~times.isin(pd.DatetimeIndex(truth["time"].values))]
    if len(missing):
        raise ValueError(f"{what} has no data at init time(s) {[str(t) for t in missing[:5]]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    return truth.sel(time=times.values)


def _leads(lead_times) -> pd.Index:
    leads = pd.to_timedelta(np.atleast_1d(np.asarray(lead_times)))
    return pd.Index(leads, name="prediction_timedelta")


def _valid_times(init_times, lead_times) -> xr.DataArray:
    """(time, prediction_timedelta) of init + lead, with both as coordinates."""
    inits = pd.DatetimeIndex(np.atleast_1d(np.asarray(init_times)))
    init = xr.DataArray(inits, dims="time", coords={"time": inits})
    leads = _leads(lead_times)
    lead = xr.DataArray(leads, dims="prediction_timedelta", coords={"prediction_timedelta": leads})
    return init + lead


def _as_store(ds: xr.Dataset) -> xr.Dataset:
    """Transpose to the forecast-store dim order (dims a variable lacks are skipped)."""
    return ds.transpose(*[d for d in STORE_DIMS if d in ds.dims], ...)
