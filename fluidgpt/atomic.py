"""The package's one atomic writer: every file or folder fluidgpt writes (datasets,
predictions, score tables, figures, wall maps, checkpoints) appears whole at its path or
not at all, and an output it replaces stays in place until the new one is complete.

:func:`atomic_write` writes one output; :func:`staged` is the same step as a context
manager, so that several outputs (a prediction and its wall maps) are written first and
renamed into place together. A process killed while writing leaves the previous output
(or none) at the path and, at worst, a hidden ``.NAME.tmp-*`` sibling beside it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "staged"]


def atomic_write(path: str | Path, write: Callable[[Path], Any], overwrite: bool = False
                 ) -> Path:
    """``write(tmp)`` a file or folder (zarr, netCDF, CSV, PNG, VTU, checkpoint), then rename
    it to ``path``: a failure leaves nothing new and the previous output intact. ``tmp``, a
    hidden sibling, keeps the suffix (writers choose the format by it); an existing
    ``path`` is refused unless ``overwrite``. Returns ``path``."""
    with staged(path, overwrite) as tmp:
        write(tmp)
    return Path(path)


@contextmanager
def staged(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """The hidden sibling to write ``path`` into; it replaces ``path`` when the block ends
    without an error and is removed whatever happens. An existing ``path`` is refused (a
    FileExistsError naming it) unless ``overwrite``."""
    path = Path(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        _replace(tmp, path)
    finally:
        _remove(tmp)


def _sibling(path: Path, role: str) -> Path:
    # A zipped zarr store is told apart from a plain zip by both suffixes.
    suffix = ".zarr.zip" if path.name.lower().endswith(".zarr.zip") else path.suffix
    return path.with_name(f".{path.name}.{role}-{uuid.uuid4().hex[:8]}{suffix}")


def _replace(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path``. A file over a file is one rename, atomic on POSIX; a folder
    cannot be renamed over, so the previous output is moved aside first and put back if
    the second rename fails."""
    if not os.path.lexists(path) or (path.is_file() and tmp.is_file()):
        os.replace(tmp, path)
        return
    old = _sibling(path, "old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
