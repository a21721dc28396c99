"""WeatherBench 2 scores on tiny grids, against numbers derived by hand in each test."""

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoformer.area import REGIONS, latitude_weights, region_mask, select_region
from geoformer.climatology import climatology_at, compute_climatology
from geoformer.metrics import (
    acc,
    acc_spatial,
    mse_spatial,
    rmse_per_sample_then_time_mean,
    rmse_time_mean_then_sqrt,
    spatial_mean,
)
from geoformer.scores import SCORE_COLUMNS, score_table

SQ2, SQ3 = math.sqrt(2.0), math.sqrt(3.0)

# 4 x 8 grid with poles, stored descending as the package does. Cell bounds 90, 60, 0, -60,
# -90: areas 1 - sin 60, sin 60, sin 60, 1 - sin 60 (sum 2, mean 1/2), so the normalised
# weights are 2 - sqrt 3 and sqrt 3.
LAT_POLES = np.array([90.0, 30.0, -30.0, -90.0])
W_POLES = np.array([2 - SQ3, SQ3, SQ3, 2 - SQ3])
# 4 x 8 grid without poles: bounds -90, -45, 0, 45, 90 give weights 2 - sqrt 2 and sqrt 2.
LAT_NO_POLES = np.array([-67.5, -22.5, 22.5, 67.5])
W_NO_POLES = np.array([2 - SQ2, SQ2, SQ2, 2 - SQ2])
LON = np.arange(8) * 45.0


def grid_field(values, lat=LAT_POLES, **leading) -> xr.DataArray:
    """DataArray (*leading, latitude, longitude) from an array broadcastable to that shape."""
    dims = (*leading, "latitude", "longitude")
    coords = {**leading, "latitude": lat, "longitude": LON}
    shape = tuple(len(c) for c in coords.values())
    return xr.DataArray(np.broadcast_to(values, shape).copy(), dims=dims, coords=coords)


def rows_pattern(row_values) -> np.ndarray:
    """(latitude, longitude) array holding one value per latitude row."""
    return np.repeat(np.asarray(row_values, dtype=float)[:, None], len(LON), axis=1)


def times(n, start="2020-01-01", freq="12h"):
    return pd.date_range(start, periods=n, freq=freq)


# --------------------------------------------------------------------------- latitude weights


def test_latitude_weights_with_poles_by_hand_in_both_orders():
    descending = latitude_weights(xr.DataArray(LAT_POLES, dims="latitude"))
    ascending = latitude_weights(xr.DataArray(LAT_POLES[::-1], dims="latitude"))
    np.testing.assert_allclose(descending.values, W_POLES)
    np.testing.assert_allclose(ascending.values, W_POLES[::-1])
    np.testing.assert_array_equal(descending["latitude"].values, LAT_POLES)
    assert descending.values[0] > 0, "a pole row must keep the area of its cap"


def test_latitude_weights_without_poles_by_hand_and_mean_one():
    weights = latitude_weights(xr.DataArray(LAT_NO_POLES, dims="latitude"))
    np.testing.assert_allclose(weights.values, W_NO_POLES)
    assert weights.mean() == pytest.approx(1.0)


def test_latitude_weights_on_unsorted_uneven_latitudes():
    # sorted -50, 10, 40: bounds -80 (half a spacing below), -20, 25, 55 (half above)
    lat = np.array([10.0, -50.0, 40.0])
    s = [math.sin(math.radians(b)) for b in (-80, -20, 25, 55)]
    area = {-50.0: s[1] - s[0], 10.0: s[2] - s[1], 40.0: s[3] - s[2]}
    mean = sum(area.values()) / 3
    expected = [area[x] / mean for x in lat]
    np.testing.assert_allclose(latitude_weights(xr.DataArray(lat, dims="latitude")), expected)


