"""Training samples decoded once into memory that a DataLoader worker hands over as it is.

torch sends a tensor from a worker to the main process through shared memory, and its
default collate stacks every batch into a new shared block. A sample whose buffer is
allocated in shared memory to begin with (:func:`empty_sample`) and a collate that adds the
batch axis as a view when a batch holds one sample (:func:`collate`) leave one write per
value: the decode. Hand-written because torch has no public switch for either.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import default_collate, get_worker_info

__all__ = ["empty_sample", "collate"]


def empty_sample(*shape: int) -> torch.Tensor:
    """An uninitialised float32 tensor; in a DataLoader worker, in shared memory."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    # what torch's own collate does in a worker (torch.utils.data._utils.collate)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * 4)
    return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)


def collate(batch: list[Any]) -> Any:
    """``default_collate``, except that one sample of tensors becomes its tensors with a
    batch axis of 1, views of the sample's own memory (no copy)."""
    if len(batch) == 1 and isinstance(batch[0], dict) and all(
            isinstance(v, torch.Tensor) for v in batch[0].values()):
        return {k: v.unsqueeze(0) for k, v in batch[0].items()}
    return default_collate(batch)
