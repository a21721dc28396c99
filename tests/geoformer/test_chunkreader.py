"""geoformer.chunkreader: the kept-buffer Blosc path equals zarr's own read for every codec
layout it takes, hands out arrays that never alias its buffers, and names the chunk file of
a truncated or corrupted chunk; other layouts take the numcodecs path with the same values."""

from __future__ import annotations

import pickle

import numcodecs
import numpy as np
import pytest
import zarr
from numcodecs.checksum32 import CRC32

from geoformer.chunkreader import ChunkReader

VALUES = np.random.default_rng(3).standard_normal((4, 3, 5, 6)).astype(np.float32)

LAYOUTS = {
    "blosc+crc32 start": (numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1), [CRC32()]),
    "blosc+crc32 end": (numcodecs.Blosc(cname="zstd"), [CRC32(location="end")]),
    "blosc": (numcodecs.Blosc(cname="lz4"), None),
    "zstd+crc32": (numcodecs.Zstd(), [CRC32()]),
    "blosc+delta": (numcodecs.Blosc(), [numcodecs.Delta(dtype="f4")]),
}
FAST = {"blosc+crc32 start", "blosc+crc32 end", "blosc"}


def _store(tmp_path, layout: str):
    compressor, filters = LAYOUTS[layout]
    arr = zarr.create_array(tmp_path / "x", shape=VALUES.shape, chunks=(1, *VALUES.shape[1:]),
                            dtype="f4", zarr_format=2, compressors=compressor, filters=filters,
                            fill_value=float("nan"))
    arr[:3] = VALUES[:3]  # time 3 never written: the fill value
    return tmp_path


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_reads_what_zarr_reads(layout, tmp_path):
    reader = ChunkReader.open(_store(tmp_path, layout), "x")
    assert reader is not None and reader._fast == (layout in FAST)
    back = zarr.open_array(tmp_path / "x", mode="r")[:]
    for i in range(4):
        np.testing.assert_array_equal(reader(i), back[i])
    out = np.empty(VALUES.shape[1:], np.float32)
    assert reader(1, out=out) is out
    np.testing.assert_array_equal(out, back[1])  # (a float delta filter rounds)
    np.testing.assert_array_equal(reader(2, levels=[2, 0]), back[2][[2, 0]])
    sub = np.empty((2, *VALUES.shape[2:]), np.float32)
    reader(0, out=sub, levels=[1, 2])
    np.testing.assert_array_equal(sub, back[0][[1, 2]])
    assert np.isnan(reader(3)).all()


def test_returned_arrays_never_alias_the_kept_buffers(tmp_path):
    reader = ChunkReader.open(_store(tmp_path, "blosc+crc32 start"), "x")
    first, second = reader(0), reader(1)
    np.testing.assert_array_equal(first, VALUES[0])  # not overwritten by the second read
    np.testing.assert_array_equal(second, VALUES[1])
    assert not np.shares_memory(first, reader._decoded)


def test_the_buffers_are_not_pickled(tmp_path):
    reader = ChunkReader.open(_store(tmp_path, "blosc+crc32 start"), "x")
    reader(0)
    assert reader._raw is not None
    copy = pickle.loads(pickle.dumps(reader))
    assert copy._raw is None and copy._decoded is None
    np.testing.assert_array_equal(copy(2), VALUES[2])


@pytest.mark.parametrize("layout", ["blosc+crc32 start", "blosc+crc32 end"])
def test_a_flipped_payload_byte_fails_the_checksum(layout, tmp_path):
    reader = ChunkReader.open(_store(tmp_path, layout), "x")
    chunk = tmp_path / "x" / "1.0.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"x/1\.0\.0\.0: the chunk does not decode"):
        reader(1)


def test_a_truncated_chunk_names_the_file(tmp_path):
    reader = ChunkReader.open(_store(tmp_path, "blosc+crc32 start"), "x")
    chunk = tmp_path / "x" / "2.0.0.0"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"x/2\.0\.0\.0: the chunk does not decode \(the header "
                                         r"gives \d+ compressed bytes, the file holds \d+\)"):
        reader(2)
    chunk.write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match=r"x/2\.0\.0\.0: the chunk does not decode"):
        reader(2)


def test_a_chunk_of_another_size_is_refused(tmp_path):
    _store(tmp_path, "blosc+crc32 start")
    other = zarr.create_array(tmp_path / "y", shape=(2, 3, 5, 7), chunks=(1, 3, 5, 7),
                              dtype="f4", zarr_format=2, compressors=numcodecs.Blosc(),
                              filters=[CRC32()])
    other[:] = 1.0
    (tmp_path / "x" / "0.0.0.0").write_bytes((tmp_path / "y" / "0.0.0.0").read_bytes())
    reader = ChunkReader.open(tmp_path, "x")
    with pytest.raises(ValueError, match=r"expected 364 decompressed bytes, found 424"):
        reader(0)
