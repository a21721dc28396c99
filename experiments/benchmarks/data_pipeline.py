"""Samples per second served by geoformer's training DataModule from a local time-chunked
zarr store at 1.5 deg (all Pangu variables, 13 levels, input and target): prints JSON lines
and a table, asserts nothing. Run it alone:

    .venv/bin/python experiments/benchmarks/data_pipeline.py [--workers 0 2] [--samples 200]

The store (synthetic values, the real layout of ``geoformer dataset convert``: one chunk per
time step) is written once to a temporary folder. Each reading is timed twice: through the
chunk files (``geoformer.chunkreader``, what the DataModule does) and through xarray (what
it did before, kept as the fallback for other layouts). The loop reads one value in every
4 KiB page of each batch, as a training step would read them all: shared memory newly mapped
into the main process costs a page fault a page.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from geoformer.data import ForecastPairs, write_training_store
from geoformer.resume import training_loader
from geoformer.schema import STATIC, SURFACE, UPPER_AIR, VARIABLES

LEVELS = [1000, 925, 850, 700, 600, 500, 400, 300, 250, 200, 150, 100, 50]


def synthetic_store(root: Path, n_time: int, grid=(121, 240)) -> Path:
    rng = np.random.default_rng(0)
    H, W = grid
    coords = {"time": pd.date_range("2000-01-01", periods=n_time, freq="6h"),
              "level": np.array(LEVELS), "latitude": np.linspace(90, -90, H),
              "longitude": np.arange(W) * 360.0 / W}
    data = {v: (("time", "level", "latitude", "longitude"),
                rng.standard_normal((n_time, len(LEVELS), H, W), dtype=np.float32))
            for v in UPPER_AIR}
    data |= {v: (("time", "latitude", "longitude"),
                 rng.standard_normal((n_time, H, W), dtype=np.float32))
             for v in SURFACE if v != "surface_pressure"}
    data |= {v: (("latitude", "longitude"), rng.random((H, W), dtype=np.float32))
             for v in STATIC}
    ds = xr.Dataset(data, coords=coords)
    for name in ds.data_vars:
        ds[name].attrs["units"] = VARIABLES[name].units
    ds["level"].attrs["units"] = "hPa"
    return write_training_store(ds, root / "train.zarr")


def rate(pairs: ForecastPairs, workers: int, samples: int) -> float:
    # the loader GeoDataModule.train_dataloader serves (shuffled, its collate, batch 1)
    loader = training_loader(pairs, batch_size=1, num_workers=workers)
    start, n = None, 0
    for batch in loader:
        for value in batch.values():  # the caller reads the batch: one value in each page
            value.reshape(-1)[::1024].sum()
        if start is None:  # the workers' start-up is not the pipeline's rate
            start = time.perf_counter()
            continue
        n += 1
        if n >= samples:
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--times", type=int, default=120)
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = synthetic_store(Path(tmp), a.times)
        ds = xr.open_zarr(store, chunks=None)
        upper = [v for v in UPPER_AIR if v in ds]
        surface = [v for v in SURFACE if v in ds]
        for reader in ("chunk files", "xarray"):
            pairs = ForecastPairs(ds, upper, surface, LEVELS, 6, in_memory=False)
            if reader == "xarray":
                pairs._chunks = None
            for workers in a.workers:
                row = {"reader": reader, "workers": workers, "grid": "121x240",
                       "levels": len(LEVELS),
                       "samples_per_s": round(rate(pairs, workers, a.samples), 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f"\n{'reader':<12} {'workers':>7} {'samples/s':>10}")
    for r in rows:
        print(f"{r['reader']:<12} {r['workers']:>7} {r['samples_per_s']:>10.1f}")


if __name__ == "__main__":
    main()
