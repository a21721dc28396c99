"""The Held-Suarez build is the same simulation on any x86-64 machine, and says whether it is.

XLA's CPU code generation is pinned to SSE4.2 before jax starts (a fresh process is needed to
see it: jax reads XLA_FLAGS once), and a store's fingerprint tells the reference build apart.
"""

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoformer.sources.held_suarez import reference as fp

X86 = platform.machine().lower() in ("x86_64", "amd64")


def _fresh(code: str, flags: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if flags is not None:
        env["XLA_FLAGS"] = flags
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


PIN = """
import json, os
from geoformer.sources.held_suarez import pin_xla_isa
{before}
print(json.dumps({{"isa": pin_xla_isa(), "flags": os.environ.get("XLA_FLAGS")}}))
"""


@pytest.mark.skipif(not X86, reason="the pin is for x86-64 code generation")
def test_a_fresh_process_is_pinned_to_sse42_and_keeps_other_flags():
    got = _fresh(PIN.format(before=""), flags="--xla_cpu_use_xnnpack=false")
    assert got["isa"] == "SSE4_2"
    assert got["flags"].split() == ["--xla_cpu_use_xnnpack=false", "--xla_cpu_max_isa=SSE4_2"]


def test_a_users_own_isa_flag_is_kept_and_reported():
    got = _fresh(PIN.format(before=""), flags="--xla_cpu_max_isa=AVX2")
    assert got == {"isa": "AVX2", "flags": "--xla_cpu_max_isa=AVX2"}


@pytest.mark.skipif(not X86, reason="the pin is for x86-64 code generation")
def test_jax_started_before_the_build_cannot_be_pinned_and_says_host():
    before = "import jax.numpy as jnp; jnp.ones(2).sum().block_until_ready()"
    got = _fresh(PIN.format(before=before))
    assert got == {"isa": "host", "flags": None}


@pytest.mark.skipif(not X86, reason="the pin is for x86-64 code generation")
def test_a_store_built_in_a_fresh_process_records_the_pinned_code_generation(tmp_path):
    pytest.importorskip("dinosaur")
    code = f"""
import json
from geoformer.sources.held_suarez import build_held_suarez
import xarray as xr
recipe = {{"spinup_days": 0.25, "days": 0.75, "sigma_levels": 8, "splits": {{
    "train": ["2000-01-01T00:00", "2000-01-01T00:00"],
    "validation": ["2000-01-01T06:00", "2000-01-01T06:00"],
    "test": ["2000-01-01T12:00", "2000-01-01T12:00"]}}}}
path = build_held_suarez({str(tmp_path / "hs.zarr")!r}, recipe)
with xr.open_zarr(path) as ds:
    print(json.dumps({{"isa": ds.attrs["xla_cpu_max_isa"], "history": ds.attrs["history"]}}))
"""
    got = _fresh(code)
    assert got["isa"] == "SSE4_2"
    assert got["history"].endswith("XLA CPU code generation: SSE4_2")


def _store(z500: np.ndarray, recipe_hash: str = "abc") -> xr.Dataset:
    levels = [850, 500]
    data = np.zeros((2, 2, 32, 64), dtype=np.float32)
    data[-1, 1] = z500
    return xr.Dataset(
        {"geopotential": (("time", "level", "latitude", "longitude"), data)},
        coords={"time": pd.date_range("2001-12-20T12:00", periods=2, freq="6h"),
                "level": levels},
        attrs={"recipe_hash": recipe_hash, "xla_cpu_max_isa": "host"},
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
    assert "up to 250 m2 s-2" in differs.message and "XLA code generation host" in differs.message
    unknown = fp.check_reference_build(_store(z500, recipe_hash="zzz"))
    assert unknown.matches is None


def test_the_default_recipe_has_a_reference_build():
    from geoformer.sources.held_suarez import recipe_hash

    assert len(fp.REFERENCE[recipe_hash()]) == len(fp.POINTS)
