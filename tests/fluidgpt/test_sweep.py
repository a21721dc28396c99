"""The sweep recipe, the elbow geometry and the OpenFOAM case files (no solver needed),
plus one blockMesh check that runs only where OpenFOAM is installed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fluidgpt.sources import foam_cases
from fluidgpt.sources.elbow import ElbowGeometry, block_mesh_dict, injection_positions
from fluidgpt.sources.foam_cases import (
    FEED_EQUIVALENT_SECONDS,
    OpenFOAMNotFoundError,
    feed_positions,
    feed_size_classes,
    foam_environment,
    write_erosion_case,
    write_track_case,
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
    assert full.design.kind == "sobol" and full.n_cases == 256 == len(case_grid(full))
    assert full.particles.tracked == 196 and full.erosion.flow_stress == 2.4e9
    assert full.feed.size_distribution == "rosin_rammler" and full.feed.dispersion == "stochastic"
    sample = load_recipe(RECIPE, "sample")
    assert sample.n_cases == 160 and sample.particles.tracked == 32
    assert sample.design.kind == "lhs" and sample.feed.parcels == 8000
    assert sample.name == "elbow_erosion-sample"
    tiny = load_recipe(RECIPE, "tiny")
    assert tiny.geometry.cell_size == 0.025 and tiny.n_cases == 1 == len(case_grid(tiny))


@pytest.mark.parametrize("profile", [None, "sample"])
def test_space_filling_design_covers_the_ranges(profile):
    """Every case inside its ranges; each condition's one-dimensional projection fills its
    range (a Latin hypercube puts exactly one case in each of n equal strata); the diameter
    is spread on a log scale; the design is reproducible from its seed."""
    recipe = load_recipe(RECIPE, profile)
    grid = case_grid(recipe)
    n = recipe.n_cases
    assert grid.shape == (n, 5) and len(np.unique(grid, axis=0)) == n
    for i, name in enumerate(["main_inlet_speed", "side_inlet_speed", "particle_diameter",
                              "particle_density", "restitution"]):
        r = recipe.conditions[name]
        u = (np.log(grid[:, i] / r.min) / np.log(r.max / r.min) if r.scale == "log"
             else (grid[:, i] - r.min) / (r.max - r.min))
        assert u.min() >= -1e-3 and u.max() <= 1 + 1e-3, name
        strata = np.bincount(np.clip((u * 8).astype(int), 0, 7), minlength=8)
        assert strata.min() >= n / 8 * 0.75, (name, strata)   # no empty part of the range
    d = grid[:, 2]
    assert np.median(d) == pytest.approx(np.sqrt(2e-5 * 1e-4), rel=0.15)   # log-uniform
    np.testing.assert_array_equal(grid, case_grid(load_recipe(RECIPE, profile)))
    # four significant digits
    np.testing.assert_array_equal(grid, np.vectorize(lambda v: float(f"{v:.4g}"))(grid))


def test_design_checked(recipe_dict):
    with pytest.raises(ValueError, match="design.kind must be one of"):
        recipe_from_dict({**recipe_dict, "design": {"kind": "grid", "cases": 4}})
    with pytest.raises(ValueError, match="needs design.cases >= 2"):
        recipe_from_dict({**recipe_dict, "design": {"kind": "lhs", "cases": 1}})
    with pytest.raises(ValueError, match="needs a {min, max} range for every condition"):
        recipe_from_dict({**recipe_dict, "conditions": {
            **recipe_dict["conditions"], "restitution": [0.6, 0.9]}})
    with pytest.raises(ValueError, match="ranges need design.kind sobol or lhs"):
        recipe_from_dict({**recipe_dict, "design": {"kind": "factorial"}})
    for bad in ({"min": 2.0, "max": 1.0}, {"min": 0.0, "max": 1.0, "scale": "log"},
                {"min": 1.0, "max": 2.0, "scale": "cubic"}):
        with pytest.raises(ValueError, match="condition range"):
            recipe_from_dict({**recipe_dict, "conditions": {
                **recipe_dict["conditions"], "restitution": bad}})


def test_recipe_rejects_unknown_keys(recipe_dict):
    bad = {**recipe_dict, "particles": {**recipe_dict["particles"], "tracekd": 3}}
    with pytest.raises(ValueError, match=r"^recipe.particles.tracekd: unknown key"):
        recipe_from_dict(bad)
    with pytest.raises(ValueError, match=r"recipe.colour: unknown key"):
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
    factorial = {**recipe_dict, "design": {"kind": "factorial"},
                 "conditions": recipe_dict["profiles"]["tiny"]["conditions"]}
    assert recipe_from_dict(factorial).n_cases == 1
    dup = {**factorial["conditions"], "restitution": [0.5, 0.5]}
    with pytest.raises(ValueError, match="restitution needs distinct values"):
        recipe_from_dict({**factorial, "conditions": dup})


def test_recipe_times_checked(recipe_dict):
    particles = {**recipe_dict["particles"], "sample_interval": 0.0045}
    with pytest.raises(ValueError, match="sample_interval .* whole multiple of"):
        recipe_from_dict({**recipe_dict, "particles": particles})
    feed = {**recipe_dict["feed"], "duration": 0.0005}
    with pytest.raises(ValueError, match="feed.duration .* whole multiple of"):
        recipe_from_dict({**recipe_dict, "feed": feed})


def test_recipe_yaml_numbers_coerced(recipe_dict):
    # PyYAML reads 5.2e6 (no sign in the exponent) as a string
    erosion = {**recipe_dict["erosion"], "flow_stress": "5.2e6"}
    assert recipe_from_dict({**recipe_dict, "erosion": erosion}).erosion.flow_stress == 5.2e6
    with pytest.raises(ValueError, match="^recipe.erosion.psi: expected float, found 'lots'"):
        recipe_from_dict({**recipe_dict, "erosion": {**erosion, "psi": "lots"}})


def test_plan_cases_variants():
    recipe = load_recipe(RECIPE, "sample")
    physical = plan_cases(recipe)
    assert len(physical) == 160 and (physical["group"] == np.arange(160)).all()
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


CONDITIONS = dict(main_inlet_speed=10.0, side_inlet_speed=30.0, particle_diameter=1e-4,
                  particle_density=2650.0, restitution=0.9)


def _fake_flow(tmp_path: Path) -> tuple[Path, Path]:
    mesh = tmp_path / "mesh"
    (mesh / "constant" / "polyMesh").mkdir(parents=True)
    flow = tmp_path / "flow" / "0.1"
    flow.mkdir(parents=True)
    for name in ("U", "k", "epsilon", "nut"):
        (flow / name).write_text(f"FoamFile {{}}\n// {name}\n")
    return mesh, flow / "U"


def _read_vectors(path: Path) -> np.ndarray:
    text = path.read_text()
    rows = re.findall(r"^\(([^()]*)\)$", text, flags=re.M)
    count = int(re.search(r"^(\d+)$", text, flags=re.M).group(1))
    assert len(rows) == count, path
    return np.array([r.split() for r in rows], dtype=float)


def _entry(props: str, key: str) -> str:
    return re.search(rf"\b{key}\s+([^;]+);", props).group(1).strip()


def test_track_case_is_deterministic_and_single_size(tmp_path):
    """The tracked pass: P parcels of the case's diameter, one particle each, injected at
    t = 0 from the fixed points, laminar (no dispersion), written every sample."""
    recipe = load_recipe(RECIPE, "tiny")
    mesh, flow_U = _fake_flow(tmp_path)
    case = tmp_path / "tracks"
    tracked = write_track_case(case, mesh, flow_U, recipe, CONDITIONS, seed=25)
    assert tracked.shape == (4, 3)
    np.testing.assert_allclose(_read_vectors(case / "constant" / "trackedPositions"), tracked,
                               rtol=1e-8)
    props = (case / "constant" / "kinematicCloudProperties").read_text()
    assert "${" not in props and "e               0.9;" in props
    assert props.count("type            manualInjection;") == 1
    assert _entry(props, "dispersionModel") == "none"
    assert "fixedValueDistribution" in props and float(_entry(props, "value")) == 1e-4
    assert _entry(props, "parcelBasisType") == "fixed" and float(_entry(props, "nParticle")) == 1
    assert _entry((case / "constant" / "turbulenceProperties").read_text(),
                  "simulationType") == "laminar"
    control = (case / "system" / "controlDict").read_text()
    p = recipe.particles
    assert float(_entry(control, "endTime")) == pytest.approx(p.horizon)
    assert int(_entry(control, "writeInterval")) == round(p.sample_interval / p.delta_t)
    assert not (case / "0" / "k").exists()


def test_erosion_case_is_polydisperse_and_turbulent(tmp_path):
    """The erosion pass: feed.parcels parcels released at once (equal mass each, together
    solids_mass_flow x 1 s), Rosin-Rammler sizes around the case's diameter, stochastic
    dispersion on the flow's k-epsilon, written only at the end of feed.duration."""
    recipe = load_recipe(RECIPE, "tiny")
    f = recipe.feed
    mesh, flow_U = _fake_flow(tmp_path)
    case = tmp_path / "erosion"
    mass = write_erosion_case(case, mesh, flow_U, recipe, CONDITIONS, seed=25)
    assert mass == pytest.approx(f.solids_mass_flow * FEED_EQUIVALENT_SECONDS)
    props = (case / "constant" / "kinematicCloudProperties").read_text()
    assert "${" not in props
    assert props.count("type            manualInjection;") == f.size_classes
    assert _entry(props, "parcelBasisType") == "mass"
    sizes = feed_size_classes(f, 1e-4)
    assert len(sizes) == f.size_classes and np.all(np.diff(sizes) > 0)
    assert sizes[0] > f.size_range[0] * 1e-4 and sizes[-1] < f.size_range[1] * 1e-4
    written = [float(v) for v in re.findall(r"value\s+(\S+);", props)]
    np.testing.assert_allclose(written, sizes, rtol=1e-8)
    masses = [float(v) for v in re.findall(r"massTotal\s+(\S+);", props)]
    assert sum(masses) == pytest.approx(mass)
    assert _entry(props, "dispersionModel") == "stochasticDispersionRAS"
    assert "patches         (wallStraight wallBend wallRiser wallBranch);" in props
    turbulence = (case / "constant" / "turbulenceProperties").read_text()
    assert _entry(turbulence, "simulationType") == "RAS" and _entry(turbulence,
                                                                   "RASModel") == "kEpsilon"
    for name in ("k", "epsilon", "nut"):   # the flow's own fields, frozen
        assert (case / "0" / name).read_text() == (flow_U.parent / name).read_text()
    control = (case / "system" / "controlDict").read_text()
    assert float(_entry(control, "endTime")) == pytest.approx(f.duration)
    assert int(_entry(control, "writeInterval")) == round(f.duration / recipe.particles.delta_t)
    points = np.concatenate([_read_vectors(case / "constant" / f"feedPositions{k:03d}")
                             for k in range(f.size_classes)])
    np.testing.assert_allclose(np.sort(points, axis=0),
                               np.sort(feed_positions(recipe, 25), axis=0), rtol=1e-8)
    assert len(points) == f.parcels and len(np.unique(points, axis=0)) == f.parcels
    tracked = injection_positions(recipe.geometry, recipe.particles.tracked, 25,
                                  recipe.particles.jitter)
    assert not (np.abs(points[:, None] - tracked[None]).sum(-1) < 1e-12).any()
    # one size, no dispersion: the previous recipe's feed, still available
    plain = recipe_from_dict({**yaml.safe_load(RECIPE.read_text()), "profiles": {"p": {
        **yaml.safe_load(RECIPE.read_text())["profiles"]["tiny"],
        "feed": {"parcels": 40, "duration": 0.1, "size_distribution": "fixed",
                 "dispersion": "none"}}}}, "p")
    write_erosion_case(tmp_path / "plain", mesh, flow_U, plain, CONDITIONS, seed=25)
    props = (tmp_path / "plain" / "constant" / "kinematicCloudProperties").read_text()
    assert "fixedValueDistribution" in props and _entry(props, "dispersionModel") == "none"
    assert not (tmp_path / "plain" / "0" / "k").exists()


