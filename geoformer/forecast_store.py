"""Forecasts that stream: each part of the initial times is written to the output store as
soon as it is computed (zarr region writes), so memory is bounded by one part's states
whatever the number of initial times.

The store appears at its path only when complete (:func:`geoformer.atomic.atomic_write`). A
netCDF output is written from the finished zarr, chunk by chunk through dask, so it is
bounded the same way.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .atomic import atomic_write, checksummed, netcdf_checksums
from .forecast import iter_forecasts
from .module import GeoFormerModule

__all__ = ["forecast_to_store"]

#: Dims written one element per chunk (a chunk is one state of one variable).
ONE_PER_CHUNK = ("time", "number", "prediction_timedelta")


def _chunks(ds: xr.Dataset) -> dict[str, int]:
    return {d: (1 if d in ONE_PER_CHUNK else -1) for d in ds.dims}


def _template(part: xr.Dataset, init_times: np.ndarray) -> xr.Dataset:
    """The whole forecast's layout, lazily (dask, nothing computed): ``part`` repeated
    along time, with every initial time as the time coordinate."""
    lazy = part.chunk(_chunks(part)).isel(time=np.zeros(len(init_times), dtype=int))
    lazy = lazy.assign_coords(time=init_times)
    lazy["time"].attrs = dict(part["time"].attrs)
    valid = lazy["time"] + lazy["prediction_timedelta"]
    lazy = lazy.assign_coords(valid_time=valid.assign_attrs(part["valid_time"].attrs))
    return lazy.chunk(_chunks(lazy))  # valid_time too: one chunk per (time, lead)


def _stream_zarr(parts, n_times: int, init_times: np.ndarray, tmp: Path) -> dict[str, int]:
    """Write the parts into a zarr store at ``tmp``; the forecast's sizes."""
    sizes: dict[str, int] = {}
    for first, part in parts:
        if first == 0:
            template = _template(part, init_times)
            encoding = checksummed(template, {v: {"dtype": "float32"} for v in part.data_vars})
            template.to_zarr(tmp, mode="w", compute=False,
                                                encoding=encoding, consolidated=True,
                                                zarr_format=2)
            sizes = {**dict(part.sizes), "time": n_times}
        region = part.drop_vars([v for v in part.variables if "time" not in part[v].dims])
        region.chunk(_chunks(region)).to_zarr(
            tmp, region={"time": slice(first, first + part.sizes["time"])})
    return sizes


def forecast_to_store(checkpoints: Sequence[str | Path] | Mapping[int, GeoFormerModule],
                      data: xr.Dataset | str | Path, init_times: Sequence[Any],
                      path: str | Path, overwrite: bool = False,
                      **options: Any) -> tuple[Path, dict[str, int]]:
    """:func:`geoformer.forecast.forecast` written to ``path`` (.zarr or .nc) as it is
    computed; ``options`` are forecast()'s (lead_time, every, batch_size, device, notes,
    members, perturbation, perturbation_scale, seed, compile). Returns the path and the forecast's
    sizes. The result equals ``write_forecast(forecast(...), path)``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".zarr", ".nc", ".nc4"):
        raise ValueError(f"forecast output must end in .zarr or .nc, found {path.name!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    times = pd.DatetimeIndex([pd.Timestamp(t) for t in init_times]).values
    parts = iter_forecasts(checkpoints, data, init_times, **options)
    sizes: dict[str, int] = {}

    def write(tmp: Path) -> None:
        nonlocal sizes
        if suffix == ".zarr":
            sizes = _stream_zarr(parts, len(times), times, tmp)
            return
        scratch = tmp.with_name(tmp.name + ".zarr")
        try:
            sizes = _stream_zarr(parts, len(times), times, scratch)
            with xr.open_zarr(scratch, chunks={}) as ds:
                ds.to_netcdf(tmp, engine="netcdf4", encoding=netcdf_checksums(ds))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    atomic_write(path, write, overwrite=overwrite)
    return path, sizes

