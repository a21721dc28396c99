"""`geoformer demo`: the whole path on the built-in Held-Suarez dataset, on a CPU.

Builds (or reuses) the dataset, trains the lead-time models of the demo config, forecasts
from held-out initial times, scores the forecasts against persistence, climatology and
damped persistence, and draws maps. Everything is written under the config's output folder.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .train import DEFAULTS, _merge

__all__ = ["run_demo"]


def _experiment(demo: dict[str, Any], store: str, splits: dict[str, slice],
                model: dict[str, Any], runs: Path) -> dict[str, Any]:
    exp = _merge(copy.deepcopy(DEFAULTS), demo.get("experiment", {}))
    lead = int(model["lead_hours"])
    exp = _merge(exp, model.get("experiment", {}))
    if model.get("max_time"):
        exp["trainer"]["max_time"] = model["max_time"]
    exp["data"].update(store=store, lead_hours=lead,
                       train=[splits["train"].start, splits["train"].stop],
                       val=[splits["validation"].start, splits["validation"].stop],
                       test=[splits["test"].start, splits["test"].stop])
    exp["output"] = {"dir": str(runs), "name": f"geoformer-{lead}h"}
    return exp


def _headline(scores: pd.DataFrame) -> str:
    rows = []
    for var, level in (("geopotential", 500), ("temperature", 850)):
        for lead in (24, 72):
            sel = scores[(scores.variable == var) & (scores.level == level)
                         & (scores.lead_time_hours == lead) & (scores.metric == "rmse")]
            values = dict(zip(sel.forecast, sel.value))
            if "model" in values:
                rows.append(f"  {var} {level} hPa, {lead} h: model {values['model']:.3g}, "
                            + ", ".join(f"{k} {v:.3g}" for k, v in values.items()
                                        if k != "model"))
    return "\n".join(rows)


def run_demo(config: str | Path, output: str | Path | None = None) -> Path:
    """Run the demo described by ``config``; returns the output folder."""
    from .evaluation import evaluate
    from .forecast import forecast, write_forecast
    from .plots import plot_maps, plot_scores
    from .schema import open_dataset
    from .sources.held_suarez import load_or_build_held_suarez, load_recipe, split_slices
    from .train import fit

    demo = yaml.safe_load(Path(config).read_text())
    out = Path(output or demo["output"])
    out.mkdir(parents=True, exist_ok=True)
    recipe_path = demo.get("dataset", {}).get("recipe")
    recipe = load_recipe(recipe_path if recipe_path and Path(recipe_path).exists() else None)
    print("== dataset: Held-Suarez (dinosaur), built once and cached")
    store = str(load_or_build_held_suarez(recipe=recipe))
    print(f"   {store}")
    splits = split_slices(recipe)

    checkpoints = []
    for model in demo["models"]:
        print(f"== training the {model['lead_hours']} h model "
              f"(at most {model.get('max_time', 'unlimited')})")
        checkpoint = fit(_experiment(demo, store, splits, model, out / "runs"))
        print(f"   {checkpoint}")
        tune = model.get("fine_tune")
        if tune:
            steps = tune.get("experiment", {}).get("data", {}).get("rollout_steps", 1)
            print(f"== fine-tuning the {model['lead_hours']} h model on {steps}-step rollouts "
                  f"(at most {tune.get('max_time', 'unlimited')})")
            exp = _experiment(demo, store, splits, {**model, "max_time": tune.get("max_time")},
                              out / "runs")
            exp = _merge(exp, tune.get("experiment", {}))
            exp["init_from"] = str(checkpoint)
            exp["output"]["name"] = f"geoformer-{model['lead_hours']}h-rollout"
            checkpoint = fit(exp)
            print(f"   {checkpoint}")
        checkpoints.append(checkpoint)

    fc_cfg = demo["forecast"]
    lead_hours = pd.Timedelta(fc_cfg["lead_time"])
    test = pd.date_range(splits["test"].start, pd.Timestamp(splits["test"].stop) - lead_hours,
                         freq="6h")
    pick = np.linspace(0, len(test) - 1, fc_cfg["initial_times"]).round().astype(int)
    inits = list(test[np.unique(pick)])
    print(f"== forecasting {fc_cfg['lead_time']} from {len(inits)} held-out initial times")
    fc = forecast(checkpoints, store, inits, lead_time=fc_cfg["lead_time"],
                  every=fc_cfg["every"])
    fc_path = write_forecast(fc, out / "forecast.zarr", overwrite=True)

    print("== scoring against persistence, climatology and damped persistence")
    train = [splits["train"].start, splits["train"].stop]
    scores = evaluate(fc_path, store, train_period=train,
                      climatology_kind=demo["evaluate"]["climatology_kind"])
    scores.to_csv(out / "scores.csv", index=False)
    plot_scores(scores, out / "scores.png",
                variables=[("geopotential", 500.0), ("temperature", 850.0),
                           ("u_component_of_wind", 250.0), ("2m_temperature", None)])
    truth = open_dataset(store)
    for m in demo.get("maps", []):
        lead = pd.Timedelta(m["lead_time"])
        f = fc[m["variable"]].sel(time=inits[0], prediction_timedelta=lead, level=m["level"])
        t = truth[m["variable"]].sel(time=pd.Timestamp(inits[0]) + lead, level=m["level"])
        name = f"map_{m['variable']}{m['level']}_{int(lead / pd.Timedelta(hours=1))}h.png"
        plot_maps(f, t, out / name, title=f"{m['variable']} {m['level']} hPa, +{m['lead_time']}"
                  f" from {pd.Timestamp(inits[0]):%Y-%m-%d %HZ} (Held-Suarez)",
                  units=fc[m["variable"]].attrs.get("units", ""))
    print("== RMSE on held-out initial times (WeatherBench 2 convention)")
    print(_headline(scores))
    print(f"== done: see {out}/ (scores.csv, scores.png, map_*.png, forecast.zarr, runs/)")
    return out
