"""Scores over named dims: values derived by hand, masks, step 0, dim order, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from fluidgpt.casetensors import to_dataarray
from fluidgpt.losses import masked_mse, masked_r2
from fluidgpt.metrics import (
    erosion_pattern_r2_over_cases_and_faces,
    erosion_scores,
    hotspot_distance_median_over_cases,
    max_normalised,
    predicted_pattern,
    rel_peak_error_mean_over_cases,
    rel_total_error_mean_over_cases,
    trajectory_mse_over_valid,
    trajectory_r2_per_xyz_then_mean,
    trajectory_scores,
)
from fluidgpt.wall import hotspot_distance

DIMS = ("case", "particle", "step", "xyz")


def traj(values) -> xr.DataArray:
    return xr.DataArray(np.asarray(values, float), dims=DIMS)


def maps(values) -> xr.DataArray:
    return xr.DataArray(np.asarray(values, float), dims=("case", "face"))


def test_trajectory_mse_by_hand_skips_step_0_and_invalid_entries():
    true = np.zeros((1, 2, 3, 3))  # case, particle, step, xyz
    pred = np.zeros_like(true)
    pred[0, :, 0] = 100.0  # step 0 is given, never scored
    pred[0, 0, 1] = [1.0, 2.0, 2.0]  # squared errors 1, 4, 4
    pred[0, 1, 2] = [np.nan, 5.0, 5.0]  # particle 1 has left at step 2
    valid = np.ones((1, 2, 3), bool)
    valid[0, 1, 2] = False
    v = xr.DataArray(valid, dims=DIMS[:3])
    # Scored: steps 1, 2 of particle 0 and step 1 of particle 1: 3 points x 3 coordinates.
    assert trajectory_mse_over_valid(traj(pred), traj(true), v) == pytest.approx(9.0 / 9)


def test_trajectory_r2_by_hand_per_coordinate_then_mean():
    # One case, one particle, steps 0..4; x exact, y the mean of the scored steps, z off by 1.
    x = np.array([9.0, 1.0, 2.0, 3.0, 4.0])
    true = np.stack([x, 2 * x, -x], -1)[None, None]  # (1, 1, 5, 3)
    pred = true.copy()
    pred[0, 0, 1:, 1] = (2 * x[1:]).mean()
    pred[0, 0, 1:, 2] += 1.0
    valid = xr.DataArray(np.ones((1, 1, 5), bool), dims=DIMS[:3])
    # z: SS_res = 4 * 1, SS_tot = sum((x - 2.5)^2) over 1..4 = 5 -> R2 = 1 - 4/5 = 0.2.
    expected = (1.0 + 0.0 + 0.2) / 3
    got = trajectory_r2_per_xyz_then_mean(traj(pred), traj(true), valid)
    assert got == pytest.approx(expected)


def test_trajectory_scores_ignore_the_order_of_named_dims():
    g = np.random.default_rng(0)
    true, pred = g.normal(size=(2, 3, 4, 3)), g.normal(size=(2, 3, 4, 3))
    valid = xr.DataArray(g.random((2, 3, 4)) > 0.3, dims=DIMS[:3])
    a = trajectory_scores(traj(pred), traj(true), valid)
    b = trajectory_scores(traj(pred).transpose("xyz", "step", "case", "particle"),
                          traj(true).transpose("step", "xyz", "particle", "case"),
                          valid.transpose("step", "particle", "case"))
    assert a == pytest.approx(b)


def test_trajectory_scores_agree_with_the_training_metrics():
    """The physical-units scores and the Lightning modules' masked metrics are two
    implementations of the same definitions; on (N, T, P, 3) tensors they must agree."""
    g = torch.Generator().manual_seed(1)
    true = torch.randn(3, 6, 4, 3, generator=g)
    pred = true + 0.3 * torch.randn(3, 6, 4, 3, generator=g)
    valid = torch.rand(3, 6, 4, generator=g) > 0.2
    scores = trajectory_scores(to_dataarray(pred), to_dataarray(true),
                               to_dataarray(valid, "valid"))
    assert scores["mse"] == pytest.approx(
        masked_mse(pred[:, 1:], true[:, 1:], valid[:, 1:]).item(), rel=1e-5)
    assert scores["r2"] == pytest.approx(
        masked_r2(pred[:, 1:], true[:, 1:], valid[:, 1:]).item(), rel=1e-5)


def test_erosion_r2_is_on_each_maps_own_maximum():
    true = maps([[0.0, 1.0, 2.0, 4.0], [1.0, 0.0, 0.0, 2.0]])
    assert erosion_pattern_r2_over_cases_and_faces(true, true) == pytest.approx(1.0)
    # Scaling each predicted map by its own factor changes nothing in the pattern.
    scaled = true * xr.DataArray([10.0, 0.1], dims="case")
    assert erosion_pattern_r2_over_cases_and_faces(scaled, true) == pytest.approx(1.0)
    # By hand: patterns t = [0, .25, .5, 1 | .5, 0, 0, 1]; predict the flat 0.5 everywhere.
    flat = maps(np.full((2, 4), 3.0))
    t = np.array([0, 0.25, 0.5, 1, 0.5, 0, 0, 1])
    expected = 1 - ((1.0 - t) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    assert erosion_pattern_r2_over_cases_and_faces(flat, true) == pytest.approx(expected)


def test_rel_peak_error_by_hand():
    true = maps([[0.0, 1.0], [4.0, 2.0]])
    pred = maps([[2.0, 0.5], [1.0, 2.0]])
    # Case 0: |2 - 1| / 1 = 1; case 1: |2 - 4| / 4 = 0.5.
    assert rel_peak_error_mean_over_cases(pred, true) == pytest.approx(0.75)
    assert erosion_scores(pred, true)["rel_peak_error"] == pytest.approx(0.75)


def test_a_predicted_peak_scores_the_pattern_as_predicted_not_renormalised():
    # Two cases whose erosion sits on different faces. A model unsure which one it is
    # predicts the per-face mean of their patterns (at the true peaks): the MSE-optimal
    # hedge. Scored as predicted (map / predicted peak) it cannot fall below zero: its
    # squared error is the within-face spread, at most the spread around the global mean.
    true = maps([[0.0, 1.0, 0.0, 0.2], [0.0, 0.0, 3.0, 0.6]])
    t = max_normalised(true)
    peak = true.max("face")
    hedge = t.mean("case") * peak
    r2 = erosion_pattern_r2_over_cases_and_faces(hedge, true, pred_peak=peak)
    expected = 1 - float(((t - t.mean("case")) ** 2).sum()) / float(((t - t.mean()) ** 2).sum())
    assert r2 == pytest.approx(expected) and r2 >= 0
    xr.testing.assert_allclose(predicted_pattern(hedge, peak), t.mean("case") + 0 * t)
    # Each map divided by its own maximum instead inflates the hedge and scores worse.
    assert erosion_pattern_r2_over_cases_and_faces(hedge, true) < r2
    # The magnitude is the predicted peak, not the maximum of the hedged map.
    assert rel_peak_error_mean_over_cases(hedge, true, pred_peak=peak) == pytest.approx(0.0)
    assert erosion_scores(hedge, true, peak)["rel_peak_error"] == pytest.approx(0.0)
    assert rel_peak_error_mean_over_cases(hedge, true) > 0
    with pytest.raises(ValueError, match="pred_peak"):
        erosion_scores(hedge, true, peak.isel(case=[0]))
    with pytest.raises(ValueError, match="positive"):
        erosion_scores(hedge, true, 0 * peak)


def test_a_map_without_erosion_normalises_to_zero_not_nan():
    out = max_normalised(maps([[0.0, 0.0], [1.0, 2.0]]))
    np.testing.assert_allclose(out.values, [[0.0, 0.0], [0.5, 1.0]])


def test_metric_errors():
    v = xr.DataArray(np.ones((1, 1, 2), bool), dims=DIMS[:3])
    x = traj(np.zeros((1, 1, 2, 3)))
    with pytest.raises(ValueError, match="dims"):
        trajectory_scores(x.rename(xyz="coord"), x, v)
    with pytest.raises(ValueError, match="differ in size"):
        trajectory_scores(traj(np.zeros((1, 1, 3, 3))), x, v)
    with pytest.raises(ValueError, match="no valid particle step"):
        trajectory_scores(x, x, v & False)
    with pytest.raises(ValueError, match=">= 2 steps"):
        trajectory_scores(x.isel(step=[0]), x.isel(step=[0]), v.isel(step=[0]))
    with pytest.raises(ValueError, match="all equal"):
        erosion_pattern_r2_over_cases_and_faces(maps([[1.0, 1.0]]), maps([[2.0, 2.0]]))
    with pytest.raises(ValueError, match="no positive rate"):
        rel_peak_error_mean_over_cases(maps([[1.0]]), maps([[0.0]]))
    with pytest.raises(ValueError, match="dims"):
        erosion_scores(maps([[1.0]]).rename(face="f"), maps([[1.0]]))


def line_of_faces(x) -> tuple[np.ndarray, np.ndarray]:
    """Faces of equal area (1 cm2) centred at these x [m] on a straight wall."""
    x = np.asarray(x, float)
    return np.stack([x, 0 * x, 0 * x], -1), np.full(len(x), 1e-4)  # (F, 3), (F,)


def test_hotspot_distance_by_hand_is_a_median_over_cases():
    # Faces 10 cm apart: a 2 cm smoothing leaves each face's maximum where it is.
    centre, area = line_of_faces([0.0, 0.1, 0.2, 0.3])
    true = maps([[0, 0, 0, 5], [3, 1, 0, 0], [9, 0, 0, 1]])
    pred = maps([[0, 2, 0, 1], [7, 0, 0, 0], [0, 0, 0, 4]])
    # Hot spots 0.3 vs 0.1, 0 vs 0, 0 vs 0.3: distances 0.2, 0, 0.3 -> median 0.2.
    got = hotspot_distance_median_over_cases(pred, true, centre, area)
    assert got == pytest.approx(0.2)
    # Dims in another order and the geometry as DataArrays give the same.
    c = xr.DataArray(centre, dims=("face", "xyz")).transpose("xyz", "face")
    again = hotspot_distance_median_over_cases(pred.transpose("face", "case"), true, c,
                                               xr.DataArray(area, dims="face"))
    assert again == pytest.approx(0.2)
    # The median of the wall module's per-case distances, on maps where smoothing matters.
    g = np.random.default_rng(0)
    centre, area = g.random((30, 3)) * 0.1, g.random(30) * 1e-4 + 1e-5
    a, b = g.random((5, 30)), g.random((5, 30))
    assert hotspot_distance_median_over_cases(maps(a), maps(b), centre, area) == \
        pytest.approx(np.median(hotspot_distance(a, b, centre, area)))


def test_hotspot_is_the_smoothed_maximum_not_one_noisy_face():
    # A lone face of rate 1 amid zeros (1 cm spacing) against a 5 cm hot region 0.6-0.8: the
    # 2 cm Gaussian turns the spike into 1 / (1 + 2 e^-1/8 + 2 e^-1/2) = 0.25 and keeps the
    # middle of the region at (0.8 (1 + 2 e^-1/8) + 0.6 * 2 e^-1/2) / (same) = 0.74.
    x = [-0.02, -0.01, 0.0, 0.01, 0.02, 0.50, 0.51, 0.52, 0.53, 0.54]
    centre, area = line_of_faces(x)
    true = maps([[0, 0, 1, 0, 0, 0.6, 0.8, 0.8, 0.8, 0.6]])
    spike_only = maps([[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]])
    got = hotspot_distance_median_over_cases(spike_only, true, centre, area)
    assert got == pytest.approx(0.52)  # the raw maxima (both the spike) are 0 m apart


def test_rel_total_error_by_hand_is_area_weighted():
    area = np.array([1.0, 2.0])  # m2
    true = maps([[1.0, 1.0], [2.0, 0.0]])  # totals 3 and 2 kg/s
    pred = maps([[2.0, 1.0], [1.0, 1.0]])  # totals 4 and 3 kg/s
    # |4 - 3| / 3 and |3 - 2| / 2 -> mean 5/12.
    assert rel_total_error_mean_over_cases(pred, true, area) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="no positive rate"):
        rel_total_error_mean_over_cases(pred, maps([[0.0, 0.0], [1.0, 1.0]]), area)


def test_erosion_scores_with_the_wall_geometry():
    centre, area = line_of_faces([0.0, 0.1, 0.2])
    true = maps([[1.0, 4.0, 0.0], [0.0, 1.0, 2.0]])
    pred = maps([[1.0, 2.0, 0.0], [0.0, 2.0, 1.0]])
    scores = erosion_scores(pred, true, face_centre=centre, face_area=area)
    assert set(scores) == {"r2", "rel_peak_error", "hotspot_distance_m", "rel_total_error"}
    # Hot spots: 0.1 vs 0.1 and 0.1 vs 0.2 -> median 0.05; totals 3 vs 5, 3 vs 3 (x 1e-4).
    assert scores["hotspot_distance_m"] == pytest.approx(0.05)
    assert scores["rel_total_error"] == pytest.approx((2 / 5 + 0) / 2)
    # A pattern-only model has no magnitude to score: its hot spot still has a place.
    pattern = erosion_scores(pred, true, face_centre=centre, face_area=area, magnitude=False)
    assert set(pattern) == {"r2", "hotspot_distance_m"}
    assert set(erosion_scores(pred, true)) == {"r2", "rel_peak_error"}
    with pytest.raises(ValueError, match="both face_centre and face_area"):
        erosion_scores(pred, true, face_centre=centre)
