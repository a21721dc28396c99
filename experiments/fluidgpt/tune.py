"""The same tuning budget for every trajectory model: a grid of trials per model, each trained
for the experiment's epoch budget on the non-test cases of the interior split without fold 0,
and scored (trajectory MSE, m^2) on fold 0. The test cases are never seen (compare's
``split.tune``). Every model gets the same number of trials; the grids are below.

    OMP_NUM_THREADS=1 python experiments/fluidgpt/tune.py --config experiments/fluidgpt/demo.yaml \\
        --workers 2 --output tune.csv

Writes one row per trial (model, trial, settings, mse, r2, seconds, epochs) and prints each
model's best. ``--only gpt`` runs one model's grid; ``--epochs 40 80 160 320`` runs each
model as the experiment sets it at each of those epoch budgets instead (the candidates of
``budget.model_epochs``, the same for every model); ``--budget.epochs=5`` etc. override the
experiment as in ``fluidgpt compare``. Every trial is the experiment parsed again with the
trial's settings as overrides (``--models.gpt.train.lr=...``): the same schema and checks as
``fluidgpt compare`` and ``fluidgpt fit``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import pandas as pd

from fluidgpt.compare import (
    Runner,
    _trajectory_scores,
    load_experiment,
    trajectory_jobs,
)
from fluidgpt.compare.config import load_tuning_view

#: (section, key) of the model's init_args -> values; every model's grid has 6 trials.
GRIDS = {
    "gpt": {("train", "lr"): [5.0e-4, 1.0e-3, 2.0e-3], ("model", "n_layer"): [4, 6]},
    "lstm": {("train", "lr"): [1.0e-3, 3.0e-3, 1.0e-2], ("model", "hidden"): [128, 256]},
    "bilstm": {("train", "lr"): [1.0e-3, 3.0e-3, 1.0e-2], ("model", "hidden"): [128, 256]},
}


def trials(model: str):
    grid = GRIDS[model]
    for values in itertools.product(*grid.values()):
        yield dict(zip(grid.keys(), values))


def trial_overrides(model: str, settings: dict) -> list[str]:
    """The trial's settings in the experiment's override spelling."""
    return [f"--budget.model_epochs={{{model}: {value}}}" if (section, key) == ("budget", "epochs")
            else f"--models.{model}.{section}.{key}={value!r}"
            for (section, key), value in settings.items()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--output", required=True, help="CSV of the trials")
    ap.add_argument("--workers", type=int, default=2, help="trials run in parallel")
    ap.add_argument("--only", action="append", choices=sorted(GRIDS),
                    help="tune these models only (default: all)")
    ap.add_argument("--epochs", type=int, nargs="+",
                    help="instead of the grids: each model as the experiment sets it, at each "
                         "of these epoch budgets (the same for every model), to choose "
                         "budget.model_epochs")
    args, overrides = ap.parse_known_args(argv)  # the rest: --section.key=value

    config, _, _, ds, data, split = load_tuning_view(args.config, overrides)
    print(split.description, f"({len(split.trainval)} training, {len(split.test)} scored)")
    truth = data.subset(split.test)

    jobs, meta = [], []
    for model in args.only or list(GRIDS):
        grid = ([{("budget", "epochs"): e} for e in args.epochs] if args.epochs
                else trials(model))
        for i, settings in enumerate(grid):
            trial = load_experiment(args.config, [*overrides, *trial_overrides(model, settings)])
            job, = trajectory_jobs(model, trial, ds, data, split, out_of_fold=False)
            job.tag = f"{model} trial {i}"
            jobs.append(job)
            meta.append({"model": model, "trial": i,
                         "settings": " ".join(f"{s}.{k}={v}" for (s, k), v in settings.items())})
    start = time.perf_counter()
    with Runner(args.workers) as runner:
        results = runner.map(jobs)
    rows = []
    for m, r in zip(meta, results):
        scores = _trajectory_scores(r.prediction, truth)
        rows.append({**m, "mse": scores["mse"], "r2": scores["r2"],
                     "seconds": round(r.seconds, 1), "epochs": r.epochs})
    table = pd.DataFrame(rows)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output, index=False)
    print(table.to_string(index=False))
    print(f"{len(jobs)} trials in {time.perf_counter() - start:.0f} s")
    for model, group in table.groupby("model", sort=False):
        best = group.loc[group["mse"].idxmin()]
        print(f"best {model}: {best['settings']} (mse {best['mse']:.5f})")


if __name__ == "__main__":
    main()
