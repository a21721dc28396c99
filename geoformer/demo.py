"""`geoformer demo`: the whole path on the built-in Held-Suarez dataset, on a CPU.

Builds (or reuses) the dataset, trains the runs of the demo plan (each one is ``geoformer fit
--config <fit config> <its args>``, a fixed number of seeded optimiser steps), forecasts from
held-out initial times, scores the forecasts against persistence, climatology and damped
persistence, and draws maps. Everything is written under the plan's output folder.

A plan with ``pretrained`` forecasts with those shipped checkpoints (``geoformer/pretrained``,
made by ``experiments/geoformer/pretrained_plan.yaml``; they are the scored "model") and
scores its own short runs as "demo_fit"; ``ensemble`` adds a Perlin-noise ensemble of the
model; ``export`` writes slim copies of runs (weights, hyperparameters, provenance) to ship.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr
import yaml

from .config import ConfigError

__all__ = ["load_plan", "fit_args", "run_demo", "export_checkpoint", "PRETRAINED_DIR"]

_PLAN_KEYS = {"dataset", "output", "runs", "forecast", "evaluate", "maps", "pretrained",
              "ensemble", "export"}
#: Where the shipped checkpoints lie (package data).
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
_RUN_KEYS = {"name", "args", "init_from"}


def _check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(allowed)}")


def load_plan(path: str | Path) -> dict[str, Any]:
    """The demo plan (experiments/geoformer/demo_plan.yaml), its keys checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no demo plan at {path}")
    plan = yaml.safe_load(path.read_text()) or {}
    _check_keys(plan, _PLAN_KEYS, str(path))
    names: list[str] = []
    for run in plan["runs"]:
        _check_keys(run, _RUN_KEYS, f"{path} runs")
        if run.get("init_from") and run["init_from"] not in names:
            raise ConfigError(f"run {run['name']!r} starts from {run['init_from']!r}, which is "
                              f"not an earlier run of {path}")
        names.append(run["name"])
    missing = sorted(set(plan["forecast"]["runs"]) - set(names))
    if missing:
        raise ConfigError(f"forecast.runs {missing} are not runs of {path}")
    missing = sorted(set(plan.get("export", {})) - set(names))
    if missing:
        raise ConfigError(f"export {missing} are not runs of {path}")
    _check_keys(plan.get("ensemble", {}), {"members", "perturbation", "perturbation_scale",
                                           "seed"}, f"{path} ensemble")
    return plan


def export_checkpoint(src: str | Path, dst: str | Path, overwrite: bool = True) -> Path:
    """A slim copy of a trained checkpoint to ship: the weights, the hyperparameters and the
    provenance (plain values; no optimiser state), written atomically; loads with
    ``weights_only=True`` like any geoformer checkpoint."""
    import torch

    from .atomic import atomic_write
    from .checkpoints import FORMAT_VERSION, load_checkpoint

    ckpt = load_checkpoint(src)  # refuses a version this release does not read
    slim = {k: ckpt[k] for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version",
                                 "epoch", "global_step") if k in ckpt}
    slim["format_version"] = FORMAT_VERSION  # an unversioned source has version 1's layout
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(dst, lambda tmp: torch.save(slim, tmp), overwrite=overwrite)


def fit_args(fit_config: str | Path, run: Mapping[str, Any], store: str,
             splits: Mapping[str, slice], runs_dir: Path) -> list[str]:
    """The ``geoformer fit`` command line of one run of the plan."""
    args = ["fit", f"--config={fit_config}", *map(str, run.get("args", ())),
            f"--data.store={store}", f"--output.dir={runs_dir}", f"--output.name={run['name']}",
            "--overwrite"]  # the demo's own run folders: a rerun replaces them
    for key, split in (("train", "train"), ("val", "validation"), ("test", "test")):
        args.append(f"--data.{key}=[{splits[split].start}, {splits[split].stop}]")
    return args


def _headline(scores: pd.DataFrame) -> str:
    rows = []
    for var, level in (("geopotential", 500), ("temperature", 850)):
        for lead in (24, 72, 120):
            sel = scores[(scores.variable == var) & (scores.level == level)
                         & (scores.lead_time_hours == lead) & (scores.metric == "rmse")]
            values = dict(zip(sel.forecast, sel.value))
            if "model" in values:
                rows.append(f"  {var} {level} hPa, {lead} h: model {values['model']:.3g}, "
                            + ", ".join(f"{k} {v:.3g}" for k, v in values.items()
                                        if k != "model"))
    return "\n".join(rows)


def _probabilistic_figures(scores: pd.DataFrame, out: Path) -> None:
    """spectra.png (model, truth and the references) and, for an ensemble, rank_histogram.png."""
    from .ensemble_plots import plot_rank_histogram, plot_spectra

    variables = [("geopotential", 500.0), ("temperature", 850.0), ("2m_temperature", None)]
    plot_spectra(scores[scores["forecast"].isin(["model", "truth", "ensemble"])],
                 out / "spectra.png", variables)
    if scores["metric"].str.startswith("rank_histogram_").any():
        plot_rank_histogram(scores, out / "rank_histogram.png", variables,
                            forecast="ensemble")


