"""Choose the demo ensemble's Perlin perturbation scale on validation initial times only.

    .venv/bin/python experiments/geoformer/tune_ensemble_scale.py [--scales 0.1 0.2 0.4 0.8]

The shipped Held-Suarez checkpoints forecast 5 days from initial times spread over the
recipe's validation period (never the test period the demo scores), a 10-member ensemble per
scale; printed per scale (JSON lines): the ensemble-mean RMSE and the spread-skill ratio of
Z500 and T850 at 120 h, and the deterministic (control) RMSE. The demo's scale is the one
with the lowest Z500 120 h ensemble-mean RMSE here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from geoformer.evaluation import evaluate
from geoformer.forecast import forecast, load_models
from geoformer.sources.held_suarez import (
    load_or_build_held_suarez,
    load_recipe,
    split_slices,
    spread_initial_times,
)

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"z500": ("geopotential", 500.0), "t850": ("temperature", 850.0)}


def _value(table: pd.DataFrame, metric: str, variable: str, level: float) -> float:
    rows = table[(table["metric"] == metric) & (table["variable"] == variable)
                 & (table["level"] == level) & (table["lead_time_hours"] == 120)
                 & (table["region"] == "global")]
    return float(rows["value"].iloc[0])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scales", type=float, nargs="+", default=[0.1, 0.2, 0.4, 0.8])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--initial-times", type=int, default=8)
    a = p.parse_args()
    recipe = load_recipe(ROOT / "datasets" / "held_suarez" / "recipe.yaml")
    store = str(load_or_build_held_suarez(recipe=recipe))
    splits = split_slices(recipe)
    inits = spread_initial_times(splits["validation"], "120h", a.initial_times)
    models = load_models([ROOT / "geoformer" / "pretrained" / f"held_suarez_{h}.ckpt"
                          for h in ("24h", "6h")])
    train = [splits["train"].start, splits["train"].stop]
    for scale in a.scales:
        fc = forecast(models, store, inits, lead_time="5d", every="24h", members=a.members,
                      perturbation="perlin", perturbation_scale=scale, seed=0)
        table = evaluate(fc, store, train_period=train, climatology_kind="time_mean",
                         references=())
        control = evaluate(fc.sel(number=0, drop=True), store, train_period=train,
                           climatology_kind="time_mean", references=())
        row = {"scale": scale, "members": a.members, "initial_times": len(inits),
               "period": "validation"}
        for key, (variable, level) in FIELDS.items():
            row[f"{key}_ens_mean_rmse"] = round(_value(table, "ensemble_mean_rmse",
                                                       variable, level), 3)
            row[f"{key}_spread_skill"] = round(_value(table, "spread_skill", variable,
                                                      level), 3)
            row[f"{key}_control_rmse"] = round(_value(control, "rmse", variable, level), 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
