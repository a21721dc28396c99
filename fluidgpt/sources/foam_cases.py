"""Writing and running the two OpenFOAM cases of one sweep point.

1. flow: blockMesh once per sweep, then ``simpleFoam`` (steady k-epsilon) for each pair of
   inlet speeds; the particles do not act on the gas (one-way coupling), so every case with
   the same speeds shares one flow.
2. particles: ``icoUncoupledKinematicParcelFoam`` on that frozen velocity field, with
   sphere drag and gravity, rebound at the walls (restitution e, friction mu), the Finnie
   ``particleErosion`` cloud function on the walls, P tracked parcels injected once at t = 0
   (manualInjection, fixed positions and order) and a periodic feed of erosion parcels
   (``streams`` per burst, from ``feed_patterns`` sets of injection points taken in turn).

The case files come from ``templates/`` (our own files) with ``${name}`` placeholders.
"""

from __future__ import annotations

import math
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
           "write_flow_case", "write_particle_case", "feed_positions",
           "stream_particles_per_parcel", "SOLVERS"]

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


def _size_distribution(diameter: float, spread: float) -> str:
    if spread == 0.0:
        return f"""type        fixedValue;
                fixedValueDistribution
                {{
                    value   {diameter:.9g};
                }}"""
    return f"""type        uniform;
                uniformDistribution
                {{
                    minValue    {diameter * (1.0 - spread):.9g};
                    maxValue    {diameter * (1.0 + spread):.9g};
                }}"""


def _injection(name: str, soi: float, positions_file: str, n_particle: float, side_speed: float,
               diameter: float, spread: float = 0.0) -> str:
    return f"""        {name}
        {{
            type            manualInjection;
            massTotal       0;
            parcelBasisType fixed;
            nParticle       {n_particle:.9g};
            SOI             {soi:.9g};
            positionsFile   "{positions_file}";
            U0              (0 {side_speed:.9g} 0);
            sizeDistribution
            {{
                {_size_distribution(diameter, spread)}
            }}
        }}"""


def stream_particles_per_parcel(recipe: Recipe, diameter: float, density: float) -> float:
    """Real particles per erosion parcel so that the feed carries solids_mass_flow.

    With a size spread s the mean of d^3 over the uniform [d (1 - s), d (1 + s)] is
    d^3 (1 + s^2), which keeps the mean mass flow.
    """
    p = recipe.particles
    particle_mass = (density * math.pi * diameter ** 3 / 6.0) * (1.0 + p.feed_size_spread ** 2)
    return p.solids_mass_flow * p.burst_interval / (p.streams * particle_mass)


def feed_positions(recipe: Recipe, seed: int) -> np.ndarray:
    """Feed injection points (feed_patterns, streams, 3) [m]: burst k uses set k mod F.

    One stratified grid of streams * feed_patterns points over the branch section (seed
    `seed` + 1000003, so the feed never repeats the tracked points), dealt out in turn, so
    that every set covers the whole section and the sets together cover it F times finer.
    With feed_patterns 1 this is the single set every burst used before the option existed.
    """
    p = recipe.particles
    points = injection_positions(recipe.geometry, p.streams * p.feed_patterns,
                                 seed + 1_000_003, p.jitter)
    return np.stack([points[k::p.feed_patterns] for k in range(p.feed_patterns)])


def _feed_files(feed_patterns: int) -> list[str]:
    if feed_patterns == 1:
        return ["streamPositions"]
    return [f"streamPositions{k:03d}" for k in range(feed_patterns)]


def write_particle_case(case: Path, mesh_case: Path, flow_U: Path, recipe: Recipe,
                        conditions: dict[str, float], seed: int) -> np.ndarray:
    """The particle case of one sweep point; returns the tracked injection points (P, 3)."""
    p, e = recipe.particles, recipe.erosion
    side, d = conditions["side_inlet_speed"], conditions["particle_diameter"]
    rho_p = conditions["particle_density"]
    tracked = injection_positions(recipe.geometry, p.tracked, seed, p.jitter)
    feeds = feed_positions(recipe, seed)
    # The tracked parcels go in alone in the first step, so their origId are 0..P-1 in file
    # order; the erosion feed starts one step later. One real particle per tracked parcel
    # keeps their share of the eroded volume negligible (and they have left before the
    # erosion window opens).
    models = [_injection("tracked", 0.0, "trackedPositions", 1.0, side, d)]
    n_bursts = int(round(p.end_time / p.burst_interval))
    n_stream = stream_particles_per_parcel(recipe, d, rho_p)
    names = _feed_files(p.feed_patterns)
    for k in range(n_bursts):
        soi = k * p.burst_interval + p.delta_t
        models.append(_injection(f"feed{k:03d}", soi, names[k % p.feed_patterns], n_stream,
                                 side, d, p.feed_size_spread))
    values = {
        "end_time": f"{p.end_time:.9g}", "delta_t": f"{p.delta_t:.9g}",
        "write_every": int(round(p.sample_interval / p.delta_t)),
        "fluid_density": f"{recipe.fluid.density:g}", "nu": f"{recipe.fluid.viscosity:g}",
        "mu": f"{recipe.fluid.viscosity * recipe.fluid.density:.9g}",
        "gravity": " ".join(f"{v:g}" for v in p.gravity),
        "max_courant": f"{p.max_courant:g}", "velocity_interpolation": p.interpolation,
        "particle_density": f"{rho_p:g}",
        "restitution": f"{conditions['restitution']:g}", "friction": f"{p.friction:g}",
        "injection_models": "\n".join(models),
        "erosion_patches": " ".join(e.patches), "flow_stress": f"{e.flow_stress:g}",
        "psi": f"{e.psi:g}", "K": f"{e.K:g}",
    }
    _copy_templates("particles", case, values)
    _link_mesh(case, mesh_case)
    (case / "constant" / "trackedPositions").write_text(
        _foam_vector_list(tracked, "trackedPositions"))
    for name, points in zip(names, feeds):
        (case / "constant" / name).write_text(_foam_vector_list(points, name))
    shutil.copyfile(flow_U, case / "0" / "U")
    return tracked
