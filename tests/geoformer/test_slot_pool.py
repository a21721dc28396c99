"""geoformer.samples' slot pool: a training loader's workers decode batches into reused shared
memory; what the caller gets equals the dataset's items, a batch the caller keeps is never
written over, and every slot comes back once its batch (or an unread ticket) is gone."""

from __future__ import annotations

import copy
import gc
import subprocess
from collections import namedtuple

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import default_collate

from geoformer import resume
from geoformer.data import ForecastPairs, write_training_store
from geoformer.resume import training_loader
from geoformer.samples import PooledDataset, SlotBatch, SlotPool
from tests.conftest import mock_era5
from tests.geoformer.test_resume import ENV, _fit, _last, experiment  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    ds = mock_era5(n_time=14)
    return write_training_store(ds, tmp_path_factory.mktemp("pool") / "train.zarr")


def _pairs(store, in_memory=False) -> ForecastPairs:
    pairs = ForecastPairs(xr.open_zarr(store, chunks=None), ["geopotential", "temperature"],
                          ["2m_temperature", "mean_sea_level_pressure"], [1000, 850, 500], 6,
                          steps=2, in_memory=in_memory)
    assert (pairs._chunks is None) == in_memory
    return pairs


def _through_xarray(pairs: ForecastPairs) -> ForecastPairs:
    """The same pairs read through xarray and State, a path that shares no code with
    ``fill`` or the chunk reader."""
    if pairs._chunks is None:
        return pairs
    other = copy.copy(pairs)
    other._chunks = None
    return other


def _expected(pairs, loader, batch_size):
    order, reference = list(loader.sampler), _through_xarray(pairs)
    return [default_collate([reference[i] for i in order[s:s + batch_size]])
            for s in range(0, len(order), batch_size)]


def _in_pool(tensor, pool) -> bool:
    start = pool._block.data_ptr()
    return start <= tensor.data_ptr() < start + pool._block.numel() * 4


def _assert_equal(batch, want):
    assert batch.keys() == want.keys()
    for key, value in want.items():
        assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key


@pytest.mark.parametrize("in_memory", [False, True])
def test_batches_from_the_pool_equal_the_items(store, in_memory):
    pairs = _pairs(store, in_memory)
    loader = training_loader(pairs, batch_size=3, num_workers=2)  # 10 items: 3 + 3 + 3 + 1
    assert isinstance(loader.dataset, PooledDataset)
    pool = loader.dataset.pool
    want = _expected(pairs, loader, 3)
    got = 0
    for batch, expected in zip(loader, want, strict=True):
        _assert_equal(batch, expected)
        assert _in_pool(batch["upper"], pool) and _in_pool(batch["target_surface"], pool)
        got += 1
    assert got == 4


def test_batches_the_caller_keeps_are_never_overwritten(store):
    pairs = _pairs(store)
    loader = training_loader(pairs, batch_size=1, num_workers=2)
    pool = loader.dataset.pool
    assert pool.slots * pool.workers < len(pairs)  # so some batches must bypass the pool
    first = list(loader)  # every batch kept
    pooled = sum(_in_pool(b["upper"], pool) for b in first)
    assert 0 < pooled <= pool.slots * pool.workers
    second = list(loader)  # a second epoch while the first is still held: no slot is free
    assert not any(_in_pool(b["upper"], pool) for b in second)
    for kept in (first, second):
        for batch, expected in zip(kept, _expected(pairs, loader, 1), strict=True):
            _assert_equal(batch, expected)
    del first, second, kept, batch
    gc.collect()
    assert not pool._busy.any()


def test_slots_come_back_after_an_epoch_left_early(store):
    pairs = _pairs(store)
    loader = training_loader(pairs, batch_size=2, num_workers=2)
    pool = loader.dataset.pool
    for n, _batch in enumerate(loader):  # prefetched batches are left unread in the workers
        if n == 1:
            break
    del _batch
    for batch, expected in zip(loader, _expected(pairs, loader, 2), strict=True):
        _assert_equal(batch, expected)  # a new pass over the persistent workers
        assert _in_pool(batch["upper"], pool)
    del batch
    gc.collect()
    assert not pool._busy.any()


