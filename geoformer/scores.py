"""The tidy score table: forecast stores against an analysis, one row per number.

:func:`score_table` aligns each forecast to the truth at its valid times (init + lead),
refuses a truth that lacks some (unless told to skip those init times), and scores every
variable, level, lead and region with the functions of ``metrics.py`` (RMSE in both
averaging orders, ACC with a climatology) and, for an ensemble, those of
``probabilistic.py``. Columns :data:`SCORE_COLUMNS`; NaN in the truth is an error, NaN in a
forecast propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .area import SPATIAL_DIMS, region_mask
from .blockmetrics import acc_of_block, acc_truth_of_block, block_weights, mse_of_block, numpy_block
from .metrics import (
    _climatology_like,
    _require_dims,
    _require_variables,
    _sqrt_of_time_mean,
    _time_mean_of_sqrt,
    acc_spatial,
    acc_truth_terms,
    align_grid,
    check_no_nan,
    mse_spatial,
    valid_time,
)

__all__ = ["SCORE_COLUMNS", "score_table", "check_valid_times"]

SCORE_COLUMNS = ["forecast", "variable", "level", "lead_time_hours", "metric", "value", "region"]


def score_table(forecasts: Mapping[str, xr.Dataset | Callable], truth: xr.Dataset,
                climatology: xr.Dataset | None = None, regions: Sequence[str] = ("global",),
                variables: Sequence[str] | None = None, spectra: bool = False,
                allow_missing_valid_times: bool = False, notes: list[str] | None = None,
                init_block: int | None = None) -> pd.DataFrame:
    """Score forecast stores against an analysis, one row per number.

    forecasts: name -> forecast store (time, prediction_timedelta, [level], latitude,
        longitude), or -> a function ``f(truth, init_times, lead_times)`` returning one (as
        ``references.persistence``): a forecast made from the truth, built for a block of
        initial times and one lead at a time from the truth at those times, on the initial
        and lead times of the first forecast (which must be a store). truth: analysis
        (time, [level], latitude, longitude) on the same grid (latitude order may differ).
        climatology: from ``climatology.compute_climatology``; adds "acc".
    variables: defaults to each forecast's data variables; all must be in the truth.
    init_block: score so many initial times at a time (None: all at once). What each
        metric averages over initial times (the MSE, the ACC, ... of each one) is kept
        from every block and averaged at the end, so the numbers are those of all at once
        while memory holds one block of the forecasts and of the truth.

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
    first = next(iter(forecasts.values()), None)
    if first is not None and not isinstance(first, xr.Dataset):
        raise TypeError("the first forecast must be a store (Dataset): the forecasts built "
                        "from the truth take its initial and lead times")
    groups: dict[tuple, tuple[xr.Dataset, list[str]]] = {}  # one pass over the truth each
    for name, forecast in forecasts.items():
        coords = forecast if isinstance(forecast, xr.Dataset) else first
        check_valid_times(coords, truth["time"], allow_missing_valid_times, notes,
                          what=f"forecast {name!r}")
        if isinstance(forecast, xr.Dataset):
            _check_forecast(name, forecast, truth, variables)
        key = (coords["time"].values.tobytes(), coords["prediction_timedelta"].values.tobytes())
        groups.setdefault(key, (coords, []))[1].append(name)
    samples: dict[tuple, list] = {}  # (name, lead, region, quantity) -> per-block Datasets
    for i, (coords, names) in enumerate(groups.values()):
        _score_group(coords, {n: forecasts[n] for n in names}, truth, climatology, regions,
                     variables, spectra, spectra and i == 0, init_block, samples)
    rows = []
    for name, forecast in forecasts.items():
        coords = forecast if isinstance(forecast, xr.Dataset) else first
        rows += _rows_of(samples, name, coords, regions, spectra)
    if spectra and first is not None:
        rows += _rows_of(samples, "truth", first, (), spectra)
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _check_forecast(name: str, forecast: xr.Dataset, truth: xr.Dataset,
                    variables: Sequence[str] | None) -> None:
    """What ``score_table`` refuses in a forecast store, before any number is computed."""
    _require_dims(forecast, ("time", "prediction_timedelta", *SPATIAL_DIMS),
                  f"forecast {name!r}")
    if not np.issubdtype(forecast["prediction_timedelta"].dtype, np.timedelta64):
        raise ValueError(f"forecast {name!r}: prediction_timedelta must be timedelta64, got "
                         f"{forecast['prediction_timedelta'].dtype}")
    names = list(forecast.data_vars) if variables is None else list(variables)
    forecast = forecast[_require_variables(forecast, names, f"forecast {name!r}")]
    truth = align_grid(forecast, truth[_require_variables(truth, names, "truth")])
    truth = _select_levels(forecast, truth, name)
    if not _valid_pairs(forecast, truth["time"]):
        vt = valid_time(forecast).values
        raise ValueError(
            f"forecast {name!r}: no valid time (init + lead) is in the truth; forecast valid "
            f"times span {vt.min()}..{vt.max()}, truth spans {truth['time'].values.min()}.."
            f"{truth['time'].values.max()}")


