"""Checkpoints + new case conditions -> rolled-out trajectories and the erosion map.

A trajectory checkpoint written by ``fluidgpt fit`` carries what prediction needs besides
the weights (:class:`fluidgpt.datainfo.DataInfo`): the condition names in the order the
network reads them, their training ranges, the injection points (step 0 is the same in every
case of a sweep: the same particles injected in the same order), the sample times and the
wall faces. :func:`predict` rolls every case out from those injection points and, with an
erosion checkpoint, predicts its wall erosion from the rolled-out trajectories (as the
erosion model was trained: on rollouts, not on CFD trajectories). The result is a dataset
in the canonical layout (:mod:`fluidgpt.schema`), written atomically by
:func:`write_prediction`.

Where the erosion model predicts rates (a magnitude head), the dataset also carries the
engineering quantities of :mod:`fluidgpt.wall`: ``wall_loss_rate`` (case, face) in mm yr-1 at
the wall density of the training data (7800 kg m-3, carbon steel, where it recorded none)
and the hot spots of each case, raw and smoothed over ``HOTSPOT_LENGTH`` (2 cm) of wall.
:func:`write_outputs` writes the dataset with the wall maps as VTK (:mod:`fluidgpt.wall_vtk`)
and the hot-spot figure, all or nothing.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from .atomic import atomic_write, staged
from .casetensors import CaseTensors
from .checkpoints import load_checkpoint
from .datainfo import DataInfo, read_data_info
from .schema import canonical_dataset, check_condition, save_dataset
from .wall import DEFAULT_WALL_DENSITY, hotspot, wall_loss_mm_per_year
from .wall_vtk import vtk_paths, write_wall_vtk

__all__ = [
    "Pipeline",
    "load_checkpoint",
    "load_pipeline",
    "parse_conditions",
    "read_conditions_file",
    "predict",
    "wall_variables",
    "write_prediction",
    "write_outputs",
    "prediction_summary",
    "HOTSPOT_LENGTH",
]

#: Standard deviation [m] of the wall smoothing of the hot spots: 2 cm of wall.
HOTSPOT_LENGTH = 0.02


@dataclass
class Pipeline:
    """A trajectory module (gpt / lstm), its DataInfo, and optionally an erosion module."""

    trajectory: Any
    info: DataInfo
    erosion: Any | None = None
    sources: tuple[str, ...] = ()


def load_pipeline(paths: Sequence[str | Path]) -> Pipeline:
    """Load one trajectory checkpoint and at most one erosion checkpoint (any order)."""
    trajectory = erosion = None
    info = None
    for path in paths:
        module = load_checkpoint(path)
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
        if key.strip() in values:
            raise ValueError(f"condition {key.strip()!r}: given twice in {text!r}")
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
    for name in table.columns:
        if not pd.api.types.is_numeric_dtype(table[name]):
            text = table[name][pd.to_numeric(table[name], errors="coerce").isna()].iloc[0]
            raise ValueError(f"{path}: condition {name!r}: expected numbers, found {text!r}")
    return table


def _condition_matrix(table: pd.DataFrame, info: DataInfo) -> np.ndarray:
    """The (N, K) conditions the model reads: impossible values (any model) are an error,
    values outside the training ranges a warning."""
    for name in table.columns:  # a physically impossible case first, whatever the model
        for value in table[name].to_numpy(dtype=np.float64):
            if not np.isfinite(value):
                raise ValueError(f"condition {name}: expected a finite number, found {value}")
            problem = check_condition(name, value)
            if problem:
                raise ValueError(problem)
    names = list(info.conditions)
    missing = [n for n in names if n not in table.columns]
    extra = [c for c in table.columns if c not in names]
    if missing or extra:
        raise ValueError(f"the model reads conditions {names}; missing {missing}"
                         + (f", unknown {extra}" if extra else ""))
    values = table[names].to_numpy(dtype=np.float64)  # (N, K)
    # The ranges were taken from float32 conditions: a relative tolerance of 1e-6 (float32
    # rounds to 6e-8) keeps a training case's own conditions, typed in full, inside them.
    low, high = np.asarray(info.low), np.asarray(info.high)
    below = (values < low) & ~np.isclose(values, low, rtol=1e-6, atol=0.0)
    above = (values > high) & ~np.isclose(values, high, rtol=1e-6, atol=0.0)
    outside = [f"{n}={v:g} (trained on {lo:g} .. {hi:g})" for row, out in
               zip(values, below | above) for n, v, lo, hi, o in zip(names, row, low, high, out)
               if o]
    if outside:
        warnings.warn("conditions outside the training range (extrapolation): "
                      + ", ".join(outside[:5]), stacklevel=4)
    return values


# -------------------------------------------------------------------------------- predict
@torch.no_grad()
def predict(pipeline: Pipeline, conditions: pd.DataFrame) -> xr.Dataset:
    """Roll out every case (row) of ``conditions`` and predict its erosion.

    Returns a canonical-layout dataset: position (case, particle, step, xyz) in m, velocity
    from finite differences, valid (all True: the models do not predict when a particle
    leaves), conditions, and with an erosion model erosion_rate (case, face) in
    kg m-2 s-1 (negative network outputs clipped at 0) and erosion_pattern (the map / its
    maximum), or erosion_pattern alone for a model without a magnitude head; with rates
    also the variables of :func:`wall_variables`, and face_vertex where the trajectory
    checkpoint describes the face corners.
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
                          face_area=np.asarray(info.face_area), patch=list(info.patch),
                          face_vertices=np.asarray(info.face_vertex) if info.face_vertex
                          else None)
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
    if "erosion_rate" in ds:
        ds = ds.assign(wall_variables(ds, info.wall_density))
    return ds


