"""Crash-safe training for ``fluidgpt fit``: a run killed at any moment resumes from
``OUTPUT/checkpoints/last.ckpt`` (``--ckpt_path``) and ends with the weights an uninterrupted
run would have (CPU, deterministic kernels).

* :func:`training_loader` draws batches through :class:`_ReplaySampler`, whose order of an
  epoch is a function of (seed, epoch) alone and which starts a resumed epoch at the batch
  the checkpoint stopped at, both read from the trainer's optimiser steps when the pass
  begins; it draws exactly the orders the plain shuffled ``DataLoader`` of earlier releases
  drew, so uninterrupted runs train as before;
* :class:`RandomStates` keeps the global random states (torch, CUDA, numpy, python) in the
  checkpoint and puts them back when the resumed training starts (dropout continues where it
  stopped);
* :class:`ResumableCheckpoint` writes ``last.ckpt`` at any batch but the last of an epoch.

Hand-written because Lightning's own mechanism (a stateful loader whose position the
checkpoint keeps, as geoformer uses) does not survive a module that asks for
``trainer.estimated_stepping_batches`` in ``configure_optimizers``, as the cosine schedule
does: that builds the training loader before the checkpoint is restored, and Lightning 2.6
then never loads the saved position (measured: the resumed epoch started over). geoformer
and fluidgpt never import each other.
"""

from __future__ import annotations

import math
import random
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["training_loader", "RandomStates", "ResumableCheckpoint"]


def training_loader(dataset: Dataset, batch_size: int, seed: int,
                    trainer: L.Trainer | None = None) -> DataLoader:
    """A shuffled loader whose order depends only on ``seed`` and the epoch, and which
    resumes an epoch where the trainer's last checkpoint left it."""
    return DataLoader(dataset, batch_size=batch_size,
                      sampler=_ReplaySampler(len(dataset), seed, trainer, batch_size))


class _ReplaySampler(Sampler[int]):
    """The permutation of epoch ``e``: what ``DataLoader(shuffle=True, generator=
    Generator().manual_seed(seed))`` draws in its pass ``e``, replayed from the seed. Per
    pass that loader draws one 64-bit number (the iterator's base seed), the permutation,
    and, when its sampler is run to exhaustion, one more (empty) permutation: a plain
    ``for`` loop always exhausts it, Lightning only when the last batch is short (it stops
    after the known number of batches). Without a trainer the epoch is the number of
    passes this sampler has made."""

    def __init__(self, n: int, seed: int, trainer: L.Trainer | None, batch_size: int) -> None:
        self.n, self.seed, self.trainer, self.batch_size = n, seed, trainer, batch_size
        self.passes = 0

    def __len__(self) -> int:
        return self.n

    def position(self) -> tuple[int, int]:
        """(epoch, samples of it already trained on) from the trainer's optimiser steps."""
        if self.trainer is None:
            return self.passes, 0
        per_epoch = _steps_per_epoch(self.trainer, self.n, self.batch_size)
        epoch, steps = divmod(self.trainer.global_step, per_epoch)
        return epoch, min(self.n, steps * self.trainer.accumulate_grad_batches
                          * self.batch_size)

    def __iter__(self):
        # read when the first batch is drawn, after Lightning has restored a checkpoint
        (epoch, done), self.passes = self.position(), self.passes + 1
        exhausted = self.trainer is None or self.n % self.batch_size != 0
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(epoch + 1):
            torch.empty((), dtype=torch.int64).random_(generator=g)
            order = torch.randperm(self.n, generator=g)
            if exhausted:
                torch.randperm(self.n, generator=g)
        yield from order[done:].tolist()


def _steps_per_epoch(trainer: L.Trainer, samples: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of ``samples``."""
    batches = math.ceil(samples / batch_size)
    limit = trainer.limit_train_batches
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif limit is not None:
        batches = max(1, int(batches * float(limit)))
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that never writes at the last batch of an epoch. There the batch's
    optimiser step is done, but Lightning's progress still counts the batch as unfinished, so
    a resumed run re-enters the old epoch for one batch and then opens one more loader pass
    than the uninterrupted run. Each pass draws a seed from the global random state, so
    dropout drifts after it. This was measured: a fit killed after the checkpoint of step 8 (the
    last of its epoch) resumed to other weights, while kills at mid-epoch steps did not. A save
    due there is made at the next batch, so a crash in between costs one step (and a step
    interval that divides the epoch still saves)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        every = self._every_n_train_steps
        due = every >= 1 and trainer.global_step % every == 0
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._deferred = self._deferred or due
            return
        if self._deferred and not due:  # the save the epoch's last batch put off
            self._deferred = False
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            return
        self._deferred = False
        super().on_train_batch_end(trainer, *args, **kwargs)


class RandomStates(L.Callback):
    """Keeps the global random states in the checkpoint (plain tensors and numbers, readable
    with ``weights_only=True``) and restores them when the resumed training starts."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
        state = {"torch": torch.get_rng_state(),
                 "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                           "pos": int(pos), "has_gauss": int(has_gauss),
                           "gauss": float(gauss)},
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
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],  # noqa: NPY002
                             n["has_gauss"], n["gauss"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
