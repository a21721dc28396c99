"""Bad input as one line: how the ``geoformer`` commands report what they refuse.

A bad input (a missing, corrupted or truncated file, a wrong key or value, an output that
exists) ends with one line on stderr that names the file or key, what was expected and
what was found, and exit status 2; ``--debug`` shows the traceback instead. Read errors
deep inside xarray's backends (a zarr chunk of garbage, a netCDF cut short) are recognised
by the backend array they came through, which names the file and the variable.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ReadError", "BAD_INPUT", "OneLineParser", "read_error", "naming", "read_yaml",
           "yaml_configs", "refuse_existing", "grib_log", "guarded"]


class ReadError(ValueError):
    """A data file whose contents cannot be read (corrupted or truncated); names the file."""


#: What a command reports as one line (exit 2) instead of a traceback.
BAD_INPUT = (ValueError, OSError, KeyError, EOFError, yaml.YAMLError)


class OneLineParser(argparse.ArgumentParser):
    """argparse with the one-line error policy: ``prog: message`` on stderr, exit 2, no usage
    block (``--help`` still shows it). Subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}\n")


def _backend_array(err: BaseException) -> Any:
    """The xarray backend array (zarr, netCDF, GRIB) whose read raised ``err``, if any."""
    from xarray.backends.common import BackendArray

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, BackendArray):
                return owner
            tb = tb.tb_next
        err = err.__cause__ or err.__context__
    return None


def _source(array: Any) -> tuple[str, str | None]:
    """(file, variable) of a backend array, as far as its backend tells (zarr, netCDF4,
    cfgrib)."""
    zarr_array = getattr(array, "_array", None)
    root = getattr(getattr(getattr(zarr_array, "store_path", None), "store", None), "root",
                   None)
    if root is not None:
        return str(root), getattr(zarr_array, "path", None)
    store = getattr(array, "datastore", None)
    grib = getattr(getattr(getattr(array, "array", None), "index", None), "fieldset", None)
    name = (getattr(store, "_filename", None)
            or getattr(getattr(store, "ds", None), "filename", None)
            or getattr(grib, "path", None))  # cfgrib: the file its message index reads
    return str(name or "a data file"), getattr(array, "variable_name", None)


def read_error(err: BaseException) -> ReadError | None:
    """``err`` as a ReadError naming the file and variable when it was raised while xarray
    read data from a file (decompression, a short read); None otherwise."""
    if isinstance(err, ReadError):
        return None
    array = _backend_array(err)
    if array is None:
        return None
    path, variable = _source(array)
    what = f"variable {variable!r}" if variable else "its data"
    text = " ".join(str(err).split())[:160]
    found = f"{type(err).__name__}{': ' + text if text else ''}"
    out = ReadError(f"{path}: could not read {what} ({found}); expected readable data: the "
                    "file looks corrupted or truncated")
    out.__cause__ = err
    return out


@contextmanager
def naming(path: str | Path | None, *types: type[Exception]) -> Iterator[None]:
    """Errors of ``types`` raised inside that do not name ``path`` get it as a prefix."""
    try:
        yield
    except types as err:
        if path is None or str(path) in str(err):
            raise
        raise type(err)(f"{path}: {err}") from err


def read_yaml(path: str | Path) -> Any:
    """The contents of a YAML file; an unreadable or unparsable one is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such YAML file: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: expected a YAML text file, found binary data") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ValueError(f"{path}: not valid YAML{where} ({problem})") from err


def yaml_configs(argv: list[str]) -> None:
    """Parse every ``--config FILE`` of a command line first, so that a broken file is named
    (jsonargparse says only 'Problems parsing config')."""
    for i, arg in enumerate(argv):
        value = arg.partition("=")[2] if arg.startswith("--config=") else (
            argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None)
        if value and Path(value).is_file():
            read_yaml(value)


def refuse_existing(*paths: str | Path | None, overwrite: bool) -> None:
    """An existing output is refused, before any work, unless ``overwrite``."""
    for path in paths:
        if path and Path(path).exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


class _Records(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        if "corrupted" in record.getMessage():
            self.messages.append(record.getMessage())


@contextmanager
def grib_log() -> Iterator[list[str]]:
    """cfgrib's log while a GRIB file opens, kept off stderr (it logs a traceback per message
    it skips); yields the list of skipped (corrupted or truncated) messages."""
    logger, messages = logging.getLogger("cfgrib"), []
    handler, propagate = _Records(messages), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def guarded(run: Callable[[], int], prog: str, debug: bool = False) -> int:
    """``run()``; a bad input is one line ``prog: message`` on stderr and exit status 2 (with
    ``debug``: the traceback instead)."""
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    try:
        return run()
    except SystemExit as stop:  # --help, or a parse error already printed as one line
        return stop.code if isinstance(stop.code, int) else 0
    except Exception as err:
        bad = read_error(err) or err
        if debug or not isinstance(bad, BAD_INPUT):
            if bad is err:
                raise
            raise bad from err
        message = bad.args[0] if isinstance(bad, KeyError) and bad.args else bad
        print(f"{prog}: {' '.join(_without_worker_traceback(str(message)).split())}",
              file=sys.stderr)
        return 2


def _without_worker_traceback(text: str) -> str:
    """The message of an error raised in a DataLoader worker: torch re-raises it in the main
    process as "Caught X in DataLoader worker process N. Original Traceback (...): ...",
    whose last line is the original ``module.X: message``."""
    if "Original Traceback (most recent call last):" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    return re.sub(r"^[\w.]+(Error|Exception): ", "", last.strip())


def whole_netcdf(path: str) -> str:
    """``path``, refused (ValueError naming it) if it is a classic netCDF file (CDF-1 or
    CDF-2) cut short. netCDF-C reads such a file with zeros where the data is missing, a
    silent wrong result; scipy's reader of the classic format compares the extent its header
    describes with the file's size. Other files (netCDF-4, zarr, remote) pass unread."""
    file = Path(path)
    if not file.is_file():
        return path
    with open(file, "rb") as f:
        magic = f.read(4)
    if magic not in (b"CDF\x01", b"CDF\x02"):
        return path
    from scipy.io import netcdf_file  # scipy comes with scikit-learn

    try:
        with netcdf_file(file, mmap=True):
            pass
    except Exception as err:
        raise ValueError(f"{path}: a classic netCDF file whose header describes more data "
                         f"than the file holds (truncated or corrupted: {err})") from err
    return path
