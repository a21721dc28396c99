"""The Held-Suarez dataset: post-processing, contract, atomic writes, cache, and dinosaur runs.

Most tests feed hand-made model-level fields through the real post-processing and store code
(no dinosaur needed); the tests at the end run dinosaur itself and skip when it is missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import geoformer.atomic
from geoformer.sources import held_suarez as hs

RECIPE_YAML = Path(__file__).resolve().parents[2] / "datasets" / "held_suarez" / "recipe.yaml"
UPPER = ("geopotential", "temperature", "u_component_of_wind", "v_component_of_wind")
SURFACE = ("mean_sea_level_pressure", "surface_pressure", "10m_u_component_of_wind",
           "10m_v_component_of_wind", "2m_temperature")
STATIC = ("land_sea_mask", "soil_type", "geopotential_at_surface")
R, G = hs.GAS_CONSTANT, hs.GRAVITY


def equidistant_sigma(n: int) -> np.ndarray:
    """(N,) layer centres of n equidistant sigma layers, top to bottom (as dinosaur's)."""
    return (np.arange(n) + 0.5) / n


def fake_fields(times, sigma, H=6, W=8, seed=0, surface_pressure=None) -> hs.SigmaLevelFields:
    """A plausible atmosphere: T falls with height, westerlies grow with height, noise."""
    rng = np.random.default_rng(seed)
    T, N = len(times), len(sigma)
    lat = np.deg2rad(hs.equiangular_latitudes(H))[:, None]  # (H, 1)
    s = sigma[:, None, None]  # (N, 1, 1)
    temperature = (300 - 40 * np.sin(lat) ** 2) * s ** 0.19 + rng.normal(0, 1, (T, N, H, W))
    u = 30 * (1 - s) * np.cos(lat) + rng.normal(0, 2, (T, N, H, W))
    v = rng.normal(0, 2, (T, N, H, W))
    if surface_pressure is None:
        surface_pressure = 1e5 + rng.normal(0, 1500, (T, H, W))
    return hs.SigmaLevelFields(
        time=np.asarray(times, dtype="datetime64[ns]"), sigma=sigma, temperature=temperature,
        u=u, v=v, surface_pressure=np.broadcast_to(surface_pressure, (T, H, W)),
    )


def isothermal_fields(t0=250.0, n=8, surface_pressure=(98000.0, 102000.0)):
    """T0 everywhere, u = ln(sigma) (linear in log-pressure), one column per surface pressure."""
    sigma = equidistant_sigma(n)
    ps = np.asarray(surface_pressure)[None, None, :]  # (T=1, H=1, W)
    W = ps.shape[-1]
    u = np.broadcast_to(np.log(sigma)[None, :, None, None], (1, n, 1, W))
    return hs.SigmaLevelFields(
        time=np.array(["2000-01-01"], dtype="datetime64[ns]"), sigma=sigma,
        temperature=np.full((1, n, 1, W), t0), u=u, v=-u, surface_pressure=ps,
    )


def small_recipe(**overrides) -> dict:
    """One day of 6-hourly output at 8 x 16, with splits that fit it."""
    recipe = dict(
        days=1, spinup_days=0.5, sigma_levels=6, dt_minutes=60,
        grid={"latitudes": 8, "longitudes": 16},
        splits={"train": ["2000-01-01T00", "2000-01-01T06"],
                "validation": ["2000-01-01T12", "2000-01-01T12"],
                "test": ["2000-01-01T18", "2000-01-01T18"]},
    )
    recipe.update(overrides)
    return recipe


@pytest.fixture
def fake_simulation(monkeypatch):
    """Replace dinosaur by fake_fields in blocks of 3 times; counts the runs."""
    runs = []

    def simulate_blocks(recipe, block_size=3):
        runs.append(recipe)
        times = hs.recipe._time_axis(recipe).to_numpy()
        sigma = equidistant_sigma(recipe["sigma_levels"])
        H, W = recipe["grid"]["latitudes"], recipe["grid"]["longitudes"]
        for first in range(0, len(times), block_size):
            yield fake_fields(times[first:first + block_size], sigma, H, W, seed=first)

    monkeypatch.setattr(hs.cache, "_simulate_blocks", simulate_blocks)
    # In this process, where the fake is: the pinned child process would run dinosaur.
    monkeypatch.setattr(hs.cache, "run_build", hs.isolated.run_in_process)
    return runs


# ---- grid and hydrostatics -----------------------------------------------------------------


def test_output_grid_is_weatherbench_64x32_without_poles_north_first():
    k = np.arange(32)
    np.testing.assert_array_equal(hs.equiangular_latitudes(32), (-87.1875 + 5.625 * k)[::-1])
    np.testing.assert_array_equal(hs.equiangular_longitudes(64), 5.625 * np.arange(64))


def test_geopotential_of_an_isothermal_atmosphere_is_exact():
    # Hydrostatic balance with T = T0: Phi(sigma) = R T0 ln(1 / sigma) above a flat surface.
    sigma = equidistant_sigma(12)
    temperature = np.full((2, 12, 3, 4), 260.0)
    phi = hs.geopotential_on_sigma(temperature, sigma)
    expected = R * 260.0 * np.log(1 / sigma)[None, :, None, None]
    np.testing.assert_allclose(phi, np.broadcast_to(expected, phi.shape), rtol=1e-12)


def test_isothermal_column_on_pressure_levels_matches_the_hypsometric_equation():
    fields = isothermal_fields(t0=250.0, n=8)  # top centre at sigma 1/16: 50 hPa is above it
    out = hs.sigma_to_pressure(fields)
    p = 100.0 * np.array(hs.PRESSURE_LEVELS_HPA)[:, None]  # (Z, 1)
    ps = fields.surface_pressure[0, 0][None, :]  # (1, W)
    phi, t = out["geopotential"][0, :, 0], out["temperature"][0, :, 0]  # (Z, W)
    above_ground = p <= ps
    # Between the ground and the top, and above the top (isothermal extension): exact.
    expected_phi = R * 250.0 * np.log(ps / p)
    np.testing.assert_allclose(phi[above_ground], expected_phi[above_ground], rtol=1e-10)
    np.testing.assert_allclose(t[(p < fields.sigma[-1] * ps)], 250.0)
    # Below the ground (1000 hPa under 980 hPa): the lapse-rate profile, negative geopotential.
    assert (~above_ground).sum() == 1
    a = R * hs.LAPSE_RATE / G
    t_surface = 250.0 * fields.sigma[-1] ** -a
    t_expected = t_surface * (p / ps) ** a
    np.testing.assert_allclose(t[~above_ground], t_expected[~above_ground], rtol=1e-12)
    phi_expected = -(G / hs.LAPSE_RATE) * (t_expected - t_surface)
    np.testing.assert_allclose(phi[~above_ground], phi_expected[~above_ground], rtol=1e-12)
    assert (phi[~above_ground] < 0).all()


def test_wind_is_linear_in_log_pressure_inside_and_constant_outside():
    fields = isothermal_fields(n=8)
    u = hs.sigma_to_pressure(fields)["u_component_of_wind"][0, :, 0]  # (Z, W)
    p = 100.0 * np.array(hs.PRESSURE_LEVELS_HPA)[:, None]
    ps = fields.surface_pressure[0, 0][None, :]
    log_sigma = np.log(fields.sigma)
    expected = np.clip(np.log(p / ps), log_sigma[0], log_sigma[-1])  # u = ln(sigma) on layers
    # Between the lowest layer and the ground the ground value is the lowest layer's wind.
    np.testing.assert_allclose(u, expected, atol=1e-12)


def test_geopotential_increases_with_height_and_wind_is_finite():
    times = pd.date_range("2000-01-01", periods=3, freq="6h")
    out = hs.sigma_to_pressure(fake_fields(times, equidistant_sigma(10)))
    assert (np.diff(out["geopotential"], axis=1) > 0).all()  # levels run 1000 -> 50 hPa
    assert all(np.isfinite(v).all() for v in out.values())


def test_sigma_level_fields_reject_bad_shapes():
    fields = fake_fields(pd.date_range("2000-01-01", periods=2, freq="6h"), equidistant_sigma(4))
    with pytest.raises(ValueError, match="temperature must be"):
        hs.SigmaLevelFields(fields.time, fields.sigma, fields.temperature[:, :3], fields.u,
                            fields.v, fields.surface_pressure)
    with pytest.raises(ValueError, match="sigma must increase"):
        hs.SigmaLevelFields(fields.time, fields.sigma[::-1], fields.temperature, fields.u,
                            fields.v, fields.surface_pressure)


# ---- the dataset contract ------------------------------------------------------------------


def check_contract(ds: xr.Dataset) -> None:
    """Everything the rest of geoformer relies on (names, dims, order, dtypes, attrs)."""
    assert ds["time"].dtype == np.dtype("datetime64[ns]")
    assert (np.diff(ds["time"].values) > np.timedelta64(0)).all()
    assert ds["level"].values.tolist() == list(hs.PRESSURE_LEVELS_HPA)
    assert ds["level"].dtype.kind == "i"
    assert ds["latitude"].dtype == np.float64 and ds["longitude"].dtype == np.float64
    np.testing.assert_array_equal(ds["latitude"], hs.equiangular_latitudes(ds.sizes["latitude"]))
    np.testing.assert_array_equal(ds["longitude"],
                                  hs.equiangular_longitudes(ds.sizes["longitude"]))
    assert set(ds.data_vars) == set(UPPER + SURFACE + STATIC)
    for name in UPPER:
        assert ds[name].dims == ("time", "level", "latitude", "longitude")
    for name in SURFACE:
        assert ds[name].dims == ("time", "latitude", "longitude")
    for name in STATIC:
        assert ds[name].dims == ("latitude", "longitude")
        assert (ds[name] == 0).all()
    for name, var in ds.data_vars.items():
        assert var.dtype == np.float32, name
        assert {"units", "standard_name", "long_name"} <= set(var.attrs), name
        assert np.isfinite(var.values).all(), name
    assert ds["geopotential"].attrs["units"] == "m2 s-2"
    for name in ("10m_u_component_of_wind", "10m_v_component_of_wind", "2m_temperature"):
        assert ds[name].attrs["comment"].startswith("proxy: lowest model level")
    xr.testing.assert_equal(ds["mean_sea_level_pressure"].drop_attrs(),
                            ds["surface_pressure"].drop_attrs())
    assert ds.attrs["Conventions"] == "CF-1.8"
    for key in ("title", "source", "history", "comment"):
        assert ds.attrs[key], key
    assert "nominal dates" in ds.attrs["comment"] and "proxies" in ds.attrs["comment"]


def test_dataset_follows_the_contract():
    times = pd.date_range("2000-01-01", periods=4, freq="6h")
    fields = fake_fields(times, equidistant_sigma(8), H=32, W=64)
    attrs = hs.postprocess._global_attrs(hs.resolve_recipe(small_recipe()), "test")
    ds = hs.to_pressure_dataset(fields, attrs=attrs)
    check_contract(ds)
    # The proxies are the lowest layer, in the output's (north-first) layout.
    np.testing.assert_allclose(ds["2m_temperature"], fields.temperature[:, -1], rtol=1e-6)
    np.testing.assert_allclose(ds["10m_u_component_of_wind"], fields.u[:, -1], rtol=1e-6)


# ---- recipe --------------------------------------------------------------------------------


def test_recipe_yaml_is_the_default_recipe():
    assert hs.load_recipe(RECIPE_YAML) == hs.resolve_recipe()
    with open(RECIPE_YAML) as f:
        assert set(yaml.safe_load(f)) == set(hs.DEFAULT_RECIPE)  # every field written out


def test_unquoted_yaml_dates_are_read_as_the_same_recipe(tmp_path):
    text = RECIPE_YAML.read_text().replace('"', "")  # YAML now parses them as datetimes
    (tmp_path / "recipe.yaml").write_text(text)
    assert hs.recipe_hash(hs.load_recipe(tmp_path / "recipe.yaml")) == hs.recipe_hash()


def test_default_splits_are_consecutive_540_90_90_days():
    recipe = hs.resolve_recipe()
    times = hs.recipe._time_axis(recipe)
    lengths = {}
    for name, window in hs.split_slices().items():
        inside = (times >= pd.Timestamp(window.start)) & (times <= pd.Timestamp(window.stop))
        lengths[name] = inside.sum() * recipe["every_hours"] / 24
    assert lengths == {"train": 540, "validation": 90, "test": 90}
    assert lengths["train"] + lengths["validation"] + lengths["test"] == recipe["days"]


@pytest.mark.parametrize("bad, message", [
    ({"dayz": 3}, "unknown Held-Suarez recipe keys"),
    ({"dt_minutes": 25}, "whole number of time steps"),
    ({"spinup_days": 0.1}, "whole number of every_hours"),
    ({"resolution": "T20"}, "resolution must be one of"),
    ({"days": 100}, "split train"),
    ({"seed": "abc"}, "seed must be an integer"),
    ({"temperature_noise_kelvin": -0.1}, "temperature_noise_kelvin must be a number >= 0"),
])
def test_bad_recipes_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        hs.resolve_recipe(bad)


def test_recipe_hash_identifies_the_recipe():
    assert hs.recipe_hash() == hs.recipe_hash(hs.load_recipe(RECIPE_YAML))
    assert hs.recipe_hash({"spinup_days": 200.0}) == hs.recipe_hash()
    assert hs.recipe_hash({"seed": 1}) != hs.recipe_hash()


# ---- stores: round trip, atomicity, cache --------------------------------------------------


def test_store_round_trips_with_one_time_step_per_chunk(tmp_path, fake_simulation):
    recipe = small_recipe()
    path = hs.build_held_suarez(tmp_path / "hs.zarr", recipe)
    with xr.open_zarr(path) as ds:
        check_contract(ds)
        assert ds.sizes["time"] == 4  # two appended blocks of 3 and 1
        for name in UPPER + SURFACE:
            assert ds[name].encoding["chunks"] == (1, *ds[name].shape[1:]), name
            assert [f.codec_id for f in ds[name].encoding["filters"]] == ["crc32"], name
        assert ds.attrs["recipe_hash"] == hs.recipe_hash(recipe)
        # What was written is what the post-processing made.
        blocks = hs.cache._simulate_blocks(hs.resolve_recipe(recipe))
        expected = xr.concat([hs.to_pressure_dataset(f) for f in blocks],
                             dim="time", data_vars="minimal")
        xr.testing.assert_equal(ds.load(), expected)


def failing_after_first_block(blocks):
    def simulate_blocks(recipe, block_size=3):
        iterator = blocks(recipe, block_size)
        yield next(iterator)
        raise RuntimeError("simulation blew up")

    return simulate_blocks


def test_failed_build_leaves_nothing_behind(tmp_path, fake_simulation, monkeypatch):
    monkeypatch.setattr(hs.cache, "_simulate_blocks",
                        failing_after_first_block(hs.cache._simulate_blocks))
    with pytest.raises(RuntimeError, match="blew up"):
        hs.build_held_suarez(tmp_path / "hs.zarr", small_recipe())
    assert list(tmp_path.iterdir()) == []


def test_failed_rebuild_keeps_the_previous_store(tmp_path, fake_simulation, monkeypatch):
    path = hs.build_held_suarez(tmp_path / "hs.zarr", small_recipe())
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    monkeypatch.setattr(hs.cache, "_simulate_blocks",
                        failing_after_first_block(hs.cache._simulate_blocks))
    with pytest.raises(RuntimeError):
        hs.build_held_suarez(path, small_recipe(seed=3), overwrite=True)
    assert list(tmp_path.iterdir()) == [path]
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before
    with xr.open_zarr(path) as ds:
        assert ds.attrs["recipe_hash"] == hs.recipe_hash(small_recipe())


def test_failed_swap_puts_the_previous_store_back(tmp_path, fake_simulation, monkeypatch):
    path = hs.build_held_suarez(tmp_path / "hs.zarr", small_recipe())
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".hs.zarr.tmp-") and Path(dst) == path:
            raise OSError("no space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(geoformer.atomic.os, "replace", replace)  # the store's one writer
    with pytest.raises(OSError, match="no space"):
        hs.build_held_suarez(path, small_recipe(seed=3), overwrite=True)
    assert list(tmp_path.iterdir()) == [path]
    with xr.open_zarr(path) as ds:
        assert ds.attrs["recipe_hash"] == hs.recipe_hash(small_recipe())


def test_existing_store_is_not_overwritten_by_default(tmp_path, fake_simulation):
    path = hs.build_held_suarez(tmp_path / "hs.zarr", small_recipe())
    with pytest.raises(FileExistsError):
        hs.build_held_suarez(path, small_recipe())
    hs.build_held_suarez(path, small_recipe(seed=5), overwrite=True)
    with xr.open_zarr(path) as ds:
        assert ds.attrs["recipe_hash"] == hs.recipe_hash(small_recipe(seed=5))
    assert list(tmp_path.iterdir()) == [path]


def test_cache_reuses_a_store_only_when_the_recipe_hash_matches(tmp_path, fake_simulation):
    first = hs.load_or_build_held_suarez(tmp_path, small_recipe())
    assert first == tmp_path / f"held_suarez-{hs.recipe_hash(small_recipe())}.zarr"
    assert hs.load_or_build_held_suarez(tmp_path, small_recipe()) == first
    assert len(fake_simulation) == 1  # the second call read the cache
    other = hs.load_or_build_held_suarez(tmp_path, small_recipe(seed=1))
    assert other != first and len(fake_simulation) == 2
    # A store at the right path but recording another recipe is rebuilt, not trusted.
    with xr.open_zarr(first) as ds:
        stale = ds.load()
    stale.attrs["recipe_hash"] = "0" * 16
    stale.to_zarr(first, mode="w", zarr_format=2, consolidated=True)
    assert hs.load_or_build_held_suarez(tmp_path, small_recipe()) == first
    assert len(fake_simulation) == 3
    with xr.open_zarr(first) as ds:
        assert ds.attrs["recipe_hash"] == hs.recipe_hash(small_recipe())


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SCIFORECAST_CACHE", str(tmp_path))
    assert hs.default_cache_dir() == tmp_path
    monkeypatch.delenv("SCIFORECAST_CACHE")
    assert hs.default_cache_dir() == Path.home() / ".cache" / "sciforecast"


def test_missing_dinosaur_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dinosaur", None)  # makes `import dinosaur` fail
    with pytest.raises(ImportError, match=r'pip install "sciforecast\[simulation\]"'):
        hs.simulation._import_dinosaur()


# ---- dinosaur itself -----------------------------------------------------------------------


def test_constants_and_hydrostatics_match_dinosaur():
    pytest.importorskip("dinosaur")
    from dinosaur import primitive_equations, scales, sigma_coordinates

    units = scales.units
    assert R == pytest.approx(scales.IDEAL_GAS_CONSTANT.to(units.J / units.kg / units.K).m)
    assert G == pytest.approx(scales.GRAVITY_ACCELERATION.to(units.m / units.s ** 2).m)
    coordinates = sigma_coordinates.SigmaCoordinates.equidistant(7)
    temperature = np.random.default_rng(0).uniform(200, 300, (7, 3, 5))
    theirs = primitive_equations.get_geopotential_on_sigma(
        temperature, nodal_orography=np.zeros((3, 5)), sigma=coordinates,
        gravity_acceleration=G, ideal_gas_constant=R,
    )
    ours = hs.geopotential_on_sigma(temperature, np.asarray(coordinates.centers))
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-5)