def test_latitude_weights_of_an_even_grid_without_poles_are_cosines():
    # sin(lat + d/2) - sin(lat - d/2) = 2 cos(lat) sin(d/2) when the outer bounds are +-90
    lat = -90 + 5.625 / 2 + 5.625 * np.arange(32)
    cosine = np.cos(np.deg2rad(lat))
    weights = latitude_weights(xr.DataArray(lat, dims="latitude"))
    np.testing.assert_allclose(weights.values, cosine / cosine.mean())


@pytest.mark.parametrize("lat, match", [([10.0, 10.0, 0.0], "duplicate"), ([0.0, 95.0], "90")])
def test_latitude_weights_reject_bad_latitudes(lat, match):
    with pytest.raises(ValueError, match=match):
        latitude_weights(xr.DataArray(np.array(lat), dims="latitude"))


# --------------------------------------------------------------------------- regions


def test_region_bounds_are_inclusive_at_20_degrees():
    lat = xr.DataArray(np.array([90.0, 20.0, 0.0, -20.0, -90.0]), dims="latitude")
    assert region_mask(lat, "tropics").values.tolist() == [False, True, True, True, False]
    assert region_mask(lat, "extratropics_north").values.tolist() == [True, True, False, False,
                                                                      False]
    assert region_mask(lat, "extratropics_south").values.tolist() == [False, False, False, True,
                                                                      True]
    assert region_mask(lat, "global").values.all()
    assert set(REGIONS) == {"global", "tropics", "extratropics_north", "extratropics_south"}


def test_region_mean_uses_whole_grid_cell_areas_renormalised_over_the_region():
    # uneven grid, sorted -90, -50, 10, 30, 90: bounds -90, -70, -20, 20, 60, 90 (sum of
    # areas 2). The northern extratropics hold rows 90 and 30 with areas 1 - sin 60 and
    # sin 60 - sin 20; cropping the grid first would move the 30 deg row's lower bound to 0.
    lat = np.array([90.0, 30.0, 10.0, -50.0, -90.0])
    s20, s60 = math.sin(math.radians(20)), math.sin(math.radians(60))
    area_90, area_30 = 1 - s60, s60 - s20
    values = grid_field(rows_pattern([1.0, 5.0, 1e6, -1e6, 1e6]), lat=lat)
    expected = (area_90 * 1.0 + area_30 * 5.0) / (area_90 + area_30)
    assert float(spatial_mean(values, "extratropics_north")) == pytest.approx(expected)
    subset, weights = select_region(values, "extratropics_north")
    assert subset["latitude"].values.tolist() == [90.0, 30.0]
    np.testing.assert_allclose(weights.values, [area_90 / 0.4, area_30 / 0.4])


def test_region_errors():
    values = grid_field(0.0)
    with pytest.raises(ValueError, match="unknown region 'arctic'"):
        spatial_mean(values, "arctic")
    with pytest.raises(ValueError, match="contains no latitude"):
        spatial_mean(values, "tropics")  # rows at +-30 and +-90 only


# --------------------------------------------------------------------------- RMSE


def two_sample_errors():
    """Truth 0 and a forecast whose error differs between its two samples (time dim).

    Sample 0: error 4 on the pole rows only, MSE = 16 (2 - sqrt 3) * 2 / 4 = 8 (2 - sqrt 3).
    Sample 1: error 0.2 on the two middle rows, MSE = 0.04 * 2 sqrt 3 / 4 = 0.02 sqrt 3.
    """
    error = np.stack([rows_pattern([4, 0, 0, 4]), rows_pattern([0, 0.2, 0.2, 0])])
    t = times(2)
    forecast = grid_field(error, time=t)
    truth = grid_field(0.0, time=t)
    return forecast, truth, np.array([8 * (2 - SQ3), 0.02 * SQ3])


def test_mse_spatial_by_hand_keeps_time():
    forecast, truth, mse = two_sample_errors()
    result = mse_spatial(forecast, truth)
    assert result.dims == ("time",)
    np.testing.assert_allclose(result.values, mse)


