"""Loading a checkpoint for a command: a file that is not a fluidgpt checkpoint is one line.

Every checkpoint is read with ``torch.load(weights_only=True)``, which refuses a pickled
Python object (a payload) without running it; what torch and the module raise on a file
that is not a checkpoint (random bytes, a truncated file, another package's checkpoint) is
turned into a ValueError that names the file.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["load_checkpoint", "unreadable_checkpoint"]


def unreadable_checkpoint(path: str | Path, err: BaseException) -> ValueError:
    """The one-line error of a file that torch.load (weights_only) or the module refused."""
    text = str(err)
    payload = re.search(r"GLOBAL ([\w.]+)", text)
    if payload:  # weights_only never runs it: the unpickler stops at the first global
        return ValueError(f"{path}: not a fluidgpt checkpoint: it holds a Python object "
                          f"({payload.group(1)}), refused unread (checkpoints load with "
                          "weights_only=True)")
    if isinstance(err, EOFError):
        reason = "the file is empty or truncated"
    elif isinstance(err, pickle.UnpicklingError):
        reason = "not a torch checkpoint"
    elif isinstance(err, RuntimeError):
        reason = text.strip().split(". ")[0][:120] or "unreadable"
    else:
        reason = f"unexpected contents: {type(err).__name__} {text[:80]}"
    return ValueError(f"{path}: not a fluidgpt checkpoint (expected a file written by "
                      f"`fluidgpt fit`; {reason})")


#: What torch.load and a module's constructor raise on a file that is not a checkpoint.
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile,
               AttributeError, KeyError, TypeError, UnicodeDecodeError)


def load_checkpoint(path: str | Path) -> Any:
    """The fluidgpt module of a checkpoint (:func:`fluidgpt.module.load_module`); a file
    that is not one is a ValueError naming it."""
    from .module import load_module

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns of a pickle protocol before it refuses
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            return load_module(str(path))
    except _UNREADABLE as err:
        raise unreadable_checkpoint(path, err) from err
