"""Ensemble scores and zonal spectra on tiny grids, against values computed by hand."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoformer.probabilistic import (
    EARTH_RADIUS_M,
    PROBABILISTIC_METRICS,
    crps,
    crps_skill,
    crps_spread,
    ensemble_mean_rmse,
    rank_histogram,
    spread,
    spread_skill_ratio,
    zonal_energy_spectrum,
)
from geoformer.scores import score_table

# 3 x 4 grid: cell bounds -90, -30, 30, 90 give areas 1/2, 1, 1/2 (mean 2/3), so the
# normalised latitude weights are 3/4, 3/2, 3/4.
LAT = np.array([-60.0, 0.0, 60.0])
W = np.array([0.75, 1.5, 0.75])
LON = np.arange(4) * 90.0


def ensemble(values, n_time) -> xr.DataArray:
    """(time, number, latitude, longitude) from an array of that shape."""
    values = np.asarray(values, dtype=float)
    return xr.DataArray(values, dims=("time", "number", "latitude", "longitude"),
                        coords={"time": pd.date_range("2020-01-01", periods=n_time, freq="6h"),
                                "number": np.arange(values.shape[1]), "latitude": LAT,
                                "longitude": LON})


def truth_like(values, forecast) -> xr.DataArray:
    return forecast.isel(number=0, drop=True).copy(data=np.asarray(values, dtype=float))


def area_mean(field) -> float:
    """Hand-written area-weighted mean of a (latitude, longitude) numpy array."""
    total = sum(W[i] * field[i, j] for i in range(len(LAT)) for j in range(len(LON)))
    return total / (W.sum() * len(LON))


def random_case(members, n_time=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_time, members, len(LAT), len(LON)))
    y = rng.normal(size=(n_time, len(LAT), len(LON)))
    fc = ensemble(x, n_time)
    return x, y, fc, truth_like(y, fc)


# --------------------------------------------------------------------------- CRPS


def test_crps_of_two_members_is_the_formula():
    x, y, fc, tr = random_case(members=2)
    skill, spread_term = [], []
    for t in range(x.shape[0]):
        s = np.zeros((len(LAT), len(LON)))
        d = np.zeros_like(s)
        for i, j in itertools.product(range(len(LAT)), range(len(LON))):
            s[i, j] = (abs(x[t, 0, i, j] - y[t, i, j]) + abs(x[t, 1, i, j] - y[t, i, j])) / 2
            d[i, j] = abs(x[t, 0, i, j] - x[t, 1, i, j])  # 2 ordered pairs / (2 * 1)
        skill.append(area_mean(s))
        spread_term.append(area_mean(d))
    assert float(crps_skill(fc, tr)) == pytest.approx(np.mean(skill))
    assert float(crps_spread(fc)) == pytest.approx(np.mean(spread_term))
    assert float(crps(fc, tr)) == pytest.approx(np.mean(skill) - 0.5 * np.mean(spread_term))


def test_crps_spread_of_four_members_over_distinct_pairs():
    x, y, fc, tr = random_case(members=4, seed=1)
    m = 4
    per_time = []
    for t in range(x.shape[0]):
        d = np.zeros((len(LAT), len(LON)))
        for i, j in itertools.product(range(len(LAT)), range(len(LON))):
            d[i, j] = sum(abs(x[t, a, i, j] - x[t, b, i, j])
                          for a in range(m) for b in range(m) if a != b) / (m * (m - 1))
        per_time.append(area_mean(d))
    assert float(crps_spread(fc)) == pytest.approx(np.mean(per_time))


def test_crps_is_zero_for_a_perfect_point_mass_and_mae_for_one_member():
    x, y, fc, tr = random_case(members=1, seed=2)
    mae = np.mean([area_mean(np.abs(x[t, 0] - y[t])) for t in range(x.shape[0])])
    assert float(crps(fc, tr)) == pytest.approx(mae)
    assert float(crps_spread(fc)) == 0.0
    perfect = ensemble(np.repeat(y[:, None], 3, axis=1), y.shape[0])
    assert float(crps(perfect, tr)) == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------- RMSE and spread


def test_spread_rmse_and_ratio_by_hand():
    x, y, fc, tr = random_case(members=3, seed=3)
    var = [area_mean(np.var(x[t], axis=0, ddof=1)) for t in range(x.shape[0])]
    mse = [area_mean((x[t].mean(axis=0) - y[t]) ** 2) for t in range(x.shape[0])]
    assert float(spread(fc)) == pytest.approx(math.sqrt(np.mean(var)))
    assert float(ensemble_mean_rmse(fc, tr)) == pytest.approx(math.sqrt(np.mean(mse)))
    assert float(spread_skill_ratio(fc, tr)) == pytest.approx(
        math.sqrt(np.mean(var) / np.mean(mse)))


def test_identical_members_have_zero_spread_and_score_as_one_forecast():
    _, y, _, _ = random_case(members=1, seed=4)
    member = y + 0.5
    fc = ensemble(np.repeat(member[:, None], 3, axis=1), y.shape[0])
    tr = truth_like(y, fc)
    assert float(spread(fc)) == pytest.approx(0.0, abs=1e-12)  # var's rounding only
    assert float(spread_skill_ratio(fc, tr)) == pytest.approx(0.0, abs=1e-12)
    assert float(ensemble_mean_rmse(fc, tr)) == pytest.approx(0.5)
    assert float(crps(fc, tr)) == pytest.approx(0.5)  # the MAE of the single forecast


def test_a_region_restricts_the_area_mean():
    x, y, fc, tr = random_case(members=2, seed=5)
    # extratropics_north (20..90 deg N) holds only the 60 deg N row
    expected = np.mean([np.abs(x[t, :, 2] - y[t, 2]).mean() for t in range(x.shape[0])])
    assert float(crps_skill(fc, tr, "extratropics_north")) == pytest.approx(expected)


def test_ensemble_scores_need_a_member_dim_and_a_truth_without_one():
    _, _, fc, tr = random_case(members=2)
    with pytest.raises(ValueError, match="missing dims \\['number'\\]"):
        crps(fc.isel(number=0, drop=True), tr)
    with pytest.raises(ValueError, match="must not have an ensemble dim"):
        crps_skill(fc, fc)


# --------------------------------------------------------------------------- rank histogram


def test_rank_histogram_truth_above_or_below_every_member():
    x, _, fc, _ = random_case(members=3, seed=6)
    above = truth_like(x.max(axis=1) + 1.0, fc)
    below = truth_like(x.min(axis=1) - 1.0, fc)
    np.testing.assert_allclose(rank_histogram(fc, above).values, [0, 0, 0, 1])
    np.testing.assert_allclose(rank_histogram(fc, below).values, [1, 0, 0, 0])
    assert list(rank_histogram(fc, above)["bin"].values) == [0, 1, 2, 3]


def test_rank_histogram_is_area_weighted_by_hand():
    # members 0 and 1 everywhere; truth -1 / 0.5 / 2 on the three rows: ranks 0, 1, 2
    fc = ensemble(np.broadcast_to(np.array([0.0, 1.0])[None, :, None, None], (2, 2, 3, 4)), 2)
    tr = truth_like(np.broadcast_to(np.array([-1.0, 0.5, 2.0])[None, :, None], (2, 3, 4)), fc)
    np.testing.assert_allclose(rank_histogram(fc, tr).values, W / W.sum())  # 1/4, 1/2, 1/4


def test_rank_histogram_breaks_ties_at_random_and_reproducibly():
    n_lon = 600
    lon = np.arange(n_lon) * 360.0 / n_lon
    fc = xr.DataArray(np.zeros((1, 3, len(LAT), n_lon)),
                      dims=("time", "number", "latitude", "longitude"),
                      coords={"time": [np.datetime64("2020-01-01")], "latitude": LAT,
                              "longitude": lon})
    tr = fc.isel(number=0, drop=True)  # ties with every member: any of the 4 ranks
    hist = rank_histogram(fc, tr, seed=1)
    np.testing.assert_allclose(hist.values, 0.25, atol=0.04)
    assert hist.sum() == pytest.approx(1.0)
    xr.testing.assert_equal(hist, rank_histogram(fc, tr, seed=1))
    with pytest.raises(TypeError, match="DataArrays"):
        rank_histogram(fc.to_dataset(name="t"), tr.to_dataset(name="t"))


# --------------------------------------------------------------------------- spectra


def cosine_field(lat, amplitudes, k, n_lon):
    lon = np.arange(n_lon) * 360.0 / n_lon
    values = np.asarray(amplitudes)[:, None] * np.cos(k * np.deg2rad(lon))[None, :]
    return xr.DataArray(values, dims=("latitude", "longitude"),
                        coords={"latitude": lat, "longitude": lon})


def test_a_zonal_cosine_puts_its_energy_in_its_wavenumber():
    amplitude, k = 3.0, 2
    field = cosine_field([45.0], [amplitude], k, n_lon=16)
    spectrum = zonal_energy_spectrum(field, band=None).isel(latitude=0)
    circumference = 2 * math.pi * EARTH_RADIUS_M * math.cos(math.radians(45.0))
    expected = np.zeros(9)
    expected[k] = circumference * amplitude**2 / 2  # S[k] = 2 C (A / 2)^2
    np.testing.assert_allclose(spectrum.values, expected, atol=1e-6 * expected[k])
    assert list(spectrum["zonal_wavenumber"].values) == list(range(9))
    assert float(spectrum["wavelength"].sel(zonal_wavenumber=k)) == pytest.approx(
        circumference / k)


def test_spectrum_satisfies_parseval_on_an_odd_circle():
    rng = np.random.default_rng(7)
    n_lon = 15
    lon = np.arange(n_lon) * 24.0
    values = rng.normal(size=(2, n_lon))
    field = xr.DataArray(values, dims=("latitude", "longitude"),
                         coords={"latitude": [-30.0, 10.0], "longitude": lon})
    spectrum = zonal_energy_spectrum(field, band=None)
    for row, lat in enumerate([-30.0, 10.0]):
        circumference = 2 * math.pi * EARTH_RADIUS_M * math.cos(math.radians(lat))
        integral = circumference / n_lon * sum(v**2 for v in values[row])
        assert float(spectrum.isel(latitude=row).sum()) == pytest.approx(integral)


def test_spectrum_band_mean_and_its_errors():
    field = cosine_field([20.0, 40.0, 50.0], [5.0, 1.0, 2.0], k=1, n_lon=8)
    spectrum = zonal_energy_spectrum(field)  # default band 30..60 deg N: rows 40 and 50
    c40, c50 = (2 * math.pi * EARTH_RADIUS_M * math.cos(math.radians(v)) for v in (40, 50))
    assert "latitude" not in spectrum.dims
    assert float(spectrum.sel(zonal_wavenumber=1)) == pytest.approx((c40 * 1 + c50 * 4) / 4)
    with pytest.raises(ValueError, match="no latitude of this grid lies in the band"):
        zonal_energy_spectrum(field, band=(-60.0, -30.0))
    with pytest.raises(ValueError, match="evenly spaced longitudes covering 360"):
        zonal_energy_spectrum(field.isel(longitude=[0, 1, 3]))


# --------------------------------------------------------------------------- score table


def ensemble_store(x, init, lead):
    """(time, number, prediction_timedelta, latitude, longitude) Dataset, one lead."""
    da = ensemble(x, len(init)).assign_coords(time=init).expand_dims(
        prediction_timedelta=pd.to_timedelta([lead], unit="h"), axis=2)
    return xr.Dataset({"2m_temperature": da})


def test_score_table_adds_probabilistic_rows_for_an_ensemble_only():
    rng = np.random.default_rng(8)
    t = pd.date_range("2020-01-01", periods=4, freq="6h")
    truth = xr.Dataset({"2m_temperature": (("time", "latitude", "longitude"),
                                           rng.normal(size=(4, 3, 4)))},
                       coords={"time": t, "latitude": LAT, "longitude": LON})
    x = rng.normal(size=(3, 2, 3, 4))
    fc = ensemble_store(x, t[:3], lead=6)
    mean = fc.mean("number")
    table = score_table({"ens": fc, "mean": mean}, truth)
    ens, det = table[table["forecast"] == "ens"], table[table["forecast"] == "mean"]
    assert set(det["metric"]) == {"rmse", "rmse_per_sample"}
    ranks = {"rank_histogram_0", "rank_histogram_1", "rank_histogram_2"}  # M = 2 members
    assert set(ens["metric"]) == {"rmse", "rmse_per_sample", *PROBABILISTIC_METRICS, *ranks}
    hist = ens[ens["metric"].isin(ranks)].sort_values("metric")["value"].to_numpy()
    np.testing.assert_allclose(hist, rank_histogram(
        fc["2m_temperature"].isel(prediction_timedelta=0),
        truth["2m_temperature"].isel(time=[1, 2, 3]).assign_coords(time=t[:3])).values)
    assert hist.sum() == pytest.approx(1.0)
    # the deterministic rows of an ensemble are those of its member mean
    for metric in ("rmse", "rmse_per_sample"):
        assert float(ens[ens["metric"] == metric]["value"].iloc[0]) == pytest.approx(
            float(det[det["metric"] == metric]["value"].iloc[0]))
    members = fc["2m_temperature"].isel(prediction_timedelta=0)
    tr = truth["2m_temperature"].isel(time=[1, 2, 3]).assign_coords(time=t[:3])
    expected = {"crps": crps(members, tr), "crps_skill": crps_skill(members, tr),
                "crps_spread": crps_spread(members), "spread": spread(members),
                "spread_skill": spread_skill_ratio(members, tr),
                "ensemble_mean_rmse": ensemble_mean_rmse(members, tr)}
    for metric, value in expected.items():
        row = ens[ens["metric"] == metric]
        assert len(row) == 1 and row["lead_time_hours"].iloc[0] == 6.0
        assert float(row["value"].iloc[0]) == pytest.approx(float(value)), metric
    assert float(ens.query("metric == 'ensemble_mean_rmse'")["value"].iloc[0]) == pytest.approx(
        float(ens.query("metric == 'rmse'")["value"].iloc[0]))


def test_evaluate_scores_an_ensemble_with_probabilistic_rows_for_the_model_only():
    from geoformer.evaluation import evaluate

    rng = np.random.default_rng(9)
    t = pd.date_range("2020-01-01", periods=4, freq="6h")
    truth = xr.Dataset({"2m_temperature": (("time", "latitude", "longitude"),
                                           280 + rng.normal(size=(4, 3, 4)))},
                       coords={"time": t, "latitude": LAT, "longitude": LON})
    fc = ensemble_store(280 + rng.normal(size=(3, 2, 3, 4)), t[:3], lead=6)
    table = evaluate(fc, truth, references=("persistence",))
    model = table[table["forecast"] == "model"]
    assert set(PROBABILISTIC_METRICS) <= set(model["metric"])
    assert not set(PROBABILISTIC_METRICS) & set(table[table["forecast"] != "model"]["metric"])


def test_score_table_spectra_rows_for_forecast_and_truth_by_hand():
    # one latitude circle at 45 N in the 30..60 band, 8 longitudes: a zonal cosine of
    # amplitude A at wavenumber k has S[k] = C A^2 / 2 and nothing elsewhere
    lat, n_lon, k = [45.0], 8, 2
    lon = np.arange(n_lon) * 360.0 / n_lon
    wave = np.cos(k * np.deg2rad(lon))[None, :]
    t = pd.date_range("2020-01-01", periods=3, freq="6h")
    truth = xr.Dataset({"2m_temperature": (("time", "latitude", "longitude"),
                                           np.stack([a * wave for a in (1.0, 2.0, 3.0)]))},
                       coords={"time": t, "latitude": lat, "longitude": lon})
    fc = xr.Dataset({"2m_temperature": (("time", "prediction_timedelta", "latitude",
                                         "longitude"), np.stack([[a * wave] for a in (4.0, 4.0)]))},
                    coords={"time": t[:2], "prediction_timedelta": pd.to_timedelta([6], "h"),
                            "latitude": lat, "longitude": lon})
    table = score_table({"model": fc}, truth, spectra=True)
    spectra = table[table["metric"].str.startswith("zonal_spectrum_")]
    assert set(spectra["region"]) == {"30-60N"} and set(spectra["forecast"]) == {"model", "truth"}
    assert len(spectra) == 2 * (n_lon // 2 + 1)
    c = 2 * math.pi * EARTH_RADIUS_M * math.cos(math.radians(45.0))
    by = spectra.set_index(["forecast", "metric"])["value"]
    assert by["model", f"zonal_spectrum_{k}"] == pytest.approx(c * 16 / 2)
    # the truth at the valid times t[1], t[2]: amplitudes 2 and 3, spectra averaged over time
    assert by["truth", f"zonal_spectrum_{k}"] == pytest.approx(c * (4 + 9) / 2 / 2)
    assert by["truth", "zonal_spectrum_1"] == pytest.approx(0.0, abs=1e-6 * c)
    assert not score_table({"model": fc}, truth)["metric"].str.startswith("zonal").any()
