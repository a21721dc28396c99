"""Forecasts: layout, attributes, chaining of lead-time models, atomic writes, bad inputs."""

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from geoformer.aggregation import UnreachableLeadTime
from geoformer.forecast import forecast, load_models, parse_hours, write_forecast
from geoformer.schema import SchemaError
from tests.conftest import mock_era5, tiny_module


@pytest.fixture(scope="module")
def setup():
    ds = mock_era5(n_time=12)
    models = {24: tiny_module(ds, 24, seed=1).eval(), 6: tiny_module(ds, 6, seed=2).eval()}
    return ds, models


def test_parse_hours():
    assert parse_hours("10d") == 240 and parse_hours("6h") == 6 and parse_hours(36) == 36
    assert parse_hours("36") == 36
    with pytest.raises(ValueError, match="whole number of hours"):
        parse_hours("90min")


def test_forecast_layout_and_attributes(setup):
    ds, models = setup
    inits = ds.time.values[:2]
    fc = forecast(models, ds, inits, lead_time="2d", every="6h")
    assert dict(fc.sizes) == {"time": 2, "prediction_timedelta": 8, "level": 3, "latitude": 8,
                              "longitude": 16}
    assert fc["geopotential"].dims == ("time", "prediction_timedelta", "level", "latitude",
                                       "longitude")
    assert fc["2m_temperature"].dims == ("time", "prediction_timedelta", "latitude",
                                         "longitude")
    assert fc["geopotential"].attrs["units"] == "m2 s-2"
    assert fc["time"].attrs["standard_name"] == "forecast_reference_time"
    assert fc["prediction_timedelta"].values[0] == np.timedelta64(6, "h")
    assert (fc["valid_time"].values[1, 3] == inits[1] + np.timedelta64(24, "h"))
    assert "geoformer" in fc.attrs["source"] and fc.attrs["lead_time_models_hours"] == [6, 24]
    assert np.isfinite(fc["temperature"]).all()


def test_forecast_chains_models_as_the_plan_says(setup):
    ds, models = setup
    fc = forecast(models, ds, ds.time.values[:1], lead_time="30h", every="30h")
    state = [torch.from_numpy(np.stack([ds[v].values[:1] for v in models[24].config.upper_vars],
                                       axis=1)),
             torch.from_numpy(np.stack([ds[v].values[:1]
                                        for v in models[24].config.surface_vars], axis=1))]
    with torch.no_grad():
        state = models[24].forecast_step(*state)
        state = models[6].forecast_step(*state)
    np.testing.assert_allclose(fc["geopotential"].values[0, 0], state[0][0, 0].numpy(),
                               rtol=1e-5)


def test_unreachable_lead_time_fails_before_any_work(setup):
    ds, models = setup
    with pytest.raises(UnreachableLeadTime, match="5 h cannot be reached"):
        forecast(models, ds, ds.time.values[:1], lead_time="5h")


@pytest.mark.parametrize("breakage,message", [
    (lambda d: d.drop_vars("temperature"), r"lacks variable\(s\) \['temperature'\]"),
    (lambda d: d.sel(level=[1000, 850]), r"lacks pressure level\(s\) \[500\]"),
    (lambda d: d.rename(latitude="y"), r"no 'latitude' dimension"),
])
def test_bad_inputs_end_with_one_clear_message(setup, breakage, message):
    ds, models = setup
    with pytest.raises(SchemaError, match=message):
        forecast(models, breakage(ds), ds.time.values[:1], lead_time="6h")


def test_nan_in_the_initial_state_and_missing_init_times(setup):
    ds, models = setup
    bad = ds.copy(deep=True)
    bad["2m_temperature"][0, 0, 0] = np.nan
    with pytest.raises(SchemaError, match="'2m_temperature' has 1 NaN"):
        forecast(models, bad, ds.time.values[:1], lead_time="6h")
    with pytest.raises(SchemaError, match=r"initial time\(s\) \['2010-01-01 00:00:00'\]"):
        forecast(models, ds, ["2010-01-01"], lead_time="6h")


def test_another_grid_is_regridded_with_a_note(setup):
    ds, models = setup
    fine = mock_era5(n_time=12, grid=(16, 32))
    notes = []
    fc = forecast(models, fine, fine.time.values[:1], lead_time="6h", notes=notes)
    assert fc.sizes["latitude"] == 8 and any("regridded conservatively" in n for n in notes)
    assert "regridded conservatively" in fc.attrs["history"]


