"""The canonical dataset as tensors, and back: where xarray stops.

:func:`case_tensors` converts a canonical dataset once into :class:`CaseTensors` (physical
units, case-major, one layout for every model); :func:`to_dataarray` goes back to named dims
for the metrics and the writers. :class:`DataContract` is what a network must know about
these cases (sizes and condition names), :func:`scaler_sizes` the scalers a module needs.

Shapes: N cases, T steps, P particles, K conditions, faces wall faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from .schema import CONDITION_ATTRS, XYZ

__all__ = [
    "CaseTensors",
    "DataContract",
    "case_tensors",
    "select_conditions",
    "to_dataarray",
    "scaler_sizes",
]


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
