"""geoformer.samples: a worker decodes each sample into shared memory and a batch of one
reaches the main process as views of that memory; other batches are default_collate's."""

from __future__ import annotations

import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset, default_collate

from geoformer.data import ForecastPairs, write_training_store
from geoformer.samples import collate, empty_sample
from tests.conftest import mock_era5


class _Probe(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        t = empty_sample(2, 3)
        t.fill_(i)
        return {"x": t, "shared": torch.tensor(t.is_shared())}


def test_samples_are_shared_in_a_worker_and_plain_in_the_main_process():
    assert not empty_sample(2, 3).is_shared()
    loader = DataLoader(_Probe(), batch_size=1, num_workers=1, collate_fn=collate)
    batches = list(loader)
    assert [bool(b["shared"]) for b in batches] == [True, True]
    assert [b["x"].shape for b in batches] == [(1, 2, 3)] * 2
    assert torch.equal(batches[1]["x"], torch.ones(1, 2, 3))


def test_collate_of_one_sample_is_views_and_of_more_is_default_collate():
    a = {"x": torch.arange(6.0).view(2, 3), "t": torch.tensor(5)}
    b = {"x": -torch.arange(6.0).view(2, 3), "t": torch.tensor(7)}
    one = collate([a])
    assert one["x"].shape == (1, 2, 3) and one["t"].shape == (1,)
    assert one["x"].data_ptr() == a["x"].data_ptr()  # no copy
    for key, value in default_collate([a]).items():
        assert torch.equal(one[key], value)
    for key, value in default_collate([a, b]).items():
        assert torch.equal(collate([a, b])[key], value)


def test_a_worker_batch_of_one_is_one_block_of_shared_memory(tmp_path):
    ds = mock_era5(n_time=6)
    store = write_training_store(ds, tmp_path / "train.zarr")
    pairs = ForecastPairs(xr.open_zarr(store, chunks=None), ["geopotential", "temperature"],
                          ["2m_temperature"], [1000, 850, 500], 6, steps=2, in_memory=False)
    assert pairs._chunks is not None
    loader = DataLoader(pairs, batch_size=1, num_workers=1, collate_fn=collate)
    for i, batch in enumerate(loader):
        for key, value in default_collate([pairs[i]]).items():
            assert torch.equal(batch[key], value), key
        # input and targets are views of the one buffer the worker decoded into
        assert (batch["upper"].untyped_storage().data_ptr()
                == batch["target_upper"].untyped_storage().data_ptr())
