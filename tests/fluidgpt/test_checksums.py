"""Every dataset fluidgpt writes checksums its chunks (CRC32C in zarr, Fletcher-32 in netCDF),
so a chunk corrupted on disk is a one-line read error naming the file: zarr's default zstd
frames carry no checksum, and a flipped byte there decodes to wrong numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarray as xr

from fluidgpt.data import load_dataset
from fluidgpt.schema import save_dataset
from tests.fluidgpt.conftest import mock_trajectories

GRID = {"main_inlet_speed": (6.0, 12.0), "side_inlet_speed": (15.0,),
        "particle_diameter": (5e-5,), "particle_density": (2650.0,), "restitution": (0.9,)}


@pytest.fixture(scope="module")
def dataset():
    return mock_trajectories(n_particles=3, n_steps=40, n_faces=5, grid=GRID)


def _flip(chunk: Path) -> None:
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))


def test_every_zarr_array_is_checksummed(tmp_path, dataset):
    store = save_dataset(dataset, tmp_path / "tracks.zarr")
    arrays = {p.parent.name: json.loads(p.read_text()) for p in store.glob("*/zarr.json")}
    assert set(dataset.variables) <= set(arrays)
    for name, meta in arrays.items():
        assert meta["codecs"][-1]["name"] == "crc32c", (name, meta["codecs"])


def test_a_flipped_byte_in_a_zarr_chunk_is_a_read_error_naming_the_store(tmp_path, dataset):
    store = save_dataset(dataset, tmp_path / "tracks.zarr")
    chunks = sorted(p for p in (store / "position" / "c").rglob("*") if p.is_file())
    _flip(max(chunks, key=lambda p: p.stat().st_size))
    with pytest.raises(ValueError, match=r"tracks\.zarr: not a readable \.zarr dataset.*"
                                         r"checksum"):
        load_dataset(store)


def test_netcdf_variables_carry_fletcher32(tmp_path, dataset):
    path = save_dataset(dataset, tmp_path / "tracks.nc")
    with xr.open_dataset(path) as back:
        numeric = [n for n, v in back.variables.items() if v.ndim and v.dtype.kind in "fiub"]
        assert numeric and all(back[n].encoding.get("fletcher32") for n in numeric)
