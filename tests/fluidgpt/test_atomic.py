"""fluidgpt.atomic, the package's one atomic writer: an output appears whole or not at all,
the one it replaces stays until the new one is complete (an error, a failed rename or a
SIGKILL in the middle of writing), an existing output is refused without overwrite; and
the commands and checkpoints go through it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from fluidgpt.atomic import atomic_write, staged
from fluidgpt.checkpoint_io import AtomicCheckpointIO
from fluidgpt.schema import open_dataset

REPO = Path(__file__).resolve().parents[2]


def _store(path: Path, value: float) -> None:
    xr.Dataset({"a": ("x", np.full(4, value)), "b": ("x", np.arange(4.0))}).to_zarr(
        path, mode="w", consolidated=False)


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
    zipped = []
    atomic_write(tmp_path / "d.zarr.zip", lambda tmp: (zipped.append(tmp.name),
                                                       tmp.write_bytes(b"z")))
    assert zipped[0].startswith(".d.zarr.zip.tmp-") and zipped[0].endswith(".zarr.zip")


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

    def failing(src, dst):
        if Path(dst).parent != tmp_path:  # zarr's own renames inside the store
            return replace(src, dst)
        calls.append(Path(src).name)
        if ".tmp-" in Path(src).name:  # the rename of the new output into place
            raise OSError("rename failed")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write(path, lambda tmp: write(tmp, 2.0), overwrite=True)
    monkeypatch.undo()
    assert _tree(path) == before and os.listdir(tmp_path) == [path.name]
    if suffix == ".zarr":  # a folder is moved aside, the second rename fails, it comes back
        assert [c.split("-")[0] for c in calls] == ["out.zarr", ".out.zarr.tmp",
                                                   ".out.zarr.old"]
    else:  # a file is replaced by one rename
        assert len(calls) == 1


def test_staged_outputs_appear_together_or_not_at_all(tmp_path):
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    with pytest.raises(OSError, match="disk full"), ExitStack() as stack:
        for path in paths:
            stack.enter_context(staged(path)).write_text("new")
        assert _visible(tmp_path) == []
        raise OSError("disk full")
    assert os.listdir(tmp_path) == []
    with ExitStack() as stack:
        for path in paths:
            stack.enter_context(staged(path)).write_text("new")
    assert [p.read_text() for p in paths] == ["new", "new"]
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.csv"]


# ------------------------------------------------------------------------ killed writers
#: A process that dies by SIGKILL after writing part of its output into the hidden sibling.
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
import numpy as np, xarray as xr
from fluidgpt.atomic import atomic_write

def half(tmp):
    if tmp.suffix == ".zarr":  # one variable of the store's two
        xr.Dataset({"a": ("x", np.full(4, 2.0))}).to_zarr(tmp, mode="w", consolidated=False)
    else:
        with open(tmp, "w") as f:
            f.write("a,b\\n2")
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(sys.argv[1], half, overwrite=True)
"""


def _run_killed(code: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


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


#: ``fluidgpt dataset import`` (the command's own function) whose store write dies by
#: SIGKILL after the first variable.
KILLED_IMPORT = """
import os, signal, sys
import xarray as xr
from fluidgpt.cli import build_parser

to_zarr = xr.Dataset.to_zarr

def first_variable_then_killed(self, store, *args, **kwargs):
    part = self[list(self.data_vars)[:1]]
    kwargs["encoding"] = {k: v for k, v in (kwargs.get("encoding") or {}).items()
                          if k in part.variables}
    to_zarr(part, store, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

xr.Dataset.to_zarr = first_variable_then_killed
args = build_parser().parse_args(sys.argv[1:])
args.func(args)
"""

MAPPING = """\
columns: {particle: pid, time: t, x: x, y: y, z: z}
conditions:
  run1: {main_inlet_speed: 8.0, side_inlet_speed: 20.0}
  run2: {main_inlet_speed: 12.0, side_inlet_speed: 30.0}
time: {steps: 3, interval: 0.004}
diameter: 5.0e-5
"""


def test_a_dataset_import_killed_while_writing_leaves_the_previous_store(tmp_path):
    from fluidgpt.cli import build_parser

    (tmp_path / "import.yaml").write_text(MAPPING)
    inputs = []
    for n, run in enumerate(("run1", "run2")):
        rows = [f"{pid},{0.004 * k},{0.1 * pid + 0.01 * k + n},0.2,0.3"
                for pid in (1, 2) for k in range(3)]
        (tmp_path / f"{run}.csv").write_text("pid,t,x,y,z\n" + "\n".join(rows) + "\n")
        inputs.append(str(tmp_path / f"{run}.csv"))
    out = tmp_path / "out.zarr"
    argv = ["dataset", "import", *inputs, "--mapping", str(tmp_path / "import.yaml"),
            "--output", str(out)]
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0
    before = _tree(out)
    done = _run_killed(KILLED_IMPORT, *argv, "--overwrite")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _tree(out) == before
    assert _visible(tmp_path) == ["import.yaml", "out.zarr", "run1.csv", "run2.csv"]
    assert open_dataset(out).sizes["case"] == 2


# --------------------------------------------------------------------------- checkpoints
def test_checkpoints_are_saved_whole_and_read_weights_only(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "sub" / "m.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, path)
    before = path.read_bytes()
    save = torch.save

    def half(obj, f):
        save({"w": torch.zeros(1)}, f)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(path.parent) == ["m.ckpt"]
    torch.testing.assert_close(io.load_checkpoint(path)["w"], torch.ones(3))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="m.ckpt: not a fluidgpt checkpoint"):
        io.load_checkpoint(path)


def test_fit_trainer_saves_through_the_atomic_checkpoint_io(tmp_path, mock_ds):
    from fluidgpt.fitcli import FluidCLI
    from fluidgpt.schema import save_dataset

    data = save_dataset(mock_ds, tmp_path / "mock.nc")
    cli = FluidCLI(args=["--config", str(REPO / "experiments" / "fluidgpt" / "fit.yaml"),
                         f"--data.path={data}", f"--output={tmp_path / 'fit'}"], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
