"""(input, target) pairs of a training store: the Dataset a DataModule serves.

From a local training store (canonical dim order, one chunk per time) each variable's chunk
file is read and decoded straight into the sample (:mod:`geoformer.chunkreader`); from
anything else, through xarray and :class:`~geoformer.state.State`. In a DataLoader worker a
sample is decoded into shared memory (:mod:`geoformer.samples`), and with
:meth:`ForecastPairs.fill` a training loader's workers decode batches into slots the main
process already holds (:class:`geoformer.samples.PooledDataset`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import Dataset

from .chunkreader import ChunkReader, read_states
from .samples import empty_sample, fields
from .state import State

if TYPE_CHECKING:
    from .data import TimeRange

__all__ = ["ForecastPairs"]


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
        source, stored = ds.encoding.get("source"), pd.DatetimeIndex(ds["time"].values)
        store_levels = [int(v) for v in ds["level"].values]
        ds = ds[self.upper_vars + self.surface_vars]
        if store_levels != self.levels:  # an orthogonal read only when needed
            ds = ds.sel(level=self.levels)
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
        self._all: State | None = None
        if in_memory:  # one (T, V, Z, H, W) and one (T, S, H, W) tensor: fast indexing
            self._all = State.from_xarray(ds.load(), self.upper_vars, self.surface_vars,
                                          dims=("time",))
        # From a local training store (canonical dim order, one chunk per time): each
        # variable's chunk file read and decoded directly (geoformer.chunkreader); from
        # anything else, through xarray and State.
        canonical = all(ds[v].dims == ("time", "level", "latitude", "longitude")
                        for v in self.upper_vars) and all(
            ds[v].dims == ("time", "latitude", "longitude") for v in self.surface_vars)
        self._grid = (ds.sizes["latitude"], ds.sizes["longitude"])
        self._chunks = None
        if canonical and not in_memory and isinstance(source, str):
            readers = [ChunkReader.open(source, v) for v in self.upper_vars + self.surface_vars]
            if all(r is not None for r in readers):
                levels = [store_levels.index(lv) for lv in self.levels]
                self._chunks = (readers, stored.get_indexer(stamps),
                                None if levels == list(range(len(store_levels))) else levels)

    def __len__(self) -> int:
        return len(self.index)

    def _state(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The state at time index ``i``: (V, Z, H, W), (S, H, W)."""
        if self._all is not None:
            return self._all.upper[i], self._all.surface[i]
        one = State.from_xarray(self.ds.isel(time=i), self.upper_vars, self.surface_vars,
                                dims=())
        return one.upper, one.surface

    def sample_layout(self) -> dict[str, tuple[int, ...]]:
        """The float32 shape of each field of one item."""
        V, Z, S, n = len(self.upper_vars), len(self.levels), len(self.surface_vars), \
            len(self.index[0]) - 1
        H, W = self._grid
        return {"upper": (V, Z, H, W), "surface": (S, H, W), "target_upper": (n, V, Z, H, W),
                "target_surface": (n, S, H, W)}

    def fill(self, item: int, out: dict[str, np.ndarray], b: int) -> dict[str, int]:
        """Item ``item`` written into row ``b`` of each of ``out``'s (batch, ...) arrays
        (:meth:`sample_layout`); its integer field, the initial time (int64 ns), returned."""
        first, *targets = self.index[item]
        if self._chunks is not None:
            readers, position, levels = self._chunks
            V = len(self.upper_vars)
            read_states(readers, V, levels, [position[first]], out["upper"][b:b + 1],
                        out["surface"][b:b + 1])
            read_states(readers, V, levels, [position[j] for j in targets],
                        out["target_upper"][b], out["target_surface"][b])
        else:
            upper, surface = self._state(first)
            out["upper"][b], out["surface"][b] = upper.numpy(), surface.numpy()
            for s, j in enumerate(targets):
                upper, surface = self._state(j)
                out["target_upper"][b, s] = upper.numpy()
                out["target_surface"][b, s] = surface.numpy()
        return {"time": int(self.times[first].value)}

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if self._chunks is None:
            return self._item(item)
        # decoded straight into one buffer, shared memory in a worker (geoformer.samples)
        layout = self.sample_layout()
        flat = empty_sample(sum(math.prod(shape) for shape in layout.values()))
        out = fields(flat, layout, 1, 1)
        extra = self.fill(item, {k: v.numpy() for k, v in out.items()}, 0)
        return {k: v[0] for k, v in out.items()} | {k: torch.tensor(v) for k, v in extra.items()}

    def _item(self, item: int) -> dict[str, torch.Tensor]:
        first, *targets = self.index[item]
        stamp = torch.tensor(self.times[first].value, dtype=torch.int64)
        upper, surface = self._state(first)
        later = [self._state(j) for j in targets]
        return {
            "upper": upper,
            "surface": surface,
            "target_upper": torch.stack([u for u, _ in later]),  # (steps, V, Z, H, W)
            "target_surface": torch.stack([s for _, s in later]),  # (steps, S, H, W)
            "time": stamp,
        }
