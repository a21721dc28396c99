"""Scores of rolled-out trajectories and predicted erosion maps, over named dims.

Trajectories: DataArrays (case, particle, step, xyz) in metres with a validity mask
(case, particle, step); every score skips step 0 (the true first step each rollout starts
from) and the entries where the true particle is not valid (not yet injected, or gone).

Erosion: DataArrays (case, face) of rates in kg m-2 s-1. The R^2 is the paper's: each true
map divided by its own maximum (the pattern), then one R^2 over every wall face of every case
together; the magnitude, which that throws away, is scored by ``rel_peak_error``. With the
wall geometry (face centres in m, face areas in m2): ``hotspot_distance_m``, where on the wall
the (2 cm smoothed) hot spot is against where it really is, and ``rel_total_error``, the error
of the eroded mass per second of the whole wall (see :mod:`fluidgpt.wall`).

A model that predicts the peak rate of each case separately (``pred_peak``, (case,): the
magnitude head) has predicted the pattern too: ``pred / pred_peak``, scored as it is, as the
paper scored its CNN's output against the normalised truth. Dividing such a prediction by its
own maximum instead would blow up every hedged (spread out) pattern: the per-face mean of the
true held-out patterns themselves scores far below zero that way. Without ``pred_peak`` (a
copied map, e.g. the nearest training case) the prediction's own maximum is its peak.

Names say the averaging order: ``mse_over_valid`` averages the squared error over every
valid (case, particle, step, xyz) at once; ``r2_per_xyz_then_mean`` computes one R^2 per
coordinate over every valid (case, particle, step) and then averages the three.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .wall import area_integrated, hotspot

__all__ = [
    "trajectory_mse_over_valid",
    "trajectory_r2_per_xyz_then_mean",
    "erosion_pattern_r2_over_cases_and_faces",
    "rel_peak_error_mean_over_cases",
    "hotspot_distance_median_over_cases",
    "rel_total_error_mean_over_cases",
    "max_normalised",
    "predicted_pattern",
    "trajectory_scores",
    "erosion_scores",
]

_TRAJ_DIMS = ("case", "particle", "step", "xyz")


def _check_trajectories(pred: xr.DataArray, true: xr.DataArray, valid: xr.DataArray) -> None:
    for name, a, dims in (("pred", pred, _TRAJ_DIMS), ("true", true, _TRAJ_DIMS),
                          ("valid", valid, _TRAJ_DIMS[:3])):
        if set(a.dims) != set(dims):
            raise ValueError(f"{name} must have dims {dims}, found {a.dims}")
    if pred.sizes != true.sizes:
        raise ValueError(f"pred and true differ in size: {dict(pred.sizes)} vs "
                         f"{dict(true.sizes)}")
    if true.sizes["step"] < 2:
        raise ValueError("trajectories need >= 2 steps: step 0 is given, steps 1.. are scored")


def _scored(pred: xr.DataArray, true: xr.DataArray,
            valid: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    _check_trajectories(pred, true, valid)
    later = {"step": slice(1, None)}
    mask = valid.isel(later).astype(bool)
    if not bool(mask.any()):
        raise ValueError("no valid particle step after step 0 to score")
    return pred.isel(later), true.isel(later), mask


def trajectory_mse_over_valid(pred: xr.DataArray, true: xr.DataArray,
                              valid: xr.DataArray) -> float:
    """Mean squared error (m^2) over every valid (case, particle, step >= 1, xyz)."""
    p, t, m = _scored(pred, true, valid)
    sq = (p - t).where(m) ** 2
    return float(sq.mean(skipna=True))


def trajectory_r2_per_xyz_then_mean(pred: xr.DataArray, true: xr.DataArray,
                                    valid: xr.DataArray) -> float:
    """R^2 of x, y and z each over the valid (case, particle, step >= 1), then their mean."""
    p, t, m = _scored(pred, true, valid)
    over = ("case", "particle", "step")
    t_valid = t.where(m)
    ss_res = ((p - t).where(m) ** 2).sum(over)
    ss_tot = ((t_valid - t_valid.mean(over)) ** 2).sum(over)
    return float((1.0 - ss_res / ss_tot).mean("xyz"))


def _check_maps(pred: xr.DataArray, true: xr.DataArray) -> None:
    for name, a in (("pred", pred), ("true", true)):
        if set(a.dims) != {"case", "face"}:
            raise ValueError(f"{name} erosion must have dims ('case', 'face'), found {a.dims}")
    if pred.sizes != true.sizes:
        raise ValueError(f"pred and true erosion differ in size: {dict(pred.sizes)} vs "
                         f"{dict(true.sizes)}")


def max_normalised(rate: xr.DataArray) -> xr.DataArray:
    """Each case's map divided by its own maximum over the faces (the paper's target).

    A map whose maximum is not positive (a model that predicts no erosion at all) is left
    at zero rather than divided by zero.
    """
    peak = rate.max("face")
    return xr.where(peak > 0, rate / peak.where(peak > 0, 1.0), 0.0)


def _check_peak(pred: xr.DataArray, pred_peak: xr.DataArray | None) -> None:
    if pred_peak is None:
        return
    if pred_peak.dims != ("case",) or pred_peak.sizes["case"] != pred.sizes["case"]:
        raise ValueError(f"pred_peak must have dims ('case',) and {pred.sizes['case']} cases, "
                         f"found {pred_peak.dims} {dict(pred_peak.sizes)}")
    if not bool((pred_peak > 0).all()):
        raise ValueError("pred_peak must be positive (a predicted maximum rate)")


def predicted_pattern(pred: xr.DataArray, pred_peak: xr.DataArray | None = None) -> xr.DataArray:
    """The predicted pattern: pred / pred_peak when the peak was predicted separately, else
    pred divided by its own maximum (:func:`max_normalised`)."""
    _check_peak(pred, pred_peak)
    return max_normalised(pred) if pred_peak is None else pred / pred_peak


def erosion_pattern_r2_over_cases_and_faces(pred: xr.DataArray, true: xr.DataArray,
                                            pred_peak: xr.DataArray | None = None) -> float:
    """R^2 of the patterns over every (case, face) together (the paper's R^2): the true maps
    divided by their maxima against :func:`predicted_pattern`."""
    _check_maps(pred, true)
    p, t = predicted_pattern(pred, pred_peak), max_normalised(true)
    ss_res = float(((p - t) ** 2).sum())
    ss_tot = float(((t - t.mean()) ** 2).sum())
    if ss_tot == 0:
        raise ValueError("the true erosion patterns are all equal: R^2 is undefined")
    return 1.0 - ss_res / ss_tot


def rel_peak_error_mean_over_cases(pred: xr.DataArray, true: xr.DataArray,
                                   pred_peak: xr.DataArray | None = None) -> float:
    """|predicted peak - true peak| / true peak of each case's map, averaged over cases; the
    predicted peak is ``pred_peak`` when given, else the maximum of ``pred``."""
    _check_maps(pred, true)
    _check_peak(pred, pred_peak)
    peak_true = true.max("face")
    peak_pred = pred.max("face") if pred_peak is None else pred_peak
    if not bool((peak_true > 0).all()):
        raise ValueError("a true erosion map has no positive rate: its relative peak error "
                         "is undefined")
    return float((abs(peak_pred - peak_true) / peak_true).mean("case"))


def hotspot_distance_median_over_cases(pred: xr.DataArray, true: xr.DataArray, face_centre,
                                       face_area, length: float = 0.02) -> float:
    """Distance [m] between the predicted and the true hot spot of each case, median over
    cases.

    The median of :func:`fluidgpt.wall.hotspot_distance`. A hot spot is the face holding the
    maximum of the map smoothed over ``length`` m of wall (:func:`fluidgpt.wall.hotspot`): one
    face of a fine mesh catches few impacts, so the raw maximum jumps between neighbours.
    The scale of a map does not move its hot spot, so a pattern scores as its rates would.
    The median: a few cases whose hot spot lands on the wrong bend would otherwise decide
    the score. face_centre (face, xyz) m, face_area (face,) m2.
    """
    _check_maps(pred, true)
    order = ("case", "face")
    both = np.concatenate([pred.transpose(*order).values, true.transpose(*order).values])
    # One call for both (2N, F): the smoothing kernel over every pair of faces is the cost.
    spot = hotspot(both, face_centre, face_area, length)["smoothed_peak_location"]  # (2N, 3)
    n = pred.sizes["case"]
    return float(np.median(np.linalg.norm(spot[:n] - spot[n:], axis=-1)))


def rel_total_error_mean_over_cases(pred: xr.DataArray, true: xr.DataArray,
                                    face_area) -> float:
    """|predicted - true| / true eroded mass rate of the whole wall (sum of rate * area,
    kg s-1) of each case, averaged over cases. face_area (face,) m2."""
    _check_maps(pred, true)
    order = ("case", "face")
    total_pred = area_integrated(pred.transpose(*order).values, face_area)  # (N,)
    total_true = area_integrated(true.transpose(*order).values, face_area)  # (N,)
    if not (total_true > 0).all():
        raise ValueError("a true erosion map has no positive rate: its relative total error "
                         "is undefined")
    return float(np.mean(np.abs(total_pred - total_true) / total_true))


def trajectory_scores(pred: xr.DataArray, true: xr.DataArray,
                      valid: xr.DataArray) -> dict[str, float]:
    """{"mse": m^2, "r2": 1} of rolled-out trajectories (see the functions above)."""
    return {"mse": trajectory_mse_over_valid(pred, true, valid),
            "r2": trajectory_r2_per_xyz_then_mean(pred, true, valid)}


def erosion_scores(pred: xr.DataArray, true: xr.DataArray,
                   pred_peak: xr.DataArray | None = None, face_centre=None, face_area=None,
                   magnitude: bool = True) -> dict[str, float]:
    """Scores of erosion maps (see the functions above): "r2" (pattern R^2) and, when the
    model predicts the magnitude, "rel_peak_error"; with the wall geometry also
    "hotspot_distance_m" (median over cases, 2 cm smoothing) and, with the magnitude,
    "rel_total_error".

    pred_peak: the predicted maximum rate of each case, when predicted separately;
    magnitude: False for a pattern-only model (the paper's CNN), whose rates have no unit:
    its relative peak and total errors are not defined and are left out.
    face_centre (face, xyz) m and face_area (face,) m2: the wall geometry, both or neither.
    """
    if (face_centre is None) != (face_area is None):
        raise ValueError("the wall geometry needs both face_centre and face_area, or neither")
    out = {"r2": erosion_pattern_r2_over_cases_and_faces(pred, true, pred_peak)}
    if magnitude:
        out["rel_peak_error"] = rel_peak_error_mean_over_cases(pred, true, pred_peak)
    if face_centre is not None:
        out["hotspot_distance_m"] = hotspot_distance_median_over_cases(pred, true, face_centre,
                                                                       face_area)
        if magnitude:
            out["rel_total_error"] = rel_total_error_mean_over_cases(pred, true, face_area)
    if not all(np.isfinite(v) for v in out.values()):
        raise ValueError(f"erosion scores are not finite: {out}")
    return out
