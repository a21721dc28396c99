"""Choose the erosion model on validation cases: a grid of erosion networks, each trained on
the true CFD trajectories of the interior split's non-test cases without fold 0 and scored
on fold 0 (the test cases are never seen, as in tune.py), next to the knn and pod baselines
fitted on the same cases.

    OMP_NUM_THREADS=1 python experiments/fluidgpt/tune_erosion.py \\
        --config experiments/fluidgpt/demo.yaml --workers 2 --output tune_erosion.csv

Writes one row per trial (trial, settings, r2, hotspot_distance_m, rel_peak_error,
rel_total_error, seconds) and prints the best by r2.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import pandas as pd

from fluidgpt.compare import (
    Runner,
    _erosion_scores,
    _surrogate,
    erosion_job,
    load_experiment,
    wall_geometry,
)
from fluidgpt.compare.config import load_tuning_view

#: (section, key) -> values: 8 trials ("model": the erosion network's settings, replacing
#: the experiment's; "budget": the experiment's budget section).
GRID = {
    ("model", "preset"): ["paper", "fluidgpt"],
    ("model", "output_modes"): [0, 20],
    ("budget", "erosion_epochs"): [60, 200],
}


def trials():
    for values in itertools.product(*GRID.values()):
        yield dict(zip(GRID.keys(), values))


def trial_overrides(trial: dict, max_epochs: int | None) -> list[str]:
    """The trial in the experiment's override spelling: the erosion network's settings
    (a magnitude head always) and the erosion epochs (capped by ``max_epochs``)."""
    model = (f"{{preset: {trial[('model', 'preset')]}, magnitude_head: true, "
             f"output_modes: {trial[('model', 'output_modes')]}}}")
    epochs = trial[("budget", "erosion_epochs")]
    return [f"--erosion.model.model={model}",
            f"--budget.erosion_epochs={min(epochs, max_epochs or epochs)}"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--output", required=True, help="CSV of the trials")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-epochs", type=int, default=None,
                    help="cap every trial's epochs (a quick check of the script)")
    args, overrides = ap.parse_known_args(argv)  # the rest: --section.key=value
    config, ds, data, view_ds, view, split = load_tuning_view(args.config, overrides)
    print(split.description)
    truth, wall = view.subset(split.test), wall_geometry(view_ds)
    jobs, rows = [], []
    for i, trial in enumerate(trials()):
        c = load_experiment(args.config, [*overrides, *trial_overrides(trial, args.max_epochs)])
        job = dataclasses.replace(erosion_job(c, view, split, None, None, "cfd"),
                                  tag=f"trial {i}")
        jobs.append((trial, job))
    start = time.perf_counter()
    with Runner(args.workers) as runner:
        results = runner.map([j for _, j in jobs])
    for i, ((trial, _), r) in enumerate(zip(jobs, results)):
        scores = _erosion_scores(r.prediction, truth, r.magnitude_head, r.peak, wall)
        settings = " ".join(f"{s}.{k}={v}" for (s, k), v in trial.items())
        rows.append({"trial": i, "settings": settings, **scores, "seconds": round(r.seconds, 1)})
    for name in ("knn", "pod"):
        pred, seconds = _surrogate(name, view, split, wall[1], config.seed)
        scores = _erosion_scores(pred["erosion"], truth, True, pred["peak"], wall)
        rows.append({"trial": name, "settings": name, **scores, "seconds": round(seconds, 1)})
    table = pd.DataFrame(rows)
    table.to_csv(args.output, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    nets = table[table["trial"].map(lambda t: not isinstance(t, str))]
    best = nets.loc[nets["r2"].idxmax()]
    print(f"{len(jobs)} trials in {time.perf_counter() - start:.0f} s; best erosion network: "
          f"{best['settings']} (r2 {best['r2']:.3f})")


if __name__ == "__main__":
    main()
