"""Reading a checkpoint: the one place geoformer calls ``torch.load``.

Every checkpoint is read with ``torch.load(weights_only=True)``, which refuses a pickled
Python object (a payload) at its first global without running it. Whatever torch raises on
a file that is not a checkpoint (random bytes, a truncated or empty file, a payload), and a
checkpoint of another kind (a bare tensor, a fluidgpt model), becomes one
:class:`CheckpointError` line that names the file, what was expected and what was found;
torch's own advice (retry with ``weights_only=False``) is never shown.

Format versions: every checkpoint (``format_version`` in its dict) and every statistics
cache (``format_version`` in its attributes) says which layout it has; this module is the
one place that knows which versions this release reads (:func:`check_format_version`).
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint", "check_format_version", "FORMAT_VERSION",
           "STATISTICS_VERSION"]

#: What a geoformer checkpoint holds (written by ``geoformer fit``).
EXPECTED = "a checkpoint written by `geoformer fit` (hyper_parameters and state_dict)"

#: The layout of the checkpoints this release writes (Lightning's and the slim exported
#: ones) and reads: ``format_version`` in the checkpoint dict.
FORMAT_VERSION = 1
#: The layout of the normalisation statistics cached in a training store (``statistics``
#: group, ``format_version`` attribute), which :func:`geoformer.data.load_statistics` reads.
#: A cache of another version is refused, not recomputed over (its writer would lose it).
STATISTICS_VERSION = 1
#: The version this release reads, by what the file is.
_READS = {"checkpoint": FORMAT_VERSION, "statistics": STATISTICS_VERSION}


class CheckpointError(ValueError):
    """A file that is not a geoformer checkpoint; the message names it."""


def check_format_version(found: Any, source: str | Path, what: str = "checkpoint") -> int:
    """The format version ``found`` in a ``what`` ("checkpoint" or "statistics") file, or a
    CheckpointError naming ``source`` if this release does not read it.

    Files written before versioning carry no version (``found`` None). Their layout is
    version 1's (a checkpoint's older hyperparameter form is still migrated by
    :func:`geoformer.module.upgrade_hparams`), so they are read as version 1. A later
    layout change bumps the version and, to keep reading older files (unversioned ones
    included, as version 1), migrates them here.
    """
    reads = _READS[what]
    if found is None:
        return 1
    if isinstance(found, bool) or not isinstance(found, int):
        raise CheckpointError(f"{source}: {what} format version {found!r} is not an integer; "
                              f"this release reads version {reads}")
    if found != reads:
        newer = "; a newer release wrote it" if found > reads else ""
        raise CheckpointError(f"{source}: {what} format version {found}; this release reads "
                              f"version {reads}{newer}")
    return found


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
    # before the layout checks: another version may well have another layout
    check_format_version(ckpt.get("format_version"), path)
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or "state_dict" not in ckpt or not (
            {"contract", "model"} & set(hparams)):
        keys = sorted(map(str, ckpt))
        raise CheckpointError(f"{path}: not a geoformer checkpoint (expected {EXPECTED} "
                              f"with the data contract; found keys {keys[:8]})")
    return ckpt
