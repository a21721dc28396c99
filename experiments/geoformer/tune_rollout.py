"""Choose a longer rollout fine-tuning of the shipped 24 h model on validation initial times only.

    .venv/bin/python experiments/geoformer/tune_rollout.py --rollout-steps 5 --train-steps 100 \\
        --lr 2.5e-4 --batch-size 8 --init OLD_24H.ckpt --output tune-rollout [--overwrite] \\
        [--fit-arg=--model.area_weighted_loss=true ...]

Each trial starts from --init (weights only; default geoformer/pretrained/held_suarez_24h.ckpt,
which since 2026-12-02 is the 5-step model this script chose; the 3-step model it started
from: `git show 78ece05:geoformer/pretrained/held_suarez_24h.ckpt > OLD_24H.ckpt`), trains that
many seeded optimiser steps on K-step (K x 24 h) rollouts with the demo's fit config
(experiments/geoformer/demo.yaml: cosine over the steps, warm-up, gradient clipping at 1.0),
then forecasts 5 days from initial times spread over the recipe's validation period (never
the test period the demo scores). Printed per trial (JSON lines): the RMSE of Z500 and T850
at 24, 72 and 120 h of the starting checkpoint, of the fine-tuned one and of damped
persistence (fitted on the training period). Checkpoints are left under --output. Validation
runs at epoch ends only: with more train steps than an epoch holds (268 for 5-step samples at
batch 8), the kept checkpoint is the best one at an epoch end, not the last step.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
from pathlib import Path

import pandas as pd

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

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "geoformer" / "pretrained" / "held_suarez_24h.ckpt"
DEMO_FIT = ROOT / "experiments" / "geoformer" / "demo.yaml"
FIELDS = {"z500": ("geopotential", 500.0), "t850": ("temperature", 850.0)}
LEADS = (24, 72, 120)


def scores(table: pd.DataFrame, name: str) -> dict[str, float]:
    out = {}
    for key, (variable, level) in FIELDS.items():
        for lead in LEADS:
            rows = table[(table["forecast"] == name) & (table["metric"] == "rmse")
                         & (table["variable"] == variable) & (table["level"] == level)
                         & (table["lead_time_hours"] == lead) & (table["region"] == "global")]
            out[f"{key}_{lead}h"] = round(float(rows["value"].iloc[0]), 3)
    return out


def validation_scoring(initial_times: int = 12):
    """(store, splits, initial times, score): the cached Held-Suarez store, the recipe's
    periods, ``initial_times`` spread over the validation period, and a function that
    forecasts 5 days every 24 h from them with a list of checkpoints and scores the forecast
    against damped persistence (fitted on the training period)."""
    recipe = load_recipe(ROOT / "datasets" / "held_suarez" / "recipe.yaml")
    store = str(load_or_build_held_suarez(recipe=recipe))
    splits = split_slices(recipe)
    inits = spread_initial_times(splits["validation"], "120h", initial_times)
    train = [splits["train"].start, splits["train"].stop]

    def score(checkpoints: list[Path]) -> pd.DataFrame:
        fc = forecast(load_models(checkpoints), store, inits, lead_time="5d", every="24h")
        return evaluate(fc, store, train_period=train, climatology_kind="time_mean",
                        references=("damped_persistence",))

    return store, splits, inits, score


def _short(fit_arg: str) -> str:
    """--model.area_weighted_loss=true -> area_weighted_loss_true (a trial's name)."""
    key, _, value = fit_arg.lstrip("-").partition("=")
    return f"{key.split('.')[-1]}_{value}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rollout-steps", type=int, nargs="+", default=[5])
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=2.5e-4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--initial-times", type=int, default=12)
    p.add_argument("--output", default="tune-rollout")
    p.add_argument("--init", type=Path, default=SHIPPED, help="the 24 h checkpoint to start from")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier --output")
    p.add_argument("--fit-arg", action="append", default=[], metavar="ARG",
                   help="one more `geoformer fit` argument for every trial, e.g. "
                        "--fit-arg=--model.area_weighted_loss=true (repeatable)")
    a = p.parse_args()
    problem = next((text for bad, text in (
        (not a.init.is_file(), f"--init: expected a checkpoint file, found no file {a.init}"),
        (min(a.rollout_steps) < 1 or a.train_steps < 1 or a.batch_size < 1
         or a.initial_times < 1, "--rollout-steps, --train-steps, --batch-size and "
         "--initial-times: expected positive integers"),
        (not a.lr > 0, f"--lr: expected a positive learning rate, found {a.lr}"),
        (Path(a.output).is_dir() and any(Path(a.output).iterdir()) and not a.overwrite,
         f"--output: {a.output} holds files of an earlier run; pass --overwrite"),
        (any(not (arg.startswith("--") and "=" in arg) for arg in a.fit_arg),
         f"--fit-arg: expected --key=value, found {a.fit_arg}"),
    ) if bad), None)
    if problem:
        print(f"tune_rollout.py: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if a.fit_arg:  # unknown keys or bad values fail now (one line), not after the scoring
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                run_fit(["fit", f"--config={DEMO_FIT}", *a.fit_arg, "--print_config"])
        except SystemExit as done:  # --print_config exits 0; a bad argument 2, said in a line
            if done.code not in (0, None):
                raise
    store, splits, inits, score_models = validation_scoring(a.initial_times)

    def score(checkpoint: Path) -> pd.DataFrame:
        return score_models([checkpoint])

    start = score(a.init)
    print(json.dumps({"trial": "start", "init": str(a.init), "period": "validation",
                      "initial_times": len(inits), **scores(start, "model")}), flush=True)
    print(json.dumps({"trial": "damped_persistence", **scores(start, "damped_persistence")}),
          flush=True)
    for k in a.rollout_steps:
        name = f"rollout{k}-{a.train_steps}steps-lr{a.lr:g}-b{a.batch_size}" + "".join(
            "-" + re.sub(r"[^A-Za-z0-9_.+-]", "_", _short(arg)) for arg in a.fit_arg)
        run = {"name": name, "args": [
            "--data.lead_hours=24", "--trainer.max_time=null",
            f"--trainer.max_steps={a.train_steps}", "--model.schedule=steps",
            f"--trainer.limit_train_batches={a.train_steps}",  # epochs end, so validation runs
            f"--data.rollout_steps={k}", f"--data.batch_size={a.batch_size}",
            f"--model.lr={a.lr}", "--model.warmup_steps=20",
            "--trainer.gradient_clip_val=1.0", f"--init_from={a.init}", *a.fit_arg]}
        cli = run_fit(fit_args(DEMO_FIT, run, store,
                               splits, Path(a.output)))
        print(json.dumps({"trial": name, "checkpoint": str(cli.final),
                          **scores(score(cli.final), "model")}), flush=True)


if __name__ == "__main__":
    main()
