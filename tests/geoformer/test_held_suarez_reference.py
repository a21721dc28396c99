"""The Held-Suarez build is the same simulation on any x86-64 machine, and says whether it is.

The build runs in a child process whose CPU-chosen code paths (XLA's code generation,
OpenBLAS's kernels, numpy's SIMD dispatch) are pinned, and a store's fingerprint tells the
reference build apart.
"""

import json
import platform
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoformer.sources.held_suarez import isolated
from geoformer.sources.held_suarez import reference as fp

X86 = platform.machine().lower() in ("x86_64", "amd64")


TINY = {"spinup_days": 0.25, "days": 0.75, "sigma_levels": 8, "splits": {
    "train": ["2000-01-01T00:00", "2000-01-01T00:00"],
    "validation": ["2000-01-01T06:00", "2000-01-01T06:00"],
    "test": ["2000-01-01T12:00", "2000-01-01T12:00"]}}


def test_the_build_environment_pins_the_three_and_replaces_the_machines_values(monkeypatch):
    monkeypatch.setattr(isolated.platform, "machine", lambda: "x86_64")
    env = isolated.pinned_environment({
        "XLA_FLAGS": "--xla_cpu_use_xnnpack=false --xla_cpu_max_isa=AVX512",
        "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "AVX512F", "HOME": "/h"})
    every_target = " ".join(isolated._numpy_umath().__cpu_dispatch__)
    assert env == {"XLA_FLAGS": "--xla_cpu_use_xnnpack=false --xla_cpu_max_isa=SSE4_2",
                   "OPENBLAS_CORETYPE": "Nehalem", "NPY_DISABLE_CPU_FEATURES": every_target,
                   "JAX_PLATFORMS": "cpu", "HOME": "/h"}
    env = isolated.pinned_environment({"NPY_ENABLE_CPU_FEATURES": "X86_V3"})
    assert "NPY_ENABLE_CPU_FEATURES" not in env  # numpy refuses both


def test_only_jax_s_platform_is_pinned_on_another_architecture(monkeypatch):
    monkeypatch.setattr(isolated.platform, "machine", lambda: "aarch64")
    environ = {"XLA_FLAGS": "--xla_cpu_use_xnnpack=false", "HOME": "/h", "JAX_PLATFORMS": "cuda"}
    assert isolated.pinned_environment(environ) == {**environ, "JAX_PLATFORMS": "cpu"}


@pytest.mark.skipif(not X86, reason="the pins are for x86-64")
def test_a_pinned_process_runs_with_the_pins_read_back_from_the_libraries():
    code = ("import json; from geoformer.sources.held_suarez import current_record; "
            "print(json.dumps(current_record()))")
    out = subprocess.run([sys.executable, "-c", code], env=isolated.pinned_environment(),
                         capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout)
    assert got["xla_cpu_max_isa"] == "SSE4_2"
    assert got["openblas_coretype"] in ("Nehalem", "Nehalem (requested)")
    assert got["numpy_cpu_dispatch"].endswith(" only")  # the baseline, no AVX2 / AVX-512


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="the pins are for x86-64")
def test_a_build_after_jax_started_here_is_still_pinned_and_records_it(tmp_path):
    pytest.importorskip("dinosaur")
    import jax.numpy as jnp

    from geoformer.sources.held_suarez import build_held_suarez

    jnp.ones(2).sum().block_until_ready()  # this process's XLA is the host's from now on
    path = build_held_suarez(tmp_path / "hs.zarr", TINY)
    with xr.open_zarr(path) as ds:
        attrs = ds.attrs
    assert attrs["xla_cpu_max_isa"] == "SSE4_2"
    assert attrs["openblas_coretype"] in ("Nehalem", "Nehalem (requested)")
    assert attrs["numpy_cpu_dispatch"].endswith(" only")
    assert attrs["history"].endswith(
        f"CPU code paths: XLA SSE4_2, OpenBLAS {attrs['openblas_coretype']}, numpy "
        f"{attrs['numpy_cpu_dispatch']}")


def test_a_crash_in_the_build_process_is_raised_here_with_its_message(tmp_path, capfd):
    with pytest.raises(RuntimeError, match="build process failed: KeyError: 'sigma_levels'"):
        isolated.run_build({"resolution": "T21"}, tmp_path / "hs.zarr")  # not resolved
    assert "Traceback" in capfd.readouterr().err  # a crash keeps its traceback
    assert not (tmp_path / "hs.zarr").exists()


@pytest.mark.slow
def test_an_os_error_in_the_build_process_comes_back_as_one(tmp_path):
    pytest.importorskip("dinosaur")
    from geoformer.sources.held_suarez import resolve_recipe

    (tmp_path / "file").write_text("")
    with pytest.raises(OSError) as raised:  # NotADirectoryError or FileNotFoundError there
        isolated.run_build(resolve_recipe(TINY), tmp_path / "file" / "hs.zarr")
    assert type(raised.value) in (NotADirectoryError, FileNotFoundError, FileExistsError)


def test_a_build_process_killed_by_a_signal_says_which(tmp_path, monkeypatch):
    import signal
    import subprocess as sp

    class Killed:
        def __init__(self, *args, **kwargs):
            pass

        def wait(self, timeout=None):
            return -signal.SIGKILL

    monkeypatch.setattr(sp, "Popen", Killed)
    with pytest.raises(RuntimeError, match="killed by SIGKILL"):
        isolated.run_build({}, tmp_path / "hs.zarr")


def test_an_interrupted_parent_stops_and_waits_for_its_build_process(tmp_path, monkeypatch):
    import subprocess as sp

    calls = []

    class Interrupted:
        def __init__(self, *args, **kwargs):
            pass

        def wait(self, timeout=None):
            calls.append(("wait", timeout))
            if len(calls) == 1:
                raise KeyboardInterrupt
            return -15

        def terminate(self):
            calls.append(("terminate", None))

    monkeypatch.setattr(sp, "Popen", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        isolated.run_build({}, tmp_path / "hs.zarr")
    assert calls == [("wait", None), ("terminate", None), ("wait", 30)]


def _store(z500: np.ndarray, recipe_hash: str = "abc") -> xr.Dataset:
    levels = [850, 500]
    data = np.zeros((2, 2, 32, 64), dtype=np.float32)
    data[-1, 1] = z500
    return xr.Dataset(
        {"geopotential": (("time", "level", "latitude", "longitude"), data)},
        coords={"time": pd.date_range("2001-12-20T12:00", periods=2, freq="6h"),
                "level": levels},
        attrs={"recipe_hash": recipe_hash, "xla_cpu_max_isa": "host",
               "openblas_coretype": "Haswell"},
    )


def test_the_fingerprint_is_z500_of_the_last_time_at_the_points():
    z500 = np.arange(32 * 64, dtype=np.float32).reshape(32, 64) + 0.04
    got = fp.fingerprint(_store(z500))
    assert got == tuple(round(i * 64 + j + 0.04, 1) for i, j in fp.POINTS)


def test_the_reference_check_tells_the_reference_build_from_another(monkeypatch):
    z500 = np.full((32, 64), 5.3e4, dtype=np.float32)
    monkeypatch.setitem(fp.REFERENCE, "abc", tuple(5.3e4 for _ in fp.POINTS))
    same = fp.check_reference_build(_store(z500 + 0.5))
    assert same.matches is True and "within 0.5 m2 s-2" in same.message
    other = z500.copy()
    other[fp.POINTS[3]] += 250.0
    differs = fp.check_reference_build(_store(other))
    assert differs.matches is False
    assert "up to 250 m2 s-2" in differs.message
    assert "built with XLA host, OpenBLAS Haswell, numpy not recorded" in differs.message
    unknown = fp.check_reference_build(_store(z500, recipe_hash="zzz"))
    assert unknown.matches is None


def test_the_default_recipe_has_a_reference_build():
    from geoformer.sources.held_suarez import recipe_hash

    assert len(fp.REFERENCE[recipe_hash()]) == len(fp.POINTS)


@pytest.mark.slow
def test_a_build_whose_process_dies_leaves_nothing_behind(tmp_path, monkeypatch):
    pytest.importorskip("dinosaur")
    import os

    from geoformer.sources.held_suarez import build_held_suarez

    # XLA stops the process on an unknown flag: a crash with no error of its own to report.
    monkeypatch.setattr(isolated, "pinned_environment",
                        lambda: {**os.environ, "XLA_FLAGS": "--no_such_xla_flag"})
    with pytest.raises(RuntimeError, match="Held-Suarez build process (exited|was killed)"):
        build_held_suarez(tmp_path / "hs.zarr", TINY)
    assert list(tmp_path.iterdir()) == []
