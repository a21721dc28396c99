"""Streamed forecasts: written part by part, equal to the in-memory forecast, atomic."""

import numpy as np
import pytest
import xarray as xr

import geoformer.forecast as forecast_module
from geoformer.forecast import forecast, iter_forecasts
from geoformer.forecast_store import forecast_to_store
from tests.conftest import mock_era5, tiny_module


@pytest.fixture(scope="module")
def setup():
    ds = mock_era5(n_time=12)
    models = {24: tiny_module(ds, 24, seed=1).eval(), 6: tiny_module(ds, 6, seed=2).eval()}
    return ds, models


def _open(path):
    return xr.open_dataset(path, engine="zarr" if path.suffix == ".zarr" else "netcdf4").load()


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
@pytest.mark.parametrize("options", [{}, {"members": 3, "perturbation_scale": 0.5},
                                     {"batch_size": 2}])
def test_a_streamed_forecast_equals_the_in_memory_one(setup, tmp_path, suffix, options):
    ds, models = setup
    inits = ds.time.values[:3]
    expected = forecast(models, ds, inits, lead_time="24h", every="6h", **options)
    path, sizes = forecast_to_store(models, ds, inits, tmp_path / f"fc{suffix}",
                                    lead_time="24h", every="6h", **options)
    back = _open(path)
    assert sizes == dict(expected.sizes)
    xr.testing.assert_identical(back.drop_attrs(), expected.drop_attrs())
    assert back.attrs["title"] == expected.attrs["title"]
    np.testing.assert_array_equal(back["valid_time"].values, expected["valid_time"].values)


def test_parts_hold_one_model_call_and_the_ensemble_noise_ignores_the_split(setup):
    ds, models = setup
    inits = ds.time.values[:4]
    parts = list(iter_forecasts(models, ds, inits, lead_time="6h", members=2,
                                perturbation_scale=0.5, batch_size=4))
    assert [(first, p.sizes["time"]) for first, p in parts] == [(0, 2), (2, 2)]
    one_by_one = xr.concat([p for _, p in iter_forecasts(
        models, ds, inits, lead_time="6h", members=2, perturbation_scale=0.5, batch_size=2)],
        dim="time")
    np.testing.assert_allclose(one_by_one["temperature"].values,
                               xr.concat([p for _, p in parts], "time")["temperature"].values,
                               rtol=1e-5, atol=1e-6)


def test_memory_holds_one_part_at_a_time(setup, tmp_path, monkeypatch):
    """The store is written as parts arrive: no more than one part is alive at once."""
    ds, models = setup
    alive, most = [], [0]
    original = forecast_module._to_dataset

    def counted(*args, **kwargs):
        part = original(*args, **kwargs)
        alive.append(part)
        most[0] = max(most[0], sum(1 for p in alive if p is not None))
        return part

    monkeypatch.setattr(forecast_module, "_to_dataset", counted)
    written = []
    real_to_zarr = xr.Dataset.to_zarr

    def to_zarr(self, *args, **kwargs):
        if kwargs.get("region"):
            written.append(kwargs["region"]["time"])
            alive[-1] = None  # written: the part may go
        return real_to_zarr(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", to_zarr)
    forecast_to_store(models, ds, ds.time.values[:4], tmp_path / "fc.zarr", lead_time="6h")
    assert written == [slice(i, i + 1) for i in range(4)]
    assert most[0] == 1


def test_a_failure_midway_leaves_nothing_and_keeps_the_previous_store(setup, tmp_path,
                                                                     monkeypatch):
    ds, models = setup
    path, _ = forecast_to_store(models, ds, ds.time.values[:2], tmp_path / "fc.zarr",
                                lead_time="6h")
    before = _open(path)
    with pytest.raises(FileExistsError, match="--overwrite"):
        forecast_to_store(models, ds, ds.time.values[:2], path, lead_time="6h")
    calls = []
    original = forecast_module._run

    def fails_on_the_second_part(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(forecast_module, "_run", fails_on_the_second_part)
    with pytest.raises(RuntimeError, match="killed"):
        forecast_to_store(models, ds, ds.time.values[2:5], path, lead_time="6h",
                          overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fc.zarr"]
    xr.testing.assert_identical(_open(path), before)


@pytest.mark.slow
def test_a_compiled_forecast_equals_the_eager_one_to_float_noise(setup, tmp_path):
    ds, models = setup
    inits = ds.time.values[:2]
    expected = forecast({6: models[6]}, ds, inits, lead_time="12h", every="6h")
    compiled = {6: tiny_module(ds, 6, seed=2).eval()}
    compiled[6].load_state_dict(models[6].state_dict())
    path, _ = forecast_to_store(compiled, ds, inits, tmp_path / "fc.zarr", lead_time="12h",
                                every="6h", compile=True)
    assert compiled[6].net._compiled_call_impl is not None
    xr.testing.assert_allclose(_open(path).drop_attrs(), expected.drop_attrs(),
                               rtol=1e-4, atol=1e-4)
