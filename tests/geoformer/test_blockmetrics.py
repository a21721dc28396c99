"""The numpy block metrics give the numbers of the xarray metrics to the last bit, and
``score_table`` gives the same table through either path."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import geoformer.scores as scores
from geoformer.blockmetrics import (
    acc_of_block,
    acc_truth_of_block,
    block_weights,
    mse_of_block,
    numpy_block,
)
from geoformer.climatology import compute_climatology
from geoformer.metrics import _climatology_like, acc_spatial, mse_spatial
from geoformer.scores import score_table
from tests.conftest import mock_era5

REGIONS = ("global", "tropics", "extratropics_north", "extratropics_south")


def _block(dtype, flipped: bool, seed: int = 0):
    """A forecast block (time, prediction_timedelta, [level], latitude, longitude) and the
    truth aligned to it, with NaN in one forecast cell."""
    truth = mock_era5(n_time=60, grid=(7, 8), levels=(850, 500), seed=seed)
    truth = truth[["temperature", "geopotential", "2m_temperature"]].astype(dtype)
    if flipped:
        truth = truth.isel(latitude=slice(None, None, -1))
    inits = truth["time"].values[40:46]
    leads = pd.to_timedelta([6, 12, 18], unit="h")
    rng = np.random.default_rng(seed)
    tr = xr.concat([truth.sel(time=inits + lead).assign_coords(time=inits) for lead in leads],
                   dim=pd.Index(leads, name="prediction_timedelta"))
    tr = tr.transpose("time", "prediction_timedelta", ...)
    fc = tr.map(lambda da: da + rng.normal(scale=2.0, size=da.shape).astype(dtype))
    fc["temperature"][2, 1, 0, 3, 4] = np.nan
    return truth, fc, tr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flipped", [False, True])
@pytest.mark.parametrize("kind", ["time_mean", "dayofyear_hour"])
def test_the_block_metrics_equal_the_xarray_metrics_to_the_bit(dtype, flipped, kind):
    truth, fc, tr = _block(dtype, flipped)
    clim = compute_climatology(truth.isel(time=slice(0, 40)), kind=kind, window_days=31)
    assert numpy_block(fc, tr)
    for region in REGIONS:
        weights = block_weights(fc["latitude"], fc.sizes["longitude"], region)
        # equal: the same values bit for bit (NaN where NaN), dims and coords; the xarray
        # path also carries the inputs' attrs (units of the field, not of its square)
        xr.testing.assert_equal(mse_of_block(fc, tr, weights), mse_spatial(fc, tr, region))
        terms = acc_truth_of_block(tr, _climatology_like(clim, fc), weights)
        got, expected = acc_of_block(fc, terms, weights), acc_spatial(fc, tr, clim, region)
        xr.testing.assert_equal(got, expected)
        # the NaN cell (latitude 0) propagates into the regions that hold it
        assert np.isnan(got["temperature"].values[2, 1, 0]) == (region in ("global", "tropics"))
        assert np.isfinite(got["geopotential"].values).all()


def test_only_numpy_float_blocks_of_one_dim_order_take_the_numpy_path():
    _, fc, tr = _block(np.float32, False)
    assert numpy_block(fc, tr)
    assert not numpy_block(fc.chunk({"time": 2}), tr)
    assert not numpy_block(fc, tr.chunk({"time": 2}))
    assert not numpy_block(fc, tr.transpose("prediction_timedelta", "time", ...))
    assert not numpy_block(fc, tr[["temperature"]])
    assert not numpy_block(fc.transpose(..., "latitude"), tr)
    assert not numpy_block(fc.astype(np.int32), tr)


@pytest.mark.parametrize("kind", ["time_mean", "dayofyear_hour"])
def test_score_table_through_numpy_blocks_equals_the_xarray_path(monkeypatch, kind):
    truth = mock_era5(n_time=80, grid=(7, 8), levels=(850, 500), seed=5)
    truth = truth[["temperature", "2m_temperature"]]
    clim = compute_climatology(truth.isel(time=slice(0, 40)), kind=kind, window_days=31)
    inits = truth["time"].values[44:60]
    leads = pd.to_timedelta([6, 24], unit="h")
    rng = np.random.default_rng(2)
    fc = xr.Dataset({name: (("time", "prediction_timedelta", *da.dims[1:]), np.stack(
        [da.sel(time=i + leads).values for i in inits]).astype(np.float32)
        + rng.normal(size=(inits.size, leads.size, *da.shape[1:])).astype(np.float32),
        da.attrs) for name, da in truth.data_vars.items()},
        coords={"time": inits, "prediction_timedelta": leads,
                **{c: truth[c] for c in ("latitude", "longitude", "level")}})
    other = fc.isel(latitude=slice(None, None, -1)) * 1.01
    kw = dict(regions=("global", "tropics"), init_block=5)
    calls = []
    original = scores.mse_of_block

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(scores, "mse_of_block", spy)
    fast = score_table({"model": fc, "other": other}, truth, clim, **kw)
    assert calls  # the numpy path ran
    monkeypatch.setattr(scores, "numpy_block", lambda *a: False)
    slow = score_table({"model": fc, "other": other}, truth, clim, **kw)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    assert set(fast["metric"]) == {"rmse", "rmse_per_sample", "acc"}
