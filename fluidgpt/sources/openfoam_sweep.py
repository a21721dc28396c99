"""Build the canonical elbow-erosion dataset by running an OpenFOAM sweep.

``build_sweep(recipe, output)`` runs, for every case of the recipe's design (or its
variant): the shared blockMesh, one steady gas flow per pair of inlet speeds, then two
particle passes per case (foam_cases): the tracked particles, read back (fluidgpt.readers)
and resampled onto ``n_steps`` times from the injection at t = 0, and the erosion feed,
whose eroded volume per wall face becomes a rate. Cases run in parallel (``workers``
processes, each OpenFOAM run under ``nice``).

Variants: ``physical`` (the design), ``paper_style`` (the design replicated under the
recipe's inert labels, see sources.variants) and ``noise_ceiling`` (``noise_ceiling.cases``
cases of the design, each run with every seed of ``noise_ceiling.seeds``; the pairs share a
group).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from ..orphans import exit_with_parent
from ..readers.openfoam import particle_key, read_eroded_volume, read_tracks, read_wall_faces
from ..readers.tracks import resample_tracks, uniform_times
from ..schema import PHYSICAL_CONDITIONS, canonical_dataset, write_dataset
from .foam_cases import (
    foam_environment,
    run_foam,
    write_erosion_case,
    write_flow_case,
    write_mesh_case,
    write_track_case,
)
from .recipe import Recipe, case_grid, load_recipe
from .variants import paper_style_variant

__all__ = ["build_sweep", "plan_cases", "VARIANTS"]

VARIANTS = ("physical", "paper_style", "noise_ceiling")


def plan_cases(recipe: Recipe, variant: str = "physical") -> pd.DataFrame:
    """The cases to simulate: one row per case with the conditions, seed and group."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    grid = case_grid(recipe)
    table = pd.DataFrame(grid, columns=list(PHYSICAL_CONDITIONS))
    table["group"] = np.arange(len(table))
    table["seed"] = recipe.particles.seed
    if variant != "noise_ceiling":
        return table
    nc = recipe.noise_ceiling
    if len(nc.seeds) < 2 or len(set(nc.seeds)) != len(nc.seeds):
        raise ValueError(f"noise_ceiling.seeds needs >= 2 distinct seeds, got {nc.seeds}")
    rng = np.random.default_rng(recipe.particles.seed)
    pick = np.sort(rng.choice(len(table), size=min(nc.cases, len(table)), replace=False))
    rows = [table.iloc[pick].assign(seed=s) for s in nc.seeds]
    return pd.concat(rows).sort_values(["group", "seed"], ignore_index=True)


def _flow_job(args):
    recipe, case, mesh, main, side, nice = args
    start = time.perf_counter()
    write_flow_case(case, mesh, recipe, main, side)
    run_foam("simpleFoam", case, foam_environment(), nice)
    latest = max((p for p in case.iterdir() if p.is_dir() and _is_number(p.name)),
                 key=lambda p: float(p.name))
    converged = "SIMPLE solution converged" in (case / "log.simpleFoam").read_text()
    return latest / "U", time.perf_counter() - start, converged


