"""How smooth are the erosion maps, and how well do they interpolate in particle diameter?

Runs the real sweep (fluidgpt.sources.build_sweep, one case at a time) on a few grid points
of a recipe profile, with the erosion feed overridden (particles.streams, feed_patterns),
and prints, on each case's max-normalised map: the fraction of non-zero wall faces, the r2
between the maps of neighbouring diameters, and the r2 of the linear interpolation (in
diameter) of the smallest and largest diameter's maps against the middle one, pooled over
the other conditions given (a grid). Needs OpenFOAM (see the card).

    OMP_NUM_THREADS=1 python datasets/elbow_erosion/erosion_convergence.py \\
        --streams 96 --feed-patterns 10 --output /tmp/conv_96x10.nc
    python datasets/elbow_erosion/erosion_convergence.py --score /tmp/conv_96x10.nc
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


def smooth(ds, rate: np.ndarray, length: float) -> np.ndarray:
    """Each map averaged over the wall with an area-weighted Gaussian of `length` [m]."""
    centre = ds["face_centre"].values
    area = ds["face_area"].values
    out = np.empty_like(rate)
    for start in range(0, len(centre), 512):
        d2 = ((centre[start:start + 512, None] - centre[None]) ** 2).sum(-1)
        w = np.exp(-0.5 * d2 / length ** 2) * area
        out[:, start:start + 512] = rate @ (w / w.sum(1, keepdims=True)).T
    return out


def patterns(ds, smooth_length: float = 0.0) -> np.ndarray:
    """Max-normalised erosion maps (case, face), optionally smoothed first."""
    rate = ds["erosion_rate"].values
    if smooth_length > 0:
        rate = smooth(ds, rate, smooth_length)
    return rate / rate.max(axis=1, keepdims=True)


def score(ds, smooth_length: float = 0.0, reference=None) -> dict:
    """Sparsity, neighbour and interpolation r2 of the max-normalised erosion maps.

    reference: the same cases with more feed parcels; adds the r2 of these maps against it.
    """
    cond = ds["conditions"].to_pandas()
    rate = ds["erosion_rate"].values
    pattern = patterns(ds, smooth_length)
    d = cond["particle_diameter"].to_numpy()
    sizes = np.unique(d)
    if len(sizes) != 3:
        raise ValueError(f"need exactly three particle diameters, got {sizes}")
    others = [c for c in cond.columns if c != "particle_diameter"]
    keys = [tuple(r) for r in cond[others].to_numpy()]
    by = {(k, di): i for i, (k, di) in enumerate(zip(keys, d))}
    w = (sizes[1] - sizes[0]) / (sizes[2] - sizes[0])
    small, mid, large, interp = [], [], [], []
    for k in sorted(set(keys)):
        a, b, c = (pattern[by[(k, s)]] for s in sizes)
        small.append(a), mid.append(b), large.append(c)
        interp.append((1 - w) * a + w * c)
    extra = {}
    if reference is not None:
        if not np.allclose(reference["conditions"].values, cond.to_numpy()):
            raise ValueError("the reference dataset holds other cases")
        extra["r2 against the reference"] = r2(patterns(reference, smooth_length), pattern)
    return {**extra, "cases": len(d), "nonzero_faces": float((rate > 0).mean()),
            "faces_above_tenth_of_peak": float((pattern > 0.1).mean()),
            f"r2 {sizes[0]:g} vs {sizes[1]:g}": r2(mid, small),
            f"r2 {sizes[2]:g} vs {sizes[1]:g}": r2(mid, large),
            f"r2 {sizes[0]:g} vs {sizes[2]:g}": r2(large, small),
            "r2 interpolation vs middle": r2(mid, interp),
            "solver_seconds_mean": ds.attrs.get("solver_seconds_mean"),
            "case_seconds_mean": ds.attrs.get("case_seconds_mean")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(RECIPE))
    ap.add_argument("--profile", default="sample")
    ap.add_argument("--streams", type=int, help="feed parcels per burst (default: recipe)")
    ap.add_argument("--feed-patterns", type=int, help="sets of feed points (default: recipe)")
    ap.add_argument("--feed-size-spread", type=float,
                    help="relative half-width of the feed's uniform size class (default: recipe)")
    fixed = {"main_inlet_speed": [9.0], "side_inlet_speed": [25.0],
             "particle_density": [3000.0], "restitution": [0.9]}
    for name, default in fixed.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, nargs="+", default=default,
                        help=f"values of {name} (grid with the profile's diameters)")
    ap.add_argument("--particle-diameter", type=float, nargs=3,
                    help="three diameters [m] (default: the profile's)")
    ap.add_argument("--output", help="where the dataset goes (.nc)")
    ap.add_argument("--score", help="only score an existing dataset")
    ap.add_argument("--reference", help="the same cases with more feed parcels (r2 against it)")
    ap.add_argument("--smooth", type=float, default=0.0,
                    help="Gaussian smoothing length [m] over the wall before scoring")
    args = ap.parse_args(argv)
    if args.score:
        ds = open_dataset(args.score)
    else:
        data = yaml.safe_load(Path(args.recipe).read_text())
        profile = data.get("profiles", {}).get(args.profile, {})
        profile.setdefault("particles", {})
        if args.streams:
            profile["particles"]["streams"] = args.streams
        if args.feed_patterns:
            profile["particles"]["feed_patterns"] = args.feed_patterns
        if args.feed_size_spread is not None:
            profile["particles"]["feed_size_spread"] = args.feed_size_spread
        for name in fixed:
            profile["conditions"][name] = getattr(args, name)
        if args.particle_diameter:
            profile["conditions"]["particle_diameter"] = args.particle_diameter
        recipe = recipe_from_dict(data, args.profile)
        ds = build_sweep(recipe, args.output, workers=1)
    reference = open_dataset(args.reference) if args.reference else None
    for key, value in score(ds, args.smooth, reference).items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
