"""Deterministic forecast scores, the WeatherBench 2 way.

Everything here is a pure function of xarray objects, reducing by dim name. Dims follow the
forecast-store contract: ``time`` (initialisation time), ``prediction_timedelta`` (lead time),
``level`` (hPa), ``latitude`` (degrees_north, either order, poles optional) and ``longitude``
(degrees_east). A truth "aligned to a forecast" carries the same ``time`` (init) and
``prediction_timedelta`` labels as the forecast and holds the analysis at the valid time
``time + prediction_timedelta``; ``score_table`` does that alignment for you.

Averaging order is part of each name, because it changes the number:

* ``rmse_time_mean_then_sqrt``: sqrt(mean_t MSE_t), WeatherBench 2's headline RMSE.
* ``rmse_per_sample_then_time_mean``: mean_t sqrt(MSE_t), the convention of Pangu's papers.
* ``acc``: ACC per valid time, then the mean over initialisation times (as WeatherBench 2).

where MSE_t is the area-weighted spatial mean of the squared error of one forecast. The
climatology that ACC needs is made in ``climatology.py``.

NaN policy: NaN in a forecast propagates into its score (a broken forecast must not look
good because its NaN cells were skipped); NaN in the truth is an error in ``score_table``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .climatology import climatology_at

__all__ = [
    "REGIONS",
    "SCORE_COLUMNS",
    "latitude_weights",
    "region_mask",
    "select_region",
    "spatial_mean",
    "mse_spatial",
    "rmse_time_mean_then_sqrt",
    "rmse_per_sample_then_time_mean",
    "acc_spatial",
    "acc",
    "valid_time",
    "align_grid",
    "check_no_nan",
    "score_table",
]

Data = xr.DataArray | xr.Dataset

SPATIAL_DIMS = ("latitude", "longitude")

# Latitude bounds in degrees_north, both ends inclusive (as WeatherBench 2's slices), so a
# row at exactly +-20 deg belongs to the tropics and to that hemisphere's extratropics.
REGIONS: dict[str, tuple[float, float]] = {
    "global": (-90.0, 90.0),
    "tropics": (-20.0, 20.0),
    "extratropics_north": (20.0, 90.0),
    "extratropics_south": (-90.0, -20.0),
}

SCORE_COLUMNS = ["forecast", "variable", "level", "lead_time_hours", "metric", "value", "region"]


# --------------------------------------------------------------------------- area weights


def latitude_weights(latitude: xr.DataArray) -> xr.DataArray:
    """Normalised cell areas, (latitude,), mean 1, aligned to the input order.

    On latitudes sorted ascending, each row's weight is sin(upper) - sin(lower), with the
    bounds at the midpoints between neighbouring rows. The outer bounds lie half a spacing
    beyond the outer rows, clipped to +-90 deg: for any global grid, with or without poles,
    that is +-90 deg exactly as in WeatherBench 2, and a regional crop keeps sensible edge
    rows. Pole rows get the area of their polar cap, not the zero weight of cos(lat).

    latitude: (latitude,) in degrees_north, any order, no duplicates.
    """
    lat = np.asarray(latitude.values, dtype=np.float64)
    if lat.ndim != 1 or lat.size == 0:
        raise ValueError(f"latitude must be a non-empty 1-D coordinate, got shape {lat.shape}")
    if np.abs(lat).max() > 90.0:
        raise ValueError(f"latitude must be in degrees within [-90, 90], got max |lat| = "
                         f"{np.abs(lat).max()}")
    order = np.argsort(lat)
    ascending = lat[order]
    if np.any(np.diff(ascending) == 0):
        raise ValueError("latitude has duplicate values; cell areas are undefined")
    area = _cell_areas_ascending(ascending)
    weights = np.empty_like(area)
    weights[order] = area / area.mean()  # back to the caller's order
    return xr.DataArray(weights, dims=latitude.dims, coords={latitude.dims[0]: latitude.values},
                        name="latitude_weights")


def _cell_areas_ascending(lat: np.ndarray) -> np.ndarray:
    """sin(upper) - sin(lower) per row of ascending latitudes (degrees), unnormalised."""
    if lat.size == 1:
        return np.ones(1)
    inner = (lat[:-1] + lat[1:]) / 2
    outer_low = lat[0] - (lat[1] - lat[0]) / 2
    outer_high = lat[-1] + (lat[-1] - lat[-2]) / 2
    bounds = np.clip(np.concatenate([[outer_low], inner, [outer_high]]), -90.0, 90.0)
    sin_bounds = np.sin(np.deg2rad(bounds))
    return sin_bounds[1:] - sin_bounds[:-1]


# --------------------------------------------------------------------------- regions


def region_mask(latitude: xr.DataArray, region: str = "global") -> xr.DataArray:
    """Boolean (latitude,): True for rows inside ``region`` (a key of ``REGIONS``)."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {sorted(REGIONS)}")
    low, high = REGIONS[region]
    keep = (latitude >= low) & (latitude <= high)
    if not bool(keep.any()):
        raise ValueError(f"region {region!r} ({low}..{high} deg N) contains no latitude of this "
                         f"grid (latitude spans {float(latitude.min())}..{float(latitude.max())})")
    return keep


