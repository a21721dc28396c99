"""Trial a direct long-lead model beside the shipped 24 h one, on validation initial times only.

    .venv/bin/python experiments/geoformer/trial_lead_model.py --lead-hours 120 \\
        --train-steps 1200 --output trial-lead [--fit-arg=--model.lr=1e-3 ...]

Trains a K-hour model from scratch with the demo's fit config (experiments/geoformer/demo.yaml:
seeded, cosine over the steps; the best validation checkpoint is kept), then forecasts 5 days
every 24 h from 12 initial times of the recipe's validation period (never the test period)
with the shipped 24 h model alone and with the shipped 24 h model plus the new one
(hierarchical temporal aggregation then reaches K h in one call). Prints JSON lines: the
RMSE of Z500 and T850 at 24, 72 and 120 h of both, and of damped persistence.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tune_rollout import DEMO_FIT, ROOT, SHIPPED, scores

from geoformer.demo import fit_args
from geoformer.evaluation import evaluate
from geoformer.forecast import forecast, load_models
from geoformer.sources.held_suarez import (
    load_or_build_held_suarez,
    load_recipe,
    split_slices,
    spread_initial_times,
)
from geoformer.train import run as run_fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lead-hours", type=int, default=120, choices=(48, 72, 96, 120))
    p.add_argument("--train-steps", type=int, default=1200)
    p.add_argument("--output", type=Path, default=Path("trial-lead"))
    p.add_argument("--fit-arg", action="append", default=[], metavar="ARG",
                   help="one more `geoformer fit` argument (repeatable)")
    a = p.parse_args()
    if a.train_steps < 1:
        print(f"trial_lead_model.py: --train-steps: expected a positive integer, found "
              f"{a.train_steps}", file=sys.stderr)
        raise SystemExit(2)
    recipe = load_recipe(ROOT / "datasets" / "held_suarez" / "recipe.yaml")
    store = str(load_or_build_held_suarez(recipe=recipe))
    splits = split_slices(recipe)
    inits = spread_initial_times(splits["validation"], "120h", 12)
    train = [splits["train"].start, splits["train"].stop]

    def score(checkpoints):
        fc = forecast(load_models(checkpoints), store, inits, lead_time="5d", every="24h")
        return evaluate(fc, store, train_period=train, climatology_kind="time_mean",
                        references=("damped_persistence",))

    run = {"name": f"lead{a.lead_hours}", "args": [
        f"--data.lead_hours={a.lead_hours}", "--trainer.max_time=null",
        f"--trainer.max_steps={a.train_steps}", "--model.schedule=steps", *a.fit_arg]}
    cli = run_fit(fit_args(DEMO_FIT, run, store, splits, a.output))
    both = score([SHIPPED, cli.final])
    print(json.dumps({"trial": f"24h+{a.lead_hours}h", "checkpoint": str(cli.final),
                      **scores(both, "model")}), flush=True)
    alone = score([SHIPPED])
    print(json.dumps({"trial": "24h", **scores(alone, "model")}), flush=True)
    print(json.dumps({"trial": "damped_persistence", **scores(alone, "damped_persistence")}),
          flush=True)


if __name__ == "__main__":
    main()