def test_a_slot_is_freed_by_its_last_view_or_by_an_unread_ticket():
    pool = SlotPool({"x": (2, 3)}, batch_size=2, workers=1, slots=2)
    pool._busy[0, 1] = 1
    view = pool.views(0, 1, 2)["x"][:, 0]  # a view of a view keeps the slot
    gc.collect()
    assert pool._busy[0, 1] == 1
    del view
    gc.collect()
    assert pool._busy[0, 1] == 0
    pool._busy[0, 0] = 1
    ticket = SlotBatch.__new__(SlotBatch)
    ticket.__setstate__({"pool": pool.id, "worker": 0, "slot": 0, "size": 1, "extra": {}})
    del ticket  # received by the main process, never opened
    gc.collect()
    assert pool._busy[0, 0] == 0


def test_no_pool_when_it_would_take_over_a_quarter_of_the_shared_memory(store, monkeypatch):
    pairs = _pairs(store)
    need = SlotPool.nbytes(pairs.sample_layout(), 2, 2, 5)
    fake = namedtuple("statvfs", "f_bavail f_frsize")
    monkeypatch.setattr(resume.os, "statvfs", lambda path: fake(need * 4 - 1, 1))
    loader = training_loader(pairs, batch_size=2, num_workers=2)
    assert loader.dataset is pairs  # torch's own shared memory, same batches
    for batch, expected in zip(loader, _expected(pairs, loader, 2), strict=True):
        _assert_equal(batch, expected)
    monkeypatch.setattr(resume.os, "statvfs", lambda path: fake(need * 4, 1))
    assert isinstance(training_loader(pairs, 2, 2).dataset, PooledDataset)


@pytest.mark.parametrize("in_memory", [False, True])
def test_fill_writes_what_the_xarray_path_reads(store, in_memory):
    pairs = _pairs(store, in_memory)
    layout = pairs.sample_layout()
    out = {k: np.full((2, *s), np.nan, np.float32) for k, s in layout.items()}
    extra = pairs.fill(3, out, 1)
    item = _through_xarray(pairs)[3]
    assert extra == {"time": int(item["time"])}
    for key in layout:
        assert np.array_equal(out[key][1], item[key].numpy()), key
        assert np.isnan(out[key][0]).all()


@pytest.mark.slow
def test_a_fit_with_two_workers_ends_with_the_weights_of_one_without(experiment):  # noqa: F811
    for name, workers in (("main", 0), ("workers", 2)):
        done = subprocess.run(_fit(experiment, name, "--trainer.max_steps=6",
                                   f"--data.num_workers={workers}"),
                              env=ENV, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    main = torch.load(_last(experiment, "main"), weights_only=True)
    workers = torch.load(_last(experiment, "workers"), weights_only=True)
    assert main["global_step"] == workers["global_step"] == 6
    for key, value in main["state_dict"].items():
        assert torch.equal(value, workers["state_dict"][key]), key


def test_workers_started_by_spawn_share_the_slots(store):
    # forkserver becomes Linux's default start method in Python 3.14: the pool is pickled
    from torch.utils.data import DataLoader

    from geoformer.samples import collate, receive

    pairs = _pairs(store)
    pool = SlotPool(pairs.sample_layout(), batch_size=2, workers=2, slots=5)
    loader = DataLoader(PooledDataset(pairs, pool), batch_size=2, num_workers=2,
                        collate_fn=collate, multiprocessing_context="spawn")
    order, reference = list(range(len(pairs))), _through_xarray(pairs)
    want = [default_collate([reference[i] for i in order[s:s + 2]])
            for s in range(0, len(order), 2)]
    for batch, expected in zip(map(receive, loader), want, strict=True):
        _assert_equal(batch, expected)
        assert _in_pool(batch["upper"], pool)
