"""Trial a direct long-lead model beside the shipped 24 h one, on validation initial times only.

    .venv/bin/python experiments/geoformer/trial_lead_model.py --lead-hours 120 \\
        --train-steps 1200 --output trial-lead [--overwrite] [--fit-arg=--model.lr=1e-3 ...]

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

from tune_rollout import DEMO_FIT, SHIPPED, scores, validation_scoring

from geoformer.demo import fit_args
from geoformer.train import run as run_fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lead-hours", type=int, default=120, choices=(48, 72, 96, 120))
    p.add_argument("--train-steps", type=int, default=1200)
    p.add_argument("--output", type=Path, default=Path("trial-lead"))
    p.add_argument("--fit-arg", action="append", default=[], metavar="ARG",
                   help="one more `geoformer fit` argument (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier --output")
    a = p.parse_args()
    problem = next((text for bad, text in (
        (a.train_steps < 1, f"--train-steps: expected a positive integer, found {a.train_steps}"),
        (a.output.is_dir() and any(a.output.iterdir()) and not a.overwrite,
         f"--output: {a.output} holds files of an earlier run; pass --overwrite"),
        (any(not (arg.startswith("--") and "=" in arg) for arg in a.fit_arg),
         f"--fit-arg: expected --key=value, found {a.fit_arg}"),
    ) if bad), None)
    if problem:
        print(f"trial_lead_model.py: {problem}", file=sys.stderr)
        raise SystemExit(2)
    store, splits, _, score = validation_scoring()

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
