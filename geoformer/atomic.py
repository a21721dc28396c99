"""The package's one atomic writer: every file or folder geoformer writes (stores, forecasts,
scores, figures, checkpoints) appears whole at its path or not at all."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

__all__ = ["atomic_write", "atomic_write_zarr"]


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


def atomic_write_zarr(ds: xr.Dataset, path: str | Path, overwrite: bool = False,
                      encoding: dict | None = None) -> Path:
    """Write ``ds`` to a zarr store at ``path`` (zarr v2, consolidated) with
    :func:`atomic_write`: a failure leaves nothing behind."""
    ds = ds.drop_encoding()  # a zarr v3 source's codecs (serializer, ...) are not v2's
    return atomic_write(path, lambda tmp: ds.to_zarr(tmp, mode="w", encoding=encoding,
                                                     consolidated=True, zarr_format=2),
                        overwrite=overwrite)
