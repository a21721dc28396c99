"""Scores of a comparison: the table's rows, trajectory and erosion scores, the noise
ceiling from paired injection seeds, the untrained baselines (nearest case, knn, pod) and
the table's printed form."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from torch import Tensor

from ..baselines import NearestCase
from ..casetensors import CaseTensors, case_tensors, to_dataarray
from ..config import ConfigError
from ..data import Split, sample_path
from ..metrics import erosion_scores, trajectory_scores
from ..scalers import Scaler
from ..schema import open_dataset
from ..surrogates import InverseDistanceErosion, PODErosion
from .config import EROSION_SURROGATES

__all__ = [
    "TABLE_COLUMNS",
    "NOISE_SAMPLE",
    "wall_geometry",
    "noise_ceiling_rows",
    "condition_space",
    "format_table",
]

TABLE_COLUMNS = ("model", "target", "split", "metric", "value", "train_seconds")
#: The shipped pairs of injection seeds (next to the shipped sample), for the noise ceiling.
NOISE_SAMPLE = "elbow_sample_noise.nc"


# ------------------------------------------------------------------------------- scoring
def _rows(model: str, target: str, split: str, scores: Mapping[str, float],
          seconds: float) -> list[dict[str, Any]]:
    return [{"model": model, "target": target, "split": split, "metric": k, "value": float(v),
             "train_seconds": round(float(seconds), 2)} for k, v in scores.items()]


def _trajectory_scores(pred: Tensor, truth: CaseTensors) -> dict[str, float]:
    return trajectory_scores(to_dataarray(pred), to_dataarray(truth.positions),
                             to_dataarray(truth.valid, "valid"))


WallGeometry = tuple[np.ndarray, np.ndarray]


def wall_geometry(ds: xr.Dataset | None) -> WallGeometry | None:
    """(face_centre (F, 3) m, face_area (F,) m2) of the dataset's wall faces, None without
    them: what the hot-spot and total-rate scores need."""
    if ds is None or "face_centre" not in ds.coords or "face_area" not in ds.coords:
        return None
    return ds["face_centre"].transpose("face", "xyz").values, ds["face_area"].values


def _erosion_scores(pred: Tensor, truth: CaseTensors, has_magnitude: bool,
                    peak: Tensor | None = None,
                    wall: WallGeometry | None = None) -> dict[str, float]:
    """Scores of predicted maps; ``peak`` (N,): the predicted peak of each case when the
    model predicts it apart from the pattern (see :func:`predict_erosion`), None for a map
    whose own maximum is its peak (a copied case); ``wall``: the geometry for the hot-spot
    distance and the relative total error (see :func:`fluidgpt.metrics.erosion_scores`)."""
    p, t = to_dataarray(pred, "erosion"), to_dataarray(truth.erosion, "erosion")
    q = None if peak is None else xr.DataArray(peak.detach().cpu().numpy(), dims=("case",))
    centre, area = wall if wall is not None else (None, None)
    return erosion_scores(p, t, q, centre, area, magnitude=has_magnitude)


def _paired_cases(ds: xr.Dataset) -> list[tuple[int, int]]:
    """(a, b) case pairs that share a group but not a seed: the same physics, another
    injection."""
    if "group" not in ds or "seed" not in ds:
        return []
    group, seed = ds["group"].values, ds["seed"].values
    pairs = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        for i in members:
            for j in members:
                if i != j and seed[i] != seed[j]:
                    pairs.append((int(i), int(j)))
    return pairs


def noise_ceiling_rows(ds: xr.Dataset | None, split: str,
                       echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Scores of one injection seed taken as the prediction of another seed of the same case:
    the best any model can do. Empty when there is no dataset or it holds no such pairs.

    Trajectories are compared particle by particle (particle i of both seeds starts in the
    same cell of the injection grid, at a seeded point in it).
    """
    pairs = [] if ds is None else _paired_cases(ds)
    if not pairs:
        return []
    data = case_tensors(ds, "all")
    a = data.subset([p[0] for p in pairs])
    b = data.subset([p[1] for p in pairs])
    rows = _rows("noise_ceiling", "trajectory", split, _trajectory_scores(a.positions, b), 0.0)
    gap = float((a.positions[:, 0] - b.positions[:, 0]).abs().max())
    if gap > 0:
        echo(f"  noise ceiling: the seeds inject particle i up to {gap:.3g} m apart (the same "
             "cell of the injection grid); trajectories are compared particle by particle")
    if data.erosion is not None:
        rows += _rows("noise_ceiling", "erosion", split,
                      _erosion_scores(a.erosion, b, True, wall=wall_geometry(ds)), 0.0)
    echo(f"  noise ceiling from {len(pairs) // 2} pairs of injection seeds")
    return rows