def test_output_grid_orientation_matches_the_contract():
    pytest.importorskip("dinosaur")
    from dinosaur import spherical_harmonic

    grid = hs.simulation._output_grid(spherical_harmonic.Grid.T21(), 32, 64)
    lon, sin_lat = grid.nodal_mesh  # dinosaur's (W, H) layout
    np.testing.assert_allclose(hs.simulation._to_hw(np.degrees(np.arcsin(sin_lat))),
                               np.broadcast_to(hs.equiangular_latitudes(32)[:, None], (32, 64)))
    np.testing.assert_allclose(hs.simulation._to_hw(np.degrees(lon)),
                               np.broadcast_to(hs.equiangular_longitudes(64), (32, 64)),
                               atol=1e-12)


@pytest.fixture(scope="module")
def short_run():
    pytest.importorskip("dinosaur")
    return hs.simulate_held_suarez(days=0.5, spinup_days=0.5, sigma_levels=8, dt_minutes=60)


@pytest.mark.slow
def test_short_simulation_follows_the_contract(short_run):
    check_contract(short_run)
    assert short_run.sizes == {"time": 2, "level": 13, "latitude": 32, "longitude": 64}
    assert "dinosaur" in short_run.attrs["source"]
    assert (short_run["geopotential"].diff("level") > 0).all()
    # Mass is conserved from the 1000 hPa rest state (no orography, no surface pressure forcing).
    mean_ps = float(short_run["surface_pressure"].weighted(
        np.cos(np.deg2rad(short_run["latitude"]))).mean(["latitude", "longitude"]).mean())
    assert mean_ps == pytest.approx(1e5, rel=1e-3)


@pytest.mark.slow
def test_noise_breaks_the_zonal_symmetry_and_the_seed_reproduces_it(short_run):
    t = short_run["temperature"].isel(time=-1)
    assert float((t - t.mean("longitude")).std()) > 0.0
    again = hs.simulate_held_suarez(days=0.5, spinup_days=0.5, sigma_levels=8, dt_minutes=60)
    xr.testing.assert_equal(again.drop_attrs(), short_run.drop_attrs())