def test_ensemble_members_are_separate_initial_states(setup):
    ds, models = setup
    members = xr.concat([ds, ds + 1.0], dim=pd.Index([0, 1], name="number"))
    fc = forecast(models, members, ds.time.values[:1], lead_time="6h")
    assert fc["temperature"].dims[:3] == ("time", "number", "prediction_timedelta")
    single = forecast(models, ds + 1.0, ds.time.values[:1], lead_time="6h")
    np.testing.assert_allclose(fc["temperature"].sel(number=1).values,
                               single["temperature"].values, rtol=1e-5)


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_written_forecast_reads_back_and_never_half_exists(setup, tmp_path, suffix,
                                                           monkeypatch):
    ds, models = setup
    fc = forecast(models, ds, ds.time.values[:2], lead_time="12h", every="6h")
    path = write_forecast(fc, tmp_path / f"fc{suffix}")
    back = xr.open_dataset(path, engine="zarr" if suffix == ".zarr" else "netcdf4")
    xr.testing.assert_allclose(back.load().drop_attrs(), fc.drop_attrs())
    with pytest.raises(FileExistsError):
        write_forecast(fc, path)
    # An interruption after the data went to disk but before the write finished.
    method = "to_zarr" if suffix == ".zarr" else "to_netcdf"
    original = getattr(xr.Dataset, method)

    def interrupted(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, method, interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_forecast(fc, tmp_path / f"other{suffix}")
    with pytest.raises(KeyboardInterrupt):
        write_forecast(fc, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"fc{suffix}"]
    xr.testing.assert_allclose(xr.open_dataset(path, engine="zarr" if suffix == ".zarr" else
                                               "netcdf4").load().drop_attrs(), fc.drop_attrs())


def test_checkpoints_that_disagree_are_refused(tmp_path):
    import lightning as L

    ds = mock_era5(n_time=4)
    paths = []
    for lead, levels in ((24, [1000, 850, 500]), (6, [1000, 850])):
        module = tiny_module(ds.sel(level=levels), lead)
        trainer = L.Trainer(logger=False, enable_progress_bar=False, max_epochs=0)
        trainer.strategy.connect(module)
        path = tmp_path / f"m{lead}.ckpt"
        trainer.save_checkpoint(path)
        paths.append(path)
    with pytest.raises(ValueError, match="differ in their levels"):
        load_models(paths)


def test_a_written_store_scores_as_weatherbench2_defines_it(setup, tmp_path):
    """RMSE and ACC of a forecast store written by the package, against WeatherBench 2's
    definitions written out here in numpy on the tiny grid."""
    from geoformer.climatology import compute_climatology
    from geoformer.scores import score_table

    ds, models = setup
    inits = ds.time.values[:3]
    path = write_forecast(forecast(models, ds, inits, lead_time="12h", every="6h"),
                          tmp_path / "fc.zarr")
    fc = xr.open_zarr(path).drop_vars("valid_time")
    clim = compute_climatology(ds, kind="time_mean")
    table = score_table({"model": fc}, ds, clim)
    # WeatherBench 2: weights = normalised cell areas from sin of the cell edges.
    lat = ds.latitude.values  # 90 .. -90 with poles
    asc = np.sort(lat)
    edges = np.clip(np.concatenate([[-90.0], (asc[1:] + asc[:-1]) / 2, [90.0]]), -90, 90)
    w = np.diff(np.sin(np.deg2rad(edges)))
    w = (w / w.mean())[::-1][:, None]  # back to descending latitude
    f = fc["temperature"].sel(level=850).values  # (time, lead, H, W)
    lead = 1  # 12 h
    o = np.stack([ds["temperature"].sel(level=850, time=t + np.timedelta64(12, "h")).values
                  for t in inits])
    mse = ((f[:, lead] - o) ** 2 * w).mean(axis=(1, 2))
    c = clim["temperature"].sel(level=850).values
    fa, oa = f[:, lead] - c, o - c
    acc = ((fa * oa * w).mean(axis=(1, 2))
           / np.sqrt((fa**2 * w).mean(axis=(1, 2)) * (oa**2 * w).mean(axis=(1, 2)))).mean()

    def value(metric):
        row = table[(table.variable == "temperature") & (table.level == 850)
                    & (table.lead_time_hours == 12) & (table.metric == metric)]
        return float(row["value"].iloc[0])

    assert value("rmse") == pytest.approx(np.sqrt(mse.mean()), rel=1e-5)
    assert value("rmse_per_sample") == pytest.approx(np.sqrt(mse).mean(), rel=1e-5)
    assert value("acc") == pytest.approx(acc, rel=1e-5)


def test_scoring_refuses_a_training_period_that_overlaps_the_forecast(setup):
    from geoformer.evaluation import evaluate

    ds, models = setup
    fc = forecast(models, ds, ds.time.values[4:5], lead_time="6h")
    t = [str(v) for v in ds.time.values]
    with pytest.raises(ValueError, match="lie in the training period"):
        evaluate(fc, ds, train_period=(t[0], t[6]), climatology_kind="time_mean")
    scores = evaluate(fc, ds, train_period=(t[0], t[3]), climatology_kind="time_mean")
    assert set(scores.forecast) == {"model", "persistence", "climatology", "damped_persistence"}


def test_perlin_ensemble_has_the_control_first_and_a_number_dim(setup, tmp_path):
    ds, models = setup
    inits = ds.time.values[:2]
    single = forecast(models, ds, inits, lead_time="12h", every="6h")
    fc = forecast(models, ds, inits, lead_time="12h", every="6h", members=3,
                  perturbation_scale=0.2, seed=5)
    assert fc["temperature"].dims == ("time", "number", "prediction_timedelta", "level",
                                      "latitude", "longitude")
    assert fc["2m_temperature"].dims[:2] == ("time", "number")
    assert list(fc["number"].values) == [0, 1, 2]
    assert fc["number"].attrs["standard_name"] == "realization"
    for name in single.data_vars:
        np.testing.assert_array_equal(fc[name].sel(number=0).values, single[name].values)
    t = fc["temperature"].values
    assert np.isfinite(t).all()
    assert not np.allclose(t[:, 1], t[:, 0]) and not np.allclose(t[:, 2], t[:, 1])
    again = forecast(models, ds, inits, lead_time="12h", every="6h", members=3,
                     perturbation_scale=0.2, seed=5)
    xr.testing.assert_equal(again.drop_attrs(), fc.drop_attrs())
    other = forecast(models, ds, inits, lead_time="12h", every="6h", members=3, seed=6)
    assert not np.allclose(other["temperature"].values[:, 1], t[:, 1])
    back = xr.open_zarr(write_forecast(fc, tmp_path / "ens.zarr"))
    assert back["number"].attrs["standard_name"] == "realization"
    assert back.sizes["number"] == 3


def test_the_perturbation_is_scale_standard_deviations_of_each_field(setup):
    from geoformer.forecast import _perturbed
    from geoformer.perturbation import ensemble_noise
    from geoformer.state import State

    ds, models = setup
    module = models[24]
    c = module.config
    state = State.from_xarray(ds.isel(time=[0]), c.upper_vars, c.surface_vars)  # (1, ...)
    ensemble = _perturbed(state, module, 2, "perlin", 0.3, seed=1)  # (1, 2, ...)
    assert ensemble.dims == ("time", "number") and ensemble.shape == (1, 2)
    du, dsn = ensemble_noise(2, state.upper.shape[1:3], state.surface.shape[1],
                             module.contract.latitude, module.contract.longitude, 0.3, 1)
    norm_u, norm_s = module.normalizer.normalize(ensemble.upper[0], ensemble.surface[0])
    base_u, base_s = module.normalizer.normalize(state.upper, state.surface)
    np.testing.assert_allclose((norm_u - base_u).numpy(), du, atol=1e-3)
    np.testing.assert_allclose((norm_s - base_s).numpy(), dsn, atol=1e-3)
    assert np.abs(du[1]).max() > 0.05


@pytest.mark.parametrize("kwargs,message", [
    (dict(members=0), "members must be a whole number >= 1"),
    (dict(members=2, perturbation_scale=-1.0), "scale must be >= 0"),
    (dict(members=2, perturbation="bred"), "unknown perturbation 'bred'"),
])
def test_bad_ensemble_settings_fail_before_any_work(setup, kwargs, message):
    ds, models = setup
    with pytest.raises(ValueError, match=message):
        forecast(models, ds, ds.time.values[:1], lead_time="6h", **kwargs)


def test_an_input_with_members_cannot_be_perturbed_again(setup):
    ds, models = setup
    members = xr.concat([ds, ds], dim=pd.Index([0, 1], name="number"))
    with pytest.raises(ValueError, match="already has ensemble members"):
        forecast(models, members, ds.time.values[:1], lead_time="6h", members=2)
