"""Ensemble (probabilistic) scores and zonal energy spectra, the WeatherBench 2 way.

Pure functions of xarray objects, reducing by dim name, with the conventions of
``metrics.py``: forecasts (time, prediction_timedelta, number, [level], latitude,
longitude), the truth aligned to the forecast's valid times (same ``time`` and
``prediction_timedelta`` labels, no ``number``), area weights ``latitude_weights`` and the
regions of ``area.REGIONS``. ``number`` indexes the M ensemble members.

Definitions (WeatherBench 2 ``metrics.py``: ``EnsembleVariance``, ``CRPS``,
``CRPSSkill``, ``CRPSSpread``, ``RankHistogram``; weatherbenchX ``SpreadSkillRatio``;
``derived_variables.ZonalEnergySpectrum``), with <.>_w the area-weighted spatial mean and
mean_t the mean over initialisation times:

* ``ensemble_mean_rmse`` = sqrt(mean_t <(mean_m X_m - Y)^2>_w), the headline RMSE of the
  member mean (biased by var / M for finite M, as WeatherBench 2's EnsembleMeanMSE).
* ``spread`` = sqrt(mean_t <var_m X>_w), var with ddof = 1 (unbiased); 0 when M = 1.
* ``spread_skill_ratio`` = spread / ensemble_mean_rmse: the biased ratio as WeatherBench 2
  reports it, with no (M + 1) / M correction; about 1 for a calibrated large ensemble (a
  calibrated M-member ensemble gives about sqrt(M / (M + 1))).
* ``crps_skill`` = mean_t <mean_m |X_m - Y|>_w;
  ``crps_spread`` = mean_t <sum_{i != j} |X_i - X_j| / (M (M - 1))>_w, the fair estimate of
  E|X - X'| (0 when M = 1); ``crps`` = crps_skill - 0.5 crps_spread (fair CRPS, Zamo and
  Naveau 2018). Note that ``crps_spread`` is E|X - X'| itself, as WeatherBench 2's
  CRPSSpread, not the halved term.
* ``rank_histogram``: the truth's rank among the members (members strictly below it, ties
  broken at random as WeatherBench 2 does), as M + 1 bins, averaged over area and time.
* ``zonal_energy_spectrum``: see its docstring.

NaN in a forecast propagates into its score, as in ``metrics.py``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .metrics import (
    _paired,
    _require_dims,
    mse_spatial,
    rmse_time_mean_then_sqrt,
    spatial_mean,
)
from .scores import _rows

__all__ = [
    "ENSEMBLE_DIM",
    "EARTH_RADIUS_M",
    "PROBABILISTIC_METRICS",
    "ensemble_mean_rmse",
    "ensemble_variance_spatial",
    "spread",
    "spread_skill_ratio",
    "crps_skill",
    "crps_skill_spatial",
    "crps_spread",
    "crps_spread_spatial",
    "crps",
    "rank_histogram",
    "rank_histogram_spatial",
    "zonal_energy_spectrum",
    "probabilistic_rows",
    "probabilistic_samples",
    "probabilistic_rows_of",
    "spectrum_rows",
    "spectrum_rows_of",
]

Data = xr.DataArray | xr.Dataset

ENSEMBLE_DIM = "number"
# WeatherBench 2's schema.EARTH_RADIUS_M: the mean of the polar and equatorial radii.
EARTH_RADIUS_M = 1000 * (6357 + 6378) / 2
PROBABILISTIC_METRICS = ("ensemble_mean_rmse", "spread", "spread_skill", "crps", "crps_skill",
                         "crps_spread")


def _members(forecast: Data, what: str = "ensemble forecast") -> int:
    _require_dims(forecast, (ENSEMBLE_DIM,), what)
    return forecast.sizes[ENSEMBLE_DIM]


def _paired_ensemble(forecast: Data, truth: Data) -> tuple[Data, Data]:
    """Forecast and truth aligned as in ``metrics._paired``; the truth has no member dim."""
    _members(forecast)
    if ENSEMBLE_DIM in truth.dims:
        raise ValueError(f"the truth must not have an ensemble dim {ENSEMBLE_DIM!r}; "
                         f"it has dims {list(truth.dims)}")
    forecast, truth = _paired(forecast, truth)
    return forecast, truth.drop_vars(ENSEMBLE_DIM, errors="ignore")


# --------------------------------------------------------------------------- RMSE and spread


def ensemble_mean_rmse(forecast: Data, truth: Data, region: str = "global",
                       time_dim: str = "time") -> Data:
    """``metrics.rmse_time_mean_then_sqrt`` of the member mean; dims without (time, number,
    latitude, longitude), in the variable's units."""
    forecast, truth = _paired_ensemble(forecast, truth)
    mean = forecast.mean(ENSEMBLE_DIM, skipna=False)
    return rmse_time_mean_then_sqrt(mean, truth, region, time_dim)


