"""Figures: coastlines only where there is land; titles, units, projections, contours, the
score grid; each drawn at tiny size."""

import cartopy.crs as ccrs
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.contour import ContourSet

from geoformer.plots import (
    has_land,
    long_name,
    map_title,
    maps_figure,
    plot_maps,
    plot_scores,
    scores_figure,
    typeset_units,
)
from geoformer.schema import GRAVITY


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


# --- publishable figures: titles, units, projections, contours, the score grid -------------

INIT, LEAD = np.datetime64("2020-01-01T00:00"), pd.Timedelta("72h")


def _field(name="geopotential", units="m2 s-2", level=500, seed=0, **attrs):
    lat, lon = np.linspace(80, -80, 5), np.arange(0, 360, 45.0)
    values = 5.5e4 + 300 * np.random.default_rng(seed).normal(size=(5, 8))
    coords = {"latitude": lat, "longitude": lon, "time": INIT, "prediction_timedelta": LEAD}
    if level is not None:
        coords["level"] = level
    return xr.DataArray(values, coords=coords, dims=("latitude", "longitude"), name=name,
                        attrs={"units": units, **attrs})


def _maps(name="geopotential", units="m2 s-2", level=500, **kwargs):
    forecast, truth = _field(name, units, level), _field(name, units, level, seed=1)
    return maps_figure(forecast, truth, figsize=(6, 2), **kwargs)


def _colorbar_labels(fig):
    return [ax.get_xlabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


@pytest.mark.parametrize("units,typeset", [
    ("m2 s-2", "m² s⁻²"), ("m**2 s**-2", "m² s⁻²"), ("m s-1", "m s⁻¹"), ("K", "K"),
    ("Pa", "Pa"), ("kg kg-1", "kg kg⁻¹"), ("1", ""), ("", "")])
def test_units_are_typeset(units, typeset):
    assert typeset_units(units) == typeset


def test_long_name_prefers_cf_attribute_then_schema_table():
    assert long_name(_field(long_name="Height of the 500 hPa surface")) == \
        "Height of the 500 hPa surface"
    assert long_name(_field("t2m", "K", None)) == "2 metre temperature"
    assert long_name(name="temperature") == "Temperature"
    assert long_name(name="my_tracer") == "My tracer"


def test_title_has_long_name_level_initial_lead_and_valid_time():
    title = map_title(_field())
    assert title.startswith("Geopotential, 500 hPa")
    assert "initialised 2020-01-01 00:00 UTC" in title and "lead 72 h" in title
    assert "valid 2020-01-04 00:00 UTC" in title
    assert "valid 2020-01-02" in map_title(_field(), lead_time=pd.Timedelta("24h"))


def test_map_figure_title_units_and_shared_colour_scales():
    fig = _maps()
    try:
        title = fig._suptitle.get_text()
        assert "Geopotential" in title and "valid 2020-01-04 00:00 UTC" in title
        labels = _colorbar_labels(fig)
        assert labels == ["m² s⁻²", "error, m² s⁻²"]  # one bar for forecast+truth, one for error
        meshes = [ax.collections[0] for ax in fig.axes[:3]]
        assert meshes[0].get_clim() == meshes[1].get_clim()
        lo, hi = meshes[2].get_clim()
        assert lo == -hi and hi > 0
    finally:
        plt.close(fig)


def test_geopotential_in_dam_is_divided_by_ten_g_and_says_so():
    forecast, truth = _field(), _field(seed=1)
    fig = maps_figure(forecast, truth, figsize=(6, 2), geopotential_in_dam=True)
    try:
        assert "dam" in _colorbar_labels(fig)[0] and "10 g" in _colorbar_labels(fig)[0]
        high = max(float(forecast.max()), float(truth.max())) / (10 * GRAVITY)
        assert fig.axes[0].collections[0].get_clim()[1] == pytest.approx(high)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name,units,level,expected", [
    ("geopotential", "m2 s-2", 500, True), ("temperature", "K", 850, False),
    ("2m_temperature", "K", None, False)])
def test_contours_only_for_geopotential(name, units, level, expected):
    fig = _maps(name, units, level)
    try:
        counts = [sum(isinstance(c, ContourSet) for c in ax.collections) for ax in fig.axes[:3]]
        if expected:
            assert counts[0] > 0 and counts[1] > 0 and counts[2] == 0  # not on the error
        else:
            assert counts == [0, 0, 0]
    finally:
        plt.close(fig)