def _score_group(coords: xr.Dataset, forecasts: Mapping[str, xr.Dataset | Callable],
                 truth: xr.Dataset, climatology: xr.Dataset | None, regions: Sequence[str],
                 variables: Sequence[str] | None, spectra: bool, truth_spectra: bool,
                 init_block: int | None, samples: dict) -> None:
    """Add to ``samples`` the per-(init, lead) quantities of the forecasts that share the
    initial and lead times of ``coords``, and which pairs the truth has (``(name,
    "scored")``), a block of initial times at a time, and within it as many leads at a time
    as ``VALUES_AT_A_TIME`` allows. The block loop is written out, not left to dask: the
    reference forecasts are made by indexing a climatology in memory, which dask would not
    split by initial time, and the truth at a block's times is read once for every forecast."""
    inits, leads = coords["time"].values, coords["prediction_timedelta"].values
    available = truth["time"].values
    names = list(coords.data_vars) if variables is None else list(variables)
    for other in forecasts.values():
        if isinstance(other, xr.Dataset) and variables is None:
            names += [v for v in other.data_vars if v not in names]
    per_pair = sum(int(np.prod([n for d, n in da.sizes.items() if d not in (  # values of
        "time", "prediction_timedelta")])) for da in coords.data_vars.values())  # one pair
    rngs: dict[tuple, np.random.Generator] = {}  # ties of rank histograms: one draw sequence
    size = max(1, inits.size if not init_block else int(init_block))
    for start in range(0, inits.size, size):
        block = inits[start:start + size]
        valid = block[:, None] + leads[None, :]
        scored = np.isin(valid, available)  # (init, lead); the others are dropped at the end
        if not scored.any():
            continue
        for name in [*forecasts, *(["truth"] if truth_spectra else [])]:
            samples.setdefault((name, "scored"), []).append(scored)
        needed = np.unique(valid[scored])
        block_truth = truth[names].sel(time=np.union1d(needed, block[np.isin(block, available)]))
        block_truth = block_truth.load()  # read once for every forecast
        check_no_nan(block_truth.sel(time=needed), "truth")
        at = pd.Index(block_truth["time"].values).get_indexer(valid.ravel()).reshape(valid.shape)
        at = xr.DataArray(np.where(scored, at, 0), dims=("time", "prediction_timedelta"))
        step = max(1, VALUES_AT_A_TIME // (block.size * per_pair))
        parts: dict[tuple, list] = {}
        for first in range(0, leads.size, step):
            part = slice(first, first + step)
            shared: dict = {}  # the truth at the part's valid times, for every forecast
            for i, (name, forecast) in enumerate(forecasts.items()):
                _score_part(name, forecast, block, leads[part], scored[:, part],
                            block_truth, at.isel(prediction_timedelta=part), climatology,
                            regions, variables, names, spectra, truth_spectra and i == 0,
                            parts, samples, rngs, shared)
        for key, values in parts.items():  # the leads of the block together again
            samples.setdefault(key, []).append(
                values[0] if len(values) == 1 else xr.concat(values, "prediction_timedelta"))


#: how many values (init x lead x level x latitude x longitude x member) of a forecast are
#: scored at a time: the memory of scoring is a few float64 arrays of this size
VALUES_AT_A_TIME = 2**22


def _score_part(name: str, forecast: xr.Dataset | Callable, inits: np.ndarray,
                leads: np.ndarray, scored: np.ndarray, truth: xr.Dataset, at: xr.DataArray,
                climatology: xr.Dataset | None, regions: Sequence[str],
                variables: Sequence[str] | None, names: list, spectra: bool,
                truth_spectra: bool, parts: dict, samples: dict, rngs: dict,
                shared: dict) -> None:
    """The quantities of one forecast at some initial times and leads (``_score_group``):
    into ``parts``, or ``samples`` for the rank histograms (one lead at a time). ``shared``
    keeps, for the forecasts of the same part, what depends on the truth alone (the truth
    at the valid times, ACC's climatology and truth anomaly), keyed by the variables, levels
    and grid it was made for: computed once, not once per forecast (the same numbers)."""
    from .probabilistic import probabilistic_samples, rank_histogram_spatial, zonal_energy_spectrum

    def add(key: tuple, values: xr.Dataset) -> None:
        parts.setdefault(key, []).append(values.compute())

    if isinstance(forecast, xr.Dataset):
        own = list(forecast.data_vars) if variables is None else list(variables)
        fc = forecast[own].sel(time=inits, prediction_timedelta=leads)
        # read once. A dask ensemble stays in its chunks (persist): its float32 sums over
        # members then run chunk by chunk as on the whole store (in numpy they would differ
        # in the 8th digit); dask costs time, though
        fc = fc.persist() if fc.chunks and "number" in fc.dims else fc.load()
    else:
        fc = forecast(truth, inits, leads)[names if variables is None else list(variables)]
    key = (tuple(fc.data_vars), *((fc[d].dtype.str, fc[d].values.tobytes())
                                  for d in ("level", *SPATIAL_DIMS) if d in fc.dims))
    if key not in shared:
        tr = _select_levels(fc, align_grid(fc, truth[list(fc.data_vars)]), name)
        shared[key] = tr.drop_vars("time").isel(time=at).assign_coords(
            time=fc["time"].values, prediction_timedelta=fc["prediction_timedelta"].values)
    tr = shared[key]
    # an ensemble's deterministic scores are those of its member mean
    members, fc = (fc, fc.mean("number", skipna=False)) if "number" in fc.dims else (None, fc)
    fast = members is None and numpy_block(fc, tr) and not (  # numpy: the same numbers
        climatology is not None and climatology.chunks)
    for region in regions:
        if fast:
            if (key, region, "weights") not in shared:
                shared[key, region, "weights"] = block_weights(
                    fc["latitude"], fc.sizes["longitude"], region)
            weights = shared[key, region, "weights"]
            add((name, region, "mse"), mse_of_block(fc, tr, weights))
            if climatology is not None:
                if (key, "climatology") not in shared:  # the same for every region
                    shared[key, "climatology"] = _climatology_like(climatology, fc)
                if (key, region, "acc") not in shared:
                    shared[key, region, "acc"] = acc_truth_of_block(
                        tr, shared[key, "climatology"], weights)
                add((name, region, "acc"), acc_of_block(fc, shared[key, region, "acc"],
                                                        weights))
            continue
        add((name, region, "mse"), mse_spatial(fc, tr, region))
        if climatology is not None:
            if (key, region) not in shared:
                shared[key, region] = acc_truth_terms(tr, climatology, fc, region)
            add((name, region, "acc"), acc_spatial(fc, tr, climatology, region,
                                                   truth_terms=shared[key, region]))
        if members is None:
            continue
        for quantity, values in probabilistic_samples(members, tr, region).items():
            add((name, region, quantity), values)
        for j, lead in enumerate(leads):  # a lead at a time: the ties' draws
            kept = np.flatnonzero(scored[:, j])
            if kept.size:
                m, t = (x.isel(prediction_timedelta=j, time=kept) for x in (members, tr))
                samples.setdefault((name, lead, region, "rank_histogram"), []).append(
                    xr.Dataset({v: rank_histogram_spatial(m[v], t[v], region, rngs.setdefault(
                        (name, lead, region, v), np.random.default_rng(0))).compute()
                        for v in m.data_vars}))
    if spectra:
        add((name, "30-60N", "spectrum"), zonal_energy_spectrum(fc.load()))
    if truth_spectra:
        add(("truth", "30-60N", "spectrum"), zonal_energy_spectrum(tr))


def _gathered(samples: dict, key: tuple) -> xr.Dataset:
    """The values of every block, in the order of the initial times."""
    parts = samples[key]
    return parts[0] if len(parts) == 1 else xr.concat(parts, dim="time")


def _rows_of(samples: dict, name: str, coords: xr.Dataset, regions: Sequence[str],
             spectra: bool) -> list[dict]:
    """The rows of one forecast (or of the truth's spectra) from its per-(init, lead)
    quantities: for each lead, those of the initial times whose valid time the truth has."""
    from .probabilistic import probabilistic_rows_of, spectrum_rows_of

    leads = coords["prediction_timedelta"].values
    scored = np.concatenate(samples.get((name, "scored"), [np.zeros((0, leads.size), bool)]))
    gathered: dict[tuple, xr.Dataset] = {}

    def at_lead(key: tuple, j: int) -> xr.Dataset:
        if key not in gathered:
            gathered[key] = _gathered(samples, key)
        return gathered[key].isel(prediction_timedelta=j, time=np.flatnonzero(scored[:, j]))

    rows = []
    for j, lead in enumerate(leads):
        if not scored[:, j].any():
            continue  # no initial time of this lead has its valid time in the truth
        hours = float(pd.Timedelta(lead) / pd.Timedelta(hours=1))
        for region in regions:
            mse = at_lead((name, region, "mse"), j)
            scores = {"rmse": _sqrt_of_time_mean(mse, "time"),
                      "rmse_per_sample": _time_mean_of_sqrt(mse, "time")}
            if (name, region, "acc") in samples:
                scores["acc"] = at_lead((name, region, "acc"), j).mean("time", skipna=False)
            for metric, values in scores.items():
                rows += _rows(values.compute(), name, hours, metric, region)
            if (name, region, "crps_skill") in samples:
                quantities = {q: at_lead((name, region, q), j) for q in (
                    "ensemble_mean_mse", "ensemble_variance", "crps_skill", "crps_spread")}
                quantities["rank_histogram"] = _gathered(samples, (name, lead, region,
                                                                   "rank_histogram"))
                rows += probabilistic_rows_of(quantities, name, hours, region)
        if spectra and (name, "30-60N", "spectrum") in samples:
            rows += spectrum_rows_of(at_lead((name, "30-60N", "spectrum"), j), name, hours)
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
        if da.dims == ("level",):  # all the values at once: a .sel per level is slow
            pairs = zip(da["level"].values, da.values)
        elif "level" in da.dims:
            pairs = ((level, da.sel(level=level)) for level in da["level"].values)
        else:
            pairs = [(np.nan, da)]
        for level, value in pairs:
            rows.append({"forecast": name, "variable": variable, "level": float(level),
                         "lead_time_hours": hours, "metric": metric, "value": float(value),
                         "region": region})
    return rows
