"""Checkpoints + new case conditions -> rolled-out trajectories and the erosion map.

A trajectory checkpoint written by ``fluidgpt fit`` carries what prediction needs besides
the weights (:class:`fluidgpt.datamodule.DataInfo`): the condition names in the order the
network reads them, their training ranges, the injection points (step 0 is the same in every
case of a sweep: the same particles injected in the same order), the sample times and the
wall faces. :func:`predict` rolls every case out from those injection points and, with an
erosion checkpoint, predicts its wall erosion from the rolled-out trajectories (as the
erosion model was trained: on rollouts, not on CFD trajectories). The result is a dataset
in the canonical layout (:mod:`fluidgpt.schema`), written atomically by
:func:`write_prediction`.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from .datamodule import CaseTensors, DataInfo, read_data_info
from .schema import canonical_dataset, save_dataset

__all__ = [
    "Pipeline",
    "load_pipeline",
    "parse_conditions",
    "read_conditions_file",
    "predict",
    "write_prediction",
    "prediction_summary",
]


@dataclass
class Pipeline:
    """A trajectory module (gpt / lstm), its DataInfo, and optionally an erosion module."""

    trajectory: Any
    info: DataInfo
    erosion: Any | None = None
    sources: tuple[str, ...] = ()


def load_pipeline(paths: Sequence[str | Path]) -> Pipeline:
    """Load one trajectory checkpoint and at most one erosion checkpoint (any order)."""
    from .lightning import load_module

    trajectory = erosion = None
    info = None
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint")
        module = load_module(str(path))
        if module.kind == "erosion":
            if erosion is not None:
                raise ValueError("give at most one erosion checkpoint")
            erosion = module
        else:
            if trajectory is not None:
                raise ValueError("give exactly one trajectory (gpt, lstm or bilstm) checkpoint")
            trajectory, info = module, read_data_info(str(path))
    if trajectory is None or info is None:
        raise ValueError("a trajectory checkpoint (gpt, lstm or bilstm from `fluidgpt fit`) is "
                         "needed: erosion is predicted from its rollouts")
    if trajectory.config.n_features != 3:
        raise ValueError("prediction rolls out positions from the injection points; this "
                         f"network needs {trajectory.config.n_features} state features")
    if erosion is not None:
        e, t = erosion.config, trajectory.config
        if (e.n_particles, e.n_conditions) != (t.n_particles, t.n_conditions) or \
                e.n_steps != len(info.time):
            raise ValueError(f"the erosion model reads {e.n_steps} steps x {e.n_particles} "
                             f"particles with {e.n_conditions} conditions; the trajectory "
                             f"model gives {len(info.time)} x {t.n_particles} with "
                             f"{t.n_conditions}")
        if info.face_area and len(info.face_area) != e.n_faces:
            raise ValueError(f"the erosion model predicts {e.n_faces} faces, the trajectory "
                             f"checkpoint describes {len(info.face_area)}")
    return Pipeline(trajectory, info, erosion, tuple(str(p) for p in paths))


# -------------------------------------------------------------------------- conditions
def parse_conditions(text: str) -> pd.DataFrame:
    """'main_inlet_speed=9,side_inlet_speed=25' -> a one-row table (one case)."""
    values: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip():
            raise ValueError(f"conditions look like name=value,name=value; found {item!r}")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"condition {key.strip()!r}: {value!r} is not a number") from None
    return pd.DataFrame([values])


def read_conditions_file(path: str | Path) -> pd.DataFrame:
    """A CSV with one column per condition and one row per case."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such conditions file")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV table ({err})") from None
    if table.empty:
        raise ValueError(f"{path}: no cases (rows) in the conditions file")
    bad = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if bad:
        raise ValueError(f"{path}: columns {bad} are not numeric")
    return table


def _condition_matrix(table: pd.DataFrame, info: DataInfo) -> np.ndarray:
    names = list(info.conditions)
    missing = [n for n in names if n not in table.columns]
    extra = [c for c in table.columns if c not in names]
    if missing or extra:
        raise ValueError(f"the model reads conditions {names}; missing {missing}"
                         + (f", unknown {extra}" if extra else ""))
    values = table[names].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("conditions must be finite numbers")
    low, high = np.asarray(info.low), np.asarray(info.high)
    outside = [(n, float(v)) for row in values for n, v, lo, hi in zip(names, row, low, high)
               if v < lo - 1e-9 * abs(lo) or v > hi + 1e-9 * abs(hi)]
    if outside:
        warnings.warn(f"conditions outside the training range (extrapolation): {outside[:5]}",
                      stacklevel=4)
    return values


