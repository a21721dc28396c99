"""Training data: a training-friendly zarr store, (input, target) pairs, the DataModule.

The store holds the internal schema (see :mod:`geoformer.schema`) with one time step per
chunk, plus the normalisation statistics of its training period in a ``statistics`` group.
Samples are served in physical units; the Lightning module normalises them on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import xarray as xr
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader

from .atomic import atomic_write, atomic_write_zarr, checksummed
from .checkpoints import STATISTICS_VERSION, check_format_version
from .normalization import (
    LATITUDE_INPUT,
    Normalizer,
    compute_statistics,
    latitude_input,
    normalized_constants,
)
from .pairs import ForecastPairs
from .resume import training_loader
from .samples import collate
from .schema import STATIC, SURFACE, UPPER_AIR, VARIABLES, SchemaError, standardize, validate

__all__ = [
    "atomic_write",
    "atomic_write_zarr",
    "write_training_store",
    "variables_in",
    "TimeRange",
    "ForecastPairs",
    "DataContract",
    "GeoDataModule",
    "load_statistics",
    "resolve_store",
]


def variables_in(ds: xr.Dataset) -> tuple[list[str], list[str], list[str]]:
    """Upper-air, surface and static variables of ``ds`` in the package's canonical order."""
    return ([v for v in UPPER_AIR if v in ds.data_vars],
            [v for v in SURFACE if v in ds.data_vars and v != "surface_pressure"],
            [v for v in STATIC if v in ds.data_vars])


def write_training_store(ds: xr.Dataset, path: str | Path, overwrite: bool = False) -> Path:
    """Standardise ``ds`` and write it with one time step per chunk (atomically).

    Only variables of the schema are kept; they are stored as float32.
    """
    ds = standardize(ds)
    keep = [v for v in ds.data_vars if v in VARIABLES]
    if not keep:
        raise SchemaError(f"no known variable in the data; it has {list(ds.data_vars)}")
    ds = ds[keep]
    upper, surface, static = variables_in(ds)
    validate(ds, upper, surface, static, source="the data to convert")
    ds = ds.chunk({d: (1 if d == "time" else -1) for d in ds.dims})
    encoding = {v: {"dtype": "float32"} for v in keep}
    return atomic_write_zarr(ds, path, overwrite=overwrite, encoding=encoding)


@dataclass(frozen=True)
class TimeRange:
    """An inclusive range of initialisation times, e.g. TimeRange("2000-01-01", "2000-12-31")."""

    start: str
    stop: str

    def slice(self) -> slice:
        return slice(pd.Timestamp(self.start), pd.Timestamp(self.stop))


def load_statistics(store: str | Path, train: TimeRange, upper: Sequence[str],
                    surface: Sequence[str], static: Sequence[str]) -> xr.Dataset:
    """Statistics of the training period, cached inside the store (``statistics`` group)."""
    key = f"{train.start}..{train.stop}"
    try:
        cached = xr.open_zarr(store, group="statistics").load()
    except (FileNotFoundError, KeyError, OSError, ValueError):
        cached = xr.Dataset()  # none cached (or unreadable): computed below
    check_format_version(cached.attrs.get("format_version"), f"{store}/statistics", "statistics")
    names = set(map(str, cached.data_vars))
    wanted = set(upper) | set(surface) | set(static)
    if cached.attrs.get("train_period") == key and wanted <= names and all(
            bool(np.isfinite(cached[v]).all()) for v in wanted):
        return cached  # an interrupted cache write (missing or NaN chunks) is recomputed
    ds = xr.open_zarr(store, chunks={})
    stats = compute_statistics(ds, upper, surface, static, time=train.slice())
    stats.attrs.update(train_period=key, format_version=STATISTICS_VERSION)
    if rank_zero_only.rank != 0:
        # torchrun / srun start every rank at once: one writer, or the ranks' mode="w"
        # writes remove each other's groups; the others use the (identical) values in memory
        return stats
    try:
        stats.to_zarr(store, group="statistics", mode="w", zarr_format=2,
                      encoding=checksummed(stats))
    except OSError:  # a read-only store: use the statistics without caching them
        pass
    return stats


