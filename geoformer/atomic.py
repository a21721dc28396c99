"""The package's one atomic writer: every file or folder geoformer writes (stores, forecasts,
scores, figures, checkpoints) appears whole at its path or not at all."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import numcodecs
import xarray as xr

__all__ = ["atomic_write", "atomic_write_zarr", "checksummed", "netcdf_checksums"]


def atomic_write(path: str | Path, write: Callable[[Path], Any], overwrite: bool = False
                 ) -> Path:
    """``write(tmp)`` a file or folder (zarr, netCDF, CSV, PNG, checkpoint) then rename it to
    ``path``: a failure leaves nothing. ``tmp``, a hidden sibling, keeps the suffix (writers
    choose the format by it); an existing ``path`` is refused unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous output back
                raise
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()
    return path


def checksummed(ds: xr.Dataset, encoding: dict | None = None) -> dict:
    """``encoding`` with a CRC32 filter on every numeric variable of ``ds`` (zarr v2).

    Zarr v2's Blosc frames carry no checksum: a chunk cut short or with flipped bytes can
    decode to wrong numbers without an error (our fuzz run found such chunks). The CRC32
    filter checks each decoded chunk, so a corrupted one is a read error naming the file."""
    out = {name: dict(value) for name, value in (encoding or {}).items()}
    for name, var in ds.variables.items():
        if var.dtype.kind in "biufcmM":
            entry = out.setdefault(str(name), {})
            entry["filters"] = [*entry.get("filters", ()), numcodecs.CRC32()]
    return out


def netcdf_checksums(ds: xr.Dataset) -> dict:
    """A netCDF4 encoding with HDF5's Fletcher-32 checksum on every numeric array of ``ds``:
    a corrupted chunk is then a read error (NetCDF: HDF error), not wrong numbers."""
    return {str(name): {"fletcher32": True} for name, var in ds.variables.items()
            if var.ndim > 0 and var.dtype.kind in "biufcmM"}


def atomic_write_zarr(ds: xr.Dataset, path: str | Path, overwrite: bool = False,
                      encoding: dict | None = None) -> Path:
    """Write ``ds`` to a zarr store at ``path`` (zarr v2, consolidated, every chunk
    checksummed) with :func:`atomic_write`: a failure leaves nothing behind."""
    ds = ds.drop_encoding()  # a zarr v3 source's codecs (serializer, ...) are not v2's
    encoding = checksummed(ds, encoding)

    def write(tmp: Path) -> None:
        # dask's threaded scheduler raises at a chunk's failure while other chunks are still
        # being written; a straggler then recreated the removed temporary store (seen in CI:
        # a '.c.zarr.tmp-*' left after a climatology of a corrupted store). Leaving a private
        # pool's with-block waits for those chunks, so the cleanup comes after the last one.
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool, dask.config.set(pool=pool):
            ds.to_zarr(tmp, mode="w", encoding=encoding, consolidated=True, zarr_format=2)

    return atomic_write(path, write, overwrite=overwrite)
