"""Crash-safe training: a run killed at any moment resumes from its last checkpoint and ends
with the weights an uninterrupted run would have (CPU, deterministic kernels).

Three things make a resumed run retrace the uninterrupted one:

* the training loader is torchdata's ``StatefulDataLoader`` (Lightning saves its position in
  the checkpoint and fast-forwards it on resume) over a ``DistributedSampler`` whose order is
  a function of (seed, epoch) alone, so the resumed epoch draws the same order;
* :class:`RandomStates` saves the global random states (torch, CUDA, numpy, python) in the
  checkpoint and puts them back just before the first resumed batch, so dropout and any
  other draw continue where they stopped;
* :class:`AtomicCheckpointIO` writes every checkpoint with :func:`geoformer.atomic.atomic_write`
  (a reader never sees half a file) and reads them with ``weights_only=True``.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from .atomic import atomic_write
from .checkpoints import load_checkpoint
from .samples import PooledDataset, SlotPool, collate, receive

__all__ = ["training_loader", "RandomStates", "AtomicCheckpointIO"]


def training_loader(dataset: Dataset, batch_size: int, num_workers: int = 0,
                    trainer: L.Trainer | None = None) -> StatefulDataLoader:
    """A shuffled loader whose order depends only on the seed (``seed_everything``) and the
    epoch, sharded over the trainer's processes, and whose position a checkpoint keeps.

    The sampler's epoch is read from the trainer's optimiser steps when each pass begins,
    not taken from Lightning's ``set_epoch``: on a resume, Lightning (2.6) builds the first
    iterator before it sets the epoch, and after a checkpoint written at an epoch's end it
    sets the epoch one ahead.
    """
    world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    sampler = _StepSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                           drop_last=False)
    sampler.trainer, sampler.batch_size = trainer, batch_size
    if num_workers > 0 and hasattr(dataset, "sample_layout"):
        pool = slot_pool(dataset.sample_layout(), batch_size, num_workers)
        if pool is not None:  # workers decode into reused shared memory (geoformer.samples)
            dataset = PooledDataset(dataset, pool)
    # A generator of its own: otherwise each new iterator draws its worker seed from the
    # global torch state, and a resumed run would draw once more than the original.
    return _Loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                   persistent_workers=num_workers > 0, collate_fn=collate,
                   generator=torch.Generator().manual_seed(seed))


def slot_pool(layout: dict[str, tuple[int, ...]], batch_size: int, workers: int,
              prefetch: int = 2) -> SlotPool | None:
    """Reused shared-memory slots for a loader's workers (:class:`geoformer.samples.SlotPool`):
    per worker, its ``prefetch`` batches in flight plus three the caller may hold (the batch
    being trained on, Lightning's prefetched one, the one being freed). None (fresh shared
    memory per batch, torch's way) when the slots would take over a quarter of the free
    shared memory."""
    slots = prefetch + 3
    need = SlotPool.nbytes(layout, batch_size, workers, slots)
    try:
        shm = os.statvfs("/dev/shm")
        free = shm.f_bavail * shm.f_frsize
    except OSError:  # no /dev/shm (macOS): torch's own shared memory, no pool
        return None
    return SlotPool(layout, batch_size, workers, slots) if need <= free / 4 else None


class _StepSampler(DistributedSampler):
    """A DistributedSampler whose epoch is the trainer's optimiser steps // steps an epoch,
    read as a pass begins (see :func:`training_loader`)."""

    trainer: L.Trainer | None = None
    batch_size: int = 1

    def set_epoch(self, epoch: int) -> None:
        """Lightning's epoch is ignored: the pass's epoch comes from the steps done."""

    def __iter__(self):
        if self.trainer is not None:
            per_epoch = _steps_per_epoch(self.trainer, len(self), self.batch_size)
            self.epoch = self.trainer.global_step // per_epoch
        return super().__iter__()


class _Loader(StatefulDataLoader):
    """torchdata's loader, less one case: a position at the end of an epoch (a checkpoint
    written after the epoch's last batch) is not fast-forwarded, since the sampler is
    already set to the next epoch; it would otherwise be replayed into the new one."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        done = (state_dict.get("_sampler_iter_state") or {}).get("samples_yielded", 0)
        if done < len(self.sampler):
            super().load_state_dict(state_dict)

    def __iter__(self):
        return _Received(super().__iter__())


class _Received:
    """A loader's iterator whose batches decoded into pool slots are opened as tensors
    (:func:`geoformer.samples.receive`); anything else is the wrapped iterator's."""

    def __init__(self, iterator) -> None:
        self._iterator = iterator

    def __iter__(self):
        return self

    def __next__(self):
        return receive(next(self._iterator))

    def __len__(self) -> int:
        return len(self._iterator)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterator, name)


def _steps_per_epoch(trainer: L.Trainer, samples: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of ``samples`` on this process."""
    batches = math.ceil(samples / batch_size)
    limit = trainer.limit_train_batches
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif limit is not None:
        batches = max(1, int(batches * float(limit)))
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


class RandomStates(L.Callback):
    """Keeps the global random states in the checkpoint (plain tensors and numbers, readable
    with ``weights_only=True``) and restores them when the resumed training starts (after
    the sanity check). Every loader of the package has a generator of its own, so that no
    loader set-up, in either run, draws from the global states between a checkpoint and
    the next batch."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "numpy": _numpy_state(),
                 "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, *args: Any) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO through the package's one atomic writer and one loader."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), overwrite=True)

    def load_checkpoint(self, path: str | Path, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location if map_location is not None
                               else "cpu")
