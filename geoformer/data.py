"""Training data: a training-friendly zarr store, (input, target) pairs, the DataModule.

The store holds the internal schema (see :mod:`geoformer.schema`) with one time step per
chunk, plus the normalisation statistics of its training period in a ``statistics`` group.
Samples are served in physical units; the Lightning module normalises them on the device.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset

from .normalization import compute_statistics
from .schema import STATIC, SURFACE, UPPER_AIR, VARIABLES, SchemaError, standardize, validate

__all__ = [
    "atomic_write_zarr",
    "write_training_store",
    "variables_in",
    "TimeRange",
    "ForecastPairs",
    "GeoDataModule",
    "load_statistics",
]


def atomic_write_zarr(ds: xr.Dataset, path: str | Path, overwrite: bool = False,
                      encoding: dict | None = None) -> Path:
    """Write ``ds`` to a zarr store at ``path`` so that a failure leaves nothing behind.

    The store is written to a hidden sibling and renamed into place at the end; an existing
    store is only replaced (with ``overwrite``) once the new one is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        ds.to_zarr(tmp, mode="w", encoding=encoding, consolidated=True, zarr_format=2)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous store back
                raise
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


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
        names = set(map(str, cached.data_vars))
        wanted = set(upper) | set(surface) | set(static)
        if cached.attrs.get("train_period") == key and wanted <= names and all(
                bool(np.isfinite(cached[v]).all()) for v in wanted):
            return cached  # an interrupted cache write (missing or NaN chunks) is recomputed
    except (FileNotFoundError, KeyError, OSError, ValueError):
        pass
    ds = xr.open_zarr(store, chunks={})
    stats = compute_statistics(ds, upper, surface, static, time=train.slice())
    stats.attrs["train_period"] = key
    try:
        stats.to_zarr(store, group="statistics", mode="w", zarr_format=2)
    except OSError:  # a read-only store: use the statistics without caching them
        pass
    return stats


class ForecastPairs(Dataset):
    """(input, target) pairs ``lead_hours`` apart, for initial times inside ``times``.

    With ``steps`` > 1 the targets are the states at lead, 2 lead, ... steps lead (for
    multi-step rollout training). Every target also lies inside ``times``, so training,
    validation and test periods never share a state.

    An item is a dict of float32 tensors in physical units:
    upper (V, Z, H, W), surface (S, H, W), target_upper (steps, V, Z, H, W),
    target_surface (steps, S, H, W), and ``time`` (int64 ns of the initial time).
    """

    def __init__(self, ds: xr.Dataset, upper_vars: Sequence[str], surface_vars: Sequence[str],
                 levels: Sequence[int], lead_hours: int, times: TimeRange | None = None,
                 steps: int = 1, in_memory: bool | None = None) -> None:
        self.upper_vars, self.surface_vars = list(upper_vars), list(surface_vars)
        self.levels = list(levels)
        ds = ds[self.upper_vars + self.surface_vars].sel(level=self.levels)
        if times is not None:
            ds = ds.sel(time=times.slice())
        stamps = pd.DatetimeIndex(ds["time"].values)
        lead = pd.Timedelta(hours=lead_hours)
        position = {t: i for i, t in enumerate(stamps)}
        self.index: list[list[int]] = []
        for i, t in enumerate(stamps):
            chain = [position.get(t + k * lead) for k in range(1, steps + 1)]
            if all(c is not None for c in chain):
                self.index.append([i, *chain])
        if not self.index:
            raise ValueError(
                f"no (input, target) pair {lead_hours} h apart ({steps} step(s)) in "
                f"{times or 'the data'}: {len(stamps)} time steps from "
                f"{stamps.min() if len(stamps) else '-'} to {stamps.max() if len(stamps) else '-'}")
        self.times = stamps
        nbytes = ds.sizes["time"] * sum(
            int(np.prod([ds.sizes[d] for d in ds[v].dims if d != "time"])) * 4
            for v in ds.data_vars)
        if in_memory is None:
            in_memory = nbytes < 4 * 2**30
        self.ds = ds
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        if in_memory:  # one (T, V, Z, H, W) and one (T, S, H, W) array: fast indexing
            ds = ds.load()
            self._arrays = (
                np.stack([ds[v].transpose("time", "level", "latitude", "longitude").values
                          for v in self.upper_vars], axis=1).astype(np.float32),
                np.stack([ds[v].transpose("time", "latitude", "longitude").values
                          for v in self.surface_vars], axis=1).astype(np.float32))

    def __len__(self) -> int:
        return len(self.index)

    def _state(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is not None:
            return self._arrays[0][i], self._arrays[1][i]
        snap = self.ds.isel(time=i)
        upper = np.stack([snap[v].transpose("level", "latitude", "longitude").values
                          for v in self.upper_vars])  # (V, Z, H, W)
        surface = np.stack([snap[v].transpose("latitude", "longitude").values
                            for v in self.surface_vars])  # (S, H, W)
        return upper.astype(np.float32), surface.astype(np.float32)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        first, *targets = self.index[item]
        upper, surface = self._state(first)
        later = [self._state(j) for j in targets]
        return {
            "upper": torch.from_numpy(upper),
            "surface": torch.from_numpy(surface),
            "target_upper": torch.from_numpy(np.stack([u for u, _ in later])),
            "target_surface": torch.from_numpy(np.stack([s for _, s in later])),
            "time": torch.tensor(self.times[first].value, dtype=torch.int64),
        }


class GeoDataModule(L.LightningDataModule):
    """Train / validation / test pairs from a training store.

    Variables and levels default to everything the store holds (in canonical order); the
    normalisation statistics come from the training period and are cached in the store.
    """

    def __init__(self, store: str, lead_hours: int, train: Sequence[str],
                 val: Sequence[str], test: Sequence[str] | None = None,
                 upper_vars: Sequence[str] | None = None,
                 surface_vars: Sequence[str] | None = None,
                 static_vars: Sequence[str] | None = None, levels: Sequence[int] | None = None,
                 rollout_steps: int = 1, batch_size: int = 4, num_workers: int = 0,
                 in_memory: bool | None = None) -> None:
        super().__init__()
        self.store = str(store)
        if not Path(self.store).exists():
            raise FileNotFoundError(f"training store {self.store} does not exist")
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
                          num_workers=self.num_workers, drop_last=False,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.ranges:
            raise ValueError("no test period was given to the data module")
        return self._loader("test", shuffle=False)

    def describe(self) -> dict[str, Any]:
        """Plain-value description stored in checkpoints."""
        return {"store": self.store, "upper_vars": self.upper_vars,
                "surface_vars": self.surface_vars, "static_vars": self.static_vars,
                "levels": self.levels, "latitude": self.latitude, "longitude": self.longitude,
                "train_period": [self.ranges["train"].start, self.ranges["train"].stop]}
