"""What ``evaluate`` computes once and shares: the training period read once for the
climatology and the damped-persistence fit, and the truth's side of ACC computed once per
block for every forecast. Each shared path gives the numbers of the path it replaces."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pandas.testing import assert_frame_equal

import geoformer.blockmetrics as blockmetrics
import geoformer.climatology as climatology
import geoformer.evaluation as evaluation
import geoformer.metrics as metrics
from geoformer.climatology import climatology_and_last_steps, compute_climatology
from geoformer.evaluation import evaluate
from geoformer.metrics import acc_spatial
from geoformer.scores import score_table
from tests.conftest import mock_era5


def _zarr_truth(tmp_path, n_time=2 * 400, freq="12h") -> xr.Dataset:
    """A lazily indexed (zarr, no dask) truth, as ``evaluate`` opens a store."""
    ds = mock_era5(n_time=n_time, grid=(4, 8), levels=(850, 500), freq=freq, seed=7)
    ds = ds[["temperature", "geopotential", "2m_temperature"]]
    ds["2m_temperature"].attrs["note"] = "kept"
    ds.attrs["source"] = "a test"  # global attrs and a non-index time coord are kept too
    ds = ds.assign_coords(sample=("time", np.arange(ds.sizes["time"])))
    path = tmp_path / "truth.zarr"
    ds.to_zarr(path, consolidated=True)
    return xr.open_zarr(path, chunks=None)


@pytest.mark.parametrize("last", [1, 37, 300, 800, 900])
def test_the_climatology_and_last_steps_read_once_equal_the_two_reads(tmp_path, last):
    ds = _zarr_truth(tmp_path)
    # a variable whose time dim is not first: the copy is put back in its dims' order
    ds["temperature"] = ds["temperature"].transpose("level", "time", ...)
    reads = []
    original = climatology._numpy_climatology

    def spy(*args, **kwargs):
        reads.append(args[-1] if len(args) > 4 else kwargs.get("keep"))
        return original(*args, **kwargs)

    clim, tail = climatology_and_last_steps(ds, last, window_days=15)
    xr.testing.assert_identical(clim, compute_climatology(ds, window_days=15))
    expected = ds.isel(time=slice(-last, None)).load()
    xr.testing.assert_identical(tail, expected)
    assert tail["temperature"].dims == ("level", "time", "latitude", "longitude")
    assert all(isinstance(tail[v].variable._data, np.ndarray) for v in tail.data_vars)
    climatology._numpy_climatology = spy
    try:
        climatology_and_last_steps(ds, last, window_days=15)
    finally:
        climatology._numpy_climatology = original
    assert len(reads) == 1 and reads[0] is not None  # one pass, the copy made on the way
    assert tail.attrs == {"source": "a test"} and isinstance(tail["sample"].variable._data,
                                                             np.ndarray)


def test_an_error_while_smoothing_in_the_second_thread_is_raised(tmp_path, monkeypatch):
    ds = _zarr_truth(tmp_path)

    def broken(*args, **kwargs):
        raise FloatingPointError("smoothing failed")

    monkeypatch.setattr(climatology, "_triangular_mean", broken)
    with pytest.raises(FloatingPointError, match="smoothing failed"):
        compute_climatology(ds, window_days=15)


def test_the_climatology_and_last_steps_of_dask_or_a_time_mean_are_the_two_calls(tmp_path):
    ds = _zarr_truth(tmp_path)
    for data, kind in ((ds.chunk({"time": 100}), "dayofyear_hour"), (ds, "time_mean")):
        clim, tail = climatology_and_last_steps(data, 50, kind=kind, window_days=15)
        xr.testing.assert_identical(clim, compute_climatology(data, kind, 15).compute())
        xr.testing.assert_identical(tail, data.isel(time=slice(-50, None)).load())
    with pytest.raises(ValueError, match="positive number of time steps, got 0"):
        climatology_and_last_steps(ds, 0)


def test_evaluate_reading_the_training_period_once_scores_as_reading_it_twice(tmp_path,
                                                                              monkeypatch):
    truth = _zarr_truth(tmp_path, n_time=4 * 400, freq="6h")
    t = truth["time"].values
    inits = t[1500:1560:8]
    leads = pd.to_timedelta([6, 24, 48], unit="h")
    fc = xr.Dataset({name: (("time", "prediction_timedelta", *da.dims[1:]), np.stack(
        [da.sel(time=i + leads).values + 0.5 for i in inits]), da.attrs)
        for name, da in truth.load().data_vars.items()},
        coords={"time": inits, "prediction_timedelta": leads, "latitude": truth["latitude"],
                "longitude": truth["longitude"], "level": truth["level"]})
    kwargs = dict(train_period=(str(t[0]), str(t[1400])), max_fit_times=300)
    calls = []
    shared = evaluation.climatology_and_last_steps

    def spy(*args, **kw):
        calls.append(args[1])
        return shared(*args, **kw)

    monkeypatch.setattr(evaluation, "climatology_and_last_steps", spy)
    once = evaluate(fc, truth, **kwargs)
    assert calls == [300]

    def two_reads(ds, last, kind="dayofyear_hour", window_days=61):
        return (compute_climatology(ds, kind, window_days).compute(),
                ds.isel(time=slice(-last, None)).load())

    monkeypatch.setattr(evaluation, "climatology_and_last_steps", two_reads)
    twice = evaluate(fc, truth, **kwargs)
    pd.testing.assert_frame_equal(once, twice)
    assert set(once["forecast"]) == {"model", "persistence", "climatology",
                                     "damped_persistence"}
    assert once.query("metric == 'acc' and forecast == 'damped_persistence'")["value"].notna().all()


def test_acc_of_forecasts_sharing_the_truth_terms_equals_each_scored_alone(monkeypatch):
    """Two forecasts of one block share the truth's ACC terms when their variables, levels
    and grid match; one on a flipped latitude axis, or with fewer variables, gets its own."""
    truth = mock_era5(n_time=40, grid=(5, 8), levels=(850, 500), seed=9)
    truth = truth[["temperature", "2m_temperature"]]
    clim = compute_climatology(truth.isel(time=slice(0, 20)), kind="time_mean")
    inits = truth["time"].values[20:28]
    leads = pd.to_timedelta([6, 12], unit="h")
    rng = np.random.default_rng(1)

    def store(scale):
        return xr.Dataset({name: (("time", "prediction_timedelta", *da.dims[1:]), np.stack(
            [da.sel(time=i + leads).values for i in inits])
            + scale * rng.normal(size=(inits.size, leads.size, *da.shape[1:])), da.attrs)
            for name, da in truth.data_vars.items()},
            coords={"time": inits, "prediction_timedelta": leads,
                    **{c: truth[c] for c in ("latitude", "longitude", "level")}})

    forecasts = {"a": store(0.5), "b": store(2.0), "flipped": store(1.0).isel(latitude=slice(
        None, None, -1)), "fewer": store(1.5)[["temperature"]]}
    terms = []

    def spying(original):
        def spy(*args, **kwargs):
            terms.append(args)
            return original(*args, **kwargs)
        return spy

    monkeypatch.setattr("geoformer.scores.acc_truth_terms", spying(metrics.acc_truth_terms))
    monkeypatch.setattr("geoformer.scores.acc_truth_of_block",
                        spying(blockmetrics.acc_truth_of_block))
    table = score_table(forecasts, truth, clim)  # the numpy path: float arrays in memory
    assert len(terms) == 3  # a and b share; flipped and fewer have their own
    terms.clear()
    monkeypatch.setattr("geoformer.scores.numpy_block", lambda *a: False)
    assert_frame_equal(score_table(forecasts, truth, clim), table, check_exact=True)
    assert len(terms) == 3  # the xarray path shares them alike
    with pytest.raises(ValueError, match="coordinates differ"):  # terms of other levels
        fc = forecasts["a"]
        other = xr.concat([truth.sel(time=inits + lead).assign_coords(time=inits)
                           for lead in leads], dim=pd.Index(leads, name="prediction_timedelta"))
        acc_spatial(fc.sel(level=[850]), other.sel(level=[850]), clim, truth_terms=(
            metrics.acc_truth_terms(other.sel(level=[500]), clim, fc.sel(level=[500]))))
    for name, fc in forecasts.items():
        tr = xr.concat([truth[list(fc.data_vars)].sel(time=inits + lead).assign_coords(
            time=inits) for lead in leads], dim=pd.Index(leads, name="prediction_timedelta"))
        alone = acc_spatial(fc, tr, clim).mean("time")
        got = table.query(f"forecast == '{name}' and metric == 'acc'")
        assert len(got) == sum(alone[v].size for v in alone.data_vars)
        for row in got.itertuples():
            da = alone[row.variable].sel(prediction_timedelta=pd.Timedelta(
                hours=row.lead_time_hours))
            if "level" in da.dims:
                da = da.sel(level=row.level)
            assert row.value == pytest.approx(float(da), rel=1e-12, abs=0)


@pytest.mark.parametrize("gaps", [False, True])
def test_the_banded_lagged_sums_equal_one_dot_per_lead(gaps):
    """The damped-persistence fit's sums from blocks of the Gram matrix's band equal the
    one-dot-per-lead loop (float noise), with consecutive steps and with gaps (index
    positions); a band wider than the leads justify takes the loop itself."""
    from geoformer.references import _dot, _lagged_sums

    rng = np.random.default_rng(3)
    steps = np.sort(rng.choice(300, 230, replace=False)) if gaps else np.arange(200)
    a = rng.standard_normal((3, steps.size, 4, 6))
    aw = a * np.linspace(0.2, 1.0, 4)[:, None]
    pairs = []
    for lead in (1, 2, 7, 30):
        later = steps + lead
        has = np.isin(later, steps)
        first, second = np.searchsorted(steps, steps[has]), np.searchsorted(steps, later[has])
        pairs.append((first, second) if gaps else (slice(0, steps.size - lead),
                                                   slice(lead, steps.size)))
    for got, (first, later) in zip(_lagged_sums(aw, a, pairs), pairs):
        np.testing.assert_allclose(got[0], _dot(aw[:, first], a[:, later]), rtol=1e-12)
        np.testing.assert_allclose(got[1], _dot(aw[:, first], a[:, first]), rtol=1e-12)
        assert got[0].shape == (3,)
    wide = [(slice(0, 100), slice(100, 200))]  # one lead 100 steps ahead: the loop
    (num, den), = _lagged_sums(aw, a, wide)
    np.testing.assert_array_equal(num, _dot(aw[:, :100], a[:, 100:200]))
    order = rng.permutation(steps.size)  # times out of order: some later steps come first
    where = np.argsort(order)  # position of each original step in the shuffled arrays
    shuffled = [(where[np.arange(steps.size)[f]], where[np.arange(steps.size)[l]])
                for f, l in pairs]
    for got, (first, later) in zip(_lagged_sums(aw[:, order], a[:, order], shuffled), pairs):
        np.testing.assert_allclose(got[0], _dot(aw[:, first], a[:, later]), rtol=1e-12)
        np.testing.assert_allclose(got[1], _dot(aw[:, first], a[:, first]), rtol=1e-12)


def test_the_damped_persistence_fit_of_a_truth_out_of_time_order_is_that_of_it_sorted():
    from geoformer.references import fit_damped_persistence

    truth = mock_era5(n_time=40, grid=(4, 8), levels=(850, 500), seed=11)
    truth = truth[["temperature", "2m_temperature"]]
    clim = compute_climatology(truth, kind="time_mean")
    leads = pd.to_timedelta([6, 24], unit="h")
    order = np.random.default_rng(0).permutation(truth.sizes["time"])
    xr.testing.assert_allclose(fit_damped_persistence(truth.isel(time=order), clim, leads),
                               fit_damped_persistence(truth, clim, leads), rtol=1e-12)