@pytest.mark.parametrize("key, value, message", [
    ("parcels", 0, "feed.parcels must be >= 1"),
    ("size_distribution", "uniform", "feed.size_distribution must be one of"),
    ("dispersion", "discreteRandomWalk", "feed.dispersion must be one of"),
    ("spread", 0.0, "Rosin-Rammler spread parameter n"),
    ("size_classes", 0, "feed.size_classes must be >= 1"),
    ("size_range", [1.2, 3.0], "feed.size_range"),
    ("solids_mass_flow", -1.0, "feed.solids_mass_flow must be > 0"),
    ("colour", "red", r"recipe.feed.colour: unknown key"),
])
def test_feed_checked(recipe_dict, key, value, message):
    with pytest.raises(ValueError, match=message):
        recipe_from_dict({**recipe_dict, "feed": {**recipe_dict["feed"], key: value}})


def _tiny(recipe_dict, **feed):
    tiny = recipe_dict["profiles"]["tiny"]
    return recipe_from_dict({**recipe_dict, "profiles": {"t": {
        **tiny, "feed": {**tiny["feed"], **feed}}}}, "t")


def _lagrangian(case: Path, name: str) -> np.ndarray:
    last = sorted((p for p in case.iterdir() if (p / "lagrangian").is_dir()),
                  key=lambda p: float(p.name))[-1]
    text = (last / "lagrangian" / "kinematicCloud" / name).read_text()
    compact = re.search(r"^(\d+)\{([^}]*)\}", text, flags=re.M)
    if compact:
        return np.full(int(compact.group(1)), float(compact.group(2)))
    return np.array(re.findall(r"^[0-9.eE+-]+$", text, flags=re.M)[1:], float)