def wall_variables(ds: xr.Dataset, wall_density: float | None = None,
                   length: float = HOTSPOT_LENGTH) -> dict[str, xr.DataArray]:
    """Wall loss and hot spots of the ``erosion_rate`` (case, face) maps of ``ds``.

    wall_loss_rate (case, face) mm yr-1 at ``wall_density`` kg m-3 (None: 7800, carbon
    steel; the attrs say which); peak_erosion_rate (case,) kg m-2 s-1 and peak_location
    (case, xyz) m, the face with the largest rate; smoothed_peak_erosion_rate and
    smoothed_peak_location, the same of the map smoothed over ``length`` m of wall
    (:func:`fluidgpt.wall.smooth_on_wall`).
    """
    rate = ds["erosion_rate"].transpose("case", "face")
    density = DEFAULT_WALL_DENSITY if wall_density is None else float(wall_density)
    loss = wall_loss_mm_per_year(rate, density).astype(np.float32)
    loss.attrs["wall_density_source"] = ("the training data" if wall_density is not None else
                                         "default (carbon steel): the training data recorded "
                                         "no wall density")
    spots = hotspot(rate.values, ds["face_centre"].transpose("face", "xyz").values,
                    ds["face_area"].values, length)
    smoothed = f", smoothed over the wall (Gaussian, standard deviation {length} m)"
    out = {"wall_loss_rate": loss}
    for prefix, extra in (("", ""), ("smoothed_", smoothed)):
        out[f"{prefix}peak_erosion_rate"] = xr.DataArray(
            spots[f"{prefix}peak_value"], dims="case",
            attrs={"units": "kg m-2 s-1", "long_name": f"largest erosion rate{extra}",
                   **({"smoothing_length": length} if prefix else {})})
        out[f"{prefix}peak_location"] = xr.DataArray(
            spots[f"{prefix}peak_location"], dims=("case", "xyz"),
            attrs={"units": "m", "long_name": f"centre of the face with the largest erosion "
                                              f"rate{extra}"})
    return out


