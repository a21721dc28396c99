"""`geoformer evaluate`: a forecast store and the truth -> a tidy score table.

The model's forecast is scored next to the reference forecasts (persistence, climatology,
damped persistence fitted on a training period) by the same metric code.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .climatology import climatology_and_last_steps, compute_climatology
from .references import (
    _at_times,
    climatology_forecast,
    damped_persistence,
    fit_damped_persistence,
    persistence,
)
from .schema import SchemaError, open_dataset, standardize
from .scores import check_valid_times, score_table

__all__ = ["REFERENCES", "evaluate", "open_forecast"]

REFERENCES = ("persistence", "climatology", "damped_persistence")
#: initial times scored at a time: memory holds this many, times the truth of 10 days or so
INIT_BLOCK = 16


def _open(data: xr.Dataset | str | Path) -> xr.Dataset:
    return open_dataset(data) if isinstance(data, (str, Path)) else standardize(data)


def open_forecast(forecast: xr.Dataset | str | Path) -> xr.Dataset:
    """A forecast store (zarr or netCDF, as ``geoformer forecast`` writes it), lazily; a
    missing or unreadable file is a SchemaError naming it."""
    if not isinstance(forecast, (str, Path)):
        return forecast
    path = str(forecast)
    if not Path(path).exists():
        raise SchemaError(f"no such forecast store: {path}")
    engine = "zarr" if path.rstrip("/").endswith(".zarr") or Path(path).is_dir() else None
    try:
        # lazily indexed without dask: score_table reads one block at a time and loads it,
        # and dask's graph per block cost a tenth of evaluate's time; an ensemble keeps
        # dask, whose float32 sums over members score_table keeps chunk by chunk (persist)
        ds = xr.open_dataset(path, engine=engine, chunks=None)
        if engine and "number" in ds.dims:
            ds.close()
            ds = xr.open_dataset(path, engine=engine, chunks={})
        return ds
    except Exception as err:  # each backend has its own errors for a file that is not one
        raise SchemaError(f"could not open {path} as a forecast store (expected zarr or "
                          f"netCDF): {' '.join(str(err).split())}") from err


def _check_finite(truth: xr.Dataset, times: pd.DatetimeIndex, source: str) -> None:
    """NaN or inf in the truth at a scored time would give empty scores (persistence starts
    from the initial times): name the variable and the first such time."""
    for name in truth.data_vars:
        bad = np.concatenate([  # a few hundred times at a time: the truth is never all read
            (~np.isfinite(da)).any([d for d in da.dims if d != "time"]).values
            for da in (truth[name].sel(time=times[i:i + 256]) for i in range(0, len(times), 256))
        ]) if len(times) else np.zeros(0, bool)
        if bad.any():
            raise SchemaError(f"{source}: variable {name!r} has NaN or infinite values at "
                              f"{bad.sum()} scored time(s), the first {pd.Timestamp(times[bad][0])}"
                              "; expected finite values at every initial and valid time")


def _check_no_overlap(inits, leads: pd.TimedeltaIndex, train: slice) -> None:
    """Scoring times inside the training period would leak into the references' fit."""
    start, stop = pd.Timestamp(train.start), pd.Timestamp(train.stop)
    times = pd.DatetimeIndex(inits)
    valid = pd.DatetimeIndex([t + lead for t in times for lead in leads])
    inside = [t for t in times.union(valid) if start <= t <= stop]
    if inside:
        raise ValueError(f"{len(inside)} initial or valid time(s) of the forecast (first "
                         f"{inside[0]}) lie in the training period {start} .. {stop}: the "
                         "climatology and damped persistence would be fitted on scored data")