def test_rmse_conventions_by_hand_and_they_differ():
    forecast, truth, mse = two_sample_errors()
    headline = rmse_time_mean_then_sqrt(forecast, truth)
    pangu = rmse_per_sample_then_time_mean(forecast, truth)
    assert float(headline) == pytest.approx(math.sqrt((mse[0] + mse[1]) / 2))
    assert float(pangu) == pytest.approx((math.sqrt(mse[0]) + math.sqrt(mse[1])) / 2)
    assert float(pangu) < float(headline) - 0.1


def test_rmse_on_datasets_keeps_level_and_lead_dims_and_ignores_latitude_order():
    t, lead, level = times(3), pd.to_timedelta([6, 12], unit="h"), [500, 850]
    rng = np.random.default_rng(1)
    forecast = xr.Dataset({"temperature": grid_field(
        rng.normal(size=(3, 2, 2, 4, 8)), time=t, prediction_timedelta=lead, level=level)})
    truth = forecast * 0 + 1.0
    result = rmse_time_mean_then_sqrt(forecast, truth.sortby("latitude"))
    assert result["temperature"].dims == ("prediction_timedelta", "level")
    error2 = ((forecast["temperature"].values - 1.0) ** 2 * W_POLES[:, None]).mean(axis=(-2, -1))
    np.testing.assert_allclose(result["temperature"].values, np.sqrt(error2.mean(axis=0)))


def test_nan_in_a_forecast_propagates_to_its_score():
    forecast, truth, _ = two_sample_errors()
    forecast[0, 1, 3] = np.nan
    assert np.isnan(float(rmse_time_mean_then_sqrt(forecast, truth)))
    assert np.isnan(float(rmse_per_sample_then_time_mean(forecast, truth)))


def test_metric_inputs_must_share_coordinates():
    forecast, truth, _ = two_sample_errors()
    shifted = truth.assign_coords(time=truth["time"] + pd.Timedelta(hours=1))
    with pytest.raises(ValueError, match="coordinates differ"):
        mse_spatial(forecast, shifted)
    other_grid = truth.assign_coords(longitude=LON + 1.0)
    with pytest.raises(ValueError, match="longitude differs between forecast and truth"):
        mse_spatial(forecast, other_grid)


# --------------------------------------------------------------------------- ACC


def zero_climatology(lat=LAT_POLES) -> xr.Dataset:
    clim = xr.Dataset({"temperature": grid_field(0.0, lat=lat)})
    clim.attrs["climatology_kind"] = "time_mean"
    return clim


def test_acc_is_one_for_a_perfect_forecast_and_minus_one_for_a_flipped_anomaly():
    rng = np.random.default_rng(2)
    truth = xr.Dataset({"temperature": grid_field(rng.normal(size=(3, 4, 8)), time=times(3))})
    clim = zero_climatology()
    clim["temperature"] = clim["temperature"] + 0.3
    flipped = 2 * 0.3 - truth  # anomaly -(truth - 0.3)
    np.testing.assert_allclose(acc_spatial(truth, truth, clim)["temperature"].values, 1.0)
    on_arrays = acc_spatial(flipped["temperature"], truth["temperature"], clim)
    np.testing.assert_allclose(on_arrays.values, -1.0)
    assert float(acc(flipped, truth, clim)["temperature"]) == pytest.approx(-1.0)


def test_acc_by_hand_weighted_and_averaged_over_samples():
    # sample 0: o' = 1 on the north-pole row only, f' = 1 everywhere:
    #   mean_w(f'o') = mean_w(o'^2) = (2 - sqrt 3) / 4 and mean_w(f'^2) = 1,
    #   so ACC = sqrt((2 - sqrt 3) / 4).
    # sample 1: o' = +1 north, -1 south, f' = 1: mean_w(f'o') = 0, ACC = 0.
    truth = grid_field(np.stack([rows_pattern([1, 0, 0, 0]), rows_pattern([1, 1, -1, -1])]),
                       time=times(2))
    forecast = truth * 0 + 1.0
    data = {"temperature": forecast}, {"temperature": truth}
    forecast_ds, truth_ds = (xr.Dataset(d) for d in data)
    per_sample = acc_spatial(forecast_ds, truth_ds, zero_climatology())["temperature"]
    np.testing.assert_allclose(per_sample.values, [math.sqrt((2 - SQ3) / 4), 0.0], atol=1e-12)
    mean = float(acc(forecast_ds, truth_ds, zero_climatology())["temperature"])
    assert mean == pytest.approx(math.sqrt((2 - SQ3) / 4) / 2)


