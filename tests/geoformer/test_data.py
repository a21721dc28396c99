"""Training store, statistics, normaliser and (input, target) pairs."""

import math

import numpy as np
import pytest
import torch
import xarray as xr

from geoformer.data import ForecastPairs, GeoDataModule, TimeRange, write_training_store
from geoformer.normalization import Normalizer, compute_statistics, normalized_constants
from geoformer.schema import SchemaError
from tests.conftest import mock_era5

UPPER = ["geopotential", "temperature"]
SURFACE = ["2m_temperature"]


def test_statistics_match_numpy_over_the_training_period_only():
    ds = mock_era5(n_time=12)
    train = slice(ds.time.values[0], ds.time.values[5])
    stats = compute_statistics(ds, UPPER, SURFACE, ["land_sea_mask"], time=train)
    t = ds["temperature"].values[:6, 1]  # level 850, first 6 times
    assert float(stats["temperature"].sel(statistic="mean", level=850)) == pytest.approx(
        t.mean(), rel=1e-6)
    assert float(stats["temperature"].sel(statistic="std", level=850)) == pytest.approx(
        t.std(), rel=1e-5)
    full = compute_statistics(ds, UPPER, SURFACE)
    assert float(full["temperature"].sel(statistic="mean", level=850)) != pytest.approx(
        t.mean(), rel=1e-9)


def test_statistics_are_lazy_friendly_with_dask():
    ds = mock_era5(n_time=12).chunk({"time": 1})
    stats = compute_statistics(ds, UPPER, SURFACE)
    eager = compute_statistics(ds.load(), UPPER, SURFACE)
    xr.testing.assert_allclose(stats, eager)


