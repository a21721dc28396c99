"""Engineering quantities of a wall map: values derived by hand on a few faces."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fluidgpt import wall


def line_of_faces(n: int = 7, spacing: float = 0.01):
    """n faces of area 1e-4 m2 along x, ``spacing`` m apart: centres (n, 3), areas (n,)."""
    centre = np.stack([spacing * np.arange(n), np.zeros(n), np.zeros(n)], axis=-1)
    return centre, np.full(n, 1e-4)


def ring_of_faces(n: int = 40, radius: float = 0.05):
    """n equal faces around a circle: every face sees the same neighbours."""
    angle = 2 * np.pi * np.arange(n) / n
    centre = np.stack([radius * np.cos(angle), radius * np.sin(angle), np.zeros(n)], -1)
    return centre, np.full(n, 2e-4)


def test_wall_loss_is_rate_over_density_in_mm_per_year():
    expected = 1.0 / 7800.0 * 1000.0 * 365.25 * 24 * 3600  # m s-1 -> mm yr-1
    assert wall.wall_loss_mm_per_year(1.0) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(wall.wall_loss_mm_per_year(np.array([0.0, 2.0]), 2700.0),
                               [0.0, 2.0 / 2700.0 * 1000.0 * 365.25 * 86400], rtol=1e-12)
    rate = xr.DataArray([[1.0, 0.5]], dims=("case", "face"), attrs={"units": "kg m-2 s-1"})
    loss = wall.wall_loss_mm_per_year(rate)
    assert isinstance(loss, xr.DataArray) and loss.dims == ("case", "face")
    assert loss.attrs["units"] == "mm yr-1" and loss.attrs["wall_density"] == 7800.0
    np.testing.assert_allclose(loss.values, [[expected, expected / 2]], rtol=1e-12)
    with pytest.raises(ValueError, match="wall_density must be > 0"):
        wall.wall_loss_mm_per_year(1.0, 0.0)


def test_smoothing_two_faces_by_hand():
    d, length = 0.03, 0.02
    centre = np.array([[0.0, 0.0, 0.0], [0.0, d, 0.0]])
    w = np.exp(-d**2 / (2 * length**2))  # the other face's weight; its own is 1
    for area in ([1e-4, 1e-4], [1e-4, 3e-4]):
        a0, a1 = area
        got = wall.smooth_on_wall(np.array([2.0, 0.0]), centre, np.array(area), length)
        np.testing.assert_allclose(got, [2 * a0 / (a0 + w * a1), 2 * w * a0 / (w * a0 + a1)],
                                   rtol=1e-12)
    equal = wall.smooth_on_wall(np.array([[1.0, 0.0], [0.0, 1.0]]), centre,
                                np.array([1e-4, 1e-4]), length)
    np.testing.assert_allclose(equal, [[1 / (1 + w), w / (1 + w)],
                                       [w / (1 + w), 1 / (1 + w)]], rtol=1e-12)  # symmetric


def test_smoothing_keeps_a_constant_and_the_area_weighted_mean():
    centre, area = line_of_faces(30, 0.004)
    np.testing.assert_allclose(wall.smooth_on_wall(np.full(30, 3.5), centre, area),
                               3.5, rtol=1e-13)
    ring, ring_area = ring_of_faces()
    rng = np.random.default_rng(0)
    maps = rng.random((3, len(ring)))
    smooth = wall.smooth_on_wall(maps, ring, ring_area)
    # A uniform ring: a symmetric kernel with equal row sums keeps the mean exactly...
    np.testing.assert_allclose(smooth.mean(1), maps.mean(1), rtol=1e-12)
    assert smooth.std(1).max() < maps.std(1).min()  # ... and it does smooth
    # ... uneven areas keep the area-weighted mean only approximately.
    uneven = ring_area * (1 + 0.5 * np.sin(np.arange(len(ring))))
    smooth = wall.smooth_on_wall(maps, ring, uneven)
    np.testing.assert_allclose(smooth @ uneven, maps @ uneven, rtol=0.05)


def test_smoothing_in_chunks_is_the_whole_kernel(monkeypatch):
    centre, area = ring_of_faces(11)
    maps = np.random.default_rng(1).random((2, 11))
    whole = wall.smooth_on_wall(maps, centre, area, 0.01)
    monkeypatch.setattr(wall, "_CHUNK", 3)
    np.testing.assert_allclose(wall.smooth_on_wall(maps, centre, area, 0.01), whole,
                               rtol=1e-13)


def test_smoothing_a_dataarray_by_dim_name():
    centre, area = line_of_faces(5)
    maps = np.random.default_rng(2).random((5, 2))  # (face, case)
    rate = xr.DataArray(maps, dims=("face", "case"), attrs={"units": "kg m-2 s-1"})
    got = wall.smooth_on_wall(rate, centre, area)
    assert got.dims == ("case", "face") and got.attrs == rate.attrs
    np.testing.assert_allclose(got.values, wall.smooth_on_wall(maps.T, centre, area))


def test_hotspot_of_one_hot_face():
    centre, area = line_of_faces(7)
    rate = np.zeros(7)
    rate[3] = 5.0
    spots = wall.hotspot(rate, centre, area)
    assert spots["peak_value"] == 5.0
    np.testing.assert_array_equal(spots["peak_location"], centre[3])
    np.testing.assert_array_equal(spots["smoothed_peak_location"], centre[3])
    w = np.exp(-0.5 * (centre[:, 0] - centre[3, 0]) ** 2 / 0.02**2)  # weights seen by face 3
    assert spots["smoothed_peak_value"] == pytest.approx(5.0 / w.sum(), rel=1e-12)
    both = wall.hotspot(np.stack([rate, rate[::-1] * 2]), centre, area)
    assert both["peak_value"].shape == (2,) and both["peak_location"].shape == (2, 3)
    np.testing.assert_array_equal(both["peak_value"], [5.0, 10.0])
    np.testing.assert_array_equal(both["smoothed_peak_location"], centre[[3, 3]])


def test_smoothed_hotspot_prefers_a_broad_spot_over_a_single_spike():
    centre, area = line_of_faces(40, 0.005)  # 20 cm: both spots far from the ends
    rate = np.zeros(40)
    rate[10] = 1.0           # a lone spike
    rate[22:27] = 0.8        # a broad spot, centred on face 24
    spots = wall.hotspot(rate, centre, area)
    np.testing.assert_array_equal(spots["peak_location"], centre[10])
    np.testing.assert_array_equal(spots["smoothed_peak_location"], centre[24])


def test_hotspot_distance():
    centre, area = line_of_faces(9)
    centre[:, 2] = 0.02 * np.arange(9) ** 2 / 9  # not a straight line: a 3-D distance
    pred, true = np.zeros((2, 9)), np.zeros((2, 9))
    pred[0, 2], true[0, 6] = 1.0, 1.0
    pred[1, 4], true[1, 4] = 1.0, 3.0
    np.testing.assert_allclose(wall.hotspot_distance(pred, pred, centre, area), 0.0)
    np.testing.assert_allclose(wall.hotspot_distance(pred, true, centre, area),
                               [np.linalg.norm(centre[2] - centre[6]), 0.0], rtol=1e-12)
    assert wall.hotspot_distance(pred[0], true[0], centre, area).shape == ()
    with pytest.raises(ValueError, match="same shape"):
        wall.hotspot_distance(pred, true[0], centre, area)


def test_area_integrated():
    area = np.array([1e-4, 2e-4, 3e-4])
    rate = np.array([[1.0, 2.0, 0.0], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(wall.area_integrated(rate, area), [5e-4, 3e-4], rtol=1e-12)
    assert wall.area_integrated(rate[0], area) == pytest.approx(5e-4, rel=1e-12)
    total = wall.area_integrated(xr.DataArray(rate, dims=("case", "face")), area)
    assert total.dims == ("case",) and total.attrs["units"] == "kg s-1"
    np.testing.assert_allclose(total.values, [5e-4, 3e-4], rtol=1e-12)
    with pytest.raises(ValueError, match="face_area must be"):
        wall.area_integrated(xr.DataArray(rate, dims=("case", "face")), area[:2])


def test_geometry_errors_name_what_was_expected():
    centre, area = line_of_faces(4)
    with pytest.raises(ValueError, match=r"face_centre must be \(F, 3\)"):
        wall.smooth_on_wall(np.zeros(4), centre[:, :2], area)
    with pytest.raises(ValueError, match=r"face_area must be \(F,\) = \(4,\)"):
        wall.hotspot(np.zeros(4), centre, area[:3])
    with pytest.raises(ValueError, match="F = 4 faces, found shape"):
        wall.hotspot(np.zeros(5), centre, area)
    with pytest.raises(ValueError, match="length must be > 0"):
        wall.smooth_on_wall(np.zeros(4), centre, area, 0.0)
