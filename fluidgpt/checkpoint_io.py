"""Lightning's checkpoint IO for fluidgpt's trainers: every checkpoint ``trainer.save_checkpoint``
writes goes through the package's one atomic writer (a reader, or a killed fit, never
leaves half a file at the path), and Lightning reads them through the package's one loader
(``weights_only``, the format version checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .atomic import atomic_write
from .checkpoints import read_checkpoint

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that saves with :func:`fluidgpt.atomic.atomic_write` (replacing
    an earlier checkpoint only once the new one is complete) and loads with
    :func:`fluidgpt.checkpoints.read_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), overwrite=True)

    def load_checkpoint(self, path: str | Path, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, map_location if map_location is not None else "cpu")