def _noise_data(config: Any, ds: xr.Dataset) -> xr.Dataset | None:
    """The dataset of paired injection seeds: data.noise_ceiling "auto" (the experiment's
    dataset when it holds pairs, else the shipped noise sample next to the shipped sample),
    a path, or null (none)."""
    setting = config.data.noise_ceiling
    if setting is None:
        return None
    if setting != "auto":
        return open_dataset(setting)
    if _paired_cases(ds):
        return ds
    noise = sample_path().with_name(NOISE_SAMPLE)
    if config.data.path is None and noise.is_file():
        return open_dataset(noise)
    return None


#: Conditions the baselines compare on a log scale: a particle size matters by ratio, and
#: the sweeps spread it evenly in log(d).
LOG_CONDITIONS = ("particle_diameter",)


def condition_space(data: CaseTensors, train: CaseTensors,
                    test: CaseTensors) -> tuple[Tensor, Tensor]:
    """Training and test conditions (n, K) where the baselines measure distance: the sizes
    on a log scale, every column z-scored on the training cases."""
    logged = [i for i, n in enumerate(data.condition_names) if n in LOG_CONDITIONS]

    def warp(c: Tensor) -> Tensor:
        c = c.clone()
        c[:, logged] = c[:, logged].log()
        return c

    scaler = Scaler(data.n_conditions).fit(warp(train.conditions))
    return scaler(warp(train.conditions)), scaler(warp(test.conditions))


def _nearest(data: CaseTensors, split: Split) -> tuple[dict[str, Tensor], float]:
    start = time.perf_counter()
    train, test = data.subset(split.trainval), data.subset(split.test)
    x_train, x_test = condition_space(data, train, test)
    outputs = {"trajectories": train.positions}
    if train.erosion is not None:
        outputs["erosion"] = train.erosion
    model = NearestCase().fit(x_train, **outputs)
    pred = model.predict(x_test)
    return pred, time.perf_counter() - start


def _surrogate(name: str, data: CaseTensors, split: Split, face_area: np.ndarray | None,
               seed: int = 0) -> tuple[dict[str, Tensor], float]:
    """A direct conditions -> erosion baseline (knn or pod) fitted on the non-test cases,
    their conditions scaled as the nearest case's (condition_space); its prediction of the
    test cases ({"erosion": (n, faces), "peak": (n,)}) and the seconds it took."""
    start = time.perf_counter()
    train, test = data.subset(split.trainval), data.subset(split.test)
    x, x_test = condition_space(data, train, test)
    if name == "pod":
        model = PODErosion(seed=seed).fit(x, train.erosion, face_area)
    elif name == "knn":
        model = InverseDistanceErosion().fit(x, train.erosion)
    else:
        raise ConfigError(f"unknown erosion surrogate {name!r}; choose from "
                          f"{list(EROSION_SURROGATES)}")
    pred = model.predict(x_test)
    return pred, time.perf_counter() - start



def format_table(table: pd.DataFrame) -> str:
    """The tidy table as one line per (split, model), metrics as columns."""
    if table.empty:
        return "(empty table)"
    wide = table.pivot_table(index=["split", "model"], columns=["target", "metric"],
                             values="value", aggfunc="first")
    wide.columns = [f"{t} {m}" for t, m in wide.columns]
    secs = table.groupby(["split", "model"])["train_seconds"].max().rename("train s (max)")
    return wide.join(secs).to_string(float_format=lambda v: f"{v:.4g}")

