"""From the canonical dataset and a Split to scaled tensors and DataLoaders, per stage.

xarray stops here: :func:`case_tensors` converts a canonical dataset once into
:class:`CaseTensors` (physical units, case-major, one layout for every model), and
:class:`FluidDataModule` serves the cases of one split stage (train / val / test) as batch
dicts scaled by the module's own scalers, fitted on the training cases only
(:meth:`FluidDataModule.fit_scalers`). :func:`to_dataarray` goes back to named dims for the
metrics and the writers; :class:`DataInfo` is what a checkpoint must carry about its data so
that ``fluidgpt predict`` can run without the dataset (condition names and ranges, the
injection step, times, wall faces, the split).

Shapes: N cases, T steps, P particles, K conditions, faces wall faces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
import xarray as xr
import yaml
from torch import Tensor
from torch.utils.data import DataLoader

from .data import Split
from .schema import CONDITION_ATTRS, XYZ

__all__ = [
    "CaseTensors",
    "DataContract",
    "DataInfo",
    "DataInfoCallback",
    "FluidDataModule",
    "case_tensors",
    "select_conditions",
    "to_dataarray",
    "read_data_info",
    "scaler_sizes",
]


# ------------------------------------------------------------------------------ tensors
@dataclass(frozen=True)
class DataContract:
    """What a network must know about its data, read from the data and never written in an
    experiment: P particles, T steps, the K condition columns (names, in order), F state
    features per particle the loader serves (3 positions, 6 with velocity), wall faces (0:
    the data has no erosion maps). The LightningModules size their networks and scalers
    from it (``contract`` argument, linked from the DataModule by ``fluidgpt fit``)."""

    n_particles: int
    n_steps: int
    conditions: tuple[str, ...]
    n_features: int = 3
    n_faces: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(str(c) for c in self.conditions))
        if min(self.n_particles, self.n_steps) <= 0 or self.n_faces < 0:
            raise ValueError(f"a data contract needs P, T > 0 and faces >= 0, found {self}")

    @property
    def n_conditions(self) -> int:
        return len(self.conditions)

    def scalers(self) -> dict[str, int]:
        """The scaler sizes a trajectory module needs (see :func:`scaler_sizes`)."""
        return scaler_sizes(self.n_conditions, self.n_features)


@dataclass(frozen=True)
class CaseTensors:
    """N cases in physical units, case-major.

    positions: (N, T, P, 3) m; velocity: (N, T, P, 3) m s-1; conditions: (N, K) in the
    units of ``condition_units``; valid: (N, T, P) bool (False: not sampled / left the
    domain, positions hold the last valid sample there); erosion: (N, faces) kg m-2 s-1 or
    None; index: (N,) the cases' positions in the source dataset.
    """

    positions: Tensor
    velocity: Tensor
    conditions: Tensor
    valid: Tensor
    erosion: Tensor | None
    index: Tensor
    condition_names: tuple[str, ...]
    condition_units: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        N, T, P, three = self.positions.shape
        if three != 3:
            raise ValueError(f"positions must be (N, T, P, 3), found {tuple(self.positions.shape)}")
        checks = {"velocity": (self.velocity, (N, T, P, 3)),
                  "valid": (self.valid, (N, T, P)),
                  "conditions": (self.conditions, (N, len(self.condition_names))),
                  "index": (self.index, (N,))}
        for name, (value, shape) in checks.items():
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, found {tuple(value.shape)}")
        if self.valid.dtype != torch.bool:
            raise ValueError(f"valid must be bool, found {self.valid.dtype}")
        if self.erosion is not None and (self.erosion.ndim != 2 or self.erosion.shape[0] != N):
            raise ValueError(f"erosion must be (N={N}, faces), found {tuple(self.erosion.shape)}")

    def __len__(self) -> int:
        return self.positions.shape[0]

    @property
    def n_steps(self) -> int:
        return self.positions.shape[1]

    @property
    def n_particles(self) -> int:
        return self.positions.shape[2]

    @property
    def n_conditions(self) -> int:
        return len(self.condition_names)

    def contract(self, n_features: int = 3) -> DataContract:
        """The sizes a module reads from these cases."""
        return DataContract(self.n_particles, self.n_steps, self.condition_names, n_features,
                            0 if self.erosion is None else int(self.erosion.shape[1]))

    def subset(self, cases: Sequence[int] | np.ndarray | Tensor) -> CaseTensors:
        """The cases at these positions (0..N-1) of this container."""
        i = torch.as_tensor(np.asarray(cases), dtype=torch.long)
        return CaseTensors(self.positions[i], self.velocity[i], self.conditions[i],
                           self.valid[i], None if self.erosion is None else self.erosion[i],
                           self.index[i], self.condition_names, self.condition_units)

    def with_positions(self, positions: Tensor, all_valid: bool = True) -> CaseTensors:
        """The same cases with other trajectories (e.g. a model's rollouts), whose validity is
        unknown: every step counts as valid unless ``all_valid`` is False."""
        valid = torch.ones_like(self.valid) if all_valid else self.valid
        return CaseTensors(positions, self.velocity, self.conditions, valid, self.erosion,
                           self.index, self.condition_names, self.condition_units)


def select_conditions(ds: xr.Dataset, which: str | Sequence[str] = "physical") -> list[str]:
    """Condition names to feed the models.

    "all": every column (the paper fed its two inert pressures too); "physical": every
    column that varies in ``ds`` and is not an inert label (``ds.attrs["inert_labels"]``,
    set by the paper-style variant, or a long name marked inert); or an explicit list.
    """
    names = [str(c) for c in ds["condition"].values]
    if isinstance(which, str):
        if which == "all":
            return names
        if which != "physical":
            raise ValueError(f"conditions must be 'physical', 'all' or a list of names, found "
                             f"{which!r}")
        inert = {s.strip() for s in str(ds.attrs.get("inert_labels", "")).split(",") if s}
        inert |= {n for n, (_, long) in CONDITION_ATTRS.items() if "(inert)" in long}
        column = ds["conditions"]
        varies = (column.max("case") > column.min("case")).values
        chosen = [n for n, v in zip(names, varies) if v and n not in inert]
        if not chosen:
            raise ValueError(f"no condition of {names} varies and changes the physics")
        return chosen
    missing = [n for n in which if n not in names]
    if missing:
        raise ValueError(f"conditions {missing} are not in the dataset; it has {names}")
    return list(which)


def case_tensors(ds: xr.Dataset, conditions: str | Sequence[str] = "physical") -> CaseTensors:
    """The canonical dataset as :class:`CaseTensors` (float32, physical units)."""
    names = select_conditions(ds, conditions)
    order = ("case", "step", "particle", "xyz")

    def f32(name: str, dims: tuple[str, ...]) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(ds[name].transpose(*dims).values,
                                                     dtype=np.float32))

    cond = ds["conditions"].sel(condition=names)
    units = tuple(str(u) for u in cond["condition_units"].values) \
        if "condition_units" in cond.coords else ()
    erosion = f32("erosion_rate", ("case", "face")) if "erosion_rate" in ds else None
    valid = torch.from_numpy(ds["valid"].transpose("case", "step", "particle").values.copy())
    return CaseTensors(
        positions=f32("position", order), velocity=f32("velocity", order),  # (N, T, P, 3)
        conditions=torch.from_numpy(cond.transpose("case", "condition").values
                                    .astype(np.float32)),  # (N, K)
        valid=valid.bool(), erosion=erosion, index=torch.arange(ds.sizes["case"]),
        condition_names=tuple(names), condition_units=units)


def to_dataarray(x: Tensor | np.ndarray, name: str = "position") -> xr.DataArray:
    """(N, T, P, 3) -> DataArray (case, particle, step, xyz); (N, T, P) -> (case, particle,
    step); (N, faces) -> (case, face): the canonical dims, for metrics and writers."""
    a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.ndim == 4:
        return xr.DataArray(a.transpose(0, 2, 1, 3), dims=("case", "particle", "step", "xyz"),
                            coords={"xyz": list(XYZ)}, name=name)  # (N, P, T, 3)
    if a.ndim == 3:
        return xr.DataArray(a.transpose(0, 2, 1), dims=("case", "particle", "step"),
                            name=name)  # (N, P, T)
    if a.ndim == 2:
        return xr.DataArray(a, dims=("case", "face"), name=name)
    raise ValueError(f"expected (N, T, P, 3), (N, T, P) or (N, faces), found {a.shape}")


def scaler_sizes(n_conditions: int, n_features: int = 3) -> dict[str, int]:
    """The scalers a trajectory or erosion module needs: positions (3), velocity (3) when the
    state has 6 features, conditions (K)."""
    if n_features not in (3, 6):
        raise ValueError(f"a particle state has 3 (positions) or 6 (with velocity) features, "
                         f"found {n_features}")
    sizes = {"positions": 3, "conditions": n_conditions}
    if n_features == 6:
        sizes["velocity"] = 3
    return sizes


# ------------------------------------------------------------------------- data module
class _Cases(torch.utils.data.Dataset):
    def __init__(self, items: dict[str, Tensor]) -> None:
        self.items = items
        self.n = next(iter(items.values())).shape[0]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.items.items()}


class FluidDataModule(L.LightningDataModule):
    """The cases of one split stage as scaled batch dicts for a fluidgpt module.

    Args:
        data: every case (physical units).
        split: the case split shared by both model stages.
        fold: train on ``split.train(fold)`` and validate on ``split.val(fold)``; None: train
            on every non-test case (``split.trainval``) with no validation set.
        batch_size: cases per batch (None: the module's ``train.batch_size``).
        n_features: the state features the module reads (3 positions, 6 with velocity).
        seed: shuffling seed of the training loader.

    Batches: positions (B, T, P, 3), [velocity], conditions (B, K), valid (B, T, P), scaled
    by the module's scalers (fitted by :meth:`fit_scalers`, which ``setup`` calls when no one
    has: a checkpoint restored afterwards brings its own), and erosion
    (B, faces) in physical units when the data has it (ErosionModule splits it itself).
    """

    def __init__(self, data: CaseTensors, split: Split, fold: int | None = 0,
                 batch_size: int | None = 16, n_features: int = 3, seed: int = 0) -> None:
        super().__init__()
        if split.n_cases != len(data):
            raise ValueError(f"the split is over {split.n_cases} cases, the data holds "
                             f"{len(data)}")
        self.data, self.split, self.fold = data, split, fold
        self.batch_size, self.n_features, self.seed = batch_size, n_features, seed
        self.scalers: Mapping[str, Any] | None = None

    # ----------------------------------------------------------------------- indices
    def indices(self, stage: str) -> np.ndarray:
        """Case indices of "train", "val" (empty without a fold), "test" or "trainval"."""
        if stage == "train":
            return self.split.trainval if self.fold is None else self.split.train(self.fold)
        if stage == "val":
            return np.zeros(0, np.int64) if self.fold is None else self.split.val(self.fold)
        if stage == "test":
            return self.split.test
        if stage == "trainval":
            return self.split.trainval
        raise ValueError(f"stage must be train, val, test or trainval, found {stage!r}")

    def cases(self, stage: str) -> CaseTensors:
        return self.data.subset(self.indices(stage))

    @property
    def contract(self) -> DataContract:
        """What the module must know about these cases (sizes, condition names)."""
        return self.data.contract(self.n_features)

    def setup(self, stage: str) -> None:
        if self.scalers is None:
            self.fit_scalers(self.trainer.lightning_module)

    # ----------------------------------------------------------------------- scaling
    def fit_scalers(self, module: L.LightningModule) -> None:
        """Fit the module's scalers on the training cases only (valid entries only)."""
        train = self.cases("train")
        scalers = module.scalers
        scalers["positions"].fit(train.positions, train.valid)
        if "velocity" in scalers:
            scalers["velocity"].fit(train.velocity, train.valid)
        scalers["conditions"].fit(train.conditions)
        if "log_peak" in scalers:
            if train.erosion is None:
                raise ValueError("an erosion module needs erosion_rate in the dataset")
            module.fit_log_peak(train.erosion)
        if getattr(module, "kind", None) == "erosion" and train.erosion is not None:
            module.fit_output_basis(train.erosion)
        self.scalers = scalers
        if self.batch_size is None:
            self.batch_size = module.train_config.batch_size

    def batch(self, cases: CaseTensors) -> dict[str, Tensor]:
        """Scaled tensors of these cases (one batch dict with N leading)."""
        if self.scalers is None:
            raise RuntimeError("call fit_scalers(module) before asking for batches")
        return scaled_batch(cases, self.scalers, self.n_features)

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        items = self.batch(self.cases(stage))
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(_Cases(items), batch_size=self.batch_size, shuffle=shuffle,
                          generator=g if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.fold is None else self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def scaled_batch(cases: CaseTensors, scalers: Mapping[str, Any],
                 n_features: int = 3) -> dict[str, Tensor]:
    """One batch dict of these cases scaled by ``scalers`` (erosion stays physical)."""
    out = {"positions": scalers["positions"](cases.positions),
           "conditions": scalers["conditions"](cases.conditions),
           "valid": cases.valid}
    if n_features == 6:
        out["velocity"] = scalers["velocity"](cases.velocity)
    if cases.erosion is not None:
        out["erosion"] = cases.erosion
    return out


# ------------------------------------------------------------------- checkpoint metadata
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
    """The DataInfo of a checkpoint written with :class:`DataInfoCallback`."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "fluidgpt_data" not in ckpt:
        raise ValueError(f"{path} holds no fluidgpt data description (train it with "
                         "`fluidgpt fit`, which stores the condition names and the injection "
                         "points in the checkpoint)")
    return DataInfo.from_dict(ckpt["fluidgpt_data"])
