"""The sweep recipe, the elbow geometry and the OpenFOAM case files (no solver needed),
plus one blockMesh check that runs only where OpenFOAM is installed."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fluidgpt.sources import foam_cases
from fluidgpt.sources.elbow import ElbowGeometry, block_mesh_dict, injection_positions
from fluidgpt.sources.foam_cases import (
    OpenFOAMNotFoundError,
    feed_positions,
    foam_environment,
    stream_particles_per_parcel,
    write_particle_case,
)
from fluidgpt.sources.openfoam_sweep import build_sweep, plan_cases
from fluidgpt.sources.recipe import case_grid, load_recipe, recipe_from_dict

RECIPE = Path(__file__).parents[2] / "datasets" / "elbow_erosion" / "recipe.yaml"
HAVE_FOAM = all(shutil.which(s) for s in (*foam_cases.SOLVERS, "postProcess"))


@pytest.fixture(scope="module")
def recipe_dict():
    return yaml.safe_load(RECIPE.read_text())


def test_recipe_and_profiles_load(recipe_dict):
    full = load_recipe(RECIPE)
    assert full.n_cases == 4 * 4 * 4 * 3 * 2 == len(case_grid(full))
    assert full.particles.tracked == 196 and full.erosion.flow_stress == 5.2e6
    sample = load_recipe(RECIPE, "sample")
    assert sample.n_cases == 108 and sample.particles.tracked == 32
    assert sample.name == "elbow_erosion-sample"
    assert load_recipe(RECIPE, "tiny").geometry.cell_size == 0.025


def test_recipe_rejects_unknown_keys(recipe_dict):
    bad = {**recipe_dict, "particles": {**recipe_dict["particles"], "tracekd": 3}}
    with pytest.raises(ValueError, match=r"recipe.particles: unknown keys \['tracekd'\]"):
        recipe_from_dict(bad)
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        recipe_from_dict({**recipe_dict, "colour": "red"})
    with pytest.raises(ValueError, match="unknown recipe profile 'huge'"):
        recipe_from_dict(recipe_dict, "huge")


def test_recipe_conditions_checked(recipe_dict):
    conditions = dict(recipe_dict["conditions"])
    del conditions["restitution"]
    with pytest.raises(ValueError, match=r"missing \['restitution'\]"):
        recipe_from_dict({**recipe_dict, "conditions": conditions})
    inert = {"restitution": [0.1, 0.2]}
    with pytest.raises(ValueError, match="inert labels must be known non-physical"):
        recipe_from_dict({**recipe_dict, "inert": inert})
    dup = {**recipe_dict["conditions"], "restitution": [0.5, 0.5]}
    with pytest.raises(ValueError, match="restitution needs distinct values"):
        recipe_from_dict({**recipe_dict, "conditions": dup})


def test_recipe_times_checked(recipe_dict):
    particles = {**recipe_dict["particles"], "sample_interval": 0.0045}
    with pytest.raises(ValueError, match="sample_interval .* whole multiple of"):
        recipe_from_dict({**recipe_dict, "particles": particles})
    particles = {**recipe_dict["particles"], "n_steps": 100}
    with pytest.raises(ValueError, match="must not exceed particles.steady_after"):
        recipe_from_dict({**recipe_dict, "particles": particles})


def test_recipe_yaml_numbers_coerced(recipe_dict):
    # PyYAML reads 5.2e6 (no sign in the exponent) as a string
    erosion = {**recipe_dict["erosion"], "flow_stress": "5.2e6"}
    assert recipe_from_dict({**recipe_dict, "erosion": erosion}).erosion.flow_stress == 5.2e6
    with pytest.raises(ValueError, match="cannot read 'lots' as float"):
        recipe_from_dict({**recipe_dict, "erosion": {**erosion, "psi": "lots"}})


def test_plan_cases_variants():
    recipe = load_recipe(RECIPE, "sample")
    physical = plan_cases(recipe)
    assert len(physical) == 108 and (physical["group"] == np.arange(108)).all()
    noise = plan_cases(recipe, "noise_ceiling")
    assert len(noise) == 2 * recipe.noise_ceiling.cases
    for _, pair in noise.groupby("group"):
        assert sorted(pair["seed"]) == [25, 26]
        assert len(pair.drop(columns="seed").drop_duplicates()) == 1
    with pytest.raises(ValueError, match="unknown variant"):
        plan_cases(recipe, "replicated")


def test_block_mesh_dict_structure():
    text = block_mesh_dict(ElbowGeometry())
    assert text.count("hex (") == 16  # 9 straight + 3 bend + 3 riser + 1 branch
    assert len(re.findall(r"^\s+arc ", text, re.M)) == 8  # 4 arc lines per z level, shared
    for patch in ("mainInlet", "sideInlet", "outlet", "wallStraight", "wallBend",
                  "wallRiser", "wallBranch"):
        assert re.search(rf"^\s+{patch}\n\s+{{", text, re.M), patch


def test_geometry_checks():
    with pytest.raises(ValueError, match="must lie inside the straight leg"):
        ElbowGeometry(branch_x=0.49)
    with pytest.raises(ValueError, match="cell_size must be > 0"):
        ElbowGeometry(cell_size=0)


def test_injection_positions_fixed_order_inside_branch():
    g = ElbowGeometry()
    a = injection_positions(g, 32, seed=25)
    np.testing.assert_array_equal(a, injection_positions(g, 32, seed=25))
    assert not np.allclose(a, injection_positions(g, 32, seed=26))
    z0, z1 = g.branch_z
    assert (a[:, 0] > g.branch_x).all() and (a[:, 0] < g.branch_x + g.branch_width).all()
    assert (a[:, 2] > z0).all() and (a[:, 2] < z1).all()
    np.testing.assert_allclose(a[:, 1], -g.branch_length + 0.005)
    regular = injection_positions(g, 4, seed=0, jitter=0.0)
    np.testing.assert_allclose(regular[:, 0], g.branch_x + g.branch_width * np.array(
        [0.25, 0.75, 0.25, 0.75]))
    with pytest.raises(ValueError, match="jitter"):
        injection_positions(g, 4, seed=0, jitter=2.0)


def test_particle_case_files(tmp_path):
    recipe = load_recipe(RECIPE, "tiny")
    mesh = tmp_path / "mesh"
    (mesh / "constant" / "polyMesh").mkdir(parents=True)
    flow_U = tmp_path / "U"
    flow_U.write_text("FoamFile {}\n")
    conditions = dict(main_inlet_speed=10.0, side_inlet_speed=30.0, particle_diameter=1e-4,
                      particle_density=2650.0, restitution=0.9)
    case = tmp_path / "case"
    tracked = write_particle_case(case, mesh, flow_U, recipe, conditions, seed=25)
    assert tracked.shape == (4, 3)
    props = (case / "constant" / "kinematicCloudProperties").read_text()
    assert "${" not in props and "e               0.9;" in props
    n_bursts = round(recipe.particles.end_time / recipe.particles.burst_interval)
    assert props.count("type            manualInjection;") == 1 + n_bursts
    assert "patches         (wallStraight wallBend wallRiser wallBranch);" in props
    for name in ("system/controlDict", "constant/g", "0/rho", "0/mu", "0/U",
                 "constant/trackedPositions", "constant/streamPositions"):
        assert (case / name).is_file(), name
        assert "${" not in (case / name).read_text()
    # the feed carries solids_mass_flow: particles per parcel by hand
    m = 2650.0 * math.pi * 1e-4 ** 3 / 6
    expected = 0.01 * recipe.particles.burst_interval / (recipe.particles.streams * m)
    assert stream_particles_per_parcel(recipe, 1e-4, 2650.0) == pytest.approx(expected)


def _read_vectors(path: Path) -> np.ndarray:
    text = path.read_text()
    rows = re.findall(r"^\(([^()]*)\)$", text, flags=re.M)
    count = int(re.search(r"^(\d+)$", text, flags=re.M).group(1))
    assert len(rows) == count, path
    return np.array([r.split() for r in rows], dtype=float)


def test_feed_patterns_spread_the_erosion_feed(recipe_dict, tmp_path):
    """feed_patterns F: burst k injects from set k mod F; the tracked parcels are unchanged."""
    tiny = recipe_dict["profiles"]["tiny"]
    conditions = dict(main_inlet_speed=10.0, side_inlet_speed=30.0, particle_diameter=1e-4,
                      particle_density=2650.0, restitution=0.9)
    mesh = tmp_path / "mesh"
    (mesh / "constant" / "polyMesh").mkdir(parents=True)
    flow_U = tmp_path / "U"
    flow_U.write_text("FoamFile {}\n")
    base = recipe_from_dict(recipe_dict, "tiny")
    patterns = 2
    spread_dict = {**recipe_dict, "profiles": {"spread": {
        **tiny, "particles": {**tiny["particles"], "feed_patterns": patterns,
                              "erosion_window": patterns * tiny["particles"]["burst_interval"]}
    }}}
    spread = recipe_from_dict(spread_dict, "spread")
    p = spread.particles
    assert spread.particles.feed_patterns == patterns and base.particles.feed_patterns == 1
    assert p.erosion_paths == p.streams * patterns
    assert p.erosion_parcels == p.streams * round(p.erosion_window / p.burst_interval)

    old = write_particle_case(tmp_path / "old", mesh, flow_U, base, conditions, seed=25)
    new = write_particle_case(tmp_path / "new", mesh, flow_U, spread, conditions, seed=25)
    # the tracked parcels: same points, same order, alone in the first injection model
    np.testing.assert_array_equal(old, new)
    for case in ("old", "new"):
        np.testing.assert_allclose(   # written with 9 significant digits
            _read_vectors(tmp_path / case / "constant" / "trackedPositions"), new, rtol=1e-8)
    props = (tmp_path / "new" / "constant" / "kinematicCloudProperties").read_text()
    files = re.findall(r'positionsFile\s+"(\w+)";', props)
    soi = [float(v) for v in re.findall(r"SOI\s+(\S+);", props)]
    n_bursts = round(p.end_time / p.burst_interval)
    assert files[0] == "trackedPositions" and soi[0] == 0.0 and min(soi[1:]) > 0.0
    assert files[1:] == [f"streamPositions{k % patterns:03d}" for k in range(n_bursts)]
    # F sets of `streams` distinct points, one stratified grid dealt out in turn
    sets = feed_positions(spread, seed=25)
    assert sets.shape == (patterns, p.streams, 3)
    for k in range(patterns):
        np.testing.assert_allclose(
            _read_vectors(tmp_path / "new" / "constant" / f"streamPositions{k:03d}"), sets[k])
    grid = injection_positions(spread.geometry, p.streams * patterns, 25 + 1_000_003, p.jitter)
    np.testing.assert_array_equal(sets.transpose(1, 0, 2).reshape(-1, 3), grid)
    assert len(np.unique(sets.reshape(-1, 3), axis=0)) == p.streams * patterns
    # feed_patterns 1 is the single set every burst used before
    np.testing.assert_allclose(
        _read_vectors(tmp_path / "old" / "constant" / "streamPositions"),
        injection_positions(base.geometry, p.streams, 25 + 1_000_003, p.jitter))
    assert not (tmp_path / "old" / "constant" / "streamPositions000").exists()
    # the feed's mass flow does not depend on the number of sets
    assert stream_particles_per_parcel(spread, 1e-4, 2650.0) == stream_particles_per_parcel(
        base, 1e-4, 2650.0)


def test_feed_patterns_checked(recipe_dict):
    particles = {**recipe_dict["particles"], "feed_patterns": 0}
    with pytest.raises(ValueError, match="feed_patterns must be >= 1"):
        recipe_from_dict({**recipe_dict, "particles": particles})
    window, burst = recipe_dict["particles"]["erosion_window"], recipe_dict["particles"][
        "burst_interval"]
    bad = round(window / burst) + 1     # the window is not a whole number of feed periods
    particles = {**recipe_dict["particles"], "feed_patterns": bad}
    with pytest.raises(ValueError, match="whole multiple of feed_patterns"):
        recipe_from_dict({**recipe_dict, "particles": particles})


def _spread_recipe(recipe_dict, spread: float):
    tiny = recipe_dict["profiles"]["tiny"]
    return recipe_from_dict({**recipe_dict, "profiles": {"spread": {
        **tiny, "particles": {**tiny["particles"], "feed_size_spread": spread}}}}, "spread")


def test_feed_size_spread_draws_the_feed_diameters(recipe_dict, tmp_path):
    """feed_size_spread s: the feed's diameters uniform in [d (1 - s), d (1 + s)], the tracked
    parcels keep d, and the mean mass flow stays solids_mass_flow."""
    mesh = tmp_path / "mesh"
    (mesh / "constant" / "polyMesh").mkdir(parents=True)
    flow_U = tmp_path / "U"
    flow_U.write_text("FoamFile {}\n")
    d, rho = 1e-4, 2650.0
    conditions = dict(main_inlet_speed=10.0, side_inlet_speed=30.0, particle_diameter=d,
                      particle_density=rho, restitution=0.9)
    base, spread = recipe_from_dict(recipe_dict, "tiny"), _spread_recipe(recipe_dict, 0.3)
    assert base.particles.feed_size_spread == 0.0
    old = write_particle_case(tmp_path / "old", mesh, flow_U, base, conditions, seed=25)
    new = write_particle_case(tmp_path / "new", mesh, flow_U, spread, conditions, seed=25)
    np.testing.assert_array_equal(old, new)
    props = (tmp_path / "new" / "constant" / "kinematicCloudProperties").read_text()
    models = re.findall(r"sizeDistribution\s*\{\s*type\s+(\w+);([^}]*)\}", props)
    n_bursts = round(spread.particles.end_time / spread.particles.burst_interval)
    assert len(models) == 1 + n_bursts
    assert models[0][0] == "fixedValue" and float(re.search(r"value\s+(\S+);",
                                                            models[0][1]).group(1)) == d
    for kind, body in models[1:]:
        assert kind == "uniform"
        lo = float(re.search(r"minValue\s+(\S+);", body).group(1))
        hi = float(re.search(r"maxValue\s+(\S+);", body).group(1))
        assert lo == pytest.approx(0.7 * d) and hi == pytest.approx(1.3 * d)
    # without a spread every injection has the fixed diameter, as before the option
    old_props = (tmp_path / "old" / "constant" / "kinematicCloudProperties").read_text()
    assert "uniformDistribution" not in old_props
    # mass flow: parcels per burst x particles per parcel x the mean particle mass over the
    # size class (by quadrature) gives solids_mass_flow x burst_interval
    p = spread.particles
    sizes = np.linspace(0.7 * d, 1.3 * d, 200001)
    mean_mass = np.mean(rho * np.pi * sizes ** 3 / 6.0)
    carried = p.streams * stream_particles_per_parcel(spread, d, rho) * mean_mass
    assert carried == pytest.approx(p.solids_mass_flow * p.burst_interval, rel=1e-6)


def test_feed_size_spread_checked(recipe_dict):
    for bad in (-0.1, 1.0):
        particles = {**recipe_dict["particles"], "feed_size_spread": bad}
        with pytest.raises(ValueError, match="feed_size_spread is a relative half-width"):
            recipe_from_dict({**recipe_dict, "particles": particles})


@pytest.mark.skipif(not HAVE_FOAM, reason="OpenFOAM (apt-get install openfoam) not installed")
def test_feed_size_spread_runs_in_openfoam(recipe_dict, tmp_path):
    """The solver reads the uniform size class: the feed parcels it writes have diameters
    inside [0.7 d, 1.3 d] and not all the same, the tracked ones exactly d."""
    recipe = _spread_recipe(recipe_dict, 0.3)
    build_sweep(recipe, tmp_path / "out.nc", workers=1, work_dir=tmp_path / "run",
                keep_cases=True)
    d = recipe.conditions["particle_diameter"][0]
    last = sorted((tmp_path / "run" / "cases").glob("case_*/*/lagrangian/kinematicCloud/d"),
                  key=lambda f: float(f.parents[2].name))[-1]
    values = np.array(re.findall(r"^[0-9.eE+-]+$", last.read_text(), flags=re.M)[1:], float)
    assert len(values) > 1
    assert values.min() >= 0.7 * d * (1 - 1e-6) and values.max() <= 1.3 * d * (1 + 1e-6)
    assert np.ptp(values) > 0.1 * d


def test_missing_openfoam_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(OpenFOAMNotFoundError, match="apt-get install -y openfoam"):
        foam_environment()
    with pytest.raises(OpenFOAMNotFoundError, match="apt-get install"):
        build_sweep(RECIPE, tmp_path / "out.nc", profile="tiny")


@pytest.mark.skipif(not HAVE_FOAM, reason="OpenFOAM (apt-get install openfoam) not installed")
def test_block_mesh_faces_match_openfoam(tmp_path):
    from fluidgpt.readers.openfoam import read_cell_centre_boundary, read_wall_faces

    env = foam_environment()
    case = tmp_path / "mesh"
    foam_cases.write_mesh_case(case, ElbowGeometry(cell_size=0.025))
    foam_cases.run_foam("blockMesh", case, env, nice=0)
    (case / "0").mkdir()
    foam_cases.run_foam("postProcess", case, env, nice=0, args=("-func", "writeCellCentres"))
    faces = read_wall_faces(case)
    np.testing.assert_allclose(faces["face_centre"], read_cell_centre_boundary(case, 0),
                               atol=1e-8)
