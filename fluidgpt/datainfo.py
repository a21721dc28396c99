"""What a checkpoint keeps about its data, so that ``fluidgpt predict`` runs without the
dataset: :class:`DataInfo` (condition names and ranges, the injection step, times, wall
faces, the split), stored by :class:`DataInfoCallback` and read back by
:func:`read_data_info`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as L
import numpy as np
import xarray as xr
import yaml

from .casetensors import CaseTensors
from .checkpoints import read_checkpoint
from .data import Split

__all__ = ["DataInfo", "DataInfoCallback", "read_data_info"]


@dataclass(frozen=True)
class DataInfo:
    """What a checkpoint keeps about its data (plain values, weights_only-safe).

    conditions / units / low / high: the K condition columns the model reads, in order,
    with their training ranges; first_step: (P, 3) positions at step 0 (the same injection
    points in every case; the mean over the training cases); time: (T,) seconds; faces:
    face_centre (faces, 3), face_area (faces,), patch (faces,) or empty, face_vertex
    (faces, corner, 3) the corners of each face where the dataset has them (else empty);
    wall_density: kg m-3 of the wall the erosion rates were computed for (None: not
    recorded); split: the Split.to_dict() of the training split, fold the fold trained on
    (None: all non-test).
    """

    conditions: list[str]
    units: list[str]
    low: list[float]
    high: list[float]
    first_step: list[list[float]]
    first_step_spread: float
    time: list[float]
    face_centre: list[list[float]] = field(default_factory=list)
    face_area: list[float] = field(default_factory=list)
    patch: list[str] = field(default_factory=list)
    face_vertex: list[list[list[float]]] = field(default_factory=list)
    wall_density: float | None = None
    split: dict = field(default_factory=dict)
    fold: int | None = None
    dataset: str = ""

    @classmethod
    def build(cls, ds: xr.Dataset, data: CaseTensors, train: np.ndarray, split: Split,
              fold: int | None, dataset: str = "") -> DataInfo:
        cases = data.subset(train)
        first = cases.positions[:, 0]  # (N, P, 3)
        mean = first.mean(0)
        time = ds["time"]
        time = time.isel(case=0) if "case" in time.dims else time
        info = dict(conditions=list(data.condition_names),
                    units=list(data.condition_units),
                    low=cases.conditions.amin(0).tolist(), high=cases.conditions.amax(0).tolist(),
                    first_step=mean.tolist(),
                    first_step_spread=float((first - mean).abs().max()),
                    time=[float(t) for t in time.values], split=split.to_dict(), fold=fold,
                    dataset=dataset)
        if "face_centre" in ds.coords:
            info.update(face_centre=ds["face_centre"].transpose("face", "xyz").values.tolist(),
                        face_area=ds["face_area"].values.tolist(),
                        patch=[str(p) for p in ds["patch"].values])
        if "face_vertex" in ds.coords:
            info.update(face_vertex=ds["face_vertex"].transpose("face", "corner", "xyz")
                        .values.tolist())
        return cls(**info, wall_density=_wall_density(ds.attrs))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataInfo:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown data-info keys {unknown}")
        return cls(**d)


def _wall_density(attrs: Mapping[str, Any]) -> float | None:
    """The wall density [kg m-3] a dataset's erosion rates were computed for: its
    ``wall_density`` attribute, else ``erosion.wall_density`` of the recipe it was built
    from (the ``recipe`` attribute, YAML); None when neither is there."""
    if "wall_density" in attrs:
        return float(attrs["wall_density"])
    try:
        recipe = yaml.safe_load(str(attrs.get("recipe", "")))
    except yaml.YAMLError:
        return None
    erosion = recipe.get("erosion") if isinstance(recipe, dict) else None
    value = erosion.get("wall_density") if isinstance(erosion, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


class DataInfoCallback(L.Callback):
    """Stores a :class:`DataInfo` in every checkpoint under ``"fluidgpt_data"``."""

    def __init__(self, info: DataInfo) -> None:
        self.info = info

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["fluidgpt_data"] = self.info.to_dict()


def read_data_info(path: str) -> DataInfo:
    """The DataInfo of a checkpoint written with :class:`DataInfoCallback` (read with
    :func:`fluidgpt.checkpoints.read_checkpoint`: weights_only, format version checked)."""
    ckpt = read_checkpoint(path)
    if "fluidgpt_data" not in ckpt:
        raise ValueError(f"{path} holds no fluidgpt data description (train it with "
                         "`fluidgpt fit`, which stores the condition names and the injection "
                         "points in the checkpoint)")
    return DataInfo.from_dict(ckpt["fluidgpt_data"])