# -------------------------------------------------------------------------------- predict
@torch.no_grad()
def predict(pipeline: Pipeline, conditions: pd.DataFrame) -> xr.Dataset:
    """Roll out every case (row) of ``conditions`` and predict its erosion.

    Returns a canonical-layout dataset: position (case, particle, step, xyz) in m, velocity
    from finite differences, valid (all True: the models do not predict when a particle
    leaves), conditions, and with an erosion model erosion_rate (case, face) in
    kg m-2 s-1 (negative network outputs clipped at 0) and erosion_pattern (the map / its
    maximum), or erosion_pattern alone for a model without a magnitude head.
    """
    from .compare import forecast, predict_erosion

    info, module = pipeline.info, pipeline.trajectory
    values = _condition_matrix(conditions, info)  # (N, K)
    if info.first_step_spread > 1e-4:
        warnings.warn(f"step 0 differs between the training cases by up to "
                      f"{info.first_step_spread:.3g} m (not the same injection points in every "
                      "case); predictions start from their mean", stacklevel=3)
    N, T = len(values), len(info.time)
    first = torch.tensor(info.first_step, dtype=torch.float32)  # (P, 3)
    P = first.shape[0]
    positions = first[None, None].expand(N, T, P, 3).clone()  # (N, T, P, 3), step 0 used
    cases = CaseTensors(positions, torch.zeros_like(positions),
                        torch.tensor(values, dtype=torch.float32),
                        torch.ones(N, T, P, dtype=torch.bool), None, torch.arange(N),
                        tuple(info.conditions), tuple(info.units))
    traj = forecast(module, cases)  # (N, T, P, 3)
    kwargs: dict[str, Any] = {}
    pattern = None
    if pipeline.erosion is not None:
        out = predict_erosion(pipeline.erosion, cases.with_positions(traj)).numpy()
        if pipeline.erosion.config.magnitude_head:
            rate = np.clip(out, 0.0, None)
            peak = rate.max(axis=1, keepdims=True)
            pattern = np.where(peak > 0, rate / np.where(peak > 0, peak, 1.0), 0.0)
            kwargs["erosion_rate"] = rate
        else:
            pattern = out
        if info.face_area:
            kwargs.update(face_centre=np.asarray(info.face_centre),
                          face_area=np.asarray(info.face_area), patch=list(info.patch))
        elif "erosion_rate" in kwargs:
            raise ValueError("the trajectory checkpoint describes no wall faces to put the "
                             "erosion map on")
    diameter = None
    if "particle_diameter" in info.conditions:
        d = values[:, info.conditions.index("particle_diameter")]
        diameter = np.broadcast_to(d[:, None], (N, P))
    ds = canonical_dataset(
        traj.permute(0, 2, 1, 3).numpy(),  # (N, P, T, 3)
        np.ones((N, P, T), dtype=bool), np.asarray(info.time), values, info.conditions,
        condition_units=info.units or None, diameter=diameter,
        attrs={"title": "fluidgpt prediction", "source": "; ".join(pipeline.sources),
               "trained_on": info.dataset,
               "note": "valid is True everywhere: the models do not predict when a particle "
                       "leaves the domain"}, **kwargs)
    if pattern is not None:
        dims = ("case", "face")
        ds["erosion_pattern"] = xr.DataArray(
            pattern.astype(np.float32), dims=dims,
            attrs={"units": "1", "long_name": "erosion rate divided by its maximum"})
    return ds


def write_prediction(ds: xr.Dataset, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``ds`` to .zarr or .nc atomically: a hidden sibling, renamed into place once
    complete, so a failure never leaves a half-written prediction behind."""
    path = Path(path)
    if not path.name.endswith((".zarr", ".nc")):
        raise ValueError(f"prediction output must end in .zarr or .nc, found {path.name!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = path.with_name(f".{path.stem}.tmp-{tag}{path.suffix}")
    try:
        save_dataset(ds, tmp)
        if path.exists():
            old = path.with_name(f".{path.stem}.old-{tag}{path.suffix}")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)
    return path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def prediction_summary(ds: xr.Dataset) -> Mapping[str, Any]:
    """A few numbers to print after a prediction."""
    out: dict[str, Any] = {"cases": ds.sizes["case"], "particles": ds.sizes["particle"],
                           "steps": ds.sizes["step"]}
    if "erosion_rate" in ds:
        out["peak_erosion_rate"] = ds["erosion_rate"].max("face").values.tolist()
    return out
