"""Normalisation statistics (per variable and level) and the invertible Normalizer module.

Statistics are computed over the training period only, lazily with dask so data larger
than memory works, and travel as plain values inside every checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

__all__ = ["compute_statistics", "Normalizer", "normalized_constants", "latitude_input",
           "LATITUDE_INPUT"]


def compute_statistics(ds: xr.Dataset, upper_vars: Sequence[str], surface_vars: Sequence[str],
                       static_vars: Sequence[str] = (), levels: Sequence[int] | None = None,
                       time: slice | None = None) -> xr.Dataset:
    """Mean and standard deviation per (variable, level) over time, members and the grid.

    Returns a Dataset with one variable per field and a ``statistic`` dim ("mean", "std");
    upper-air variables keep their ``level`` dim. Static fields are reduced over the grid
    only. ``time`` selects the period (the training period: never include test data).
    """
    sub = ds.sel(time=time) if time is not None and "time" in ds.dims else ds
    if levels is not None and "level" in sub.dims:
        sub = sub.sel(level=list(levels))
    if "time" in sub.dims and sub.sizes["time"] == 0:
        raise ValueError(f"no time steps in the statistics period {time}")
    out = {}
    for name in (*upper_vars, *surface_vars, *static_vars):
        da = sub[name].astype("float64")
        dims = [d for d in ("time", "number", "latitude", "longitude") if d in da.dims]
        mean = da.mean(dims)
        std = np.sqrt(((da - mean) ** 2).mean(dims))  # population std, two passes
        out[name] = xr.concat([mean, std], dim="statistic")
    stats = xr.Dataset(out).assign_coords(statistic=["mean", "std"]).compute()
    if time is not None:
        stats.attrs["period"] = f"{time.start} .. {time.stop}"
    if "time" in sub.dims:
        stats.attrs["n_times"] = int(sub.sizes["time"])
    return stats


def _safe_std(std: Tensor) -> Tensor:
    # A field with zero spread (e.g. the orography of a flat planet) normalises to zeros.
    return torch.where(std > 0, std, torch.ones_like(std))


class Normalizer(nn.Module):
    """x_norm = (x - mean) / std per (variable, level) for the upper air, per variable at the
    surface; std = 0 is treated as 1 so constant fields stay finite.

    Buffers: upper_mean / upper_std (V, Z), surface_mean / surface_std (S,).
    """

    def __init__(self, upper_mean: Any, upper_std: Any, surface_mean: Any,
                 surface_std: Any) -> None:
        super().__init__()
        self.register_buffer("upper_mean", torch.as_tensor(upper_mean, dtype=torch.float32))
        self.register_buffer("upper_std", torch.as_tensor(upper_std, dtype=torch.float32))
        self.register_buffer("surface_mean", torch.as_tensor(surface_mean, dtype=torch.float32))
        self.register_buffer("surface_std", torch.as_tensor(surface_std, dtype=torch.float32))
        for name in ("upper_mean", "upper_std", "surface_mean", "surface_std"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"normalisation {name} contains NaN or infinite values")

    @classmethod
    def from_statistics(cls, stats: xr.Dataset, upper_vars: Sequence[str],
                        surface_vars: Sequence[str], levels: Sequence[int]) -> Normalizer:
        missing = [v for v in (*upper_vars, *surface_vars) if v not in stats]
        if missing:
            raise ValueError(f"statistics lack variable(s) {missing}; they have "
                             f"{sorted(map(str, stats.data_vars))}")

        def pick(names: Sequence[str], stat: str, upper: bool) -> np.ndarray:
            rows = [stats[n].sel(statistic=stat) for n in names]
            if upper:
                rows = [r.sel(level=list(levels)) for r in rows]
            return np.stack([r.values for r in rows])

        return cls(pick(upper_vars, "mean", True), pick(upper_vars, "std", True),
                   pick(surface_vars, "mean", False), pick(surface_vars, "std", False))

    def to_dict(self) -> dict[str, list]:
        """Plain nested lists: safe for weights_only checkpoints."""
        return {k: getattr(self, k).tolist()
                for k in ("upper_mean", "upper_std", "surface_mean", "surface_std")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        return cls(d["upper_mean"], d["upper_std"], d["surface_mean"], d["surface_std"])

    def _upper(self) -> tuple[Tensor, Tensor]:
        return self.upper_mean[None, :, :, None, None], _safe_std(self.upper_std)[
            None, :, :, None, None]  # (1, V, Z, 1, 1)

    def _surface(self) -> tuple[Tensor, Tensor]:
        return self.surface_mean[None, :, None, None], _safe_std(self.surface_std)[
            None, :, None, None]  # (1, S, 1, 1)

    def normalize(self, upper: Tensor, surface: Tensor) -> tuple[Tensor, Tensor]:
        """Physical (B, V, Z, H, W), (B, S, H, W) -> normalised, same shapes."""
        (mu, su), (ms, ss) = self._upper(), self._surface()
        return (upper - mu) / su, (surface - ms) / ss

    def denormalize(self, upper: Tensor, surface: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`normalize`."""
        (mu, su), (ms, ss) = self._upper(), self._surface()
        return upper * su + mu, surface * ss + ms


#: Name of the derived constant field sin(latitude) (``data.latitude_input``), in [-1, 1].
LATITUDE_INPUT = "sin_latitude"


def latitude_input(latitude: Sequence[float], n_longitude: int) -> Tensor:
    """sin(latitude) on the grid, (1, H, W) float32: where a grid point lies, as a field.

    A global model otherwise learns the latitude only through its attention biases; with
    this field it can also reproduce latitude-dependent climatology (e.g. damping towards
    it), which matters on planets without land, orography or seasons such as Held-Suarez.
    It does not depend on longitude, so longitude-roll equivariance is kept.
    """
    values = np.sin(np.deg2rad(np.asarray(latitude, dtype=np.float64)))
    return torch.as_tensor(np.repeat(values[None, :, None], n_longitude, axis=2),
                           dtype=torch.float32)


def normalized_constants(ds: xr.Dataset, stats: xr.Dataset,
                         static_vars: Sequence[str]) -> Tensor:
    """The constant fields of ``ds`` normalised by ``stats``: (K, H, W) float32.

    A field with zero spread becomes zeros (never a division by zero).
    """
    fields = []
    for name in static_vars:
        mean = float(stats[name].sel(statistic="mean"))
        std = float(stats[name].sel(statistic="std"))
        values = ds[name].transpose("latitude", "longitude").values.astype(np.float64)
        fields.append((values - mean) / (std if std > 0 else 1.0))
    if not fields:
        H, W = ds.sizes["latitude"], ds.sizes["longitude"]
        return torch.zeros(0, H, W)
    return torch.as_tensor(np.stack(fields), dtype=torch.float32)