def ensemble_variance_spatial(forecast: Data, region: str = "global") -> Data:
    """Area-weighted spatial mean of the unbiased (ddof = 1) member variance, per sample.

    Zero for a single member (WeatherBench 2's EnsembleVariance). Returns the input dims
    without (number, latitude, longitude), in squared units.
    """
    if _members(forecast) == 1:
        variance = xr.zeros_like(forecast.isel({ENSEMBLE_DIM: 0}, drop=True))
    else:
        variance = forecast.var(ENSEMBLE_DIM, ddof=1, skipna=False)
    return spatial_mean(variance, region)


def spread(forecast: Data, region: str = "global", time_dim: str = "time") -> Data:
    """sqrt(mean over ``time_dim`` of ``ensemble_variance_spatial``), the variable's units."""
    return np.sqrt(ensemble_variance_spatial(forecast, region).mean(time_dim, skipna=False))


def spread_skill_ratio(forecast: Data, truth: Data, region: str = "global",
                       time_dim: str = "time") -> Data:
    """spread / ensemble_mean_rmse, dimensionless, without a finite-M correction."""
    return spread(forecast, region, time_dim) / ensemble_mean_rmse(forecast, truth, region,
                                                                     time_dim)


# --------------------------------------------------------------------------- CRPS


def crps_skill(forecast: Data, truth: Data, region: str = "global",
               time_dim: str = "time") -> Data:
    """mean_t <mean_m |X_m - Y|>_w: the skill term of the CRPS (the MAE when M = 1)."""
    return crps_skill_spatial(forecast, truth, region).mean(time_dim, skipna=False)


def crps_skill_spatial(forecast: Data, truth: Data, region: str = "global") -> Data:
    """<mean_m |X_m - Y|>_w per sample: ``crps_skill`` before the mean over time."""
    forecast, truth = _paired_ensemble(forecast, truth)
    pointwise = abs(forecast - truth).mean(ENSEMBLE_DIM, skipna=False)
    return spatial_mean(pointwise, region)


def crps_spread(forecast: Data, region: str = "global", time_dim: str = "time") -> Data:
    """mean_t <sum_{i != j} |X_i - X_j| / (M (M - 1))>_w, the fair estimate of E|X - X'|.

    Over ordered pairs of distinct members; 0 for a single member. The pair sum is O(M^2)
    in memory per point, fine for the tens of members Pangu's ensembles have.
    """
    return crps_spread_spatial(forecast, region).mean(time_dim, skipna=False)


def crps_spread_spatial(forecast: Data, region: str = "global") -> Data:
    """``crps_spread`` per sample, before the mean over time."""
    m = _members(forecast)
    if m == 1:
        pointwise = xr.zeros_like(forecast.isel({ENSEMBLE_DIM: 0}, drop=True))
    else:
        other = forecast.rename({ENSEMBLE_DIM: "number_other"})
        pairs = abs(forecast - other).sum((ENSEMBLE_DIM, "number_other"), skipna=False)
        pointwise = pairs / (m * (m - 1))  # the i = j terms are zero
    return spatial_mean(pointwise, region)


def crps(forecast: Data, truth: Data, region: str = "global", time_dim: str = "time") -> Data:
    """Fair CRPS: crps_skill - 0.5 crps_spread, in the variable's units."""
    return (crps_skill(forecast, truth, region, time_dim)
            - 0.5 * crps_spread(forecast, region, time_dim))


# --------------------------------------------------------------------------- rank histogram


def rank_histogram(forecast: xr.DataArray, truth: xr.DataArray, region: str = "global",
                   time_dim: str = "time", seed: int | None = 0) -> xr.DataArray:
    """Frequency of the truth's rank among the M members, dim ``bin`` = 0..M, summing to 1.

    rank = number of members strictly below the truth; when the truth ties with members it
    takes one of the tied ranks at random (``seed``), as WeatherBench 2 breaks ties. Each
    point counts with its area weight, then the histogram is averaged over ``time_dim``,
    so the result keeps e.g. (prediction_timedelta, [level], bin). A calibrated ensemble
    gives about 1 / (M + 1) in every bin; a truth above every member falls in bin M.
    forecast, truth: DataArrays (one variable); NaN in them is an error here.
    """
    return rank_histogram_spatial(forecast, truth, region, np.random.default_rng(seed)).mean(
        time_dim).rename("rank_histogram")


