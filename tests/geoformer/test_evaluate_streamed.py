"""Streamed scoring: ``evaluate`` and ``score_table`` score a block of initial times (and of
leads) at a time, so memory does not grow with the forecast; the numbers equal those of all
initial times at once. The fast numpy paths of the climatology, the damped-persistence fit
and the spatial mean equal the plain xarray formulas they replace."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import geoformer.scores as scores
from geoformer.area import latitude_weights
from geoformer.climatology import compute_climatology
from geoformer.evaluation import evaluate
from geoformer.metrics import spatial_mean
from tests.conftest import mock_era5

KEYS = ["forecast", "variable", "level", "lead_time_hours", "metric", "region"]


def _truth() -> xr.Dataset:
    ds = mock_era5(n_time=120, grid=(9, 16), seed=2)
    return ds[[v for v in ds.data_vars if "time" in ds[v].dims]]


def _store(truth: xr.Dataset, inits, leads, members: int | None = None,
           seed: int = 0) -> xr.Dataset:
    """The truth at the valid times plus noise (members: an ensemble)."""
    rng = np.random.default_rng(seed)
    data = {}
    for name, da in truth.data_vars.items():
        # nearest: a valid time past the truth gets its last state (not scored)
        at = np.stack([da.sel(time=i + leads, method="nearest").values for i in inits])
        dims = ("time", "prediction_timedelta", *da.dims[1:])
        if members:
            at = at[:, :, None] + rng.normal(size=(*at.shape[:2], members, *at.shape[2:]))
            dims = ("time", "prediction_timedelta", "number", *da.dims[1:])
        else:
            at = at + rng.normal(size=at.shape)
        data[name] = (dims, at.astype(np.float32), da.attrs)
    coords = {"time": inits, "prediction_timedelta": leads,
              **{k: truth[k] for k in ("level", "latitude", "longitude")}}
    if members:
        coords["number"] = np.arange(members)
    return xr.Dataset(data, coords=coords)


def _equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    merged = a.merge(b, on=KEYS, suffixes=("", "_other"), validate="1:1")
    assert len(merged) == len(a) == len(b) > 0
    # the per-sample quantities are the same; the mean over initial times may sum them in
    # another order when the blocks are concatenated (seen: rank histograms, 1 ulp)
    assert np.allclose(merged["value"], merged["value_other"], rtol=1e-13, atol=0,
                       equal_nan=True)


@pytest.fixture(scope="module")
def truth():
    return _truth()


@pytest.mark.parametrize("members", [None, 3])
def test_blocks_of_initial_times_give_the_numbers_of_all_at_once(truth, members):
    t = truth["time"].values
    inits = t[90:97]  # 7 initial times: blocks of 1, 3 (3 + 3 + 1) and all
    leads = pd.to_timedelta([6, 12, 24, 48], unit="h")
    fc = _store(truth, inits, leads, members)
    kw = dict(train_period=(str(t[0]), str(t[80])), regions=("global", "tropics"),
              climatology_kind="time_mean", spectra=members is None)
    whole = evaluate(fc, truth, init_block=None, **kw)
    assert {"model", "persistence", "climatology", "damped_persistence"} == set(
        whole["forecast"]) - {"truth"}
    if members:
        assert "crps" in set(whole["metric"]) and "rank_histogram_0" in set(whole["metric"])
    for block in (1, 3):
        _equal(whole, evaluate(fc, truth, init_block=block, **kw))


def test_blocks_with_valid_times_missing_from_the_truth(truth):
    """Some (init, lead) pairs lack their valid time: each lead keeps the initial times
    that have it, whichever block they fall in."""
    t = truth["time"].values
    leads = pd.to_timedelta([6, 24], unit="h")
    fc = _store(truth, t[110:117], leads)  # the last inits' 24 h valid times lie past the end
    kw = dict(references=("persistence",), allow_missing_valid_times=True)
    notes_whole, notes_blocks = [], []
    whole = evaluate(fc, truth, init_block=None, notes=notes_whole, **kw)
    blocks = evaluate(fc, truth, init_block=2, notes=notes_blocks, **kw)
    _equal(whole, blocks)
    assert notes_whole == notes_blocks and notes_whole


def test_scoring_holds_one_block_of_initial_times_at_a_time(truth, monkeypatch):
    seen = []
    original = scores._score_part

    def spy(name, forecast, inits, *args, **kwargs):
        seen.append(len(inits))
        return original(name, forecast, inits, *args, **kwargs)

    monkeypatch.setattr(scores, "_score_part", spy)
    t = truth["time"].values
    fc = _store(truth, t[90:100], pd.to_timedelta([6, 12], unit="h"))
    evaluate(fc, truth, references=("persistence", "climatology"),
             train_period=(str(t[0]), str(t[80])), climatology_kind="time_mean", init_block=4)
    assert seen and max(seen) == 4 and sum(seen) == 3 * 10  # 4 + 4 + 2, for 3 forecasts


def _reference_climatology(ds: xr.Dataset, window_days: int) -> xr.Dataset:
    """The day-of-year-and-hour climatology in plain xarray (groupby, roll), as defined in
    ``compute_climatology``'s docstring."""
    half = (window_days - 1) // 2
    per_hour = []
    hours = np.unique(ds["time"].dt.hour.values)
    for hour in hours:
        at_hour = ds.isel(time=(ds["time"].dt.hour == hour).values)
        daily = at_hour.groupby("time.dayofyear").mean("time").reindex(
            dayofyear=np.arange(1, 367))
        total, weight_sum = 0.0, 0.0
        for offset in range(-half, half + 1):
            weight = half + 1 - abs(offset)
            shifted = daily.roll(dayofyear=-offset).assign_coords(dayofyear=daily["dayofyear"])
            total = total + weight * shifted.fillna(0.0)
            weight_sum = weight_sum + weight * shifted.notnull()
        per_hour.append(total / weight_sum.where(weight_sum > 0))
    return xr.concat(per_hour, dim=pd.Index(hours, name="hour")).transpose(
        "dayofyear", "hour", ...)