def seasonal_climatology(days_value, hours=(0, 12)) -> xr.Dataset:
    """A (dayofyear, hour, latitude, longitude) climatology equal to days_value(doy) + hour."""
    doy = np.arange(1, 367)
    values = np.array([[days_value(d) + h for h in hours] for d in doy])
    field = grid_field(values[:, :, None, None], dayofyear=doy, hour=np.array(hours))
    return xr.Dataset({"temperature": field}, attrs={"climatology_kind": "dayofyear_hour"})


def test_acc_takes_the_climatology_at_the_valid_time_not_the_init_time():
    clim = seasonal_climatology(lambda d: 10.0 * d)
    init, lead = times(2, start="2021-03-01"), pd.to_timedelta([0, 36], unit="h")
    anomaly = grid_field(rows_pattern([1, 2, -1, 3]))
    at_valid = climatology_at(clim, xr.DataArray(init, dims="time", coords={"time": init})
                              + xr.DataArray(lead, dims="prediction_timedelta",
                                             coords={"prediction_timedelta": lead}))
    truth = at_valid + anomaly
    forecast = at_valid - anomaly
    result = acc(forecast, truth, clim)["temperature"]
    np.testing.assert_allclose(result.values, [-1.0, -1.0])


# --------------------------------------------------------------------------- climatology


def leap_year_dataset(values_of_time) -> xr.Dataset:
    """2020 (366 days) at 00 and 12 UTC, one value per time broadcast over a 4 x 8 grid."""
    t = pd.date_range("2020-01-01", "2020-12-31 12:00", freq="12h")
    values = np.array([values_of_time(x) for x in t])[:, None, None]
    return xr.Dataset({"temperature": grid_field(values, time=t)})


