"""Loading a checkpoint for a command: a file that is not a fluidgpt checkpoint is one line.

Every checkpoint is read with ``torch.load(weights_only=True)``, which refuses a pickled
Python object (a payload) without running it; what torch and the module raise on a file
that is not a checkpoint (random bytes, a truncated file, another package's checkpoint) is
turned into a ValueError that names the file.

Every checkpoint says which layout it has (``format_version`` in its dict, written by the
modules' ``on_save_checkpoint``); :func:`read_checkpoint`, the one ``torch.load`` of the
package, refuses a version this release does not read.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["load_checkpoint", "read_checkpoint", "unreadable_checkpoint",
           "check_format_version", "FORMAT_VERSION"]

#: The checkpoint layout this release writes and reads (``format_version`` in the dict).
FORMAT_VERSION = 1


def check_format_version(found: Any, path: str | Path) -> int:
    """The format version of a checkpoint, or a ValueError naming ``path`` if this release
    does not read it.

    Checkpoints written before versioning carry none (``found`` None). Their layout is
    version 1's (older state-dict names are still renamed by ``module._migrate``), so they
    are read as version 1. A later layout change bumps the version and, to keep reading
    older files (unversioned ones included, as version 1), migrates them here.
    """
    if found is None:
        return 1
    if isinstance(found, bool) or not isinstance(found, int):
        raise ValueError(f"{path}: checkpoint format version {found!r} is not an integer; "
                         f"this release reads version {FORMAT_VERSION}")
    if found != FORMAT_VERSION:
        newer = "; a newer release wrote it" if found > FORMAT_VERSION else ""
        raise ValueError(f"{path}: checkpoint format version {found}; this release reads "
                         f"version {FORMAT_VERSION}{newer}")
    return found


def unreadable_checkpoint(path: str | Path, err: BaseException) -> ValueError:
    """The one-line error of a file that torch.load (weights_only) or the module refused."""
    text = str(err)
    payload = re.search(r"GLOBAL ([\w.]+)", text)
    if payload:  # weights_only never runs it: the unpickler stops at the first global
        return ValueError(f"{path}: not a fluidgpt checkpoint: it holds a Python object "
                          f"({payload.group(1)}), refused unread (checkpoints load with "
                          "weights_only=True)")
    if isinstance(err, (EOFError, OSError)):  # torch's zip reader: OSError on a cut file
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
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile,
               AttributeError, KeyError, TypeError, UnicodeDecodeError)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The dict of a checkpoint, read with ``torch.load(weights_only=True)``, its format
    version checked; a file that torch refuses is a ValueError naming it."""
    import torch

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns of a pickle protocol before it refuses
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except _UNREADABLE as err:
        raise unreadable_checkpoint(path, err) from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a fluidgpt checkpoint (expected a file written by "
                         f"`fluidgpt fit`; found a {type(ckpt).__name__})")
    if any(str(k).startswith("fluidgpt_") for k in ckpt):
        # only ours: another package's file is refused by its kind (load_module), whatever
        # version it carries
        check_format_version(ckpt.get("format_version"), path)
    return ckpt


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
