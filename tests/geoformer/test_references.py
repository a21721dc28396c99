"""Reference forecasts as forecast stores: values by hand, and damped persistence's skill."""

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoformer.climatology import compute_climatology
from geoformer.references import (
    climatology_forecast,
    damped_persistence,
    fit_damped_persistence,
    persistence,
)
from geoformer.scores import score_table

SQ2 = math.sqrt(2.0)
# no poles, bounds -90, -45, 0, 45, 90: normalised cell areas 2 - sqrt 2 and sqrt 2
LAT = np.array([67.5, 22.5, -22.5, -67.5])
WEIGHTS = np.array([2 - SQ2, SQ2, SQ2, 2 - SQ2])
LON = np.arange(8) * 45.0
STEP = pd.Timedelta(hours=6)


def analysis(upper, surface, t, levels=(500, 850)) -> xr.Dataset:
    """Truth: temperature (time, level, lat, lon) and 2m_temperature (time, lat, lon)."""
    coords = {"time": t, "level": list(levels), "latitude": LAT, "longitude": LON}
    return xr.Dataset({
        "temperature": (("time", "level", "latitude", "longitude"), upper),
        "2m_temperature": (("time", "latitude", "longitude"), surface),
    }, coords=coords)


def random_analysis(n_times, seed=0, start="2021-01-01") -> xr.Dataset:
    rng = np.random.default_rng(seed)
    t = pd.date_range(start, periods=n_times, freq=STEP)
    return analysis(rng.normal(size=(n_times, 2, 4, 8)), rng.normal(size=(n_times, 4, 8)), t)


def mock_ar1(n_times, phi, seed=0, mean=250.0) -> xr.Dataset:
    """Every grid point, level and variable an independent AR(1) in 6-hour steps.

    anomaly[t + 1] = phi anomaly[t] + sqrt(1 - phi^2) noise: unit variance, lag-k
    correlation phi^k, so the best "climatology + r x initial anomaly" forecast has r = phi^k.
    """
    rng = np.random.default_rng(seed)
    shape = (n_times, 3, 4, 8)  # two levels and a surface "level"
    anomaly = np.empty(shape)
    anomaly[0] = rng.normal(size=shape[1:])
    for i in range(1, n_times):
        anomaly[i] = phi * anomaly[i - 1] + math.sqrt(1 - phi**2) * rng.normal(size=shape[1:])
    t = pd.date_range("2000-01-01", periods=n_times, freq=STEP)
    return analysis(mean + anomaly[:, :2], mean + anomaly[:, 2], t)


def time_mean_climatology(value=0.0) -> xr.Dataset:
    clim = analysis(np.full((1, 2, 4, 8), value), np.full((1, 4, 8), value),
                    pd.DatetimeIndex(["2000-01-01"])).isel(time=0, drop=True)
    clim.attrs["climatology_kind"] = "time_mean"
    return clim


def daily_climatology() -> xr.Dataset:
    """(dayofyear, hour, ...) climatology worth 10 x day of year + hour, everywhere."""
    doy, hours = np.arange(1, 367), np.arange(0, 24, 6)
    value = 10.0 * doy[:, None] + hours[None, :]
    upper = np.broadcast_to(value[:, :, None, None, None], (366, 4, 2, 4, 8))
    surface = np.broadcast_to(value[:, :, None, None], (366, 4, 4, 8))
    coords = {"dayofyear": doy, "hour": hours, "level": [500, 850], "latitude": LAT,
              "longitude": LON}
    return xr.Dataset({
        "temperature": (("dayofyear", "hour", "level", "latitude", "longitude"), upper.copy()),
        "2m_temperature": (("dayofyear", "hour", "latitude", "longitude"), surface.copy()),
    }, coords=coords, attrs={"climatology_kind": "dayofyear_hour"})


# --------------------------------------------------------------------------- persistence


def test_persistence_repeats_the_initial_state_at_every_lead():
    truth = random_analysis(5)
    init, lead = truth["time"].values[[1, 3]], pd.to_timedelta([6, 24, 120], unit="h")
    forecast = persistence(truth, init, lead)
    assert forecast["temperature"].dims == ("time", "prediction_timedelta", "level",
                                            "latitude", "longitude")
    assert forecast["2m_temperature"].dims == ("time", "prediction_timedelta", "latitude",
                                               "longitude")
    for p in range(3):
        np.testing.assert_array_equal(forecast["temperature"].values[:, p],
                                      truth["temperature"].values[[1, 3]])
    with pytest.raises(ValueError, match="no data at init time"):
        persistence(truth, pd.DatetimeIndex(["1999-01-01"]), lead)


# --------------------------------------------------------------------------- climatology


def test_climatology_forecast_is_the_climatology_at_the_valid_time():
    init = pd.DatetimeIndex(["2021-03-01T00", "2021-12-31T18"])
    lead = pd.to_timedelta([6, 30], unit="h")
    like = random_analysis(2).sortby("latitude")
    forecast = climatology_forecast(daily_climatology(), init, lead, like=like)
    # valid times: Mar 1 06, Mar 2 06 (days 60, 61 of 2021); Jan 1 00, Jan 2 00 (days 1, 2)
    expected = np.array([[606.0, 616.0], [10.0, 20.0]])
    np.testing.assert_array_equal(forecast["temperature"].values[:, :, 1, 0, 0], expected)
    np.testing.assert_array_equal(forecast["2m_temperature"].values[:, :, 2, 3], expected)
    np.testing.assert_array_equal(forecast["latitude"].values, np.sort(LAT))
    assert forecast["temperature"].dims[:2] == ("time", "prediction_timedelta")


