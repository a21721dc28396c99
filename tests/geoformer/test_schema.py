"""Mapping data onto the internal schema, and the errors a user meets at the data edge."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geoformer.schema import GRAVITY, SchemaError, open_dataset, standardize, validate
from tests.conftest import mock_era5

DATA = Path(__file__).parent.parent / "data" / "era5"
UPPER = ("geopotential", "temperature", "u_component_of_wind", "v_component_of_wind")
SURFACE = ("mean_sea_level_pressure", "2m_temperature")


def _as_era5_short_names(ds):
    short = {"geopotential": "z", "specific_humidity": "q", "temperature": "t",
             "u_component_of_wind": "u", "v_component_of_wind": "v",
             "mean_sea_level_pressure": "msl", "10m_u_component_of_wind": "u10",
             "10m_v_component_of_wind": "v10", "2m_temperature": "t2m",
             "land_sea_mask": "lsm", "soil_type": "slt"}
    return ds.rename(short)


def test_canonical_data_passes_unchanged():
    ds = mock_era5()
    out = standardize(ds)
    xr.testing.assert_identical(out.drop_attrs(), ds.drop_attrs())
    validate(out, UPPER, SURFACE, ("land_sea_mask",), levels=(1000, 500))


def test_every_naming_and_ordering_convention_maps_to_one_schema():
    ref = mock_era5()
    # ERA5 short names, WeatherBench 1 lat/lon, ascending latitude, levels 50 -> 1000 (as
    # WeatherBench 2 stores them), longitude -180..180, dims stored (lon, lat) like WB2 64x32.
    other = _as_era5_short_names(ref).rename(latitude="lat", longitude="lon")
    other = other.sortby("lat").sortby("level")
    other = other.assign_coords(lon=((other.lon + 180) % 360) - 180).sortby("lon")
    other = other.transpose("time", "level", "lon", "lat")
    notes = []
    out = standardize(other, notes)
    xr.testing.assert_allclose(out.drop_attrs(), ref.drop_attrs())
    assert list(out["temperature"].dims) == ["time", "level", "latitude", "longitude"]
    assert any("-180..180" in n for n in notes) and any("z -> geopotential" in n for n in notes)
    assert "geoformer:" in out.attrs["history"]


def test_geopotential_height_becomes_geopotential_with_a_note():
    ref = mock_era5()
    height = ref.drop_vars("geopotential")
    height["geopotential_height"] = ref["geopotential"] / GRAVITY
    height["geopotential_height"].attrs = {"units": "m"}
    notes = []
    out = standardize(height, notes)
    np.testing.assert_allclose(out["geopotential"], ref["geopotential"], rtol=1e-6)
    assert out["geopotential"].attrs["units"] == "m2 s-2"
    assert any("multiplied by g" in n for n in notes)


def test_single_level_z_is_the_surface_geopotential():
    ds = mock_era5().rename(geopotential_at_surface="z_static").drop_vars("geopotential")
    ds = ds.rename(z_static="z")
    out = standardize(ds)
    assert "geopotential_at_surface" in out and "geopotential" not in out


def test_pressure_in_hpa_and_levels_in_pa_are_converted():
    ref = mock_era5()
    ds = ref.copy()
    ds["mean_sea_level_pressure"] = ref["mean_sea_level_pressure"] / 100
    ds["mean_sea_level_pressure"].attrs["units"] = "hPa"
    ds = ds.assign_coords(level=ref.level * 100)
    ds["level"].attrs["units"] = "Pa"
    out = standardize(ds)
    np.testing.assert_allclose(out["mean_sea_level_pressure"], ref["mean_sea_level_pressure"],
                               rtol=1e-6)
    assert out.level.values.tolist() == [1000, 850, 500]


def test_unknown_units_are_an_error():
    ds = mock_era5()
    ds["temperature"].attrs["units"] = "degF"
    with pytest.raises(SchemaError, match="'temperature' has units 'degF'; expected 'K'"):
        standardize(ds)


def test_missing_dims_and_variables_are_named():
    ds = mock_era5().rename(latitude="y")
    with pytest.raises(SchemaError, match="no 'latitude' dimension"):
        standardize(ds)
    ds = standardize(mock_era5(with_humidity=False))
    with pytest.raises(SchemaError, match=r"lacks variable\(s\) \['specific_humidity'\].*'q'"):
        validate(ds, ("specific_humidity",), ())
    with pytest.raises(SchemaError, match=r"lacks pressure level\(s\) \[700\]"):
        validate(ds, UPPER, (), levels=(1000, 700))


def test_wrong_dims_and_nans_are_errors():
    ds = standardize(mock_era5())
    flat = ds.assign(temperature=ds["temperature"].isel(level=0))
    with pytest.raises(SchemaError, match="'temperature' has dims"):
        validate(flat, ("temperature",), ())
    bad = ds.copy(deep=True)
    bad["2m_temperature"][0, 1, 2] = np.nan
    with pytest.raises(SchemaError, match="'2m_temperature' has 1 NaN"):
        validate(bad, (), ("2m_temperature",))


def test_netcdf_and_zarr_round_trip_through_open_dataset(tmp_path):
    ref = mock_era5()
    ref.to_netcdf(tmp_path / "a.nc")
    ref.to_zarr(tmp_path / "a.zarr")
    for name in ("a.nc", "a.zarr"):
        out = open_dataset(tmp_path / name)
        xr.testing.assert_allclose(out.drop_attrs().load(), ref.drop_attrs())


def test_unknown_format_and_missing_file():
    with pytest.raises(SchemaError, match="cannot tell the format"):
        open_dataset("data.csv")
    with pytest.raises(SchemaError, match="no such file"):
        open_dataset("/nonexistent/data.zarr")


def test_real_era5_grib_sample_opens_in_the_internal_schema():
    pytest.importorskip("cfgrib")
    ds = open_dataset(DATA / "era5-levels-members.grib")
    assert dict(ds.sizes) == {"number": 10, "time": 4, "level": 2, "latitude": 61,
                              "longitude": 120}
    assert ds.level.values.tolist() == [850, 500]
    assert ds["geopotential"].attrs["units"] == "m2 s-2"
    assert float(ds.latitude[0]) == 90.0 and float(ds.longitude[0]) == 0.0
    # Z500 is geopotential (about 5e4 m2 s-2), not geopotential height (about 5e3 m).
    z500 = float(ds["geopotential"].sel(level=500).mean())
    assert 4.5e4 < z500 < 6.0e4
    validate(ds, ("geopotential", "temperature"), (), levels=(500, 850))


def test_corrupted_grib_is_refused_naming_the_file():
    """cfgrib would skip the damaged message (and log its traceback): one error instead."""
    pytest.importorskip("cfgrib")
    path = DATA / "era5-levels-corrupted.grib"
    with pytest.raises(SchemaError, match=r"era5-levels-corrupted.grib: 1 GRIB message\(s\) "
                                          "are corrupted or truncated"):
        open_dataset(path)
