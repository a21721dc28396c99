"""Scores of rolled-out trajectories and predicted erosion maps, over named dims.

Trajectories: DataArrays (case, particle, step, xyz) in metres with a validity mask
(case, particle, step); every score skips step 0 (the true first step each rollout starts
from) and the entries where the true particle is not valid (not yet injected, or gone).

Erosion: DataArrays (case, face) of rates in kg m-2 s-1. The R^2 is the paper's: each true
map divided by its own maximum (the pattern), then one R^2 over every wall face of every case
together; the magnitude, which that throws away, is scored by ``rel_peak_error``.

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

__all__ = [
    "trajectory_mse_over_valid",
    "trajectory_r2_per_xyz_then_mean",
    "erosion_pattern_r2_over_cases_and_faces",
    "rel_peak_error_mean_over_cases",
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


def trajectory_scores(pred: xr.DataArray, true: xr.DataArray,
                      valid: xr.DataArray) -> dict[str, float]:
    """{"mse": m^2, "r2": 1} of rolled-out trajectories (see the functions above)."""
    return {"mse": trajectory_mse_over_valid(pred, true, valid),
            "r2": trajectory_r2_per_xyz_then_mean(pred, true, valid)}


def erosion_scores(pred: xr.DataArray, true: xr.DataArray,
                   pred_peak: xr.DataArray | None = None) -> dict[str, float]:
    """{"r2": pattern R^2, "rel_peak_error": mean relative peak error} of erosion maps
    (``pred_peak``: the predicted maximum rate of each case, when predicted separately)."""
    out = {"r2": erosion_pattern_r2_over_cases_and_faces(pred, true, pred_peak),
           "rel_peak_error": rel_peak_error_mean_over_cases(pred, true, pred_peak)}
    if not all(np.isfinite(v) for v in out.values()):
        raise ValueError(f"erosion scores are not finite: {out}")
    return out
