"""A seeded fuzz of the readers: small valid files, corrupted (bit flips, truncation, random
bytes inserted, lines deleted), read through the functions the command lines call.

The contract is the bad-input policy of both packages: a corrupted input either still reads
or raises one of our errors -- a ValueError (not a raw UnicodeError) or an OSError -- whose
message names the file (for a config, the file or one of its keys). Never a KeyError,
IndexError, struct.error, UnicodeDecodeError or any other raw exception, and never a crash.

netCDF, GRIB and Parquet are decoded by C and C++ libraries, so they are read by a child
process, each read in a fork of it with a time limit: a segfault, an abort or a hang fails
the test and names the seed, and every read starts from the same state (one corrupted file
must not decide whether a later read crashes). Every failure names the target, the seed and
the corruption; rerun one with ``reproduce(target, seed)``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GFS = ROOT / "tests" / "data" / "gfs" / "gfs-2p5deg-f120-subset.grib2"
TINY_CASE = ROOT / "tests" / "fluidgpt" / "data" / "openfoam_case_tiny"
SEEDS = tuple(range(24))  # of the corruption tests; a target sets how many seeds it reads
KINDS = ("bit flips", "truncation", "insertion", "deleted lines")
CASE_TIMEOUT_S = 30  # one read; a hang fails the seed instead of the whole run


# --------------------------------------------------------------------------- corruptions
def corrupt(data: bytes, seed: int, text: bool = False) -> tuple[bytes, str]:
    """``data`` corrupted in the way of ``seed`` (the kinds take turns); and a description.

    text: flip only the low 7 bits and insert printable ASCII, so that a text file stays
    text and the corruption reaches the parser behind the decoding.
    """
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    if not data:
        return b"\0", "a zero byte for an empty file"
    if kind == "bit flips":
        at = sorted(rng.integers(0, len(data), int(rng.integers(1, 9))).tolist())
        out = bytearray(data)
        for i in at:
            out[i] ^= 1 << int(rng.integers(0, 7 if text else 8))
        return bytes(out), f"bits flipped at bytes {at}"
    if kind == "truncation":
        cut = int(rng.integers(0, len(data)))
        return data[:cut], f"truncated to {cut} of {len(data)} bytes"
    if kind == "insertion":
        at, n = int(rng.integers(0, len(data) + 1)), int(rng.integers(1, 17))
        extra = bytes(rng.integers(32, 127, n).tolist()) if text else rng.bytes(n)
        return data[:at] + extra + data[at:], f"inserted {len(extra)} random bytes at {at}"
    lines = data.split(b"\n")
    drop = sorted(rng.choice(len(lines), min(len(lines), int(rng.integers(1, 4))),
                             replace=False).tolist())
    return b"\n".join(x for i, x in enumerate(lines) if i not in drop), f"deleted lines {drop}"


def broken(err: BaseException | None, names: tuple[str, ...]) -> str | None:
    """How ``err`` breaks the bad-input policy (None: no error, or one of ours that names
    one of ``names``)."""
    if err is None:
        return None
    kind = f"{type(err).__module__}.{type(err).__qualname__}"
    text = " ".join(str(err).split())
    if isinstance(err, UnicodeError) or not isinstance(err, (ValueError, OSError)):
        return f"raw {kind}: {text[:200]}"
    if not any(name in text for name in names):
        return f"{kind} that names none of {list(names)[:3]}: {text[:200]}"
    return None


# --------------------------------------------------------------------------- the targets
@dataclass(frozen=True)
class Target:
    """A valid input, how to read it, and which of its files a seed corrupts.

    make(folder) writes the valid input (a file, a store or a folder of files) and returns
    it; read(path) is what a command does with such an input; an error must name the
    corrupted input (its path or name) or, where keys(valid input) gives some, one of them.
    """

    make: Callable[[Path], Path]
    read: Callable[[Path], object]
    keys: Callable[[Path], tuple[str, ...]] = lambda valid: ()
    child: bool = False  # read in a child process (C decoders that may crash)
    metadata: tuple[str, ...] = ()  # globs of the files hit on every third seed (metadata)
    pool: tuple[str, ...] = ("**/*",)  # globs of the files inside a store or folder to hit
    seeds: int = 24
    text: bool = False  # a text format: every other round of seeds keeps the bytes text


def _files(root: Path, target: Target, seed: int) -> Path:
    """The file of ``root`` (itself, or one inside a store or folder) that ``seed`` hits."""
    if root.is_file():
        return root
    files = sorted({p for pattern in target.pool for p in root.glob(pattern) if p.is_file()})
    meta = sorted({p for pattern in target.metadata for p in root.glob(pattern)} & set(files))
    pool = meta if meta and seed % 3 == 0 else [p for p in files if p not in meta] or files
    return pool[int(np.random.default_rng(seed + 1000).integers(len(pool)))]


# --- data files: zarr, netCDF, GRIB
def _geoformer_read(path: Path) -> None:
    """``geoformer dataset convert`` / ``forecast``: open_dataset and the read of the data;
    a backend's read error becomes the ReadError the command line reports."""
    from geoformer.errors import read_error
    from geoformer.schema import open_dataset

    try:
        open_dataset(path).load()
    except Exception as err:
        raise (read_error(err) or err) from err