def test_climatology_window_is_triangular_and_wraps_around_the_year():
    # a one-day spike on day 2 at 00 UTC spreads as weights (31 - |k|) / 31^2 over k in
    # -30..30 days, cyclically: day 360 is 8 days before day 2 in a 366-day year
    spike = leap_year_dataset(lambda t: 1.0 if (t.day_of_year, t.hour) == (2, 0) else 0.0)
    clim = compute_climatology(spike)["temperature"].isel(latitude=0, longitude=0)
    midnight = clim.sel(hour=0)
    for day, offset in [(2, 0), (3, 1), (32, 30), (360, 8), (338, 30)]:
        assert float(midnight.sel(dayofyear=day)) == pytest.approx((31 - offset) / 961)
    assert float(midnight.sel(dayofyear=33)) == 0.0 and float(midnight.sel(dayofyear=337)) == 0
    assert float(midnight.sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(clim.sel(hour=12).values, 0.0)


def test_climatology_of_a_sinusoid_is_the_damped_sinusoid_per_hour():
    # a symmetric window multiplies a sinusoid of period 366 days by
    # gain = sum_k w_k cos(2 pi k / 366) / sum_k w_k, with w_k = 31 - |k|
    amplitude, phase = 3.0, 0.7

    def seasonal(t):
        return 280.0 + 2.0 * (t.hour == 12) + amplitude * np.sin(
            2 * np.pi * (t.day_of_year - 1) / 366 + phase)

    k = np.arange(-30, 31)
    w = 31 - np.abs(k)
    gain = (w * np.cos(2 * np.pi * k / 366)).sum() / w.sum()
    clim = compute_climatology(leap_year_dataset(seasonal))["temperature"]
    day = np.arange(1, 367)
    for hour, offset in [(0, 280.0), (12, 282.0)]:
        expected = offset + amplitude * gain * np.sin(2 * np.pi * (day - 1) / 366 + phase)
        got = clim.sel(hour=hour).isel(latitude=2, longitude=5).values
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert clim.dims == ("dayofyear", "hour", "latitude", "longitude")
    assert compute_climatology(leap_year_dataset(seasonal)).attrs["climatology_kind"] == (
        "dayofyear_hour")


def test_time_mean_climatology_and_climatology_at_broadcasts_it():
    rng = np.random.default_rng(3)
    data = xr.Dataset({"temperature": grid_field(rng.normal(size=(5, 2, 4, 8)), time=times(5),
                                                 level=[500, 850])})
    clim = compute_climatology(data, kind="time_mean")
    assert clim.attrs["climatology_kind"] == "time_mean"
    np.testing.assert_allclose(clim["temperature"].values, data["temperature"].values.mean(0))
    at = climatology_at(clim, times(3, start="2031-07-01"))
    assert at["temperature"].sizes == {"time": 3, "level": 2, "latitude": 4, "longitude": 8}
    np.testing.assert_allclose(at["temperature"].isel(time=2).values, clim["temperature"].values)


def test_climatology_at_picks_day_of_year_and_hour_of_valid_times():
    clim = seasonal_climatology(lambda d: 100.0 * d)
    valid = pd.DatetimeIndex(["2021-01-01T00", "2021-02-01T12", "2020-12-31T00"])
    at = climatology_at(clim, valid)["temperature"].isel(latitude=0, longitude=0)
    np.testing.assert_allclose(at.values, [100.0, 3212.0, 36600.0])
    with pytest.raises(ValueError, match=r"no hour\(s\) of day \[6\]"):
        climatology_at(clim, pd.DatetimeIndex(["2021-01-01T06"]))


def test_climatology_errors():
    data = leap_year_dataset(lambda t: 0.0)
    with pytest.raises(ValueError, match="unknown climatology kind"):
        compute_climatology(data, kind="monthly")
    with pytest.raises(ValueError, match="odd"):
        compute_climatology(data, window_days=60)
    with pytest.raises(ValueError, match="climatology_kind"):
        climatology_at(data.isel(time=0), times(1))


# --------------------------------------------------------------------------- score table


def store(values, init, lead, lat=LAT_POLES, name="temperature", level=(500, 850)):
    """Forecast store (time, prediction_timedelta, level, latitude, longitude)."""
    return xr.Dataset({name: grid_field(values, lat=lat, time=init, prediction_timedelta=lead,
                                        level=list(level))})


def analysis(values, t, lat=LAT_POLES, level=(500, 850)) -> xr.Dataset:
    """Truth with temperature (time, level, lat, lon) and 2m_temperature (time, lat, lon)."""
    values = np.broadcast_to(values, (len(t), len(level), len(lat), len(LON)))
    return xr.Dataset({
        "temperature": grid_field(values, lat=lat, time=t, level=list(level)),
        "2m_temperature": grid_field(values[:, 0] + 1.0, lat=lat, time=t),
    })


def test_score_table_columns_rows_and_surface_levels():
    t = times(6)
    rng = np.random.default_rng(4)
    truth = analysis(rng.normal(size=(6, 2, 4, 8)), t)
    lead = pd.to_timedelta([12, 24], unit="h")
    # truth at each valid time (one and two 12-hour steps ahead) plus a bias of 0.5
    per_lead = [truth.isel(time=slice(s, s + 3)).assign_coords(time=t[:3]) + 0.5 for s in (1, 2)]
    forecast = xr.concat(per_lead, dim=pd.Index(lead, name="prediction_timedelta"))
    forecast = forecast.transpose("time", "prediction_timedelta", ...)
    table = score_table({"biased": forecast}, truth)
    assert list(table.columns) == SCORE_COLUMNS
    assert set(table["metric"]) == {"rmse", "rmse_per_sample"}  # no acc without climatology
    assert len(table) == 2 * 3 * 2  # leads x (2 levels + 1 surface) x metrics
    surface = table[table["variable"] == "2m_temperature"]
    assert surface["level"].isna().all() and table["level"].notna().sum() == 8
    np.testing.assert_allclose(table["value"], 0.5)  # a constant bias of 0.5 everywhere
    assert sorted(set(table["lead_time_hours"])) == [12.0, 24.0]
    assert set(table["region"]) == {"global"}


def test_score_table_skips_pairs_without_truth_and_matches_the_functions():
    t = times(4)
    rng = np.random.default_rng(5)
    truth = analysis(rng.normal(size=(4, 2, 4, 8)), t)[["temperature"]]
    init, lead = times(3), pd.to_timedelta([12, 24], unit="h")
    forecast = store(rng.normal(size=(3, 2, 2, 4, 8)), init, lead)
    table = score_table({"f": forecast}, truth, regions=("global", "extratropics_north"),
                        allow_missing_valid_times=True)
    # lead 24 h: valid times of inits 0, 1 are t[2], t[3]; init 2 would need t[4] -> skipped
    fc = forecast.sel(prediction_timedelta=lead[1]).isel(time=[0, 1])
    tr = truth.isel(time=[2, 3]).assign_coords(time=fc["time"].values)
    for region in ("global", "extratropics_north"):
        expected = rmse_time_mean_then_sqrt(fc, tr, region)["temperature"].sel(level=850)
        row = table.query("lead_time_hours == 24 and level == 850 and metric == 'rmse' "
                          "and region == @region")
        assert float(row["value"].iloc[0]) == pytest.approx(float(expected))


def test_score_table_acc_rows_with_a_climatology():
    t = times(4)
    truth = analysis(grid_field(rows_pattern([1, 2, 3, 4])).values, t)
    clim = compute_climatology(truth, kind="time_mean")
    forecast = store(grid_field(rows_pattern([1, 2, 3, 4])).values, times(2),
                     pd.to_timedelta([12], unit="h"))
    forecast["2m_temperature"] = forecast["temperature"].isel(level=0, drop=True) + 1.0
    table = score_table({"perfect": forecast}, truth, clim)
    assert len(table) == 3 * 3  # (2 levels + 1 surface) x (rmse, rmse_per_sample, acc)
    np.testing.assert_allclose(table.query("metric == 'rmse'")["value"], 0.0)
    # truth equals its climatology: 0 / 0 anomaly correlation is undefined, not 1
    assert table.query("metric == 'acc'")["value"].isna().all()


def test_forecast_store_scored_as_weatherbench2_defines_it_by_hand():
    """score_table against WeatherBench 2's formulas written out in numpy.

    WB2: w = sin(upper) - sin(lower) with bounds at midpoints and +-90 at the ends, divided
    by its mean; MSE_t = sum_w err^2 / sum_w; RMSE = sqrt(mean_t MSE_t); ACC_t =
    sum_w(f' o') / sqrt(sum_w f'^2 sum_w o'^2); ACC = mean_t ACC_t. The truth is stored
    descending, the forecast ascending and without poles, as the WB2 64 x 32 store.
    """
    rng = np.random.default_rng(6)
    t = times(6)
    truth_np = rng.normal(size=(6, 2, 4, 8))  # (time, level, lat ascending, lon)
    init, lead = times(4), pd.to_timedelta([12, 36], unit="h")
    fc_np = truth_np[:4, None] + rng.normal(size=(4, 2, 2, 4, 8))  # (T, P, Z, H, W)

    truth = analysis(truth_np[:, :, ::-1], t, lat=LAT_NO_POLES[::-1])[["temperature"]]
    forecast = store(fc_np, init, lead, lat=LAT_NO_POLES)
    clim_np = truth_np.mean(axis=0)  # time-mean climatology (level, lat, lon)
    clim = compute_climatology(truth, kind="time_mean")
    table = score_table({"f": forecast}, truth, clim, allow_missing_valid_times=True).set_index(
        ["lead_time_hours", "level", "metric"])["value"]

    bounds = np.deg2rad(np.array([-90.0, -45.0, 0.0, 45.0, 90.0]))
    w = np.diff(np.sin(bounds))
    w = (w / w.mean())[:, None]
    for p, steps in enumerate([1, 3]):  # leads of 12 h and 36 h in 12-hourly truth
        inits = [i for i in range(4) if i + steps < 6]
        for z, level in enumerate([500, 850]):
            mse, corr = [], []
            for i in inits:
                f, o = fc_np[i, p, z], truth_np[i + steps, z]
                mse.append((w * (f - o) ** 2).sum() / (w.sum() * 8))
                fa, oa = f - clim_np[z], o - clim_np[z]
                corr.append((w * fa * oa).sum()
                            / np.sqrt((w * fa**2).sum() * (w * oa**2).sum()))
            hours = 12.0 * steps
            assert table[(hours, level, "rmse")] == pytest.approx(np.sqrt(np.mean(mse)))
            assert table[(hours, level, "rmse_per_sample")] == pytest.approx(
                np.mean(np.sqrt(mse)))
            assert table[(hours, level, "acc")] == pytest.approx(np.mean(corr))


def test_score_table_errors_say_what_is_wrong():
    t = times(4)
    truth = analysis(np.zeros((4, 2, 4, 8)), t)
    forecast = store(0.0, times(2), pd.to_timedelta([12], unit="h"))
    with pytest.raises(ValueError, match=r"truth is missing variables \['geopotential'\]"):
        score_table({"f": forecast.rename(temperature="geopotential")}, truth)
    with pytest.raises(ValueError, match=r"forecast 'f' is missing variables \['u"):
        score_table({"f": forecast}, truth, variables=["u_component_of_wind"])
    with pytest.raises(ValueError, match="latitude differs between forecast and truth"):
        score_table({"f": forecast.assign_coords(latitude=LAT_POLES * 0.5)}, truth)
    with pytest.raises(ValueError, match="longitude differs between forecast and truth"):
        score_table({"f": forecast.isel(longitude=slice(0, 4))}, truth)
    nan_truth = truth.copy(deep=True)
    nan_truth["temperature"][1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"truth contains NaN in \['temperature'\]"):
        score_table({"f": forecast}, nan_truth)
    late = store(0.0, times(2, start="2030-01-01"), pd.to_timedelta([12], unit="h"))
    with pytest.raises(ValueError, match="no valid time"):
        score_table({"f": late}, truth)
    with pytest.raises(ValueError, match=r"lacks level\(s\) \[250\]"):
        score_table({"f": store(0.0, times(2), pd.to_timedelta([12], unit="h"),
                                level=(250,))}, truth)
    hours = forecast.assign_coords(prediction_timedelta=[12])
    with pytest.raises(ValueError, match="prediction_timedelta must be timedelta64"):
        score_table({"f": hours}, truth)
    with pytest.raises(ValueError, match="missing dims"):
        score_table({"f": forecast.isel(prediction_timedelta=0, drop=True)}, truth)
    with pytest.raises(ValueError, match="unknown region"):
        score_table({"f": forecast}, truth, regions=("mars",))


def test_nan_in_truth_outside_the_scored_times_is_allowed():
    t = times(4)
    truth = analysis(np.zeros((4, 2, 4, 8)), t)
    truth["temperature"][0, 0, 0, 0] = np.nan  # time 0 is an init time, never a valid time
    forecast = store(0.0, times(2), pd.to_timedelta([12], unit="h"))
    table = score_table({"f": forecast}, truth)
    np.testing.assert_allclose(table["value"], 0.0)
