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
        climatology = align_grid(like, climatology[list(like.data_vars)],
                                 labels=("like", "climatology"))
    forecast = climatology_at(climatology, valid)
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
    anomaly = train_truth - _clim_on(climatology, train_truth, train_truth["time"])
    times = anomaly["time"].values
    per_lead = []
    leads = _leads(lead_times)
    for lead in leads.values:
        later = times + lead
        has_pair = np.isin(later, times)
        if not has_pair.any():
            raise ValueError(f"no training pair for lead {pd.Timedelta(lead)}: no time t0 with "
                             f"t0 + lead also in the training data")
        a0 = anomaly.sel(time=times[has_pair])
        at = anomaly.sel(time=later[has_pair]).assign_coords(time=a0["time"])
        dims = ["time", "latitude", "longitude"]
        per_lead.append((weights * a0 * at).sum(dims) / (weights * a0 * a0).sum(dims))
    return xr.concat(per_lead, dim=leads)


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
    clim = climatology[list(like.data_vars)]
    if "level" in like.dims:
        clim = clim.sel(level=like["level"].values)
    clim = climatology_at(clim, times)
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