def _mock_era5():
    from tests.conftest import mock_era5

    return mock_era5(n_time=2, grid=(4, 8), levels=(1000, 500))


def _geoformer_zarr(version: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        _mock_era5().to_zarr(folder / f"era5-v{version}.zarr", zarr_format=version)
        return folder / f"era5-v{version}.zarr"
    return make


def _geoformer_netcdf(folder: Path) -> Path:
    ds = _mock_era5()
    ds.to_netcdf(folder / "era5.nc", engine="netcdf4",
                 encoding={v: {"zlib": True} for v in ds.data_vars})
    return folder / "era5.nc"


def _geoformer_netcdf3(folder: Path) -> Path:
    """The classic format: no checksums, so a corruption reaches netCDF's own parser."""
    _mock_era5().to_netcdf(folder / "era5-classic.nc", format="NETCDF3_64BIT")
    return folder / "era5-classic.nc"


def _gfs_grib(folder: Path) -> Path:
    """Three messages of the GFS excerpt: t at 500 and 850 hPa and prmsl (two hypercubes)."""
    data, messages, i = GFS.read_bytes(), [], 0
    while (i := data.find(b"GRIB", i)) >= 0:
        n = struct.unpack(">Q", data[i + 8:i + 16])[0]  # GRIB2 section 0: total length
        messages.append(data[i:i + n])
        i += n
    (folder / "gfs.grib2").write_bytes(messages[1] + messages[5] + messages[12])
    return folder / "gfs.grib2"


def _fluidgpt_dataset(suffix: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        from fluidgpt.schema import save_dataset
        from tests.fluidgpt.conftest import mock_trajectories

        grid = {"main_inlet_speed": (6.0, 12.0), "side_inlet_speed": (15.0,),
                "particle_diameter": (5e-5,), "particle_density": (2650.0,),
                "restitution": (0.9,)}
        ds = mock_trajectories(n_particles=2, n_steps=4, n_faces=3, grid=grid)
        return save_dataset(ds, folder / f"tracks{suffix}")
    return make


def _fluidgpt_read(path: Path) -> None:
    """``fluidgpt fit`` / ``evaluate``: the canonical dataset, loaded and validated."""
    from fluidgpt.data import load_dataset

    load_dataset(path)


# --- OpenFOAM cases and track tables
def _foam_case(folder: Path) -> Path:
    shutil.copytree(TINY_CASE, folder / "openfoam_case")
    return folder / "openfoam_case"


def _foam_tracks(case: Path) -> None:
    """What ``fluidgpt dataset build`` / ``import`` read of a case's clouds: the tracks."""
    from fluidgpt.readers import read_tracks

    read_tracks(case)


def _foam_walls(case: Path) -> None:
    """... and of its mesh and fields: the wall faces (and their cross-check from the cell
    centres C) and the eroded volume."""
    from fluidgpt.readers import read_cell_centre_boundary, read_eroded_volume, read_wall_faces

    read_wall_faces(case)
    read_cell_centre_boundary(case, 0)
    read_eroded_volume(case, 0.04)


TRACK_COLUMNS = {"case": "Run", "particle": "Particle ID", "time": "Time [s]", "x": "X [mm]",
                 "y": "Y [mm]", "z": "Z [mm]", "u": "U [m/s]", "v": "V [m/s]",
                 "w": "W [m/s]"}


def _track_tables(folder: Path) -> Path:
    """tracks.csv (two runs of two particles, three samples each) and cases.csv."""
    root = folder / "track_tables"
    root.mkdir()
    rows = ["Run,Particle ID,Time [s],X [mm],Y [mm],Z [mm],U [m/s],V [m/s],W [m/s]"]
    rows += [f"{run},{p},{0.01 * k:.2f},{10.0 * k + p + 100.0 * i},{2.0 * k},5.0,1.0,0.2,0"
             for i, run in enumerate("ab") for p in (1, 2) for k in range(3)]
    (root / "tracks.csv").write_text("\n".join(rows) + "\n")
    (root / "cases.csv").write_text("case,main_inlet_speed,restitution\na,8.0,0.8\n"
                                    "b,12.0,0.9\n")
    return root


def _tables_read(root: Path) -> None:
    """``fluidgpt dataset table``: the track table and its conditions on a time grid."""
    from fluidgpt.readers import table_dataset, uniform_times

    table_dataset(root / "tracks.csv", TRACK_COLUMNS, root / "cases.csv",
                  uniform_times(3, 0.01), diameter=5e-5)


def _parquet_table(folder: Path) -> Path:
    import pandas as pd

    root = _track_tables(folder)
    pd.read_csv(root / "tracks.csv").to_parquet(root / "tracks.parquet", index=False)
    (root / "tracks.csv").unlink()
    return root


def _parquet_read(root: Path) -> None:
    from fluidgpt.readers import table_dataset, uniform_times

    table_dataset(root / "tracks.parquet", TRACK_COLUMNS, root / "cases.csv",
                  uniform_times(3, 0.01), diameter=5e-5)


# --- YAML recipes and configs
def _copy(source: Path) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        shutil.copy(source, folder / source.name)
        return folder / source.name
    return make


def _yaml_keys(valid: Path) -> tuple[str, ...]:
    """Every key of the valid YAML file: a config error may name its key, not the file."""
    import yaml

    def keys(value) -> list[str]:
        if isinstance(value, dict):
            return [str(k) for k in value] + [k for v in value.values() for k in keys(v)]
        if isinstance(value, list):
            return [k for v in value for k in keys(v)]
        return []

    return tuple(dict.fromkeys(keys(yaml.safe_load(valid.read_text()))))


def _held_suarez_read(path: Path) -> None:
    """``geoformer dataset held-suarez --recipe``: the YAML, then the recipe's checks (run
    before any simulation)."""
    from geoformer.config import ConfigError
    from geoformer.errors import read_yaml
    from geoformer.sources.held_suarez.recipe import recipe_hash, resolve_recipe

    recipe = read_yaml(path)
    if recipe is not None and not isinstance(recipe, dict):
        raise ConfigError(f"{path}: expected a mapping of recipe keys, found a "
                          f"{type(recipe).__name__}")
    recipe_hash(resolve_recipe(recipe))


def _elbow_read(path: Path) -> None:
    """``fluidgpt dataset build --recipe``: the recipe, checked before OpenFOAM runs."""
    from fluidgpt.sources.recipe import load_recipe

    load_recipe(path)


def _experiment_read(path: Path) -> None:
    """``fluidgpt compare --config``: the experiment, every key and type checked."""
    from fluidgpt.compare.config import load_experiment

    load_experiment(path)


# --- checkpoints
def _save(module, path: Path) -> Path:
    import lightning as L

    trainer = L.Trainer(logger=False, enable_progress_bar=False, max_epochs=0,
                        enable_checkpointing=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def _geoformer_checkpoint(folder: Path) -> Path:
    from tests.conftest import mock_era5, tiny_module

    return _save(tiny_module(mock_era5(n_time=2), 6), folder / "geo.ckpt")


def _geoformer_checkpoint_read(path: Path) -> None:
    """``geoformer forecast --checkpoint``: the module rebuilt from the checkpoint."""
    from geoformer.module import load_module

    load_module(path)


def _fluidgpt_checkpoint(folder: Path) -> Path:
    from fluidgpt.config import TrainConfig
    from fluidgpt.module import GPTModule
    from tests.fluidgpt.factories import K, gpt_config

    module = GPTModule(gpt_config(), TrainConfig.from_preset("fluidgpt"),
                       {"positions": 3, "conditions": K})
    return _save(module, folder / "gpt.ckpt")


def _fluidgpt_checkpoint_read(path: Path) -> None:
    """``fluidgpt predict`` / ``evaluate --checkpoint``: the module of the checkpoint."""
    from fluidgpt.checkpoints import load_checkpoint

    load_checkpoint(path)


def _crash_drill(path: Path) -> None:
    """A reader that segfaults on a file holding b"crash" (tests the child's watch)."""
    if path.read_bytes() == b"crash":
        import ctypes

        ctypes.string_at(0)


TARGETS: dict[str, Target] = {
    "openfoam-tracks": Target(_foam_case, _foam_tracks, pool=("*/lagrangian/*/*",),
                              metadata=("*/lagrangian/*/positions",), seeds=32, text=True),
    "openfoam-mesh": Target(_foam_case, _foam_walls, seeds=32, text=True,
                            pool=("constant/polyMesh/*", "0/C", "0.04/kinematicCloudQ"),
                            metadata=("constant/polyMesh/boundary",)),
    "track-csv": Target(_track_tables, _tables_read, metadata=("cases.csv",), seeds=40,
                        text=True),
    "held-suarez-recipe": Target(_copy(ROOT / "datasets" / "held_suarez" / "recipe.yaml"),
                                 _held_suarez_read, keys=_yaml_keys, seeds=32, text=True),
    "elbow-recipe": Target(_copy(ROOT / "datasets" / "elbow_erosion" / "recipe.yaml"),
                           _elbow_read, keys=_yaml_keys, seeds=32, text=True),
    "fluidgpt-experiment": Target(_copy(ROOT / "experiments" / "fluidgpt" / "compare.yaml"),
                                  _experiment_read, keys=_yaml_keys, text=True),
    "geoformer-checkpoint": Target(_geoformer_checkpoint, _geoformer_checkpoint_read),
    "fluidgpt-checkpoint": Target(_fluidgpt_checkpoint, _fluidgpt_checkpoint_read),
    # the geoformer stores hold consolidated metadata, which is what a reader reads
    "geoformer-zarr-v2": Target(_geoformer_zarr(2), _geoformer_read,
                                metadata=(".zmetadata", ".zattrs")),
    "geoformer-zarr-v3": Target(_geoformer_zarr(3), _geoformer_read, metadata=("zarr.json",)),
    "fluidgpt-zarr": Target(_fluidgpt_dataset(".zarr"), _fluidgpt_read,
                            metadata=("zarr.json", "*/zarr.json")),
    "geoformer-netcdf": Target(_geoformer_netcdf, _geoformer_read, child=True),
    "geoformer-netcdf3": Target(_geoformer_netcdf3, _geoformer_read, child=True),
    "fluidgpt-netcdf": Target(_fluidgpt_dataset(".nc"), _fluidgpt_read, child=True),
    "gfs-grib": Target(_gfs_grib, _geoformer_read, child=True),
    "track-parquet": Target(_parquet_table, _parquet_read, child=True,
                            metadata=("cases.csv",)),
    "crash-drill": Target(lambda folder: folder, _crash_drill, child=True),  # not fuzzed
}
FUZZED = [name for name in TARGETS if name != "crash-drill"]


# ---------------------------------------------------------------------------- the runs
class Hang(BaseException):
    """A read that did not answer in time (not an Exception: no reader may catch it)."""


def attempt(read: Callable[[Path], object], path: Path) -> BaseException | None:
    """The exception ``read(path)`` raises (None if it returns), within CASE_TIMEOUT_S."""
    def stop(signum, frame):
        raise Hang(f"no answer in {CASE_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        read(path)
    except Exception as err:
        return err
    except Hang as err:
        return err
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return None


def outcome(name: str, seed: int, path: Path, keys: tuple[str, ...]) -> dict:
    """Read one corrupted input: {"seed", "raised" (the error's type or None), "problem"}."""
    err = attempt(TARGETS[name].read, path)
    problem = (f"hang: {err}" if isinstance(err, Hang) else
               broken(err, (str(path), path.name, *keys)))
    return {"seed": seed, "raised": type(err).__name__ if err else None, "problem": problem}


def corrupted_copies(name: str, valid: Path, folder: Path) -> list[tuple[int, Path, str]]:
    """A corrupted copy of the valid input for every seed: (seed, copy, what was done)."""
    out = []
    for seed in range(TARGETS[name].seeds):
        copy = folder / f"seed-{seed}" / valid.name
        copy.parent.mkdir(parents=True)
        (shutil.copytree if valid.is_dir() else shutil.copy)(valid, copy)
        victim = _files(copy, TARGETS[name], seed)
        text = TARGETS[name].text and (seed // len(KINDS)) % 2 == 0
        data, what = corrupt(victim.read_bytes(), seed, text)
        victim.write_bytes(data)
        out.append((seed, copy, f"{victim.relative_to(copy.parent)}: {what}"))
    return out


def _forked(name: str, seed: int, path: Path, keys: tuple[str, ...]) -> dict:
    """:func:`outcome` in a fork of this process, so that every read starts from the same
    state and a crash or a hang ends the fork, not the run."""
    out, into = os.pipe()
    pid = os.fork()
    if pid == 0:  # the fork: read, report, and leave without any clean-up of the parent's
        os.close(out)
        try:
            os.write(into, json.dumps(outcome(name, seed, path, keys)).encode())
        finally:
            os._exit(0)
    os.close(into)
    deadline, status = time.monotonic() + CASE_TIMEOUT_S + 10, None
    while time.monotonic() < deadline:
        ended, code = os.waitpid(pid, os.WNOHANG)
        if ended:
            status = code
            break
        time.sleep(0.005)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with os.fdopen(out, "rb") as pipe:
        report = pipe.read()
    if status is not None and os.WIFEXITED(status) and report:
        return json.loads(report)
    why = ("no answer in time" if status is None else
           f"killed by {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
           else f"exit status {os.WEXITSTATUS(status)}")
    return {"seed": seed, "raised": None, "problem": f"crash: {why}"}


def _worker() -> None:
    """The child process: read each target's valid input once (the decoders load), then
    every [target, seed, path, keys] job in a fork of itself; one JSON line per job."""
    spec = json.loads(sys.stdin.read())
    for name, path in spec["warm"].items():
        attempt(TARGETS[name].read, Path(path))
    for name, seed, path, keys in spec["jobs"]:
        print(json.dumps({"target": name, **_forked(name, seed, Path(path), tuple(keys))}),
              flush=True)


def in_child(jobs: list, warm: dict[str, str] | None = None,
             timeout: float = 300.0) -> list[dict]:
    """:func:`outcome` (and "target") of every [target, seed, path, keys] job, read by a
    child process (each read in a fork of it) after reading the valid inputs ``warm``
    ({target: path}); a job the child did not answer is a failure saying why."""
    command = [sys.executable, "-c", "from tests.test_fuzz import _worker; _worker()"]
    spec = json.dumps({"warm": warm or {}, "jobs": jobs}).encode()
    try:
        run = subprocess.run(command, input=spec, capture_output=True, timeout=timeout,
                             cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        out, err, code = run.stdout, run.stderr, run.returncode
    except subprocess.TimeoutExpired as stopped:
        out, err, code = stopped.stdout or b"", stopped.stderr or b"", None
    results = [json.loads(x) for x in out.decode(errors="replace").splitlines()
               if x.startswith("{")]
    answered = {(r["target"], r["seed"]) for r in results}
    why = ("no answer in time" if code is None else f"exit status {code}: "
           f"{err.decode(errors='replace').strip()[-300:]}")
    return results + [{"target": name, "seed": seed, "raised": None,
                       "problem": f"the child failed: {why}"}
                      for name, seed, _, _ in jobs if (name, seed) not in answered]


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Callable[[str], Path]:
    """The valid input of a target, made on first use (once per module)."""
    folder, made = tmp_path_factory.mktemp("valid"), {}

    def get(name: str) -> Path:
        if name not in made:
            (folder / name).mkdir()
            made[name] = TARGETS[name].make(folder / name)
        return made[name]
    return get


def _report(name: str, results: list[dict], done: dict[int, str]) -> None:
    problems = [f"seed {r['seed']} ({done[r['seed']]}): {r['problem']}" for r in
                sorted(results, key=lambda r: r["seed"]) if r["problem"]]
    assert not problems, (
        f"{name}: {len(problems)} of {len(results)} corrupted inputs break the bad-input policy "
        f"(rerun one with tests.test_fuzz.reproduce({name!r}, seed)):\n" + "\n".join(problems))
    assert any(r["raised"] for r in results), f"{name}: no corruption was noticed at all"


def _checked(name: str, valid: Callable[[str], Path]) -> Path:
    source = valid(name)
    assert attempt(TARGETS[name].read, source) is None, f"{name}: the valid input does not read"
    return source


SLOW = {"geoformer-checkpoint", "fluidgpt-checkpoint", "fluidgpt-experiment", "elbow-recipe"}
IN_PROCESS = [name for name in FUZZED if not TARGETS[name].child]
IN_CHILD = [name for name in FUZZED if TARGETS[name].child]


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in IN_PROCESS])
def test_corrupted_inputs_raise_only_our_errors_naming_the_file(name, valid, tmp_path):
    source = _checked(name, valid)
    keys = TARGETS[name].keys(source)
    copies = corrupted_copies(name, source, tmp_path)
    _report(name, [outcome(name, seed, path, keys) for seed, path, _ in copies],
            {seed: what for seed, _, what in copies})


@pytest.fixture(scope="module")
def child_runs(valid, tmp_path_factory) -> dict[str, tuple[list[dict], dict[int, str]]]:
    """Every target decoded in C, fuzzed in one child process (the libraries load once):
    name -> (the outcomes, what was done for each seed)."""
    folder, jobs, done = tmp_path_factory.mktemp("child"), [], {}
    for name in IN_CHILD:
        source = _checked(name, valid)
        copies = corrupted_copies(name, source, folder / name)
        done[name] = {seed: what for seed, _, what in copies}
        keys = list(TARGETS[name].keys(source))
        jobs += [[name, seed, str(path), keys] for seed, path, _ in copies]
    results = in_child(jobs, {name: str(valid(name)) for name in IN_CHILD})
    return {name: ([r for r in results if r["target"] == name], done[name])
            for name in IN_CHILD}


@pytest.mark.slow
@pytest.mark.parametrize("name", IN_CHILD)
def test_inputs_decoded_in_c_neither_crash_nor_raise_raw_errors(name, child_runs):
    _report(name, *child_runs[name])


def test_a_crash_in_the_child_fails_the_seed_it_was_reading_and_the_rest_go_on(tmp_path):
    jobs = []
    for seed, data in enumerate([b"fine", b"crash", b"fine"]):
        (tmp_path / f"{seed}.bin").write_bytes(data)
        jobs.append(["crash-drill", seed, str(tmp_path / f"{seed}.bin"), []])
    problems = {r["seed"]: r["problem"] for r in in_child(jobs)}
    assert problems == {0: None, 1: "crash: killed by SIGSEGV", 2: None}


# ------------------------------------------------------ what the fuzz found, kept fixed
def _faces_with_a_letter(tmp: Path) -> Path:
    case = _foam_case(tmp)
    faces = case / "constant" / "polyMesh" / "faces"
    faces.write_text(faces.read_text().replace("4(1 8 43 36)", "4(1 8x 43 36)", 1))
    return case


def _binary_recipe(tmp: Path) -> Path:
    (tmp / "recipe.yaml").write_bytes(b"name: elbow\n\xff\xfe\n")
    return tmp / "recipe.yaml"


def _broken_recipe(tmp: Path) -> Path:
    (tmp / "recipe.yaml").write_text("name: elbow\nconditions: {speed: [1, 2}\n")
    return tmp / "recipe.yaml"


def _checkpoint_cut_in_its_directory(tmp: Path) -> Path:
    import torch

    torch.save({"fluidgpt_module": "gpt", "state_dict": {"w": torch.zeros(100)}},
               tmp / "cut.ckpt")
    data = (tmp / "cut.ckpt").read_bytes()
    (tmp / "cut.ckpt").write_bytes(data[:-10])  # torch's reader: OSError, no file name
    return tmp / "cut.ckpt"


def _zarr_chunk_of_garbage(tmp: Path) -> Path:
    store = _fluidgpt_dataset(".zarr")(tmp)
    (store / "position" / "c" / "0" / "0" / "0" / "0").write_bytes(b"garbage" * 8)
    return store


def _recipe_with_a_bad_date(tmp: Path) -> Path:
    (tmp / "recipe.yaml").write_text('start: "2000-01-01T004dr"\n')
    return tmp / "recipe.yaml"


def _grib_that_does_not_decode(tmp: Path) -> Path:
    path = _gfs_grib(tmp)
    path.write_bytes(corrupt(path.read_bytes(), 0)[0])  # opens, then fails to decode
    return path


FOUND = {  # name: (make the input, read it, what the message must say)
    "face label with a letter": (_faces_with_a_letter, _foam_walls,
                                 "faces: face 0: expected vertex labels, found '8x'"),
    "binary recipe": (_binary_recipe, _elbow_read,
                      "recipe.yaml: expected a YAML text file, found binary data"),
    "broken recipe YAML": (_broken_recipe, _elbow_read,
                           "recipe.yaml: not valid YAML at line 2, column"),
    "checkpoint cut in its directory": (_checkpoint_cut_in_its_directory,
                                        _fluidgpt_checkpoint_read,
                                        "cut.ckpt: not a fluidgpt checkpoint"),
    "zarr chunk of garbage": (_zarr_chunk_of_garbage, _fluidgpt_read,
                              "tracks.zarr: not a readable .zarr dataset"),
    "unreadable start date": (_recipe_with_a_bad_date, _held_suarez_read,
                              "start: expected a date and time"),
    "GRIB field that does not decode": (_grib_that_does_not_decode, _geoformer_read,
                                        "gfs.grib2: could not read its data"),
}


@pytest.mark.parametrize("name", FOUND)
def test_what_the_fuzz_found_is_one_of_our_errors(name, tmp_path):
    make, read, message = FOUND[name]
    path = make(tmp_path)
    with pytest.raises(ValueError) as raised:
        read(path)
    assert not isinstance(raised.value, UnicodeError)
    assert message in str(raised.value)


def test_corruptions_are_seeded_and_take_turns():
    data = bytes(range(256)) * 4 + b"\nline\nanother\n"
    first = [corrupt(data, s) for s in SEEDS]
    assert first == [corrupt(data, s) for s in SEEDS]
    assert [what.split()[0] for _, what in first[:4]] == ["bits", "truncated", "inserted",
                                                           "deleted"]
    assert all(out != data for out, _ in first)
    text = b"FoamFile\n{\n    format ascii;\n}\n3(1 2 3)\n"
    assert all(corrupt(text, s, text=True)[0].isascii() for s in SEEDS)


def test_the_contract_refuses_raw_errors_and_unnamed_files():
    named = ("tracks.csv",)
    assert broken(None, named) is None
    assert broken(ValueError("tracks.csv: expected numbers"), named) is None
    assert broken(FileNotFoundError("no such file: tracks.csv"), named) is None
    assert broken(KeyError("tracks.csv"), named).startswith("raw builtins.KeyError")
    assert broken(struct.error("unpack requires"), named).startswith("raw")
    decoding = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert broken(decoding, named).startswith("raw builtins.UnicodeDecodeError")
    assert "names none" in broken(ValueError("could not convert string to float"), named)


def reproduce(name: str, seed: int, folder: str | Path = "/tmp/fuzz-reproduce") -> Path:
    """Make the corrupted input of ``seed`` under ``folder`` and read it, raising what the
    reader raises (for a failure of the fuzz: ``python -c "from tests.test_fuzz import
    reproduce; reproduce('track-csv', 3)"``)."""
    folder = Path(folder) / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "valid").mkdir(parents=True)
    source = TARGETS[name].make(folder / "valid")
    _, path, what = next(c for c in corrupted_copies(name, source, folder / "fuzz")
                         if c[0] == seed)
    print(f"{name} seed {seed}: {what} ({path})")
    TARGETS[name].read(path)
    return path