# --------------------------------------------------------------------------- damped persistence


def test_fit_damped_persistence_by_hand():
    # r = sum_w(a0 at) / sum_w(a0^2) over pairs (t, t + lead) and the whole grid
    truth = random_analysis(4, seed=1)
    clim = time_mean_climatology(0.3)
    r = fit_damped_persistence(truth, clim, pd.to_timedelta([6, 12], unit="h"))
    a = truth["temperature"].values[:, 1] - 0.3  # level 850, (time, lat, lon)
    w = WEIGHTS[None, :, None]
    for p, steps in enumerate([1, 2]):
        a0, at = a[:-steps], a[steps:]
        expected = (w * a0 * at).sum() / (w * a0 * a0).sum()
        assert float(r["temperature"].sel(level=850).isel(prediction_timedelta=p)) == (
            pytest.approx(expected))
    assert r["temperature"].dims == ("prediction_timedelta", "level")
    assert r["2m_temperature"].dims == ("prediction_timedelta",)


def test_damped_persistence_formula_with_a_seasonal_climatology():
    # truth at 2021-01-01 06 (day 1, hour 6): clim 16; truth 16 + 2 -> anomaly 2
    # lead 24 h: clim(valid = day 2, hour 6) = 26; with r = 0.5 the forecast is 26 + 0.5 * 2
    t = pd.date_range("2021-01-01T06", periods=1, freq=STEP)
    truth = analysis(np.full((1, 2, 4, 8), 18.0), np.full((1, 4, 8), 18.0), t)
    lead = pd.to_timedelta([24], unit="h")
    coefficients = xr.Dataset(
        {"temperature": (("prediction_timedelta", "level"), [[0.5, 0.5]]),
         "2m_temperature": (("prediction_timedelta",), [0.5])},
        coords={"prediction_timedelta": lead, "level": [500, 850]})
    forecast = damped_persistence(truth, daily_climatology(), coefficients, t, lead)
    np.testing.assert_allclose(forecast["temperature"].values, 27.0)
    np.testing.assert_allclose(forecast["2m_temperature"].values, 27.0)
    assert forecast["temperature"].dims == ("time", "prediction_timedelta", "level",
                                            "latitude", "longitude")


def test_damped_persistence_beats_persistence_and_climatology_at_short_and_long_leads():
    phi = 0.8
    data = mock_ar1(1200, phi, seed=2)
    train, test = data.isel(time=slice(0, 800)), data.isel(time=slice(800, None))
    lead = pd.to_timedelta([6, 24, 48], unit="h")  # 1, 4 and 8 steps
    clim = compute_climatology(train, kind="time_mean")
    r = fit_damped_persistence(train, clim, lead)
    # sampling error of r is about 1 / sqrt(effective samples), ~0.02 here
    expected_r = phi ** np.array([1, 4, 8])
    np.testing.assert_allclose(r["temperature"].values, expected_r[:, None].repeat(2, 1),
                               atol=0.05)
    np.testing.assert_allclose(r["2m_temperature"].values, expected_r, atol=0.05)
    init = test["time"].values[:-8]
    table = score_table({
        "damped": damped_persistence(test, clim, r, init, lead),
        "persistence": persistence(test, init, lead),
        "climatology": climatology_forecast(clim, init, lead, like=test),
    }, test).query("metric == 'rmse'")
    table = table.assign(level=table["level"].fillna(0))  # surface rows have level NaN
    rmse = table.pivot_table(index=["variable", "level", "lead_time_hours"], columns="forecast",
                             values="value")
    assert len(rmse) == 3 * 3
    assert (rmse["damped"] < rmse["persistence"]).all()
    assert (rmse["damped"] < rmse["climatology"]).all()
    # the expected MSE gains are large: at 1 step 0.36 vs 0.40 (persistence), at 8 steps
    # 0.97 vs 1.66 (persistence); the margin checks the fitted r is used, not r = 1 or 0
    short = rmse.xs(6.0, level="lead_time_hours")
    assert (short["damped"] ** 2 < 0.39).all() and (short["persistence"] ** 2 > 0.37).all()


def test_damped_persistence_errors():
    truth = random_analysis(3)
    clim = time_mean_climatology()
    r = fit_damped_persistence(truth, clim, pd.to_timedelta([6], unit="h"))
    with pytest.raises(ValueError, match="not fitted for lead"):
        damped_persistence(truth, clim, r, truth["time"].values[:1],
                           pd.to_timedelta([12], unit="h"))
    with pytest.raises(ValueError, match=r"coefficients are missing variables \['2m"):
        damped_persistence(truth, clim, r[["temperature"]], truth["time"].values[:1],
                           pd.to_timedelta([6], unit="h"))
    with pytest.raises(ValueError, match="no training pair"):
        fit_damped_persistence(truth, clim, pd.to_timedelta([7], unit="h"))
    with pytest.raises(ValueError, match=r"climatology is missing variables \['2m"):
        fit_damped_persistence(truth, clim[["temperature"]], pd.to_timedelta([6], unit="h"))
