"""Training samples decoded once into memory that a DataLoader worker hands over as it is.

torch sends a tensor from a worker to the main process through shared memory, and its
default collate stacks every batch into a new shared block. A sample whose buffer is
allocated in shared memory to begin with (:func:`empty_sample`) and a collate that adds the
batch axis as a view when a batch holds one sample (:func:`collate`) leave one write per
value: the decode. Hand-written because torch has no public switch for either.
"""

from __future__ import annotations

import math
import uuid
import weakref
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

__all__ = ["empty_sample", "collate", "SlotPool", "SlotBatch", "PooledDataset", "receive",
           "fields"]


def empty_sample(*shape: int) -> torch.Tensor:
    """An uninitialised float32 tensor; in a DataLoader worker, in shared memory."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    # what torch's own collate does in a worker (torch.utils.data._utils.collate)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * 4)
    return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)


def collate(batch: list[Any]) -> Any:
    """``default_collate``, except that one sample of tensors becomes its tensors with a
    batch axis of 1, views of the sample's own memory (no copy), and that a batch already
    decoded into a pool slot (a :class:`SlotBatch`) passes as it is."""
    if isinstance(batch, SlotBatch):
        return batch
    if len(batch) == 1 and isinstance(batch[0], dict) and all(
            isinstance(v, torch.Tensor) for v in batch[0].values()):
        return {k: v.unsqueeze(0) for k, v in batch[0].items()}
    return default_collate(batch)


# Reused slots -------------------------------------------------------------------------------
# Filling fresh shared memory is the cost of a worker: on a 2-core VM, 13 ms for the 16 MB of a
# 1.5 deg sample (tmpfs allocates and zeroes a page per fault) against 0.6 ms into memory
# already mapped (experiments/benchmarks/data_pipeline.py). torch's loader allocates a new
# block for every batch and has no hook to reuse one, so the pool below is hand-written: the
# main process maps a few batch-sized slots per worker once; a worker decodes a batch into a
# free slot of its own and sends a small ticket; the main process hands the batch on as views
# of the slot and frees it when the last view is gone (or when a ticket is dropped unread, as
# torch does with batches prefetched before an epoch ended). A worker that finds no free slot
# (batches kept by the caller) falls back to fresh shared memory, so it never waits.

def fields(flat: Any, layout: dict[str, tuple[int, ...]], n: int, capacity: int) -> dict[str, Any]:
    """Views of a flat buffer (tensor or array) holding ``capacity`` samples of each key of
    ``layout`` in turn, each key contiguous: key -> (n, *shape), its first ``n`` samples."""
    out, start = {}, 0
    for key, shape in layout.items():
        size = math.prod(shape)
        out[key] = flat[start:start + n * size].reshape(n, *shape)
        start += capacity * size
    return out


_POOLS: weakref.WeakValueDictionary[str, SlotPool] = weakref.WeakValueDictionary()


class SlotPool:
    """``slots`` shared-memory slots for each of ``workers`` workers; a slot holds a batch of
    ``batch_size`` samples laid out as ``layout`` (key -> float32 shape of one sample), each
    key contiguous."""

    def __init__(self, layout: dict[str, tuple[int, ...]], batch_size: int, workers: int,
                 slots: int) -> None:
        self.id = uuid.uuid4().hex
        self.layout = {k: tuple(int(n) for n in v) for k, v in layout.items()}
        self.batch_size, self.workers, self.slots = batch_size, workers, slots
        per_slot = batch_size * sum(math.prod(s) for s in self.layout.values())
        # share_memory_ copies, so every page is mapped in the main process from the start
        self._block = torch.zeros(workers, slots, per_slot).share_memory_()
        self._busy = torch.zeros(workers, slots, dtype=torch.uint8).share_memory_()
        _POOLS[self.id] = self

    @staticmethod
    def nbytes(layout: dict[str, tuple[int, ...]], batch_size: int, workers: int,
               slots: int) -> int:
        return 4 * workers * slots * batch_size * sum(math.prod(s) for s in layout.values())

    def acquire(self, n: int) -> tuple[int, dict[str, np.ndarray]] | None:
        """In a worker: a free slot of its own, marked busy, as arrays of ``n`` samples per
        key; None when every one is in use."""
        w = get_worker_info().id
        busy = self._busy.numpy()[w]
        free = np.flatnonzero(busy == 0)
        if n > self.batch_size or not len(free):
            return None
        k = int(free[0])
        busy[k] = 1
        return k, fields(self._block.numpy()[w, k], self.layout, n, self.batch_size)

    def release(self, worker: int, slot: int) -> None:
        self._busy.numpy()[worker, slot] = 0

    def views(self, worker: int, slot: int, n: int) -> dict[str, torch.Tensor]:
        """In the main process: tensors viewing a filled slot, which is freed when the
        memory of the last of them (or of any view of them) is released."""
        flat = self._block.numpy()[worker, slot][...]  # a new array object for this batch
        weakref.finalize(flat, self.release, worker, slot)
        # the tensors' storage keeps ``flat`` alive
        return fields(torch.from_numpy(flat), self.layout, n, self.batch_size)


class SlotBatch:
    """A worker's ticket for a batch decoded into a pool slot, plus its integer fields."""

    def __init__(self, pool: str, worker: int, slot: int, size: int,
                 extra: dict[str, list[int]]) -> None:
        self.pool, self.worker, self.slot, self.size, self.extra = pool, worker, slot, size, extra
        self._received = False  # True only for the copy that reached the main process

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_received"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _received=True)

    def open(self) -> dict[str, torch.Tensor]:
        pool = _POOLS[self.pool]
        self._received = False  # from here the views own the slot
        batch = pool.views(self.worker, self.slot, self.size)
        batch.update({k: torch.tensor(v, dtype=torch.int64) for k, v in self.extra.items()})
        return batch

    def __del__(self) -> None:
        if self._received:  # dropped unread (torch discards batches prefetched for a past epoch)
            pool = _POOLS.get(self.pool)
            if pool is not None:
                pool.release(self.worker, self.slot)


class PooledDataset(Dataset):
    """``dataset`` seen through a loader whose workers decode each batch into a slot of
    ``pool``. The dataset provides ``sample_layout()`` (see :class:`SlotPool`) and
    ``fill(item, out, b)``, which writes item ``item`` into row ``b`` of ``out``'s arrays and
    returns its integer fields; the loader's iterator passes its batches to :func:`receive`."""

    def __init__(self, dataset: Dataset, pool: SlotPool) -> None:
        self.dataset, self.pool = dataset, pool

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int) -> Any:
        return self.dataset[item]

    def __getitems__(self, items: list[int]) -> list[Any] | SlotBatch:
        slot = self.pool.acquire(len(items)) if get_worker_info() is not None else None
        if slot is None:
            return [self.dataset[i] for i in items]
        k, out = slot
        extra: dict[str, list[int]] = {}
        for b, i in enumerate(items):
            for key, value in self.dataset.fill(i, out, b).items():
                extra.setdefault(key, []).append(value)
        return SlotBatch(self.pool.id, get_worker_info().id, k, len(items), extra)


def receive(batch: Any) -> Any:
    """A batch as the loader's caller sees it: a :class:`SlotBatch` opened, others as they are."""
    return batch.open() if isinstance(batch, SlotBatch) else batch
