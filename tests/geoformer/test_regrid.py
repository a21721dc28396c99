"""Conservative regridding between regular global grids."""

import numpy as np
import pytest
import xarray as xr

from geoformer.regrid import latitude_bounds, overlap_matrix, regrid_conservative


def _cell_areas(lat, lon):
    edges = np.sort(latitude_bounds(np.sort(lat)))
    band = np.diff(np.sin(np.deg2rad(edges)))  # ascending order
    band = band[np.argsort(np.argsort(lat))]  # back to the order of lat
    return band[:, None] * np.full(lon.size, 360.0 / lon.size)[None, :]


def _grid(n_lat, n_lon, poles, descending=True):
    if poles:
        lat = np.linspace(-90, 90, n_lat)
    else:
        lat = -90 + (np.arange(n_lat) + 0.5) * 180 / n_lat
    lon = np.arange(n_lon) * 360.0 / n_lon
    return (lat[::-1] if descending else lat), lon


@pytest.mark.parametrize("src,dst", [
    ((61, 120, True, True), (32, 64, False, True)),   # 3 deg with poles -> 5.625 deg
    ((32, 64, False, False), (121, 240, True, True)),  # refine, ascending source
    ((32, 64, False, True), (16, 32, False, True)),   # exact 2x2 coarsening
])
def test_regridding_conserves_the_global_integral(src, dst):
    rng = np.random.default_rng(0)
    slat, slon = _grid(*src)
    dlat, dlon = _grid(*dst)
    values = rng.standard_normal((2, slat.size, slon.size))
    ds = xr.Dataset({"x": (("time", "latitude", "longitude"), values)},
                    coords={"latitude": slat, "longitude": slon})
    out = regrid_conservative(ds, dlat, dlon)
    assert out["x"].shape == (2, dlat.size, dlon.size)
    np.testing.assert_array_equal(out.latitude.values, dlat)
    before = (values * _cell_areas(slat, slon)).sum(axis=(1, 2))
    after = (out["x"].values * _cell_areas(dlat, dlon)).sum(axis=(1, 2))
    np.testing.assert_allclose(after, before, rtol=1e-10, atol=1e-10)


def test_exact_coarsening_is_the_area_weighted_mean_of_the_four_cells():
    slat, slon = _grid(32, 64, False)
    dlat, dlon = _grid(16, 32, False)
    rng = np.random.default_rng(1)
    values = rng.standard_normal((32, 64))
    ds = xr.Dataset({"x": (("latitude", "longitude"), values)},
                    coords={"latitude": slat, "longitude": slon})
    out = regrid_conservative(ds, dlat, dlon)["x"].values
    areas = _cell_areas(slat, slon)
    # target cell (0, 0) covers source rows 0-1 and the longitudes -5.625..5.625 deg:
    # half of source columns 63 and 1, all of column 0 (the cells are centred on 0 and 11.25)
    rows = [0, 1]
    cols, frac = [63, 0, 1], [0.5, 1.0, 0.5]
    w = np.array([[areas[r, c] * f for c, f in zip(cols, frac)] for r in rows])
    v = np.array([[values[r, c] for c in cols] for r in rows])
    assert out[0, 0] == pytest.approx((w * v).sum() / w.sum(), rel=1e-12)


def test_constant_fields_stay_constant_and_uncovered_cells_are_errors():
    slat, slon = _grid(61, 120, True)
    ds = xr.Dataset({"x": (("latitude", "longitude"), np.full((61, 120), 7.0))},
                    coords={"latitude": slat, "longitude": slon})
    out = regrid_conservative(ds, *_grid(32, 64, False))
    np.testing.assert_allclose(out["x"].values, 7.0, rtol=1e-13)
    with pytest.raises(ValueError, match="not covered"):
        overlap_matrix(np.array([100.0, 110.0]), np.array([0.0, 10.0]))
