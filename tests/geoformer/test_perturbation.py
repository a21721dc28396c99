"""Pangu's Perlin-noise ensemble perturbations: periodic, bounded, seeded, control first."""

import numpy as np
import pytest

from geoformer.perturbation import ensemble_noise, perlin_noise, perturb

LAT = np.linspace(90, -90, 9)
LON = np.arange(16) * 22.5


def test_noise_wraps_around_the_longitude_seam():
    lat = np.linspace(89, -89, 7)
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    seam = perlin_noise(lat, [0.0, 360.0, -360.0, 720.0], rng(), n=2)  # (n, H, 4)
    np.testing.assert_allclose(seam[..., 1:], np.repeat(seam[..., :1], 3, axis=-1), atol=1e-12)
    near = perlin_noise(lat, [359.999, 0.0, 0.001], rng(), n=2)
    np.testing.assert_allclose(near[..., 0], near[..., 1], atol=1e-3)
    np.testing.assert_allclose(near[..., 2], near[..., 1], atol=1e-3)
    assert np.abs(seam).max() > 0  # not trivially zero


def test_noise_is_bounded_zero_mean_ish_and_has_structure():
    lat, lon = np.linspace(90, -90, 91), np.arange(180) * 2.0
    noise = perlin_noise(lat, lon, np.random.default_rng(0), n=4)
    assert noise.shape == (4, 91, 180) and np.isfinite(noise).all()
    assert np.abs(noise).max() <= 1.0
    assert abs(noise.mean()) < 0.05 and 0.05 < noise.std() < 0.5
    # smooth: neighbouring points are strongly correlated
    corr = np.corrcoef(noise[..., :-1].ravel(), noise[..., 1:].ravel())[0, 1]
    assert corr > 0.8


def test_octave_amplitudes_follow_persistence():
    lat, lon = np.linspace(90, -90, 61), np.arange(120) * 3.0
    a = perlin_noise(lat, lon, np.random.default_rng(1), n=8, octaves=1)
    rng = np.random.default_rng(1)
    b = perlin_noise(lat, lon, rng, n=8, octaves=2, persistence=1e-9)
    np.testing.assert_allclose(b, a, atol=1e-6)  # a vanishing second octave leaves octave 1


def test_members_are_control_plus_scaled_reproducible_noise():
    du, ds = ensemble_noise(4, (2, 3), 2, LAT, LON, scale=0.2, seed=7)
    assert du.shape == (4, 2, 3, 9, 16) and ds.shape == (4, 2, 9, 16)
    assert du.dtype == np.float32
    assert not du[0].any() and not ds[0].any()  # the control
    assert np.abs(du).max() <= 0.2 + 1e-6 and np.abs(du[1:]).max() > 0.02
    # independent per member, variable and level
    fields = du[1:].reshape(-1, 9 * 16)
    assert len({f.tobytes() for f in fields}) == len(fields)
    again = ensemble_noise(4, (2, 3), 2, LAT, LON, scale=0.2, seed=7)
    np.testing.assert_array_equal(again[0], du)
    np.testing.assert_array_equal(again[1], ds)
    other = ensemble_noise(4, (2, 3), 2, LAT, LON, scale=0.2, seed=8)
    assert not np.allclose(other[0][1:], du[1:])
    # linear in the scale; member m does not depend on the ensemble size
    double = ensemble_noise(2, (2, 3), 2, LAT, LON, scale=0.4, seed=7)
    np.testing.assert_allclose(double[0][1], 2 * du[1], rtol=1e-5)
    # another draw (initial time) gives other noise
    assert not np.allclose(ensemble_noise(2, (2, 3), 2, LAT, LON, seed=7, draw=1)[0][1], du[1])


def test_perturb_adds_noise_to_a_normalised_state():
    rng = np.random.default_rng(0)
    upper, surface = rng.normal(size=(2, 3, 9, 16)), rng.normal(size=(2, 9, 16))
    pu, ps = perturb(upper, surface, 3, LAT, LON, scale=0.1, seed=1)
    assert pu.shape == (3, 2, 3, 9, 16) and ps.shape == (3, 2, 9, 16)
    np.testing.assert_array_equal(pu[0], upper)
    np.testing.assert_array_equal(ps[0], surface)
    du, ds = ensemble_noise(3, (2, 3), 2, LAT, LON, scale=0.1, seed=1)
    np.testing.assert_allclose(pu - upper, du, atol=1e-6)
    np.testing.assert_allclose(ps - surface, ds, atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(members=0), "at least 1 member"),
    (dict(scale=-0.1), "scale must be >= 0"),
    (dict(perturbation="gaussian"), "unknown perturbation 'gaussian'"),
])
def test_bad_ensemble_settings_are_refused(kwargs, message):
    args = dict(members=2, n_upper=(1, 1), n_surface=1, latitude=LAT, longitude=LON)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ensemble_noise(**args)
    with pytest.raises(ValueError, match="period >= 1"):
        perlin_noise(LAT, LON, np.random.default_rng(0), period=0)
