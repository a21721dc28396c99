"""Maps: coastlines only where the dataset has land."""

import numpy as np
import pytest
import xarray as xr

from geoformer.plots import has_land, plot_maps


@pytest.mark.parametrize("attrs,land", [
    ({}, True),
    ({"title": "ERA5 reanalysis"}, True),
    ({"land": "none"}, False),
    ({"land": "None"}, False),
    ({"title": "Held-Suarez idealised dry atmosphere (sciforecast built-in dataset)"}, False),
])
def test_has_land_reads_the_dataset_attributes(attrs, land):
    assert has_land(xr.Dataset(attrs=attrs)) is land


@pytest.mark.parametrize("coastlines", [True, False])
def test_coastlines_are_drawn_only_when_asked(coastlines, tmp_path, monkeypatch):
    from cartopy.mpl.geoaxes import GeoAxes

    calls = []
    original = GeoAxes.coastlines
    monkeypatch.setattr(GeoAxes, "coastlines",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    lat, lon = np.linspace(-80, 80, 5), np.arange(0, 360, 45.0)
    field = xr.DataArray(np.random.default_rng(0).normal(size=(5, 8)),
                         coords={"latitude": lat, "longitude": lon},
                         dims=("latitude", "longitude"))
    path = plot_maps(field, field * 1.1, tmp_path / "map.png", coastlines=coastlines)
    assert path.stat().st_size > 0
    assert len(calls) == (3 if coastlines else 0)  # one per panel
