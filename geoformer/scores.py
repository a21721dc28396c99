"""The tidy score table: forecast stores against an analysis, one row per number.

:func:`score_table` aligns each forecast to the truth at its valid times (init + lead),
refuses a truth that lacks some (unless told to skip those init times), and scores every
variable, level, lead and region with the functions of ``metrics.py`` (RMSE in both
averaging orders, ACC with a climatology) and, for an ensemble, those of
``probabilistic.py``. Columns :data:`SCORE_COLUMNS`; NaN in the truth is an error, NaN in a
forecast propagates.
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

__all__ = ["SCORE_COLUMNS", "score_table", "check_valid_times"]

SCORE_COLUMNS = ["forecast", "variable", "level", "lead_time_hours", "metric", "value", "region"]


def score_table(forecasts: Mapping[str, xr.Dataset], truth: xr.Dataset,
                climatology: xr.Dataset | None = None, regions: Sequence[str] = ("global",),
                variables: Sequence[str] | None = None, spectra: bool = False,
                allow_missing_valid_times: bool = False, notes: list[str] | None = None
                ) -> pd.DataFrame:
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
    spread_skill, crps, crps_skill, crps_spread) and ``rank_histogram_{r}`` for r = 0..M.
    spectra: also the zonal energy spectrum of each forecast (an ensemble's member mean) and of
    the truth at the same valid times (forecast "truth"), by lead: metric
    ``zonal_spectrum_{k}``, region "30-60N" (``probabilistic.spectrum_rows``).

    A truth that lacks the valid time of some (init, lead) pair is an error (each lead would
    average a different set of init times) unless ``allow_missing_valid_times``: then those
    pairs are skipped and ``notes`` gets, per lead, how many init times were scored
    (:func:`check_valid_times`). No pair in the truth at all is always an error.
    """
    for region in regions:
        region_mask(truth["latitude"], region)  # fail early on unknown or empty regions
    rows = []
    for name, forecast in forecasts.items():
        check_valid_times(forecast, truth["time"], allow_missing_valid_times, notes,
                          what=f"forecast {name!r}")
        rows += _score_one(name, forecast, truth, climatology, regions, variables, spectra)
    if spectra and forecasts:
        rows += _truth_spectra(next(iter(forecasts.values())), truth, variables)
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _truth_spectra(forecast: xr.Dataset, truth: xr.Dataset,
                   variables: Sequence[str] | None) -> list[dict]:
    """The truth's spectrum rows at the valid times of each lead of ``forecast``."""
    from .probabilistic import spectrum_rows

    names = list(forecast.data_vars) if variables is None else list(variables)
    truth = _select_levels(forecast, align_grid(forecast, truth[names]), "truth")
    rows = []
    for lead, _, valid in _valid_pairs(forecast, truth["time"]):
        hours = float(pd.Timedelta(lead) / pd.Timedelta(hours=1))
        rows += spectrum_rows(truth.sel(time=valid), "truth", hours)
    return rows


def _score_one(name: str, forecast: xr.Dataset, truth: xr.Dataset,
               climatology: xr.Dataset | None, regions: Sequence[str],
               variables: Sequence[str] | None, spectra: bool = False) -> list[dict]:
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
        if spectra:
            from .probabilistic import spectrum_rows
            rows += spectrum_rows(fc, name, hours)
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


def check_valid_times(forecast: xr.Dataset, truth_times: xr.DataArray, allow: bool = False,
                      notes: list[str] | None = None, what: str = "the forecast",
                      truth: str = "the truth") -> None:
    """Refuse a truth that lacks the valid time (init + lead) of some pair of ``forecast``,
    naming how many and the first; with ``allow``, add to ``notes`` per lead how many init
    times remain to be scored."""
    if not {"time", "prediction_timedelta"} <= set(forecast.dims) or not np.issubdtype(
            forecast["prediction_timedelta"].dtype, np.timedelta64):
        return  # _score_one says what is wrong with the forecast
    inits = forecast["time"].values
    missing = []
    for lead in forecast["prediction_timedelta"].values:
        lacking = ~np.isin(inits + lead, truth_times.values)
        missing += [(init, lead) for init in inits[lacking]]
        hours = pd.Timedelta(lead) / pd.Timedelta(hours=1)
        note = (f"lead {hours:g} h: {int((~lacking).sum())} of {inits.size} initial times "
                f"scored ({truth} lacks the valid times of the others)")
        if allow and lacking.any() and notes is not None and note not in notes:
            notes.append(note)
    pairs = inits.size * forecast.sizes["prediction_timedelta"]
    if missing and len(missing) < pairs and not allow:  # none at all: _score_one says so
        init, lead = missing[0]
        raise ValueError(
            f"{truth} lacks the valid time of {len(missing)} of {pairs} (init, lead) pairs of "
            f"{what} (first {pd.Timestamp(init + lead)} = {pd.Timestamp(init)} + "
            f"{pd.Timedelta(lead) / pd.Timedelta(hours=1):g} h); "
            "each lead would average a different set of initial times: complete the truth "
            "or pass --allow-missing-valid-times (allow_missing_valid_times=True)")


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