def rank_histogram_spatial(forecast: xr.DataArray, truth: xr.DataArray, region: str,
                           rng: np.random.Generator) -> xr.DataArray:
    """``rank_histogram`` per sample (dims (..., bin), no mean over time), the ties broken by
    ``rng``: one draw per point, in the order of the points. A generator carried from one
    block of initial times to the next therefore draws, when time is the first dim of the
    forecast (as in a forecast store), what one call on all of them would draw."""
    if not isinstance(forecast, xr.DataArray) or not isinstance(truth, xr.DataArray):
        raise TypeError("rank_histogram takes DataArrays (one variable at a time)")
    m = _members(forecast)
    forecast, truth = _paired_ensemble(forecast, truth)
    if bool(forecast.isnull().any()) or bool(truth.isnull().any()):
        raise ValueError("rank_histogram: forecast or truth holds NaN; ranks are undefined")
    below = (forecast < truth).sum(ENSEMBLE_DIM)
    ties = (forecast == truth).sum(ENSEMBLE_DIM)
    # uniform over below .. below + ties
    offset = np.floor(rng.random(ties.shape) * (ties.values + 1)).astype(int)
    rank = below + offset
    bins = xr.DataArray(np.arange(m + 1), dims="bin", coords={"bin": np.arange(m + 1)})
    one_hot = (rank == bins).astype(float)  # (..., latitude, longitude, bin)
    return spatial_mean(one_hot, region)


# --------------------------------------------------------------------------- spectra


