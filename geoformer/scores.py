"""The tidy score table: forecast stores against an analysis, one row per number.

:func:`score_table` aligns each forecast to the truth at its valid times (init + lead),
skips the init times whose valid time the truth lacks, and scores every variable, level,
lead and region with the functions of ``metrics.py`` (RMSE in both averaging orders, ACC
with a climatology) and, for an ensemble, those of ``probabilistic.py``. Columns
:data:`SCORE_COLUMNS`; NaN in the truth is an error, NaN in a forecast propagates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .area import SPATIAL_DIMS, region_mask
from .metrics import (
    _require_dims,
    _require_variables,
    _sqrt_of_time_mean,
    _time_mean_of_sqrt,
    acc,
    align_grid,
    check_no_nan,
    mse_spatial,
    valid_time,
)

__all__ = ["SCORE_COLUMNS", "score_table"]

SCORE_COLUMNS = ["forecast", "variable", "level", "lead_time_hours", "metric", "value", "region"]


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