def evaluate(forecast: xr.Dataset | str | Path, truth: xr.Dataset | str | Path,
             climatology: xr.Dataset | str | Path | None = None,
             references: Sequence[str] = REFERENCES,
             train_period: Sequence[str] | None = None, climatology_kind: str = "dayofyear_hour",
             regions: Sequence[str] = ("global",), max_fit_times: int | None = 730,
             spectra: bool = False, allow_missing_valid_times: bool = False,
             notes: list[str] | None = None, init_block: int | None = INIT_BLOCK
             ) -> pd.DataFrame:
    """Score the forecast and the reference forecasts against the truth.

    The climatology (for ACC and the climatology / damped persistence references) is read
    from ``climatology`` or computed from the truth over ``train_period``. Damped
    persistence is fitted on ``train_period`` only: its last ``max_fit_times`` steps (None:
    all), which bounds the time and memory of the fit. An ensemble forecast (dim ``number``) is
    scored through its ensemble mean, plus the probabilistic rows of ``score_table``
    (spread, spread-skill, CRPS, rank histogram). spectra: add the zonal energy spectra of
    each forecast and of the truth (``score_table``). Columns: forecast, variable, level,
    lead_time_hours, metric, value, region.

    A truth that lacks the valid time of some (init, lead) pair is refused unless
    ``allow_missing_valid_times`` (then ``notes`` says per lead how many init times were
    scored); NaN or inf in the truth at a scored time is refused.

    Streamed: the forecast is read, and the reference forecasts made, ``init_block``
    initial times and one lead at a time (``score_table``), so memory does not grow with
    the number of initial times; None scores all of them at once (the same numbers).
    """
    unknown = sorted(set(references) - set(REFERENCES))
    if unknown:
        raise ValueError(f"unknown reference forecast(s) {unknown}; choose from {REFERENCES}")
    named = str(forecast) if isinstance(forecast, (str, Path)) else "the forecast"
    source = str(truth) if isinstance(truth, (str, Path)) else "the truth"
    fc = open_forecast(forecast)
    for dim in ("time", "prediction_timedelta"):
        if dim not in fc.dims:
            raise SchemaError(f"{named} has no {dim!r} dim (dims {list(fc.dims)}); "
                              "expected a forecast store (time, prediction_timedelta, ...)")
    fc = fc.drop_vars([c for c in ("valid_time",) if c in fc.coords])
    truth = _open(truth)
    variables = [v for v in fc.data_vars]
    missing = [v for v in variables if v not in truth.data_vars]
    if missing:
        raise SchemaError(f"{source} lacks the forecast variable(s) {missing}")
    truth = truth[variables]
    if "level" in fc.dims:
        truth = truth.sel(level=fc["level"].values)
    check_valid_times(fc, truth["time"], allow_missing_valid_times, truth=source)
    scored = pd.DatetimeIndex((fc["time"] + fc["prediction_timedelta"]).values.ravel())
    if {"persistence", "damped_persistence"} & set(references):  # they start from the inits
        scored = scored.union(pd.DatetimeIndex(fc["time"].values))
    _check_finite(truth, scored.intersection(pd.DatetimeIndex(truth["time"].values)), source)
    needs_clim = bool({"climatology", "damped_persistence"} & set(references))
    train = slice(*train_period) if train_period else None
    fit_truth = None  # damped persistence's training data, when read with the climatology
    if climatology is not None:
        clim = _open(climatology) if isinstance(climatology, (str, Path)) else climatology
    elif needs_clim or train is not None:
        if train is None:
            raise ValueError("a train_period (or a climatology) is needed for the climatology "
                             "and damped persistence references and for ACC")
        # computed, not loaded first: a dask truth (years of data) is reduced chunk by chunk
        train_truth = truth.sel(time=train)
        steps = train_truth.sizes.get("time", 0)
        fit_steps = steps if max_fit_times is None else min(max_fit_times, steps)
        if "damped_persistence" in references and fit_steps > 0:
            # the fit's steps copied out as the climatology reads them: read once, not twice
            clim, fit_truth = climatology_and_last_steps(train_truth, fit_steps,
                                                         kind=climatology_kind)
        else:
            clim = compute_climatology(train_truth, kind=climatology_kind).compute()
    else:
        clim = None
    inits, leads = fc["time"].values, pd.to_timedelta(fc["prediction_timedelta"].values)
    if train is not None:
        _check_no_overlap(inits, leads, train)
    # the references are made from the truth block by block, inside score_table
    forecasts: dict = {"model": fc}
    if {"persistence", "damped_persistence"} & set(references):
        _at_times(truth, inits, "truth")  # they start from the initial times: all there?
    if "persistence" in references:
        forecasts["persistence"] = persistence
    if "climatology" in references:
        forecasts["climatology"] = partial(_climatology_reference, clim)
    if "damped_persistence" in references:
        if train is None:
            raise ValueError("damped persistence is fitted on a training period: give one")
        if fit_truth is None:  # the most recent max_fit_times steps bound the cost
            fit_truth = truth.sel(time=train)
            if max_fit_times is not None:
                fit_truth = fit_truth.isel(time=slice(-max_fit_times, None))
        coefficients = fit_damped_persistence(fit_truth.load(), clim, leads)
        forecasts["damped_persistence"] = partial(_damped_reference, clim, coefficients)
    return score_table(forecasts, truth, clim, regions=regions, spectra=spectra,
                       allow_missing_valid_times=allow_missing_valid_times, notes=notes,
                       init_block=init_block)


def _climatology_reference(clim: xr.Dataset, truth: xr.Dataset, inits, leads) -> xr.Dataset:
    return climatology_forecast(clim, inits, leads, like=truth)


def _damped_reference(clim: xr.Dataset, coefficients: xr.Dataset, truth: xr.Dataset, inits,
                      leads) -> xr.Dataset:
    return damped_persistence(truth, clim, coefficients, inits, leads)
