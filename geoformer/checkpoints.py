"""Reading a checkpoint: the one place geoformer calls ``torch.load``.

Every checkpoint is read with ``torch.load(weights_only=True)``, which refuses a pickled
Python object (a payload) at its first global without running it. Whatever torch raises on
a file that is not a checkpoint (random bytes, a truncated or empty file, a payload), and a
checkpoint of another kind (a bare tensor, a fluidgpt model), becomes one
:class:`CheckpointError` line that names the file, what was expected and what was found;
torch's own advice (retry with ``weights_only=False``) is never shown.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint"]

#: What a geoformer checkpoint holds (written by ``geoformer fit``).
EXPECTED = "a checkpoint written by `geoformer fit` (hyper_parameters and state_dict)"


class CheckpointError(ValueError):
    """A file that is not a geoformer checkpoint; the message names it."""


def _why(err: BaseException) -> str:
    """What torch.load found, in a few words (never its weights_only advice)."""
    text = str(err)
    payload = re.search(r"GLOBAL ([\w.]+)", text)
    if payload:
        return (f"it holds a pickled Python object ({payload.group(1)}), refused unread "
                "(checkpoints load with weights_only=True)")
    if isinstance(err, EOFError) or "central directory" in text or isinstance(err, OSError):
        return "the file is empty or truncated"
    if isinstance(err, pickle.UnpicklingError):
        return "not a torch file"
    first = text.strip().splitlines()[0][:100] if text.strip() else ""
    return f"unreadable ({type(err).__name__}{': ' + first if first else ''})"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """The dict of a geoformer checkpoint (``hyper_parameters``, ``state_dict``, ...).

    Raises FileNotFoundError if there is no file, CheckpointError (a ValueError naming the
    file) for anything else that is not a geoformer checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns (a second line) before it refuses
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many kinds on bytes that are not a checkpoint
        raise CheckpointError(f"{path}: not a geoformer checkpoint (expected {EXPECTED}; "
                              f"{_why(err)})") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a geoformer checkpoint (expected {EXPECTED}; "
                              f"found a {type(ckpt).__name__})")
    if "fluidgpt_module" in ckpt:
        raise CheckpointError(f"{path}: a fluidgpt checkpoint ({ckpt['fluidgpt_module']} "
                              "model), not a geoformer one (expected a file written by "
                              "`geoformer fit`)")
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or "state_dict" not in ckpt or not (
            {"contract", "model"} & set(hparams)):
        keys = sorted(map(str, ckpt))
        raise CheckpointError(f"{path}: not a geoformer checkpoint (expected {EXPECTED} "
                              f"with the data contract; found keys {keys[:8]})")
    return ckpt
