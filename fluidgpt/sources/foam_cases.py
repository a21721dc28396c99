"""Writing and running the OpenFOAM cases of one sweep point.

1. flow: blockMesh once per sweep, then ``simpleFoam`` (steady k-epsilon) for each pair of
   inlet speeds; the particles do not act on the gas (one-way coupling), so every case with
   the same speeds shares one flow.
2. tracks: ``icoUncoupledKinematicParcelFoam`` on that frozen velocity field with sphere
   drag, gravity and rebound at the walls (restitution e, friction mu): P tracked parcels of
   the case's diameter injected once at t = 0 (manualInjection, fixed positions and order),
   laminar (no dispersion), so the trajectories are a function of the conditions.
3. erosion: the same solver with the erosion feed alone: Rosin-Rammler size classes around
   the case's diameter, stochastic turbulent dispersion on the flow's k-epsilon fields, the
   Finnie ``particleErosion`` cloud function on the walls (recipe ``feed``).

The case files come from ``templates/`` (our own files) with ``${name}`` placeholders.
"""

from __future__ import annotations

import os
import shutil
import string
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np

from .elbow import ElbowGeometry, block_mesh_dict, injection_positions
from .recipe import Recipe

__all__ = ["OpenFOAMNotFoundError", "foam_environment", "run_foam", "write_mesh_case",
           "write_flow_case", "write_track_case", "write_erosion_case", "feed_positions",
           "feed_size_classes",
           "FEED_EQUIVALENT_SECONDS", "SOLVERS"]

SOLVERS = ("blockMesh", "simpleFoam", "icoUncoupledKinematicParcelFoam")
_CMU = 0.09
_INSTALL_HINT = (
    "OpenFOAM (v1912 or newer, with blockMesh, simpleFoam and "
    "icoUncoupledKinematicParcelFoam) is needed to build the dataset. On Debian/Ubuntu, as "
    "root: `apt-get update && apt-get install -y openfoam` (Debian's OpenFOAM v1912). "
    "Set WM_PROJECT_DIR if it is installed somewhere other than /usr/share/openfoam.")


class OpenFOAMNotFoundError(RuntimeError):
    """The OpenFOAM binaries (or their etc/ directory) are not installed."""


def foam_environment() -> dict[str, str]:
    """The environment the OpenFOAM binaries need (WM_PROJECT_DIR pointing at etc/)."""
    missing = [s for s in SOLVERS if shutil.which(s) is None]
    if missing:
        raise OpenFOAMNotFoundError(f"{', '.join(missing)} not found on PATH. {_INSTALL_HINT}")
    env = dict(os.environ)
    candidates = [env.get("WM_PROJECT_DIR"), "/usr/share/openfoam", "/usr/lib/openfoam"]
    for root in filter(None, candidates):
        if (Path(root) / "etc" / "controlDict").is_file():
            env["WM_PROJECT_DIR"] = root
            env.setdefault("WM_PROJECT", "OpenFOAM")
            return env
    raise OpenFOAMNotFoundError("OpenFOAM's etc/controlDict not found (looked in "
                                f"{[c for c in candidates if c]}). {_INSTALL_HINT}")