@pytest.mark.parametrize("projection,crs", [
    ("platecarree", ccrs.PlateCarree), ("robinson", ccrs.Robinson),
    ("orthographic", ccrs.Orthographic)])
def test_projection_choice_is_honoured(projection, crs):
    fig = _maps(projection=projection, coastlines=False)
    try:
        assert all(isinstance(ax.projection, crs) for ax in fig.axes[:3])
    finally:
        plt.close(fig)


def test_unknown_projection_is_refused():
    with pytest.raises(ValueError, match="unknown projection 'mercator'"):
        _maps(projection="mercator")


def test_plot_maps_writes_a_png_with_gridline_labels(tmp_path, monkeypatch):
    from cartopy.mpl.gridliner import Gridliner

    grids = []
    original = Gridliner.__init__
    monkeypatch.setattr(Gridliner, "__init__",
                        lambda self, *a, **k: grids.append(k) or original(self, *a, **k))
    path = plot_maps(_field(), _field(seed=1), tmp_path / "z500.png", projection="robinson",
                     figsize=(6, 2), dpi=40)
    assert path.stat().st_size > 0
    assert len(grids) == 3 and all(g.get("draw_labels") for g in grids)


def _scores(n_vars, metrics=("rmse",), hours=(24, 72, 120)):
    variables = [("geopotential", 500.0), ("temperature", 850.0), ("2m_temperature", None),
                 ("u_component_of_wind", 250.0), ("v_component_of_wind", 250.0),
                 ("mean_sea_level_pressure", None), ("specific_humidity", 700.0),
                 ("temperature", 500.0), ("geopotential", 850.0)][:n_vars]
    rows = [dict(forecast=f, variable=v, level=lv, lead_time_hours=h, metric=m, value=1.0,
                 region="global")
            for v, lv in variables for f in ("model", "persistence", "climatology",
                                             "damped_persistence")
            for h in hours for m in metrics]
    return pd.DataFrame(rows)


def test_score_grid_wraps_nine_panels_into_three_rows_with_every_forecast():
    fig = scores_figure(_scores(9))
    try:
        assert len(fig.axes) == 9  # 3 x 4 grid, the 3 unused slots removed
        rows = {ax.get_subplotspec().rowspan.start for ax in fig.axes}
        cols = {ax.get_subplotspec().colspan.start for ax in fig.axes}
        assert rows == {0, 1, 2} and cols == {0, 1, 2, 3}
        assert all(len(ax.lines) == 4 for ax in fig.axes)
        assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
        assert fig.axes[0].get_title() == "Geopotential, 500 hPa"
        assert fig.axes[0].get_ylabel() == "RMSE (m² s⁻²)"
        # the lowest panel of each column labels the shared lead-time axis (days here)
        assert fig.axes[-1].get_xlabel() == "lead time (days)"
        assert fig.axes[7].get_xlabel() == "lead time (days)"  # nothing under it in column 4
        assert fig.axes[0].get_xlabel() == fig.axes[3].get_xlabel() == ""
    finally:
        plt.close(fig)


def test_score_grid_starts_each_metric_on_a_new_row_and_uses_hours_for_short_leads():
    fig = scores_figure(_scores(2, metrics=("rmse", "acc"), hours=(6, 12, 18)))
    try:
        rows = [ax.get_subplotspec().rowspan.start for ax in fig.axes]
        assert rows == [0, 0, 1, 1]
        assert [ax.get_ylabel() for ax in fig.axes] == ["RMSE (m² s⁻²)", "RMSE (K)", "ACC",
                                                        "ACC"]
        assert fig.axes[-1].get_xlabel() == "lead time (hours)"
    finally:
        plt.close(fig)


def test_plot_scores_keeps_its_callers_signature(tmp_path):
    path = plot_scores(_scores(3, metrics=("rmse", "acc")), tmp_path / "scores.png",
                       variables=[("geopotential", 500.0), ("2m_temperature", None)])
    assert path.stat().st_size > 0


def test_plot_command_options(tmp_path, capsys):
    from geoformer.cli import build_parser

    args = build_parser().parse_args(
        ["plot", "--forecast", "f.zarr", "--truth", "t.zarr", "--output", "m.png",
         "--projection", "orthographic", "--geopotential-units", "dam"])
    assert args.projection == "orthographic" and args.geopotential_units == "dam"
    defaults = build_parser().parse_args(["plot", "--forecast", "f", "--truth", "t",
                                          "--output", "m.png"])
    assert defaults.projection == "platecarree" and defaults.geopotential_units == "m2s-2"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["plot", "--forecast", "f", "--truth", "t", "--output",
                                   "m.png", "--projection", "mercator"])