def resolve_store(store: str) -> str:
    """A training store path; ``held-suarez`` builds (or reuses) the built-in dataset."""
    if store == "held-suarez":
        from .sources.held_suarez import load_or_build_held_suarez

        return str(load_or_build_held_suarez())
    return str(store)


@dataclass(frozen=True)
class DataContract:
    """What a network trained on a store must match, as plain values (stored in checkpoints).

    The data module builds it (:attr:`GeoDataModule.contract`) and ``geoformer fit`` links it
    into the Lightning module, so grid, levels, variables and statistics are never typed twice.
    Levels (Z) run from the surface up (hPa), latitude (H) north to south, longitude (W) east
    from 0; ``normalization`` is :meth:`Normalizer.to_dict` of the training period: upper
    (V, Z) and surface (S,) means and standard deviations.
    """

    lead_hours: int
    upper_vars: tuple[str, ...]
    surface_vars: tuple[str, ...]
    constant_vars: tuple[str, ...]
    levels: tuple[int, ...]
    latitude: tuple[float, ...]
    longitude: tuple[float, ...]
    normalization: dict[str, list]
    store: str = ""
    train_period: tuple[str, str] | None = None
    rollout_steps: int = 1

    def __post_init__(self) -> None:
        for name in ("upper_vars", "surface_vars", "constant_vars", "levels", "latitude",
                     "longitude"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        if self.train_period is not None:
            object.__setattr__(self, "train_period", tuple(self.train_period))
        if self.lead_hours <= 0:
            raise ValueError(f"lead_hours must be positive, found {self.lead_hours}")
        V, Z, S = len(self.upper_vars), len(self.levels), len(self.surface_vars)
        shapes = {"upper_mean": (V, Z), "upper_std": (V, Z), "surface_mean": (S,),
                  "surface_std": (S,)}
        for key, shape in shapes.items():
            found = np.shape(self.normalization.get(key, ()))
            if found != shape:
                raise ValueError(f"normalization {key} has shape {found}, expected {shape} for "
                                 f"{V} upper-air variables on {Z} levels and {S} surface ones")

    @property
    def grid(self) -> tuple[int, int]:
        return len(self.latitude), len(self.longitude)

    def network_fields(self) -> dict[str, Any]:
        """The GeoFormerConfig fields the data decides (``config.CONTRACT_FIELDS``)."""
        return {"grid": self.grid, "levels": self.levels, "upper_vars": self.upper_vars,
                "surface_vars": self.surface_vars, "constant_vars": self.constant_vars}

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, numbers, strings): safe for weights_only checkpoints."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataContract:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown data-contract key(s) {unknown}")
        return cls(**d)


