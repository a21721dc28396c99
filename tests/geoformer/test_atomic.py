"""geoformer.atomic, the package's one atomic writer: an output appears whole or not at all,
the one it replaces stays until the new one is complete (an error, a failed rename or a
SIGKILL in the middle of writing), an existing output is refused without overwrite; and a
forecast killed while writing its store leaves the previous one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geoformer.atomic import atomic_write

REPO = Path(__file__).resolve().parents[2]


def _store(path: Path, value: float) -> None:
    xr.Dataset({"a": ("x", np.full(4, value)), "b": ("x", np.arange(4.0))}).to_zarr(
        path, mode="w", zarr_format=2)


def _file(path: Path, value: float) -> None:
    Path(path).write_text(f"a,b\n{value},1\n")


#: kind -> (suffix, write(path, value)): a folder output (zarr) and a file output (CSV)
KINDS = {"folder": (".zarr", _store), "file": (".csv", _file)}


def _tree(path: Path) -> dict[str, bytes]:
    """Every byte of a file or folder output, by relative path."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.fixture(params=sorted(KINDS))
def kind(request) -> tuple[str, object]:
    return KINDS[request.param]


def test_the_writer_sees_a_hidden_sibling_with_the_suffix(tmp_path, kind):
    suffix, write = kind
    seen: list[Path] = []
    path = atomic_write(tmp_path / f"out{suffix}", lambda tmp: (seen.append(tmp),
                                                                write(tmp, 1.0)))
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith(".out") and tmp.suffix == suffix
    assert os.listdir(tmp_path) == [path.name] and _tree(path)


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_writer_that_raises_leaves_nothing_new_and_the_previous_output(tmp_path, kind,
                                                                          error):
    suffix, write = kind
    path = tmp_path / f"out{suffix}"
    write(path, 1.0)
    before = _tree(path)

    def broken(tmp: Path) -> None:
        write(tmp, 2.0)
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, broken, overwrite=True)
    assert _tree(path) == before and os.listdir(tmp_path) == [path.name]
    with pytest.raises(type(error)):
        atomic_write(tmp_path / f"new{suffix}", broken)
    assert os.listdir(tmp_path) == [path.name]


def test_an_existing_output_is_refused_without_overwrite(tmp_path, kind):
    suffix, write = kind
    path = tmp_path / f"out{suffix}"
    write(path, 1.0)
    before, calls = _tree(path), []
    with pytest.raises(FileExistsError, match=f"out{suffix} exists; pass --overwrite"):
        atomic_write(path, calls.append)
    assert calls == [] and _tree(path) == before and os.listdir(tmp_path) == [path.name]
    atomic_write(path, lambda tmp: write(tmp, 2.0), overwrite=True)
    assert _tree(path) != before and os.listdir(tmp_path) == [path.name]


def test_a_failed_final_rename_puts_the_previous_output_back(tmp_path, kind, monkeypatch):
    suffix, write = kind
    path = tmp_path / f"out{suffix}"
    write(path, 1.0)
    before, calls, replace = _tree(path), [], os.replace

    def second_fails(src, dst):
        if Path(dst).parent != tmp_path:  # zarr's own renames inside the store
            return replace(src, dst)
        calls.append(Path(src).name)
        if len(calls) == 2:  # the previous output is aside; the new one goes in
            raise OSError("rename failed")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write(path, lambda tmp: write(tmp, 2.0), overwrite=True)
    monkeypatch.undo()
    assert [c.split("-")[0] for c in calls] == [f"out{suffix}", f".out{suffix}.tmp",
                                               f".out{suffix}.old"]
    assert _tree(path) == before and os.listdir(tmp_path) == [path.name]


# ------------------------------------------------------------------------ killed writers
#: A process that dies by SIGKILL after writing part of its output into the hidden sibling
#: (geoformer/atomic.py loaded alone: the package would import torch first, for seconds).
KILLED_WRITER = """
import importlib.util, os, signal, sys
import numpy as np, xarray as xr

spec = importlib.util.spec_from_file_location("atomic", "geoformer/atomic.py")
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)

def half(tmp):
    if tmp.suffix == ".zarr":  # one variable of the store's two
        xr.Dataset({"a": ("x", np.full(4, 2.0))}).to_zarr(tmp, mode="w", zarr_format=2)
    else:
        with open(tmp, "w") as f:
            f.write("a,b\\n2")
    os.kill(os.getpid(), signal.SIGKILL)

atomic.atomic_write(sys.argv[1], half, overwrite=True)
"""


def _run_killed(code: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_writer_killed_midway_leaves_the_previous_output_byte_identical(tmp_path, kind):
    suffix, write = kind
    path = tmp_path / f"out{suffix}"
    write(path, 1.0)
    before = _tree(path)
    done = _run_killed(KILLED_WRITER, str(path))
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _tree(path) == before and _visible(tmp_path) == [path.name]
    fresh = tmp_path / f"fresh{suffix}"
    assert _run_killed(KILLED_WRITER, str(fresh)).returncode == -signal.SIGKILL
    assert not fresh.exists() and _visible(tmp_path) == [path.name]


#: ``geoformer forecast`` whose store write dies by SIGKILL after the first variable.
KILLED_FORECAST = """
import os, signal, sys
import xarray as xr
from geoformer.cli import main

to_zarr = xr.Dataset.to_zarr

def first_variable_then_killed(self, store, *args, **kwargs):
    first = list(self.data_vars)[:1]
    kwargs["encoding"] = {k: v for k, v in (kwargs.get("encoding") or {}).items()
                          if k in first}
    to_zarr(self[first], store, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

xr.Dataset.to_zarr = first_variable_then_killed
sys.exit(main(sys.argv[1:]))
"""


def test_a_forecast_killed_while_writing_leaves_the_previous_store(tmp_path):
    import lightning as L

    from geoformer.cli import main
    from tests.conftest import mock_era5, tiny_module

    ds = mock_era5(n_time=4)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(tiny_module(ds, 6))
    trainer.save_checkpoint(tmp_path / "m6.ckpt")
    ds.to_zarr(tmp_path / "data.zarr")
    out = tmp_path / "fc.zarr"
    argv = ["forecast", "--checkpoint", str(tmp_path / "m6.ckpt"), "--input",
            str(tmp_path / "data.zarr"), "--init", str(ds.time.values[0]), "--lead-time",
            "12h", "--every", "6h", "--output", str(out)]
    assert main(argv) == 0
    before = _tree(out)
    done = _run_killed(KILLED_FORECAST, *argv, "--overwrite")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _tree(out) == before
    assert _visible(tmp_path) == ["data.zarr", "fc.zarr", "m6.ckpt"]
    assert xr.open_zarr(out).sizes["prediction_timedelta"] == 2