def select_region(x: Data, region: str = "global") -> tuple[Data, xr.DataArray]:
    """(x restricted to the region's rows, their latitude weights (latitude,)).

    The weights are the whole grid's cell areas restricted to the region, so a mean over
    them is renormalised over the region exactly as WeatherBench 2 does; recomputing cell
    areas on the cropped grid would instead change the edge rows.
    """
    weights = latitude_weights(x["latitude"])
    keep = region_mask(x["latitude"], region).values
    return x.isel(latitude=keep), weights.isel(latitude=keep)


def spatial_mean(x: Data, region: str = "global") -> Data:
    """Area-weighted mean over (latitude, longitude) within ``region``; other dims kept.

    NaN propagates (skipna=False) so that a field with holes cannot score as if complete.
    """
    _require_dims(x, SPATIAL_DIMS, "field to average")
    x, weights = select_region(x, region)
    total = (x * weights).sum(SPATIAL_DIMS, skipna=False)
    return total / (weights.sum() * x.sizes["longitude"])


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
                region: str = "global") -> Data:
    """Uncentred anomaly correlation per sample (valid time), dimensionless.

    mean_w(f' o') / sqrt(mean_w(f'^2) mean_w(o'^2)), with f', o' the forecast and truth
    minus the climatology at each sample's valid time (``valid_time(forecast)``).
    climatology: as made by ``climatology.compute_climatology``. Returns the input dims
    without (latitude, longitude). A sample whose anomaly is zero everywhere gives NaN (0 / 0).
    """
    forecast, truth = _paired(forecast, truth)
    clim = _climatology_like(climatology, forecast)
    f_anom = forecast - clim
    o_anom = truth - clim
    covariance = spatial_mean(f_anom * o_anom, region)
    return covariance / np.sqrt(spatial_mean(f_anom**2, region) * spatial_mean(o_anom**2, region))


def _climatology_like(climatology: xr.Dataset, forecast: Data) -> Data:
    """The climatology at the forecast's valid times, on its variables, levels and grid."""
    names = list(forecast.data_vars) if isinstance(forecast, xr.Dataset) else [forecast.name]
    clim = climatology[_require_variables(climatology, names, "climatology")]
    if "level" in forecast.dims:
        missing = np.setdiff1d(forecast["level"].values, clim["level"].values)
        if missing.size:
            raise ValueError(f"climatology lacks level(s) {missing.tolist()} hPa")
        clim = clim.sel(level=forecast["level"].values)
    clim = align_grid(forecast, climatology_at(clim, valid_time(forecast)),
                      labels=("forecast", "climatology"))
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
        other = other.sortby(name, ascending=not descending)
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


# --------------------------------------------------------------------------- score table