def test_the_numpy_climatology_equals_the_xarray_definition():
    ds = mock_era5(n_time=2 * 400, grid=(4, 8), levels=(850, 500), freq="12h", seed=3)
    ds = ds[["temperature", "2m_temperature"]]
    ds["2m_temperature"][10:30, 1, 2] = np.nan  # holes: the NaN-skipping branch
    fast = compute_climatology(ds, window_days=15)
    expected = _reference_climatology(ds, 15)
    for name in ds.data_vars:
        assert fast[name].dims == expected[name].dims
        np.testing.assert_allclose(fast[name].values, expected[name].values, rtol=1e-12,
                                   atol=0, equal_nan=True)
    assert int(fast["2m_temperature"].isnull().sum()) == int(expected["2m_temperature"]
                                                             .isnull().sum())
    lazy = compute_climatology(ds.chunk({"time": 100}), window_days=15).compute()
    xr.testing.assert_allclose(lazy, fast, rtol=1e-6)  # the dask path: float32 sums


def test_the_numpy_climatology_of_variables_of_one_shape_and_missing_days():
    """Several variables of one shape, and days without data (a 200-day period: most
    calendar days are missing), which stay out of each variable's mean."""
    ds = mock_era5(n_time=2 * 200, grid=(4, 8), levels=(850, 500), freq="12h", seed=4)
    ds = ds[["temperature", "geopotential", "2m_temperature", "mean_sea_level_pressure"]]
    fast = compute_climatology(ds, window_days=15)
    expected = _reference_climatology(ds, 15)
    for name in ds.data_vars:
        np.testing.assert_allclose(fast[name].values, expected[name].values, rtol=1e-12,
                                   atol=0, equal_nan=True)


def test_the_blas_spatial_mean_equals_the_weighted_sum():
    rng = np.random.default_rng(5)
    lat = np.linspace(80, -80, 5)
    x = xr.DataArray(rng.normal(size=(3, 5, 8)), dims=("time", "latitude", "longitude"),
                     coords={"latitude": lat, "longitude": np.arange(8) * 45.0})
    x = x.transpose("latitude", "time", "longitude")  # any order of the dims
    x[1, 2, 3] = np.nan
    weights = latitude_weights(x["latitude"]).values
    expected = (x * xr.DataArray(weights, dims="latitude")).sum(
        ("latitude", "longitude"), skipna=False) / (weights.sum() * 8)
    got = spatial_mean(x)
    assert got.dims == ("time",)
    np.testing.assert_allclose(got.values, expected.values, rtol=1e-12, equal_nan=True)
    assert np.isnan(got.values[2]) and np.isfinite(got.values[[0, 1]]).all()
    xr.testing.assert_allclose(spatial_mean(x.chunk({"time": 1})).compute(), got)
