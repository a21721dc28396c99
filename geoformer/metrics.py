"""Deterministic forecast scores, the WeatherBench 2 way.

Everything here is a pure function of xarray objects, reducing by dim name. Dims follow the
forecast-store contract: ``time`` (initialisation time), ``prediction_timedelta`` (lead time),
``level`` (hPa), ``latitude`` (degrees_north, either order, poles optional) and ``longitude``
(degrees_east). A truth "aligned to a forecast" carries the same ``time`` (init) and
``prediction_timedelta`` labels as the forecast and holds the analysis at the valid time
``time + prediction_timedelta``; ``scores.score_table`` does that alignment for you.

Averaging order is part of each name, because it changes the number:

* ``rmse_time_mean_then_sqrt``: sqrt(mean_t MSE_t), WeatherBench 2's headline RMSE.
* ``rmse_per_sample_then_time_mean``: mean_t sqrt(MSE_t), the convention of Pangu's papers.
* ``acc``: ACC per valid time, then the mean over initialisation times (as WeatherBench 2).

where MSE_t is the area-weighted spatial mean of the squared error of one forecast. The
climatology that ACC needs is made in ``climatology.py``, the area weights and regions
in ``area.py``.

NaN policy: NaN in a forecast propagates into its score (a broken forecast must not look
good because its NaN cells were skipped); NaN in the truth is an error in
``scores.score_table``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import xarray as xr

from .area import SPATIAL_DIMS, select_region
from .climatology import climatology_at

__all__ = [
    "spatial_mean",
    "mse_spatial",
    "rmse_time_mean_then_sqrt",
    "rmse_per_sample_then_time_mean",
    "acc_spatial",
    "acc_truth_terms",
    "acc",
    "valid_time",
    "align_grid",
    "check_no_nan",
]

Data = xr.DataArray | xr.Dataset


# --------------------------------------------------------------------------- spatial mean


def spatial_mean(x: Data, region: str = "global") -> Data:
    """Area-weighted mean over (latitude, longitude) within ``region``; other dims kept.

    NaN propagates (skipna=False) so that a field with holes cannot score as if complete.
    """
    _require_dims(x, SPATIAL_DIMS, "field to average")
    x, weights = select_region(x, region)
    if isinstance(x, xr.Dataset):
        total = x.map(_weighted_sum, args=(weights,))
    else:
        total = _weighted_sum(x, weights)
    return total / (weights.sum() * x.sizes["longitude"])


def _weighted_sum(x: xr.DataArray, weights: xr.DataArray) -> xr.DataArray:
    """sum over (latitude, longitude) of x * weights, NaN propagating. For numpy data one
    matrix-vector product (BLAS): the product array and xarray's sum made this the main cost
    of scoring (about 15 x slower); the numbers differ in the last digits (another order)."""
    if x.chunks is not None or not set(SPATIAL_DIMS) <= set(x.dims) or x.dtype.kind != "f":
        return (x * weights).sum(SPATIAL_DIMS, skipna=False)
    x = x.transpose(..., *SPATIAL_DIMS)
    w = np.repeat(weights.values.astype(np.float64), x.sizes["longitude"])
    values = x.values.reshape(-1, w.size) @ w
    coords = {k: v for k, v in x.coords.items() if not set(v.dims) & set(SPATIAL_DIMS)}
    return xr.DataArray(values.reshape(x.shape[:-2]), dims=x.dims[:-2], coords=coords,
                        name=x.name)


# --------------------------------------------------------------------------- RMSE


def mse_spatial(forecast: Data, truth: Data, region: str = "global") -> Data:
    """Area-weighted spatial mean of the squared error, per sample.

    forecast, truth: same dims and coordinates, e.g. (time, [prediction_timedelta],
    [level], latitude, longitude), truth aligned to the forecast's valid times. Returns the
    input dims without (latitude, longitude), in squared units of the variable.
    """
    forecast, truth = _paired(forecast, truth)
    return spatial_mean((forecast - truth) ** 2, region)


def rmse_time_mean_then_sqrt(forecast: Data, truth: Data, region: str = "global",
                             time_dim: str = "time") -> Data:
    """WeatherBench 2's headline RMSE: sqrt(mean over ``time_dim`` of the spatial MSE).

    Returns the input dims without (time_dim, latitude, longitude), in the variable's units.
    """
    return _sqrt_of_time_mean(mse_spatial(forecast, truth, region), time_dim)


def rmse_per_sample_then_time_mean(forecast: Data, truth: Data, region: str = "global",
                                   time_dim: str = "time") -> Data:
    """Pangu's RMSE: mean over ``time_dim`` of each sample's sqrt(spatial MSE).

    Never larger than ``rmse_time_mean_then_sqrt`` (Jensen); equal when every sample has the
    same error. Returns the input dims without (time_dim, latitude, longitude).
    """
    return _time_mean_of_sqrt(mse_spatial(forecast, truth, region), time_dim)


def _sqrt_of_time_mean(mse: Data, time_dim: str) -> Data:
    return np.sqrt(mse.mean(time_dim, skipna=False))


def _time_mean_of_sqrt(mse: Data, time_dim: str) -> Data:
    return np.sqrt(mse).mean(time_dim, skipna=False)


# --------------------------------------------------------------------------- ACC


def acc_spatial(forecast: Data, truth: Data, climatology: xr.Dataset,
                region: str = "global", truth_terms: tuple | None = None) -> Data:
    """Uncentred anomaly correlation per sample (valid time), dimensionless.

    mean_w(f' o') / sqrt(mean_w(f'^2) mean_w(o'^2)), with f', o' the forecast and truth
    minus the climatology at each sample's valid time (``valid_time(forecast)``).
    climatology: as made by ``climatology.compute_climatology``. Returns the input dims
    without (latitude, longitude). A sample whose anomaly is zero everywhere gives NaN (0 / 0).
    truth_terms: ``acc_truth_terms(truth, climatology, forecast, region)`` when several
    forecasts of the same times, variables and grid are scored against one truth (then
    computed once; the numbers are the same).
    """
    forecast, truth = _paired(forecast, truth)
    if truth_terms is not None:  # made for these samples and levels? (no silent inner join)
        _paired(forecast, truth_terms[1])
    clim, o_anom, o_power = (truth_terms if truth_terms is not None
                             else acc_truth_terms(truth, climatology, forecast, region))
    f_anom = forecast - clim
    covariance = spatial_mean(f_anom * o_anom, region)
    return covariance / np.sqrt(spatial_mean(f_anom**2, region) * o_power)


def acc_truth_terms(truth: Data, climatology: xr.Dataset, forecast: Data,
                    region: str = "global") -> tuple[Data, Data, Data]:
    """What ``acc_spatial`` computes from the truth alone: the climatology at the forecast's
    valid times (on its variables, levels and grid), the truth's anomaly o' and mean_w(o'^2).
    truth: aligned to ``forecast`` (as ``acc_spatial`` takes it)."""
    forecast, truth = _paired(forecast, truth)
    clim = _climatology_like(climatology, forecast)
    o_anom = truth - clim
    return clim, o_anom, spatial_mean(o_anom**2, region)


def _climatology_like(climatology: xr.Dataset, forecast: Data) -> Data:
    """The climatology at the forecast's valid times, on its variables, levels and grid."""
    names = list(forecast.data_vars) if isinstance(forecast, xr.Dataset) else [forecast.name]
    clim = climatology[_require_variables(climatology, names, "climatology")]
    if "level" in forecast.dims:
        missing = np.setdiff1d(forecast["level"].values, clim["level"].values)
        if missing.size:
            raise ValueError(f"climatology lacks level(s) {missing.tolist()} hPa")
    # the valid times first: picking levels first would copy the whole climatology
    clim = climatology_at(clim, valid_time(forecast))
    if "level" in forecast.dims:
        clim = clim.sel(level=forecast["level"].values)
    clim = align_grid(forecast, clim, labels=("forecast", "climatology"))
    return clim if isinstance(forecast, xr.Dataset) else clim[forecast.name]


def acc(forecast: Data, truth: Data, climatology: xr.Dataset, region: str = "global",
        time_dim: str = "time") -> Data:
    """ACC per valid time (``acc_spatial``), then the mean over ``time_dim`` (init times)."""
    return acc_spatial(forecast, truth, climatology, region).mean(time_dim, skipna=False)


# --------------------------------------------------------------------------- validation


def valid_time(forecast: Data) -> xr.DataArray:
    """time + prediction_timedelta (either may be scalar coords); just time if no lead."""
    if "prediction_timedelta" in forecast.coords:
        return forecast["time"] + forecast["prediction_timedelta"]
    return forecast["time"]


def align_grid(reference: Data, other: Data,
               labels: tuple[str, str] = ("forecast", "truth")) -> Data:
    """``other`` on ``reference``'s latitude/longitude, in its order and exact values.

    Raises ValueError naming the coordinate (and the two objects by ``labels``) when the
    two grids hold different points
    (compared to 1e-6 deg after sorting, so float32 vs float64 coordinates still match).
    Without this, xarray's inner join would silently score only the overlap.
    """
    for name in SPATIAL_DIMS:
        want = np.asarray(reference[name].values, dtype=np.float64)
        have = np.asarray(other[name].values, dtype=np.float64)
        if want.shape != have.shape or not np.allclose(np.sort(want), np.sort(have), atol=1e-6):
            raise ValueError(
                f"mismatched grids: {name} differs between {labels[0]} and {labels[1]}: "
                f"{labels[0]} has {want.size} values ({_span(want)}), {labels[1]} has "
                f"{have.size} values ({_span(have)})")
        if want.size > 1 and not (np.all(np.diff(want) > 0) or np.all(np.diff(want) < 0)):
            raise ValueError(f"{labels[0]} {name} must be monotonic, got {want.tolist()}")
        descending = want.size > 1 and want[1] < want[0]
        step = np.diff(have)
        if not (np.all(step < 0) if descending else np.all(step > 0)):
            other = other.sortby(name, ascending=not descending)  # a copy: only when needed
        other = other.assign_coords({name: reference[name].values})
    return other


def check_no_nan(ds: xr.Dataset, what: str) -> None:
    """Raise ValueError naming each variable of ``ds`` that holds NaN."""
    bad = [name for name, da in ds.data_vars.items() if bool(da.isnull().any())]
    if bad:
        raise ValueError(f"{what} contains NaN in {bad}; fill or drop those times/cells first")


def _span(values: np.ndarray) -> str:
    return f"{values.min():g}..{values.max():g}" if values.size else "empty"


def _require_dims(x: Data, dims: Iterable[str], what: str) -> None:
    missing = [d for d in dims if d not in x.dims]
    if missing:
        raise ValueError(f"{what} is missing dims {missing}; it has dims {list(x.dims)}")


def _require_variables(ds: xr.Dataset, names: Sequence, what: str) -> list:
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise ValueError(f"{what} is missing variables {missing}; it has "
                         f"{sorted(map(str, ds.data_vars))}")
    return list(names)


def _paired(forecast: Data, truth: Data) -> tuple[Data, Data]:
    """Forecast and truth with the same variables, grid and (exactly equal) other coords."""
    if isinstance(forecast, xr.Dataset) != isinstance(truth, xr.Dataset):
        raise TypeError("forecast and truth must both be Datasets or both be DataArrays")
    if isinstance(forecast, xr.Dataset):
        truth = truth[_require_variables(truth, list(forecast.data_vars), "truth")]
    truth = align_grid(forecast, truth)
    try:
        # exact: a silent inner join on time or level would score a subset without saying so
        return xr.align(forecast, truth, join="exact")
    except ValueError as err:
        raise ValueError(f"forecast and truth coordinates differ outside the grid "
                         f"(time, prediction_timedelta, level must match exactly): {err}") from err