class GeoDataModule(L.LightningDataModule):
    """Train / validation / test pairs from a training store.

    Variables and levels default to everything the store holds (in canonical order); the
    normalisation statistics come from the training period and are cached in the store.

    Args:
        store: training store (``geoformer dataset convert``), or ``held-suarez`` for the
            built-in dataset, built on first use and cached.
        lead_hours: hours between input and target (the lead time of the model).
        train: first and last initial time of the training period (inclusive).
        val: the validation period.
        test: the test period (optional).
        upper_vars: upper-air variables (default: all the store holds).
        surface_vars: surface variables (default: all).
        static_vars: constant fields given to the network (default: all).
        levels: pressure levels in hPa (default: all).
        rollout_steps: > 1 serves targets for a multi-step rollout (training only).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        in_memory: hold the periods in memory (default: when they fit in 4 GiB).
        latitude_input: add sin(latitude) as a constant field (``sin_latitude``).
    """

    def __init__(self, store: str, lead_hours: int, train: tuple[str, str],
                 val: tuple[str, str], test: tuple[str, str] | None = None,
                 upper_vars: list[str] | None = None, surface_vars: list[str] | None = None,
                 static_vars: list[str] | None = None, levels: list[int] | None = None,
                 rollout_steps: int = 1, batch_size: int = 4, num_workers: int = 0,
                 in_memory: bool | None = None, latitude_input: bool = False) -> None:
        super().__init__()
        self.store = resolve_store(store)
        if not Path(self.store).exists():
            raise FileNotFoundError(f"training store {self.store} does not exist")
        self.latitude_input = bool(latitude_input)
        self.lead_hours, self.rollout_steps = int(lead_hours), int(rollout_steps)
        self.ranges = {"train": TimeRange(*train), "val": TimeRange(*val)}
        if test:
            self.ranges["test"] = TimeRange(*test)
        self.batch_size, self.num_workers, self.in_memory = batch_size, num_workers, in_memory
        ds = xr.open_zarr(self.store, chunks=None)
        upper, surface, static = variables_in(ds)
        self.upper_vars = list(upper_vars) if upper_vars is not None else upper
        self.surface_vars = list(surface_vars) if surface_vars is not None else surface
        self.static_vars = list(static_vars) if static_vars is not None else static
        self.levels = [int(v) for v in (levels if levels is not None else ds["level"].values)]
        validate(ds, self.upper_vars, self.surface_vars, self.static_vars, self.levels,
                 check_finite=False, source=self.store)
        self.latitude = ds["latitude"].values.tolist()
        self.longitude = ds["longitude"].values.tolist()
        self._ds = ds
        self.statistics = load_statistics(self.store, self.ranges["train"], self.upper_vars,
                                          self.surface_vars, self.static_vars)
        self._sets: dict[str, ForecastPairs] = {}

    @property
    def grid(self) -> tuple[int, int]:
        return len(self.latitude), len(self.longitude)

    def statics(self) -> xr.Dataset:
        return self._ds[self.static_vars]

    def dataset(self, split: str) -> ForecastPairs:
        if split not in self._sets:
            steps = self.rollout_steps if split == "train" else 1
            self._sets[split] = ForecastPairs(
                self._ds, self.upper_vars, self.surface_vars, self.levels, self.lead_hours,
                self.ranges[split], steps=steps, in_memory=self.in_memory)
        return self._sets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, drop_last=False, collate_fn=collate,
                          persistent_workers=self.num_workers > 0,
                          # no draw from the global random state (see geoformer.resume)
                          generator=torch.Generator().manual_seed(0))

    def train_dataloader(self) -> DataLoader:
        # resumable mid-epoch, in the same order (geoformer.resume)
        return training_loader(self.dataset("train"), self.batch_size, self.num_workers,
                               self.trainer)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.ranges:
            raise ValueError("no test period was given to the data module")
        return self._loader("test", shuffle=False)

    @property
    def constant_vars(self) -> list[str]:
        """Names of the constant fields the network receives, in order."""
        return [*self.static_vars, *([LATITUDE_INPUT] if self.latitude_input else [])]

    def constants(self) -> torch.Tensor:
        """The constant fields, normalised by the training statistics: (K, H, W) float32."""
        fields_ = normalized_constants(self.statics(), self.statistics, self.static_vars)
        if self.latitude_input:
            fields_ = torch.cat([fields_, latitude_input(self.latitude, len(self.longitude))])
        return fields_

    @property
    def contract(self) -> DataContract:
        """What a network trained on this data must match (see :class:`DataContract`)."""
        normalizer = Normalizer.from_statistics(self.statistics, self.upper_vars,
                                                self.surface_vars, self.levels)
        return DataContract(
            lead_hours=self.lead_hours, upper_vars=self.upper_vars,
            surface_vars=self.surface_vars, constant_vars=self.constant_vars,
            levels=self.levels, latitude=self.latitude, longitude=self.longitude,
            normalization=normalizer.to_dict(), store=self.store,
            train_period=(self.ranges["train"].start, self.ranges["train"].stop),
            rollout_steps=self.rollout_steps)