@pytest.mark.skipif(not HAVE_FOAM, reason="OpenFOAM (apt-get install openfoam) not installed")
def test_feed_runs_in_openfoam(recipe_dict, tmp_path):
    """The real solver on the tiny case: the feed's diameters follow the truncated
    Rosin-Rammler law around d with equal mass per parcel (together the released mass), the
    dispersion model is the stochastic one, the erosion rate is positive and reproducible;
    another injection seed gives another (but similar) map; the tracked trajectories do not
    depend on the feed."""
    # a feed caught just after its release: every parcel still inside, sizes readable
    early = _tiny(recipe_dict, parcels=400, duration=0.004)
    build_sweep(early, tmp_path / "early.nc", workers=1, work_dir=tmp_path / "early",
                keep_cases=True)
    case = next((tmp_path / "early" / "cases").glob("case_*")) / "erosion"
    log = (case / "log.icoUncoupledKinematicParcelFoam").read_text()
    assert "Selecting dispersion model stochasticDispersionRAS" in log
    d, n = _lagrangian(case, "d"), _lagrangian(case, "nParticle")
    assert len(d) == 400 and len(n) == 400
    d0, (lo, hi) = early.conditions["particle_diameter"][0], early.feed.size_range
    np.testing.assert_allclose(np.unique(d), feed_size_classes(early.feed, d0), rtol=1e-6)
    # mass basis: every parcel carries the same mass, together solids_mass_flow x 1 s
    rho = early.conditions["particle_density"][0]
    parcel_mass = n * rho * np.pi * d ** 3 / 6
    np.testing.assert_allclose(parcel_mass, parcel_mass.mean(), rtol=1e-5)
    assert parcel_mass.sum() == pytest.approx(early.feed.solids_mass_flow, rel=1e-4)
    # Rosin-Rammler: the mass fraction coarser than d is exp(-1) before truncation; with
    # equal-mass parcels that is the share of parcels coarser than d (truncated law)
    cdf = lambda x: 1 - np.exp(-(x / d0) ** early.feed.spread)   # noqa: E731
    expected = (cdf(hi * d0) - cdf(d0)) / (cdf(hi * d0) - cdf(lo * d0))
    assert np.mean(d > d0) == pytest.approx(expected, abs=1 / early.feed.size_classes)

    recipe = _tiny(recipe_dict)
    a = build_sweep(recipe, tmp_path / "a.nc", workers=1, log=lambda m: None)
    b = build_sweep(recipe, tmp_path / "b.nc", workers=1, log=lambda m: None)
    rate = a["erosion_rate"].values
    assert rate.max() > 0 and (rate >= 0).all()
    np.testing.assert_array_equal(rate, b["erosion_rate"].values)
    assert 0 <= a.attrs["feed_left_max"] <= 1 and "Rosin-Rammler" in a.attrs["erosion_feed"]
    assert "face_vertex" in a.coords and a["face_vertex"].shape[1:] == (4, 3)
    # the corners belong to the face: their mean is the centroid up to the bend's trapezoids
    np.testing.assert_allclose(a["face_vertex"].mean("corner"), a["face_centre"], atol=1e-3)
    other = recipe_from_dict({**recipe_dict, "profiles": {"t": {
        **recipe_dict["profiles"]["tiny"], "particles": {
            **recipe_dict["profiles"]["tiny"]["particles"], "seed": 26}}}}, "t")
    c = build_sweep(other, tmp_path / "c.nc", workers=1, log=lambda m: None)
    assert not np.array_equal(rate, c["erosion_rate"].values)
    plain = build_sweep(_tiny(recipe_dict, size_distribution="fixed", dispersion="none"),
                        tmp_path / "plain.nc", workers=1, log=lambda m: None)
    np.testing.assert_array_equal(a["position"].values, plain["position"].values)
    assert not np.array_equal(rate, plain["erosion_rate"].values)


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


def test_condition_range_errors_name_the_condition(recipe_dict):
    bad = {**recipe_dict["conditions"], "particle_density": {"min": 3.0, "max": 1.0}}
    with pytest.raises(ValueError, match=r"^recipe.conditions.particle_density: a condition"):
        recipe_from_dict({**recipe_dict, "conditions": bad})
    bad = {**recipe_dict["conditions"], "particle_density": {"min": 1.0, "mx": 2.0}}
    with pytest.raises(ValueError, match=r"recipe.conditions.particle_density: .*'mx'"):
        recipe_from_dict({**recipe_dict, "conditions": bad})