def run_foam(app: str, case: Path, env: dict[str, str], nice: int = 10,
             args: tuple[str, ...] = ()) -> None:
    """Run one OpenFOAM application on `case`, logging to case/log.<app>; raise on failure."""
    log = case / f"log.{app}"
    cmd = (["nice", "-n", str(nice)] if nice else []) + [app, "-case", str(case), *args]
    with log.open("w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    text = log.read_text(errors="replace")
    if rc != 0 or "FOAM FATAL" in text:
        tail = "\n".join(text.splitlines()[-25:])
        raise RuntimeError(f"{app} failed on {case} (exit code {rc}); end of {log}:\n{tail}")


def _fill(template: str, out: Path, values: dict) -> None:
    text = (resources.files(__package__) / "templates" / template).read_text()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        out.write_text(string.Template(text).substitute(values))
    except KeyError as e:
        raise KeyError(f"template {template} needs a value for {e}") from None


def _copy_templates(kind: str, case: Path, values: dict) -> None:
    root = resources.files(__package__) / "templates" / kind
    for sub in ("0", "constant", "system"):
        for item in (root / sub).iterdir():
            _fill(f"{kind}/{sub}/{item.name}", case / sub / item.name, values)


def _foam_vector_list(points: np.ndarray, name: str) -> str:
    rows = "\n".join(f"({x:.9g} {y:.9g} {z:.9g})" for x, y, z in points)
    return ("FoamFile\n{\n    version     2.0;\n    format      ascii;\n"
            f"    class       vectorField;\n    object      {name};\n}}\n\n"
            f"{len(points)}\n(\n{rows}\n)\n")


def write_mesh_case(case: Path, geometry: ElbowGeometry) -> None:
    """A case holding only the blockMesh set-up (run blockMesh on it once)."""
    (case / "system").mkdir(parents=True, exist_ok=True)
    (case / "constant").mkdir(exist_ok=True)
    (case / "system" / "blockMeshDict").write_text(block_mesh_dict(geometry))
    values = {"iterations": 1, "tolerance": 1e-3, "nu": 1e-5}
    for name in ("controlDict", "fvSchemes", "fvSolution"):
        _fill(f"flow/system/{name}", case / "system" / name, values)


def _link_mesh(case: Path, mesh_case: Path) -> None:
    target = case / "constant" / "polyMesh"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    target.symlink_to((mesh_case / "constant" / "polyMesh").resolve(), target_is_directory=True)


def _inlet_turbulence(speed: float, hydraulic_diameter: float, intensity: float):
    k = 1.5 * (intensity * speed) ** 2
    epsilon = _CMU ** 0.75 * k ** 1.5 / (0.07 * hydraulic_diameter)
    return k, epsilon


def write_flow_case(case: Path, mesh_case: Path, recipe: Recipe, main_speed: float,
                    side_speed: float) -> None:
    """The steady gas-flow case for one pair of inlet speeds [m s-1]."""
    g, fl = recipe.geometry, recipe.fluid
    dh_main = 2 * g.width * g.depth / (g.width + g.depth)
    dh_side = 2 * g.branch_width * g.branch_depth / (g.branch_width + g.branch_depth)
    k_main, eps_main = _inlet_turbulence(main_speed, dh_main, fl.turbulence_intensity)
    k_side, eps_side = _inlet_turbulence(side_speed, dh_side, fl.turbulence_intensity)
    values = {"iterations": fl.iterations, "tolerance": f"{fl.tolerance:g}",
              "nu": f"{fl.viscosity:g}", "main_inlet_speed": f"{main_speed:g}",
              "side_inlet_speed": f"{side_speed:g}", "main_k": f"{k_main:.6g}",
              "side_k": f"{k_side:.6g}", "main_epsilon": f"{eps_main:.6g}",
              "side_epsilon": f"{eps_side:.6g}"}
    _copy_templates("flow", case, values)
    _link_mesh(case, mesh_case)


def _size_distribution(diameter: float) -> str:
    return f"""type        fixedValue;
                fixedValueDistribution
                {{
                    value   {diameter:.9g};
                }}"""


def feed_size_classes(feed, diameter: float) -> np.ndarray:
    """The feed's K = feed.size_classes diameters [m], each carrying 1/K of the mass.

    rosin_rammler: the mass fraction coarser than x is exp(-(x / d)^n) (d = the case's
    diameter, n = feed.spread), truncated to feed.size_range x d; class k is the size at the
    mass quantile (k + 1/2) / K of the truncated law, as Fluent discretises its Rosin-Rammler
    injections into a number of diameters. We sample the classes ourselves rather than use
    OpenFOAM's RosinRammler model, whose v1912 sampler shifts the law by minValue
    (x = minValue + d (-ln(1 - yK))^(1/n)), so it is not the law asked for. fixed: K = 1, d.
    """
    if feed.size_distribution == "fixed":
        return np.array([diameter])
    lo, hi = (r * diameter for r in feed.size_range)
    coarser = lambda x: np.exp(-(x / diameter) ** feed.spread)   # noqa: E731
    q = (np.arange(feed.size_classes) + 0.5) / feed.size_classes
    # mass fraction finer than x, renormalised to the truncated range
    target = coarser(lo) - q * (coarser(lo) - coarser(hi))
    return diameter * (-np.log(target)) ** (1.0 / feed.spread)


def _injection(name: str, soi: float, positions_file: str, side_speed: float, diameter: float,
               n_particle: float | None = None, mass_total: float | None = None) -> str:
    """A manualInjection: a fixed number of real particles per parcel (n_particle), or
    mass_total [kg] shared equally by the parcels (OpenFOAM's mass basis)."""
    basis = ("parcelBasisType fixed;\n            nParticle       "
             f"{n_particle:.9g};\n            massTotal       0;" if mass_total is None else
             f"parcelBasisType mass;\n            massTotal       {mass_total:.9g};")
    return f"""        {name}
        {{
            type            manualInjection;
            {basis}
            SOI             {soi:.9g};
            positionsFile   "{positions_file}";
            U0              (0 {side_speed:.9g} 0);
            sizeDistribution
            {{
                {_size_distribution(diameter)}
            }}
        }}"""


def feed_positions(recipe: Recipe, seed: int) -> np.ndarray:
    """Feed release points (parcels, 3) [m]: a stratified, jittered grid over the branch
    section with seed `seed` + 1000003, so the feed never repeats the tracked points."""
    return injection_positions(recipe.geometry, recipe.feed.parcels, seed + 1_000_003,
                               recipe.particles.jitter)


FEED_EQUIVALENT_SECONDS = 1.0   # the released mass is solids_mass_flow x this


def _case_values(recipe: Recipe, conditions: dict[str, float], end_time: float,
                 write_every: int, injection_models: list[str], dispersion: str) -> dict:
    p, e = recipe.particles, recipe.erosion
    return {
        "end_time": f"{end_time:.9g}", "delta_t": f"{p.delta_t:.9g}",
        "write_every": write_every,
        "fluid_density": f"{recipe.fluid.density:g}", "nu": f"{recipe.fluid.viscosity:g}",
        "mu": f"{recipe.fluid.viscosity * recipe.fluid.density:.9g}",
        "gravity": " ".join(f"{v:g}" for v in p.gravity),
        "max_courant": f"{p.max_courant:g}", "velocity_interpolation": p.interpolation,
        "particle_density": f"{conditions['particle_density']:g}",
        "restitution": f"{conditions['restitution']:g}", "friction": f"{p.friction:g}",
        "injection_models": "\n".join(injection_models),
        "dispersion_model": ("stochasticDispersionRAS" if dispersion == "stochastic"
                             else "none"),
        "simulation_type": "RAS" if dispersion == "stochastic" else "laminar",
        "erosion_patches": " ".join(e.patches), "flow_stress": f"{e.flow_stress:g}",
        "psi": f"{e.psi:g}", "K": f"{e.K:g}",
    }


def write_track_case(case: Path, mesh_case: Path, flow_U: Path, recipe: Recipe,
                     conditions: dict[str, float], seed: int) -> np.ndarray:
    """The tracked-particle pass of one sweep point: P parcels of the case's diameter
    injected once at t = 0 (one real particle each, no dispersion: deterministic), written
    every sample_interval up to the horizon. Returns the injection points (P, 3)."""
    p = recipe.particles
    side, d = conditions["side_inlet_speed"], conditions["particle_diameter"]
    tracked = injection_positions(recipe.geometry, p.tracked, seed, p.jitter)
    models = [_injection("tracked", 0.0, "trackedPositions", side, d, n_particle=1.0)]
    values = _case_values(recipe, conditions, p.horizon,
                          int(round(p.sample_interval / p.delta_t)), models, "none")
    _copy_templates("particles", case, values)
    _link_mesh(case, mesh_case)
    (case / "constant" / "trackedPositions").write_text(
        _foam_vector_list(tracked, "trackedPositions"))
    shutil.copyfile(flow_U, case / "0" / "U")
    return tracked


def write_erosion_case(case: Path, mesh_case: Path, flow_U: Path, recipe: Recipe,
                       conditions: dict[str, float], seed: int) -> float:
    """The erosion pass of one sweep point: the feed (see FeedSettings) released at once and
    tracked for feed.duration, with Finnie particleErosion on the walls, written only at the
    end. The release points are dealt out in turn to the size classes (feed_size_classes),
    one manualInjection each with an equal share of the mass, so every class covers the
    whole branch. With stochastic dispersion the flow's k, epsilon and nut are copied next
    to U (the solver builds the frozen k-epsilon model from them). Returns the released
    mass [kg]."""
    f = recipe.feed
    side, d = conditions["side_inlet_speed"], conditions["particle_diameter"]
    mass = f.solids_mass_flow * FEED_EQUIVALENT_SECONDS
    sizes = feed_size_classes(f, d)
    points = feed_positions(recipe, seed)
    if len(points) < len(sizes):
        raise ValueError(f"feed.parcels ({len(points)}) must be at least the number of size "
                         f"classes ({len(sizes)})")
    models, files = [], {}
    for k, size in enumerate(sizes):
        share = points[k::len(sizes)]
        name = f"feedPositions{k:03d}"
        files[name] = share
        models.append(_injection(f"feed{k:03d}", 0.0, name, side, float(size),
                                 mass_total=mass * len(share) / len(points)))
    steps = int(round(f.duration / recipe.particles.delta_t))
    values = _case_values(recipe, conditions, f.duration, steps, models, f.dispersion)
    _copy_templates("particles", case, values)
    _link_mesh(case, mesh_case)
    for name, share in files.items():
        (case / "constant" / name).write_text(_foam_vector_list(share, name))
    shutil.copyfile(flow_U, case / "0" / "U")
    if f.dispersion == "stochastic":
        for name in ("k", "epsilon", "nut"):
            shutil.copyfile(flow_U.parent / name, case / "0" / name)
    return mass