def zonal_energy_spectrum(x: Data, band: tuple[float, float] | None = (30.0, 60.0)) -> Data:
    """Zonal energy spectrum along each latitude circle (WeatherBench 2's definition).

    For the L values f[l] on a circle of latitude phi, with circumference
    C = 2 pi R cos(phi) (R = ``EARTH_RADIUS_M``),

        F[k] = (1 / L) sum_l f[l] exp(-2 pi i k l / L),   k = 0 .. L // 2,
        S[0] = C |F[0]|^2,   S[k] = 2 C |F[k]|^2 for k > 0,

    so that Parseval holds, (C / L) sum_l f[l]^2 = sum_k S[k] (exactly for odd L; for even
    L the Nyquist term is doubled, as in WeatherBench 2). A zonal cosine A cos(k lambda)
    gives S[k] = C A^2 / 2. Units: m times the variable's units squared.

    x: (..., latitude, longitude) on evenly spaced longitudes covering the globe. Returns
    (..., [latitude], zonal_wavenumber) with coords ``zonal_wavenumber`` k (cycles per
    circle) and, per latitude, ``wavelength`` C / k in m (inf at k = 0).
    band: (low, high) degrees_north, both inclusive: the spectra of the rows inside are
    averaged at equal wavenumber (an unweighted mean over latitudes; wavelength is then
    given at the band's mean circumference). WeatherBench 2 plots spectra over mid-latitudes;
    the default 30..60 deg N follows that. None keeps every latitude.
    """
    _require_dims(x, ("latitude", "longitude"), "field for the zonal spectrum")
    lon = np.asarray(x["longitude"].values, dtype=np.float64)
    step = np.diff(np.sort(lon))
    if lon.size < 2 or np.abs(step - step[0]).max() > 1e-6 or abs(step[0] * lon.size - 360) > 1e-6:
        raise ValueError(f"zonal_energy_spectrum needs evenly spaced longitudes covering "
                         f"360 deg, got {lon.size} values {lon.min():g}..{lon.max():g}")
    x = x.sortby("longitude")
    n = lon.size

    def power(values: np.ndarray) -> np.ndarray:
        coeffs = np.fft.rfft(values, axis=-1, norm="forward")
        factor = np.where(np.arange(coeffs.shape[-1]) == 0, 1.0, 2.0)
        return (coeffs.real**2 + coeffs.imag**2) * factor

    spectrum = xr.apply_ufunc(power, x, input_core_dims=[["longitude"]],
                              output_core_dims=[["zonal_wavenumber"]],
                              exclude_dims={"longitude"})
    wavenumber = np.arange(n // 2 + 1)
    spectrum = spectrum.assign_coords(zonal_wavenumber=wavenumber)
    circumference = 2 * np.pi * EARTH_RADIUS_M * np.cos(np.deg2rad(x["latitude"]))
    spectrum = spectrum * circumference
    if band is not None:
        low, high = band
        keep = (x["latitude"] >= low) & (x["latitude"] <= high)
        if not bool(keep.any()):
            raise ValueError(f"no latitude of this grid lies in the band {low}..{high} deg N")
        spectrum = spectrum.isel(latitude=keep.values).mean("latitude", skipna=False)
        circumference = circumference.isel(latitude=keep.values).mean("latitude")
    with np.errstate(divide="ignore"):
        wavelength = circumference / xr.DataArray(wavenumber, dims="zonal_wavenumber",
                                                  coords={"zonal_wavenumber": wavenumber})
    return spectrum.assign_coords(wavelength=wavelength.assign_attrs(units="m"))


# --------------------------------------------------------------------------- score table


def probabilistic_rows(forecast: xr.Dataset, truth: xr.Dataset, name: str, hours: float,
                       region: str) -> list[dict]:
    """Tidy rows (``scores.SCORE_COLUMNS``) of ``PROBABILISTIC_METRICS`` for one lead.

    forecast: (time, number, [level], latitude, longitude) at one lead; truth aligned to it.
    Metric names: ensemble_mean_rmse, spread, spread_skill, crps, crps_skill, crps_spread.
    """
    samples = probabilistic_samples(forecast, truth, region)
    samples["rank_histogram"] = xr.Dataset({
        v: rank_histogram_spatial(forecast[v], truth[v], region, np.random.default_rng(0))
        for v in forecast.data_vars})
    return probabilistic_rows_of(samples, name, hours, region)


def probabilistic_samples(forecast: xr.Dataset, truth: xr.Dataset,
                          region: str) -> dict[str, xr.Dataset]:
    """The per-sample quantities (dim ``time`` kept) that ``probabilistic_rows`` averages
    over time: the member mean's MSE, the member variance and the two CRPS terms (with
    ``rank_histogram_spatial``, all that ``probabilistic_rows_of`` needs). Concatenated over
    blocks of initial times, they give the numbers of all of them at once."""
    paired, aligned = _paired_ensemble(forecast, truth)
    return {"ensemble_mean_mse": mse_spatial(paired.mean(ENSEMBLE_DIM, skipna=False), aligned,
                                             region),
            "ensemble_variance": ensemble_variance_spatial(forecast, region),
            "crps_skill": crps_skill_spatial(forecast, truth, region),
            "crps_spread": crps_spread_spatial(forecast, region)}


def probabilistic_rows_of(samples: dict[str, xr.Dataset], name: str, hours: float,
                          region: str) -> list[dict]:
    """The rows of ``probabilistic_rows`` from ``probabilistic_samples`` and, as
    "rank_histogram", the ``rank_histogram_spatial`` of each variable (over all times)."""
    skill = np.sqrt(samples["ensemble_mean_mse"].mean("time", skipna=False)).compute()
    spread_ = np.sqrt(samples["ensemble_variance"].mean("time", skipna=False)).compute()
    crps_skill_ = samples["crps_skill"].mean("time", skipna=False).compute()
    crps_spread_ = samples["crps_spread"].mean("time", skipna=False).compute()
    scores = {"ensemble_mean_rmse": skill, "spread": spread_, "spread_skill": spread_ / skill,
              "crps": crps_skill_ - 0.5 * crps_spread_, "crps_skill": crps_skill_,
              "crps_spread": crps_spread_}
    rows = []
    for metric, values in scores.items():
        rows += _rows(values, name, hours, metric, region)
    ranks = samples["rank_histogram"].mean("time")  # (..., bin)
    for b in ranks["bin"].values:
        rows += _rows(ranks.sel(bin=b, drop=True), name, hours, f"rank_histogram_{b}", region)
    return rows


def spectrum_rows(fields: xr.Dataset, name: str, hours: float) -> list[dict]:
    """Tidy rows of the zonal energy spectrum (30..60 deg N, mean over ``time``) of every
    variable at one lead: metric ``zonal_spectrum_{k}`` for each zonal wavenumber k, in m
    times the variable's units squared. fields: (time, [level], latitude, longitude)."""
    return spectrum_rows_of(zonal_energy_spectrum(fields.load()), name, hours)


def spectrum_rows_of(spectra: xr.Dataset, name: str, hours: float) -> list[dict]:
    """``spectrum_rows`` from the spectra of each sample (``zonal_energy_spectrum``)."""
    spectrum = spectra.mean("time")  # (..., zonal_wavenumber)
    spectrum = spectrum.drop_vars("wavelength")
    rows = []
    for k in spectrum["zonal_wavenumber"].values:
        rows += _rows(spectrum.sel(zonal_wavenumber=k, drop=True), name, hours,
                      f"zonal_spectrum_{k}", "30-60N")
    return rows