def train_runs(plan: Mapping[str, Any], fit_config: str | Path, store: str,
               splits: Mapping[str, slice], runs_dir: Path) -> dict[str, Path]:
    """Every run of the plan, in order: run name -> exported checkpoint."""
    from .train import run as run_fit

    checkpoints: dict[str, Path] = {}
    for run in plan["runs"]:
        args = fit_args(fit_config, run, store, splits, runs_dir)
        if run.get("init_from"):
            args.append(f"--init_from={checkpoints[run['init_from']]}")
        print(f"== training {run['name']}: geoformer {' '.join(args)}")
        cli = run_fit(args)
        if cli.final is None:
            raise RuntimeError(f"run {run['name']} exported no checkpoint")
        checkpoints[run["name"]] = cli.final
        print(f"   {cli.final}")
    return checkpoints


def run_demo(config: str | Path, plan_path: str | Path, output: str | Path | None = None,
             overwrite: bool = False) -> Path:
    """Run the demo: ``config`` is the runs' fit config, ``plan_path`` the plan; returns the
    output folder. An output folder that holds files is refused unless ``overwrite``."""
    from .evaluation import evaluate
    from .forecast import forecast, write_forecast
    from .plots import has_land, map_title, plot_maps, plot_scores
    from .schema import open_dataset
    from .sources.held_suarez import (
        check_reference_build,
        load_or_build_held_suarez,
        load_recipe,
        split_slices,
        spread_initial_times,
    )

    plan = load_plan(plan_path)
    out = Path(output or plan["output"])
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} holds an earlier demo's files; pass --overwrite to "
                              "replace them")
    out.mkdir(parents=True, exist_ok=True)
    recipe_path = plan.get("dataset", {}).get("recipe")
    recipe = load_recipe(recipe_path if recipe_path and Path(recipe_path).exists() else None)
    print("== dataset: Held-Suarez (dinosaur), built once and cached")
    store = str(load_or_build_held_suarez(recipe=recipe))
    print(f"   {store}")
    with xr.open_zarr(store) as ds:
        print(f"   {check_reference_build(ds).message}")
    splits = split_slices(recipe)

    trained = train_runs(plan, config, store, splits, out / "runs")
    for name, target in plan.get("export", {}).items():
        print(f"== exporting {name} -> {export_checkpoint(trained[name], target)}")
    own = [trained[name] for name in plan["forecast"]["runs"]]
    shipped = [PRETRAINED_DIR / name for name in plan.get("pretrained", [])]
    for path in shipped:
        if not path.is_file():
            raise FileNotFoundError(f"no shipped checkpoint {path}; make it with `make "
                                    "pretrained` (experiments/geoformer/pretrained_plan.yaml)")

    fc_cfg = plan["forecast"]
    inits = spread_initial_times(splits["test"], fc_cfg["lead_time"], fc_cfg["initial_times"])
    what = "the shipped checkpoints" if shipped else "the trained runs"
    print(f"== forecasting {fc_cfg['lead_time']} from {len(inits)} held-out initial times "
          f"with {what}")
    fc = forecast(shipped or own, store, inits, lead_time=fc_cfg["lead_time"],
                  every=fc_cfg["every"])
    fc_path = write_forecast(fc, out / "forecast.zarr", overwrite=True)

    print("== scoring against persistence, climatology and damped persistence")
    train = [splits["train"].start, splits["train"].stop]
    kind = plan["evaluate"]["climatology_kind"]
    tables = [evaluate(fc_path, store, train_period=train, climatology_kind=kind,
                       spectra=True)]
    extra = {}
    if shipped:
        extra["demo_fit"] = forecast(own, store, inits, lead_time=fc_cfg["lead_time"],
                                     every=fc_cfg["every"])
    if plan.get("ensemble"):
        ens = {"perturbation": "perlin", "perturbation_scale": 0.2, "seed": 0,
               **plan["ensemble"]}
        print(f"== a {ens['members']}-member {ens['perturbation']} ensemble (scale "
              f"{ens['perturbation_scale']}, seed {ens['seed']})")
        extra["ensemble"] = forecast(shipped or own, store, inits,
                                     lead_time=fc_cfg["lead_time"], every=fc_cfg["every"],
                                     **ens)
        write_forecast(extra["ensemble"], out / "ensemble.zarr", overwrite=True)
    for name, other in extra.items():
        table = evaluate(other, store, train_period=train, climatology_kind=kind,
                         references=(), spectra=name == "ensemble")
        tables.append(table[table["forecast"] != "truth"].assign(forecast=name))
    scores = pd.concat(tables, ignore_index=True)
    scores.to_csv(out / "scores.csv", index=False)
    plot_scores(scores, out / "scores.png",
                variables=[("geopotential", 500.0), ("temperature", 850.0),
                           ("u_component_of_wind", 250.0), ("2m_temperature", None)])
    _probabilistic_figures(scores, out)
    truth = open_dataset(store)
    for m in plan.get("maps", []):
        lead = pd.Timedelta(m["lead_time"])
        f = fc[m["variable"]].sel(time=inits[0], prediction_timedelta=lead, level=m["level"])
        t = truth[m["variable"]].sel(time=pd.Timestamp(inits[0]) + lead, level=m["level"])
        name = f"map_{m['variable']}{m['level']}_{int(lead / pd.Timedelta(hours=1))}h.png"
        plot_maps(f, t, out / name, title=map_title(f) + " (Held-Suarez)",
                  units=fc[m["variable"]].attrs.get("units", ""),
                  coastlines=has_land(truth))
    print("== RMSE on held-out initial times (WeatherBench 2 convention)")
    print(_headline(scores))
    print(f"== done: see {out}/ (scores.csv, scores.png, map_*.png, forecast.zarr, runs/)")
    return out