def test_normalizer_round_trips_and_standardises():
    ds = mock_era5()
    stats = compute_statistics(ds, UPPER, SURFACE)
    norm = Normalizer.from_statistics(stats, UPPER, SURFACE, [1000, 850, 500])
    upper = torch.from_numpy(np.stack([ds[v].values for v in UPPER], axis=1))  # (T, V, Z, H, W)
    surface = torch.from_numpy(np.stack([ds[v].values for v in SURFACE], axis=1))
    nu, ns = norm.normalize(upper, surface)
    assert nu.mean(dim=(0, 3, 4)).abs().max() < 1e-3
    assert (nu.std(dim=(0, 3, 4), unbiased=False) - 1).abs().max() < 1e-3
    bu, bs = norm.denormalize(nu, ns)
    torch.testing.assert_close(bu, upper, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(bs, surface, rtol=1e-5, atol=1e-3)
    again = Normalizer.from_dict(norm.to_dict())
    torch.testing.assert_close(again.normalize(upper, surface)[0], nu)


def test_zero_spread_fields_stay_finite():
    ds = mock_era5()
    ds["geopotential_at_surface"][:] = 0.0  # a flat planet
    ds["temperature"][:, 0] = 250.0  # a constant level
    stats = compute_statistics(ds, UPPER, SURFACE, ["geopotential_at_surface"])
    const = normalized_constants(ds, stats, ["geopotential_at_surface"])
    assert torch.count_nonzero(const) == 0
    norm = Normalizer.from_statistics(stats, UPPER, SURFACE, [1000, 850, 500])
    upper = torch.from_numpy(np.stack([ds[v].values for v in UPPER], axis=1))
    surface = torch.from_numpy(np.stack([ds[v].values for v in SURFACE], axis=1))
    nu, _ = norm.normalize(upper, surface)
    assert torch.isfinite(nu).all() and nu[:, 1, 0].abs().max() == 0


def test_training_store_has_one_time_step_per_chunk_and_round_trips(tmp_path):
    ds = mock_era5()
    path = write_training_store(ds, tmp_path / "train.zarr")
    back = xr.open_zarr(path)
    assert back["temperature"].encoding["chunks"][0] == 1
    assert back["temperature"].encoding["chunks"][1:] == (3, 8, 16)
    xr.testing.assert_allclose(back.load().drop_attrs(), ds.drop_attrs())
    with pytest.raises(FileExistsError):
        write_training_store(ds, path)


def test_a_failed_conversion_leaves_nothing_behind(tmp_path):
    ds = mock_era5()
    ds["temperature"][0, 0, 0, 0] = np.nan
    with pytest.raises(SchemaError, match="NaN"):
        write_training_store(ds, tmp_path / "bad.zarr")
    assert list(tmp_path.iterdir()) == []


def test_pairs_are_lead_apart_and_stay_inside_their_period():
    ds = mock_era5(n_time=12)
    period = TimeRange(str(ds.time.values[0]), str(ds.time.values[7]))
    pairs = ForecastPairs(ds, UPPER, SURFACE, [1000, 850, 500], lead_hours=12, times=period,
                          steps=2)
    # inits 0..3 have targets at +12 h and +24 h (indices +2, +4) inside times 0..7
    assert len(pairs) == 4
    item = pairs[1]
    assert item["upper"].shape == (2, 3, 8, 16)
    assert item["target_upper"].shape == (2, 2, 3, 8, 16)
    np.testing.assert_array_equal(item["target_upper"][1, 1].numpy(),
                                  ds["temperature"].values[5])
    np.testing.assert_array_equal(item["surface"][0].numpy(), ds["2m_temperature"].values[1])
    lazy = ForecastPairs(ds, UPPER, SURFACE, [1000, 850, 500], 12, period, 2, in_memory=False)
    for key in item:
        assert torch.equal(lazy[1][key], item[key])


def test_pairs_that_cannot_exist_are_an_error():
    ds = mock_era5(n_time=4)
    with pytest.raises(ValueError, match="no \\(input, target\\) pair 48 h apart"):
        ForecastPairs(ds, UPPER, SURFACE, [500], lead_hours=48)


def test_data_module_serves_batches_and_caches_statistics(tmp_path):
    ds = mock_era5(n_time=16)
    path = write_training_store(ds, tmp_path / "train.zarr")
    t = [str(v) for v in ds.time.values]
    dm = GeoDataModule(str(path), lead_hours=6, train=(t[0], t[9]), val=(t[10], t[15]),
                       batch_size=3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["upper"].shape == (3, 5, 3, 8, 16)
    assert dm.upper_vars[0] == "geopotential" and dm.static_vars == [
        "land_sea_mask", "soil_type", "geopotential_at_surface"]
    assert len(dm.dataset("val")) == 5
    cached = xr.open_zarr(path, group="statistics")
    assert cached.attrs["train_period"] == f"{t[0]}..{t[9]}"
    expected = ds["temperature"].isel(time=slice(0, 10)).sel(level=500).values.mean()
    assert float(dm.statistics["temperature"].sel(statistic="mean", level=500)) == \
        pytest.approx(expected, rel=1e-6)


def test_data_module_names_missing_variables(tmp_path):
    path = write_training_store(mock_era5(), tmp_path / "train.zarr")
    with pytest.raises(SchemaError, match="lacks variable.*'ozone'"):
        GeoDataModule(str(path), 6, ("2000-01-01", "2000-01-02"), ("2000-01-02", "2000-01-03"),
                      upper_vars=["ozone"])


def test_a_damaged_statistics_cache_is_recomputed(tmp_path):
    ds = mock_era5(n_time=16)
    path = write_training_store(ds, tmp_path / "train.zarr")
    t = [str(v) for v in ds.time.values]
    dm = GeoDataModule(str(path), 6, (t[0], t[9]), (t[10], t[15]))
    good = dm.statistics
    damaged = good.copy(deep=True)
    damaged["temperature"][:] = np.nan  # what an interrupted cache write reads back as
    damaged.to_zarr(path, group="statistics", mode="w", zarr_format=2)
    again = GeoDataModule(str(path), 6, (t[0], t[9]), (t[10], t[15]))
    xr.testing.assert_allclose(again.statistics, good)


def test_latitude_input_is_sin_latitude_constant_along_longitude():
    from geoformer.normalization import latitude_input

    lat = [87.1875, 30.0, 0.0, -45.0]
    field = latitude_input(lat, 6)
    assert field.shape == (1, 4, 6) and field.dtype == torch.float32
    for i, value in enumerate(lat):
        assert torch.allclose(field[0, i], torch.full((6,), math.sin(math.radians(value))))


@pytest.mark.parametrize("levels", [[1000, 850, 500], [500, 1000]])
def test_pairs_read_from_a_store_equal_the_in_memory_ones(tmp_path, levels):
    ds = mock_era5(n_time=8)
    store = write_training_store(ds, tmp_path / "train.zarr")
    on_disk = xr.open_zarr(store, chunks=None)
    fast = ForecastPairs(on_disk, UPPER, SURFACE, levels, 6, steps=2, in_memory=False)
    held = ForecastPairs(on_disk, UPPER, SURFACE, levels, 6, steps=2, in_memory=True)
    # another dim order (not a training store's) goes through State.from_xarray
    other = ForecastPairs(on_disk.transpose("time", "latitude", "level", "longitude"), UPPER,
                          SURFACE, levels, 6, steps=2, in_memory=False)
    assert fast._chunks is not None and other._chunks is None and held._chunks is None
    for i in (0, len(fast) - 1):
        for key in held[i]:
            assert torch.equal(fast[i][key], held[i][key]), key
            assert torch.equal(other[i][key], held[i][key]), key