def _is_number(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def _parcels_left(log: Path) -> int:
    """Parcels still in the domain at the end of a run (the solver's last report)."""
    counts = re.findall(r"Current number of parcels\s*=\s*(\d+)", log.read_text())
    if not counts:
        raise RuntimeError(f"{log}: no 'Current number of parcels' line: not a parcel run?")
    return int(counts[-1])


def _particle_job(args):
    recipe, case, mesh, flow_U, conditions, seed, face_area, keep = args
    p, e, f = recipe.particles, recipe.erosion, recipe.feed
    start = time.perf_counter()
    # pass 1, the tracked particles: one size, no dispersion, so their trajectories are a
    # function of the conditions
    track_case, erosion_case = case / "tracks", case / "erosion"
    tracked = write_track_case(track_case, mesh, flow_U, recipe, conditions, seed)
    run_foam("icoUncoupledKinematicParcelFoam", track_case, foam_environment(), recipe.nice)
    track_seconds = time.perf_counter() - start
    times = uniform_times(p.n_steps, p.sample_interval)
    table = read_tracks(track_case, t_max=times[-1] * (1 + 1e-9))
    ids = particle_key(0, np.arange(p.tracked))
    start_rows = pd.DataFrame({
        "particle": ids, "time": 0.0, "x": tracked[:, 0], "y": tracked[:, 1],
        "z": tracked[:, 2], "u": 0.0, "v": conditions["side_inlet_speed"], "w": 0.0,
        "diameter": conditions["particle_diameter"]})
    table = pd.concat([start_rows, table[table["particle"].isin(ids)]], ignore_index=True)
    traj = resample_tracks(table, times, particles=ids)
    # pass 2, the erosion feed: polydisperse and turbulent, released at once; its eroded
    # volume is what a steady feed of solids_mass_flow erodes in FEED_EQUIVALENT_SECONDS
    t2 = time.perf_counter()
    mass = write_erosion_case(erosion_case, mesh, flow_U, recipe, conditions, seed)
    run_foam("icoUncoupledKinematicParcelFoam", erosion_case, foam_environment(), recipe.nice)
    erosion_seconds = time.perf_counter() - t2
    volume = read_eroded_volume(erosion_case, f.duration, e.patches)
    seconds = mass / f.solids_mass_flow
    rate = e.wall_density * np.clip(volume, 0.0, None) / (np.asarray(face_area) * seconds)
    left = _parcels_left(erosion_case / "log.icoUncoupledKinematicParcelFoam")
    if not keep:
        shutil.rmtree(case, ignore_errors=True)
    return {"position": traj.position, "velocity": traj.velocity, "valid": traj.valid,
            "diameter": traj.diameter, "erosion_rate": rate,
            "feed_left": left / f.parcels,
            "solver_seconds": track_seconds + erosion_seconds,
            "track_seconds": track_seconds, "erosion_seconds": erosion_seconds,
            "total_seconds": time.perf_counter() - start}


def _recipe_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False)