def _stores(tmp_path):
    lat, lon = np.linspace(80, -80, 5), np.arange(0, 360, 45.0)
    times = pd.date_range("2020-01-01", periods=3, freq="12h")
    rng = np.random.default_rng(0)
    dims = ("time", "level", "latitude", "longitude")
    truth = xr.Dataset({"geopotential": (dims, 5e4 + rng.normal(size=(3, 1, 5, 8)),
                                         {"units": "m2 s-2"})},
                       coords={"time": times, "level": [500], "latitude": lat,
                               "longitude": lon})
    fc = xr.Dataset({"geopotential": (("time", "prediction_timedelta") + dims[1:],
                                      5e4 + rng.normal(size=(1, 2, 1, 5, 8)),
                                      {"units": "m2 s-2"})},
                    coords={"time": times[:1], "level": [500], "latitude": lat,
                            "longitude": lon,
                            "prediction_timedelta": pd.to_timedelta([12, 24], "h")})
    truth.to_netcdf(tmp_path / "truth.nc")
    fc.to_netcdf(tmp_path / "fc.nc")
    return str(tmp_path / "fc.nc"), str(tmp_path / "truth.nc")


def test_plot_command_draws_with_projection_and_dam(tmp_path, capsys):
    from geoformer.cli import main

    fc, truth = _stores(tmp_path)
    out = tmp_path / "z500.png"
    assert main(["plot", "--forecast", fc, "--truth", truth, "--level", "500",
                 "--lead-time", "24h", "--projection", "orthographic",
                 "--geopotential-units", "dam", "--output", str(out)]) == 0
    assert out.stat().st_size > 0 and f"map: {out}" in capsys.readouterr().out
    assert main(["plot", "--forecast", fc, "--truth", truth, "--lead-time", "24h",
                 "--output", str(tmp_path / "x.png")]) == 2
    assert "give --level" in capsys.readouterr().err


def _binned_table():
    """A score table with spectrum rows (model, truth) and rank-histogram rows (ensemble)."""
    rows = []
    for name, slope in (("model", -4.0), ("truth", -3.0)):
        for lead in (24.0, 120.0):
            for k in range(0, 9):
                rows.append({"forecast": name, "variable": "geopotential", "level": 500.0,
                             "lead_time_hours": lead, "metric": f"zonal_spectrum_{k}",
                             "value": 10.0 * max(k, 1) ** slope, "region": "30-60N"})
    for lead in (24.0, 120.0):
        for r in range(11):
            rows.append({"forecast": "ensemble", "variable": "geopotential", "level": 500.0,
                         "lead_time_hours": lead, "metric": f"rank_histogram_{r}",
                         "value": 1 / 11, "region": "global"})
    return pd.DataFrame(rows)


def test_spectra_figure_draws_each_forecast_and_lead_without_the_zonal_mean(tmp_path):
    from geoformer.ensemble_plots import plot_spectra, spectra_figure

    fig = spectra_figure(_binned_table(), [("geopotential", 500.0)])
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert all(list(line.get_xdata()) == list(range(1, 9)) for line in ax.lines)
    assert "Geopotential, 500 hPa" in ax.get_title() and "m² s⁻²" in ax.get_ylabel()
    assert plot_spectra(_binned_table(), tmp_path / "s.png", [("geopotential", 500.0)]).stat(
        ).st_size > 0
    with pytest.raises(ValueError, match="no zonal_spectrum"):
        spectra_figure(_binned_table().query("forecast == 'ensemble'"), [("geopotential", 500)])


def test_rank_histogram_figure_draws_bars_per_lead_and_the_flat_line(tmp_path):
    from geoformer.ensemble_plots import plot_rank_histogram, rank_histogram_figure

    fig = rank_histogram_figure(_binned_table(), [("geopotential", 500.0)])
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 11
    flat = [line for line in ax.lines if line.get_label() == "calibrated"]
    assert len(flat) == 1 and flat[0].get_ydata()[0] == pytest.approx(1 / 11)
    assert plot_rank_histogram(_binned_table(), tmp_path / "r.png",
                               [("geopotential", 500.0)]).stat().st_size > 0
    with pytest.raises(ValueError, match="no rank_histogram"):
        rank_histogram_figure(_binned_table(), [("geopotential", 500.0)], forecast="model")
