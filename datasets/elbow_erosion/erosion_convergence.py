"""Has the erosion map converged? Two injection seeds of the same cases, face by face.

Runs the real sweep (fluidgpt.sources.build_sweep, the noise-ceiling variant: every case with
injection seeds 25 and 26) on a few conditions of a recipe profile, with the erosion feed
overridden (feed.parcels, size distribution, dispersion), and prints per case and pooled the
face-level r2 between the two seeds' max-normalised maps (what the noise ceiling of
`fluidgpt compare` reports), the r2 of the raw rates, the relative difference of the
area-integrated rate and the fraction of non-zero faces; with three diameters, also the r2
of the log-diameter interpolation of the outer two maps against the middle one (how far
apart in size the maps still resemble each other). Needs OpenFOAM (see the card).

    OMP_NUM_THREADS=1 python datasets/elbow_erosion/erosion_convergence.py \\
        --parcels 8000 --output /tmp/conv_8000.nc
    python datasets/elbow_erosion/erosion_convergence.py --score /tmp/conv_8000.nc
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from fluidgpt.schema import open_dataset
from fluidgpt.sources import build_sweep
from fluidgpt.sources.recipe import recipe_from_dict

RECIPE = Path(__file__).with_name("recipe.yaml")


def r2(truth, pred) -> float:
    truth, pred = np.ravel(truth), np.ravel(pred)
    return float(1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def score(ds) -> dict:
    """Seed-to-seed agreement of each case's map, and the diameter interpolation."""
    rate = ds["erosion_rate"].values
    area = ds["face_area"].values
    pattern = rate / rate.max(axis=1, keepdims=True)
    group, seed = ds["group"].values, ds["seed"].values
    cond = ds["conditions"].to_pandas()
    out, a_all, b_all = {}, [], []
    for g in np.unique(group):
        a, b = (np.flatnonzero((group == g) & (seed == s))[0] for s in np.unique(seed)[:2])
        c = cond.iloc[a]
        label = (f"d {c['particle_diameter'] * 1e6:.0f} um, main {c['main_inlet_speed']:g}, "
                 f"side {c['side_inlet_speed']:g} m/s")
        total = (rate[[a, b]] * area).sum(axis=1)
        out[f"{label}: pattern r2"] = r2(pattern[a], pattern[b])
        out[f"{label}: rate r2"] = r2(rate[a], rate[b])
        out[f"{label}: total rel diff"] = float(abs(total[1] - total[0]) / total[0])
        a_all.append(pattern[a]), b_all.append(pattern[b])
    out["pooled pattern r2 (the noise ceiling)"] = r2(np.stack(a_all), np.stack(b_all))
    out["nonzero_faces"] = float((rate > 0).mean())
    d = cond["particle_diameter"].to_numpy()
    first = seed == np.unique(seed)[0]
    sizes = np.unique(d[first])
    if len(sizes) == 3 and first.sum() == 3:
        by = {float(di): pattern[i] for i, di in zip(np.flatnonzero(first), d[first])}
        w = np.log(sizes[1] / sizes[0]) / np.log(sizes[2] / sizes[0])
        interp = (1 - w) * by[sizes[0]] + w * by[sizes[2]]
        out["r2 log-diameter interpolation vs middle"] = r2(by[sizes[1]], interp)
        out[f"r2 {sizes[0] * 1e6:.0f} vs {sizes[1] * 1e6:.0f} um"] = r2(by[sizes[1]],
                                                                         by[sizes[0]])
        out[f"r2 {sizes[2] * 1e6:.0f} vs {sizes[1] * 1e6:.0f} um"] = r2(by[sizes[1]],
                                                                         by[sizes[2]])
    out["erosion_seconds_mean"] = ds.attrs.get("erosion_seconds_mean")
    out["feed_left_max"] = ds.attrs.get("feed_left_max")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(RECIPE))
    ap.add_argument("--profile", default="sample")
    ap.add_argument("--parcels", type=int, help="feed parcels (default: the profile's)")
    ap.add_argument("--size-distribution", choices=("rosin_rammler", "fixed"))
    ap.add_argument("--dispersion", choices=("stochastic", "none"))
    fixed = {"main_inlet_speed": 9.0, "side_inlet_speed": 25.0, "particle_density": 2250.0,
             "restitution": 0.75}
    for name, default in fixed.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=default)
    ap.add_argument("--particle-diameter", type=float, nargs="+", default=[2e-5, 5e-5, 1e-4],
                    help="diameters [m]; three give the interpolation score")
    ap.add_argument("--output", help="where the dataset goes (.nc)")
    ap.add_argument("--score", help="only score an existing dataset")
    args = ap.parse_args(argv)
    if args.score:
        ds = open_dataset(args.score)
    else:
        data = yaml.safe_load(Path(args.recipe).read_text())
        profile = data.setdefault("profiles", {}).setdefault(args.profile, {})
        feed = profile.setdefault("feed", {})
        for key in ("parcels", "size_distribution", "dispersion"):
            if getattr(args, key) is not None:
                feed[key] = getattr(args, key)
        d = args.particle_diameter
        profile["design"] = {"kind": "factorial"}
        profile["conditions"] = {**{k: [getattr(args, k)] for k in fixed},
                                 "particle_diameter": d}
        profile["noise_ceiling"] = {"seeds": [25, 26], "cases": len(d)}
        recipe = recipe_from_dict(data, args.profile)
        ds = build_sweep(recipe, args.output, workers=2, variant="noise_ceiling")
    for key, value in score(ds).items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