def _run_all(job, jobs: list, workers: int, log, what: str) -> list:
    if workers <= 1:
        results = []
        for i, args in enumerate(jobs):
            results.append(job(args))
            log(f"{what} {i + 1}/{len(jobs)}")
        return results
    # fork: the jobs only launch solvers and parse text, and fork needs no __main__ guard
    # in the calling script (spawn does).
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=get_context(method),
                             initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        results = []
        for i, result in enumerate(pool.map(job, jobs)):
            results.append(result)
            if (i + 1) % max(1, len(jobs) // 20) == 0 or i + 1 == len(jobs):
                log(f"{what} {i + 1}/{len(jobs)}")
        return results


def build_sweep(recipe, output, workers: int = 2, variant: str = "physical",
                profile: str | None = None, work_dir=None, keep_cases: bool = False,
                log=print, overwrite: bool = False) -> xr.Dataset:
    """Run the OpenFOAM sweep of `recipe` (a Recipe or a YAML path) and write `output`.

    output: .zarr, .zarr.zip or .nc, written whole or not at all
    (:func:`fluidgpt.schema.write_dataset`); an existing one is refused before any case
    runs unless ``overwrite``. profile: a named override of the recipe file.
    work_dir: where the cases run (a temporary directory, removed afterwards, when None);
    keep_cases keeps the particle cases there. Returns the canonical dataset.
    Raises OpenFOAMNotFoundError (with the apt-get line) when OpenFOAM is not installed.
    """
    if Path(output).exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, profile)
    foam_environment()
    plan = plan_cases(recipe, "physical" if variant == "paper_style" else variant)
    if variant == "paper_style" and not recipe.inert:
        raise ValueError(f"recipe {recipe.name!r} has no 'inert' labels for the paper-style "
                         "variant")
    t_start = time.perf_counter()
    own_dir = work_dir is None
    root = Path(tempfile.mkdtemp(prefix="fluidgpt-sweep-") if own_dir else work_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        mesh = root / "mesh"
        write_mesh_case(mesh, recipe.geometry)
        run_foam("blockMesh", mesh, foam_environment(), recipe.nice)
        faces = read_wall_faces(mesh, recipe.erosion.patches)
        pairs = sorted(set(zip(plan["main_inlet_speed"], plan["side_inlet_speed"])))
        log(f"{recipe.name}: {len(plan)} cases, {len(pairs)} flows, "
            f"{len(faces['face_area'])} wall faces, work dir {root}")
        flow_jobs = [(recipe, root / "flows" / f"flow_{i:03d}", mesh, m, s, recipe.nice)
                     for i, (m, s) in enumerate(pairs)]
        t_flow = time.perf_counter()
        flows = _run_all(_flow_job, flow_jobs, workers, log, "flow")
        t_flow = time.perf_counter() - t_flow
        flow_of = {pair: flows[i][0] for i, pair in enumerate(pairs)}
        for (main, side), (_, _, converged) in zip(pairs, flows):
            if not converged:
                log(f"warning: the flow for main {main} / side {side} m/s did not reach "
                    f"tolerance {recipe.fluid.tolerance} in {recipe.fluid.iterations} "
                    "iterations; its last iterate is used")
        jobs = []
        for i, row in plan.iterrows():
            cond = {c: float(row[c]) for c in PHYSICAL_CONDITIONS}
            flow_U = flow_of[(row["main_inlet_speed"], row["side_inlet_speed"])]
            jobs.append((recipe, root / "cases" / f"case_{i:05d}", mesh, flow_U, cond,
                         int(row["seed"]), faces["face_area"], keep_cases))
        t_part = time.perf_counter()
        results = _run_all(_particle_job, jobs, workers, log, "case")
        t_part = time.perf_counter() - t_part
    finally:
        if own_dir and not keep_cases:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    p, f = recipe.particles, recipe.feed
    stack = {k: np.stack([r[k] for r in results]) for k in
             ("position", "velocity", "valid", "diameter", "erosion_rate")}
    attrs = {
        "title": f"fluidgpt elbow erosion sweep ({recipe.name})",
        "source": "OpenFOAM v1912: blockMesh, simpleFoam (k-epsilon), "
                  "icoUncoupledKinematicParcelFoam with particleErosion",
        "recipe_name": recipe.name, "variant": variant,
        "recipe": _recipe_yaml(recipe),
        "design": recipe.design.kind,
        "erosion_feed": (f"{f.parcels} parcels released at once, "
                         + (f"Rosin-Rammler sizes (d = the case's particle_diameter, spread n "
                            f"{f.spread}, truncated to [{f.size_range[0]}, {f.size_range[1]}] "
                            "x d)" if f.size_distribution == "rosin_rammler" else "one size")
                         + (", stochasticDispersionRAS on the flow's k-epsilon"
                            if f.dispersion == "stochastic" else ", no dispersion")
                         + f", tracked {f.duration} s; rate = what a steady "
                           f"{f.solids_mass_flow} kg/s feed erodes"),
        "erosion_parcels": f.parcels,
        "feed_left_max": round(float(max(r["feed_left"] for r in results)), 5),
        "feed_left_mean": round(float(np.mean([r["feed_left"] for r in results])), 5),
        "erosion_model": (f"Finnie via OpenFOAM particleErosion (p {recipe.erosion.flow_stress}"
                          f", psi {recipe.erosion.psi}, K {recipe.erosion.K}), wall density "
                          f"{recipe.erosion.wall_density} kg m-3"),
        "flows_converged": int(sum(f[2] for f in flows)), "n_flows": len(flows),
        "build_seconds": round(elapsed, 1), "workers": workers,
        "flow_seconds_mean": round(float(np.mean([f[1] for f in flows])), 2),
        "case_seconds_mean": round(float(np.mean([r["total_seconds"] for r in results])), 2),
        "solver_seconds_mean": round(float(np.mean([r["solver_seconds"] for r in results])),
                                     2),
        "track_seconds_mean": round(float(np.mean([r["track_seconds"] for r in results])), 2),
        "erosion_seconds_mean": round(float(np.mean([r["erosion_seconds"] for r in results])),
                                      2),
        "flow_stage_seconds": round(t_flow, 1), "case_stage_seconds": round(t_part, 1),
    }
    ds = canonical_dataset(
        stack["position"], stack["valid"], uniform_times(p.n_steps, p.sample_interval),
        plan[list(PHYSICAL_CONDITIONS)].to_numpy(), PHYSICAL_CONDITIONS,
        velocity=stack["velocity"], diameter=stack["diameter"],
        erosion_rate=stack["erosion_rate"], face_centre=faces["face_centre"],
        face_area=faces["face_area"], patch=faces["patch"],
        face_vertices=faces["face_vertices"],
        group=plan["group"].to_numpy(), seed=plan["seed"].to_numpy(), attrs=attrs)
    if variant == "paper_style":
        ds = paper_style_variant(ds, recipe.inert)
    write_dataset(ds, output, overwrite=overwrite)
    log(f"wrote {output}: {ds.sizes['case']} cases in {elapsed:.0f} s "
        f"(flows {t_flow:.0f} s, particle cases {t_part:.0f} s)")
    return ds
