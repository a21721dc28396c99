"""Every zarr store geoformer writes checksums its chunks (CRC32), so a chunk corrupted on
disk is a read error naming the store, never numbers decoded from garbage: zarr v2's Blosc
frames carry no checksum of their own (the fuzz run found chunks that decode to wrong values)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geoformer.chunkreader import ChunkReader
from geoformer.cli import main
from geoformer.data import TimeRange, load_statistics, write_training_store
from geoformer.errors import ReadError, read_error
from geoformer.forecast import forecast, write_forecast
from geoformer.forecast_store import forecast_to_store
from tests.conftest import mock_era5, tiny_module


@pytest.fixture(scope="module")
def setup():
    ds = mock_era5(n_time=6)
    return ds, {6: tiny_module(ds, 6).eval()}


def _training(tmp: Path, setup) -> Path:
    return write_training_store(setup[0], tmp / "train.zarr")


def _forecast(tmp: Path, setup) -> Path:
    ds, models = setup
    fc = forecast(models, ds, ds.time.values[:2], lead_time="12h", every="6h")
    return write_forecast(fc, tmp / "fc.zarr")


def _streamed(tmp: Path, setup) -> Path:
    ds, models = setup
    path, _ = forecast_to_store(models, ds, ds.time.values[:2], tmp / "streamed.zarr",
                                lead_time="12h", every="6h")
    return path


def _statistics(tmp: Path, setup) -> Path:
    store = _training(tmp, setup)
    ds = setup[0]
    load_statistics(store, TimeRange(str(ds.time.values[0]), str(ds.time.values[-1])),
                    ["temperature"], ["2m_temperature"], [])
    return store / "statistics"


WRITERS = {"training store": _training, "forecast": _forecast, "streamed forecast": _streamed,
           "statistics cache": _statistics}


def _arrays(store: Path) -> dict[str, dict]:
    """The .zarray metadata of every array directly in ``store``, by name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(store.glob("*/.zarray"))}


def _flip(chunk: Path) -> None:
    """One byte in the middle of ``chunk`` inverted (past Blosc's 16-byte header)."""
    data = bytearray(chunk.read_bytes())
    data[16 + (len(data) - 16) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_numeric_array_we_write_is_checksummed(writer, tmp_path, setup):
    arrays = _arrays(WRITERS[writer](tmp_path, setup))
    assert arrays
    for name, meta in arrays.items():
        numeric = np.dtype(meta["dtype"]).kind in "biufcmM"
        ids = [f["id"] for f in meta.get("filters") or []]
        assert ("crc32" in ids) == numeric, (name, meta)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_flipped_byte_is_a_read_error_naming_the_store(writer, tmp_path, setup):
    store = WRITERS[writer](tmp_path, setup)
    name = "temperature" if (store / "temperature").is_dir() else "2m_temperature"
    chunks = sorted(p for p in (store / name).iterdir() if not p.name.startswith("."))
    _flip(chunks[len(chunks) // 2])
    with pytest.raises(Exception) as caught:
        xr.open_zarr(store, consolidated=False).load()
    err = read_error(caught.value)
    assert isinstance(err, ReadError), repr(caught.value)
    assert str(store) in str(err) and name in str(err) and "checksum" in str(err), str(err)


def test_the_chunk_reader_checks_the_checksum(tmp_path, setup):
    store = _training(tmp_path, setup)
    reader = ChunkReader.open(store, "temperature")
    assert reader is not None
    np.testing.assert_array_equal(reader(3), setup[0]["temperature"].values[3])
    _flip(store / "temperature" / "3.0.0.0")
    with pytest.raises(ValueError, match=r"temperature/3\.0\.0\.0: the chunk does not decode "
                                         r"\(stored and computed crc32 checksums differ"):
        reader(3)


def test_the_command_line_refuses_a_corrupted_store_in_one_line(tmp_path, capsys, setup):
    store = _training(tmp_path, setup)
    _flip(store / "temperature" / "2.0.0.0")
    argv = ["dataset", "convert", "--input", str(store), "--output", str(tmp_path / "out.zarr")]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{store}: could not read variable 'temperature'" in lines[0]
    assert "crc32" in lines[0] and not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("streamed", [False, True])
def test_a_flipped_byte_in_a_netcdf_forecast_is_a_read_error(streamed, tmp_path, setup):
    ds, models = setup
    inits = ds.time.values[:2]
    if streamed:
        path, _ = forecast_to_store(models, ds, inits, tmp_path / "fc.nc", lead_time="12h",
                                    every="6h")
    else:
        fc = forecast(models, ds, inits, lead_time="12h", every="6h")
        path = write_forecast(fc, tmp_path / "fc.nc")
    with xr.open_dataset(path) as back:
        assert all(back[v].encoding.get("fletcher32") for v in back.data_vars)
        raw = back["temperature"].values.astype("float32")[1].tobytes()[:64]
    data = bytearray(path.read_bytes())
    at = data.find(raw)
    assert at > 0  # the values are stored as they are (no compression)
    data[at + 8] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(Exception) as caught:
        xr.open_dataset(path).load()
    err = read_error(caught.value)
    assert isinstance(err, ReadError) and str(path) in str(err), repr(caught.value)
    assert "HDF error" in str(err)