def write_prediction(ds: xr.Dataset, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``ds`` to .zarr or .nc through :func:`fluidgpt.atomic.atomic_write`: a failure
    (or a kill) never leaves a half-written prediction behind, nor loses the previous one."""
    path = _prediction_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: save_dataset(ds, tmp), overwrite=overwrite)


def _prediction_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.name.endswith((".zarr", ".nc")):
        raise ValueError(f"prediction output must end in .zarr or .nc, found {path.name!r}")
    return path


def write_outputs(ds: xr.Dataset, path: str | Path, vtk_dir: str | Path | None = None,
                  plot: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the prediction to ``path`` (.zarr / .nc) and, optionally, its wall maps.

    vtk_dir: one ParaView file per case, ``<vtk_dir>/<path stem>_case<k>.vtu``
    (:func:`fluidgpt.wall_vtk.write_wall_vtk`); plot: the hot-spot figure of case 0
    (:func:`fluidgpt.plots.plot_hotspot`). Both need ``erosion_rate`` in ``ds``. Existing
    targets are refused unless ``overwrite``; every file is staged
    (:func:`fluidgpt.atomic.staged`) and renamed into place once all are complete, so a
    failure leaves nothing new behind. Returns the paths written and whether the VTK cells
    are the faces (``vtk_faces``: False for vertex cells at the face centres of an older
    dataset).
    """
    path = _prediction_path(path)
    vtk = vtk_paths(vtk_dir, path.stem, ds.sizes["case"]) if vtk_dir is not None else []
    if (vtk or plot is not None) and "erosion_rate" not in ds:
        raise ValueError("VTK and hot-spot outputs need predicted erosion rates: give an "
                         "erosion checkpoint with a magnitude head")
    targets = [path, *vtk, *([Path(plot)] if plot is not None else [])]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing[:3])} exist(s); pass --overwrite to "
                              "replace")
    made = [d for d in {p.parent for p in targets} if not d.exists()]
    out: dict[str, Any] = {"vtk": vtk, "plot": Path(plot) if plot is not None else None,
                           "vtk_faces": "face_vertex" in ds.coords, "prediction": path}
    try:
        with ExitStack() as stack:  # each staged file is renamed into place as it closes
            for directory in made:
                directory.mkdir(parents=True, exist_ok=True)
            for case, final in enumerate(vtk):
                write_wall_vtk(ds, case, stack.enter_context(staged(final, overwrite)))
            if plot is not None:
                _plot_first_case(ds, stack.enter_context(staged(Path(plot), overwrite)))
            save_dataset(ds, stack.enter_context(staged(path, overwrite)))
    except BaseException:
        for directory in made:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return out


def _plot_first_case(ds: xr.Dataset, path: Path) -> Path:
    from .plots import plot_hotspot

    case = ds.isel(case=0)
    conditions = ", ".join(f"{n}={v:.3g}" for n, v in
                           zip(ds["condition"].values, case["conditions"].values))
    return plot_hotspot(case["face_centre"].transpose("face", "xyz").values,
                        case["erosion_rate"].values, case["face_area"].values, path,
                        wall_density=float(ds["wall_loss_rate"].attrs["wall_density"]),
                        length=HOTSPOT_LENGTH, title=f"predicted wall loss, case 0: "
                                                     f"{conditions}")


def prediction_summary(ds: xr.Dataset) -> Mapping[str, Any]:
    """A few numbers to print after a prediction."""
    out: dict[str, Any] = {"cases": ds.sizes["case"], "particles": ds.sizes["particle"],
                           "steps": ds.sizes["step"]}
    if "erosion_rate" in ds:
        out["peak_erosion_rate"] = ds["erosion_rate"].max("face").values.tolist()
    if "wall_loss_rate" in ds:
        density = float(ds["wall_loss_rate"].attrs["wall_density"])
        for name in ("peak", "smoothed_peak"):
            loss = wall_loss_mm_per_year(ds[f"{name}_erosion_rate"].values, density)
            out[f"{name}_wall_loss_mm_per_year"] = [round(float(v), 4) for v in loss]
    return out