def score_table(forecasts: Mapping[str, xr.Dataset], truth: xr.Dataset,
                climatology: xr.Dataset | None = None, regions: Sequence[str] = ("global",),
                variables: Sequence[str] | None = None) -> pd.DataFrame:
    """Score forecast stores against an analysis, one row per number.

    forecasts: name -> forecast store (time, prediction_timedelta, [level], latitude,
        longitude). truth: analysis (time, [level], latitude, longitude) on the same grid
        (latitude order may differ). climatology: from ``climatology.compute_climatology``;
        adds "acc".
    variables: defaults to each forecast's data variables; all must be in the truth.

    Columns ``SCORE_COLUMNS``: forecast, variable, level (hPa as float, NaN for surface
    variables), lead_time_hours (float), metric ("rmse" = sqrt of time-mean MSE, the
    WeatherBench 2 headline; "rmse_per_sample" = time mean of per-sample RMSE, Pangu's; "acc"),
    value (units of the variable for RMSE), region (always present, last). A forecast with
    an ensemble dim ``number`` is scored by its member mean for these metrics and adds the
    rows of ``probabilistic.PROBABILISTIC_METRICS`` (ensemble_mean_rmse, spread,
    spread_skill, crps, crps_skill, crps_spread).

    For each lead, the init times whose valid time is not in the truth are skipped; it is an
    error if no (init, lead) pair of a forecast has its valid time in the truth.
    """
    for region in regions:
        region_mask(truth["latitude"], region)  # fail early on unknown or empty regions
    rows = []
    for name, forecast in forecasts.items():
        rows += _score_one(name, forecast, truth, climatology, regions, variables)
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _score_one(name: str, forecast: xr.Dataset, truth: xr.Dataset,
               climatology: xr.Dataset | None, regions: Sequence[str],
               variables: Sequence[str] | None) -> list[dict]:
    """Rows of ``score_table`` for one forecast store."""
    _require_dims(forecast, ("time", "prediction_timedelta", *SPATIAL_DIMS),
                  f"forecast {name!r}")
    if not np.issubdtype(forecast["prediction_timedelta"].dtype, np.timedelta64):
        raise ValueError(f"forecast {name!r}: prediction_timedelta must be timedelta64, got "
                         f"{forecast['prediction_timedelta'].dtype}")
    names = list(forecast.data_vars) if variables is None else list(variables)
    forecast = forecast[_require_variables(forecast, names, f"forecast {name!r}")]
    truth = align_grid(forecast, truth[_require_variables(truth, names, "truth")])
    truth = _select_levels(forecast, truth, name)
    pairs = _valid_pairs(forecast, truth["time"])
    if not pairs:
        vt = valid_time(forecast).values
        raise ValueError(
            f"forecast {name!r}: no valid time (init + lead) is in the truth; forecast valid "
            f"times span {vt.min()}..{vt.max()}, truth spans {truth['time'].values.min()}.."
            f"{truth['time'].values.max()}")
    needed = np.unique(np.concatenate([np.asarray(v) for _, _, v in pairs]))
    check_no_nan(truth.sel(time=needed), "truth")
    rows = []
    for lead, inits, valid in pairs:
        fc = forecast.sel(prediction_timedelta=lead, time=inits)
        tr = truth.sel(time=valid).assign_coords(time=fc["time"].values)
        tr = tr.assign_coords(prediction_timedelta=fc["prediction_timedelta"])
        hours = float(pd.Timedelta(lead) / pd.Timedelta(hours=1))
        # an ensemble's deterministic scores are those of its member mean
        members, fc = (fc, fc.mean("number", skipna=False)) if "number" in fc.dims else (None, fc)
        for region in regions:
            mse = mse_spatial(fc, tr, region).compute()  # once for both RMSE conventions
            scores = {"rmse": _sqrt_of_time_mean(mse, "time"),
                      "rmse_per_sample": _time_mean_of_sqrt(mse, "time")}
            if climatology is not None:
                scores["acc"] = acc(fc, tr, climatology, region)
            for metric, values in scores.items():
                rows += _rows(values.compute(), name, hours, metric, region)
            if members is not None:
                from .probabilistic import probabilistic_rows  # imports this module
                rows += probabilistic_rows(members, tr, name, hours, region)
    return rows


def _select_levels(forecast: xr.Dataset, truth: xr.Dataset, name: str) -> xr.Dataset:
    if "level" not in forecast.dims:
        return truth
    if "level" not in truth.dims:
        raise ValueError(f"forecast {name!r} has pressure levels but the truth has no level dim")
    missing = np.setdiff1d(forecast["level"].values, truth["level"].values)
    if missing.size:
        raise ValueError(f"truth lacks level(s) {missing.tolist()} hPa of forecast {name!r}; "
                         f"it has {truth['level'].values.tolist()}")
    return truth.sel(level=forecast["level"].values)


def _valid_pairs(forecast: xr.Dataset, truth_times: xr.DataArray) -> list[tuple]:
    """[(lead, init times, valid times)] for each lead with at least one valid time in truth."""
    available = truth_times.values
    pairs = []
    for lead in forecast["prediction_timedelta"].values:
        inits = forecast["time"].values
        valid = inits + lead
        keep = np.isin(valid, available)
        if keep.any():
            pairs.append((lead, inits[keep], valid[keep]))
    return pairs


def _rows(values: xr.Dataset, name: str, hours: float, metric: str, region: str) -> list[dict]:
    """Flatten a Dataset of scores with an optional level dim into table rows."""
    rows = []
    for variable, da in values.data_vars.items():
        levels = da["level"].values if "level" in da.dims else [np.nan]
        for level in levels:
            value = da.sel(level=level) if "level" in da.dims else da
            rows.append({"forecast": name, "variable": variable, "level": float(level),
                         "lead_time_hours": hours, "metric": metric, "value": float(value),
                         "region": region})
    return rows
