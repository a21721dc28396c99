"""The comparison itself: stage 1 then stage 2 over every split, scored into one table;
the second stage of ``fluidgpt fit`` (fold models and the erosion CNN after the model
LightningCLI trained) and the scoring of saved checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from torch import Tensor

from ..atomic import atomic_write
from ..casetensors import CaseTensors, case_tensors
from ..data import Split, make_split
from ..datainfo import DataInfo
from .config import (
    EROSION_SURROGATES,
    TRAJECTORY_MODELS,
    Experiment,
    load_data,
    split_kinds,
    split_of,
    tuning_view,
)
from .jobs import (
    Job,
    JobResult,
    Runner,
    StageOne,
    assemble_stage,
    erosion_job,
    trajectory_jobs,
)
from .scoring import (
    TABLE_COLUMNS,
    _erosion_scores,
    _nearest,
    _noise_data,
    _rows,
    _surrogate,
    _trajectory_scores,
    noise_ceiling_rows,
    wall_geometry,
)
from .training import forecast, predict_erosion

__all__ = ["CompareResult", "run_compare", "fit_stage_two", "evaluate_checkpoints"]


@dataclass
class CompareResult:
    """The tidy table, and per split the held-out truth and every model's predictions for
    the plots: predictions[split][model] = {"trajectory": (n, T, P, 3), "erosion": ...}."""

    table: pd.DataFrame
    truth: dict[str, CaseTensors] = field(default_factory=dict)
    predictions: dict[str, dict[str, dict[str, Tensor]]] = field(default_factory=dict)
    logs: dict[str, dict[str, Path]] = field(default_factory=dict)
    face_centre: np.ndarray | None = None


@dataclass
class _SplitRun:
    """One split of a comparison: its (possibly tuning-view) data, the trajectory models and
    erosion sources it runs, their stage-1 jobs, and what comes back."""

    kind: str
    ds: xr.Dataset
    data: CaseTensors
    split: Split
    models: list[str]
    sources: list[str]
    jobs: dict[str, list[Job]]
    stages: dict[str, StageOne] = field(default_factory=dict)

    @property
    def stage2(self) -> list[str]:
        """The erosion models' inputs in job order: each model's rollouts, then "cfd"."""
        return [m for m in self.models if m in self.sources] + (
            ["cfd"] if "cfd" in self.sources else [])


def _plan_split(config: Experiment, ds: xr.Dataset, data: CaseTensors, kind: str,
                out_dir: Path | None, echo: Callable[[str], None]) -> _SplitRun:
    split = split_of(ds, config, kind)
    if config.split.tune:
        ds, data, split = tuning_view(ds, data, split)
    echo(f"{kind} split: {split.description}")
    sources = list(config.erosion.inputs) if data.erosion is not None else []
    models = [m for m in config.compare.models if m in TRAJECTORY_MODELS]
    jobs = {m: trajectory_jobs(m, config, ds, data, split, m in sources, out_dir)
            for m in models}
    return _SplitRun(kind, ds, data, split, models, sources, jobs)


def _erosion_jobs(config: Experiment, run: _SplitRun, out_dir: Path | None) -> list[Job]:
    """Stage 2 of one split, in the order of run.stage2."""
    return [erosion_job(config, run.data, run.split, None, None, "cfd", out_dir) if m == "cfd"
            else erosion_job(config, run.data, run.split, run.stages[m].oof,
                             run.stages[m].test, m, out_dir) for m in run.stage2]


def _score_split(config: Experiment, run: _SplitRun, eroded: Sequence[JobResult],
                 echo: Callable[[str], None], result: CompareResult) -> list[dict[str, Any]]:
    kind, data, split, stages = run.kind, run.data, run.split, run.stages
    truth = data.subset(split.test)
    wall = wall_geometry(run.ds)
    cnn_of = dict(zip(run.stage2, eroded))
    preds: dict[str, dict[str, Tensor]] = {}
    logs: dict[str, Path] = {}
    rows: list[dict[str, Any]] = []
    for m in run.models:
        preds[m] = {"trajectory": stages[m].test}
        if stages[m].final.log_dir is not None:
            logs[m] = stages[m].final.log_dir
            if stages[m].folds:
                logs[f"{m} fold0"] = stages[m].folds[0].log_dir
    for model in config.compare.models:
        if model == "nearest":
            pred, seconds = _nearest(data, split)
            preds["nearest"] = {"trajectory": pred["trajectories"]}
            rows += _rows("nearest", "trajectory", kind,
                          _trajectory_scores(pred["trajectories"], truth), seconds)
            if "erosion" in pred:
                preds["nearest"]["erosion"] = pred["erosion"]
                rows += _rows("nearest", "erosion", kind,
                              _erosion_scores(pred["erosion"], truth, True, wall=wall),
                              seconds)
            continue
        if model in EROSION_SURROGATES:
            if data.erosion is None:
                echo(f"  {model}: the dataset has no erosion_rate, no rows")
                continue
            area = None if wall is None else wall[1]
            pred, seconds = _surrogate(model, data, split, area, config.seed)
            preds[model] = {"erosion": pred["erosion"]}
            rows += _rows(model, "erosion", kind,
                          _erosion_scores(pred["erosion"], truth, True, pred["peak"], wall),
                          seconds)
            continue
        stage = stages[model]
        rows += _rows(model, "trajectory", kind, _trajectory_scores(stage.test, truth),
                      stage.final.seconds)
        if model in cnn_of:
            cnn = cnn_of[model]
            preds[model]["erosion"] = cnn.prediction
            rows += _rows(model, "erosion", kind,
                          _erosion_scores(cnn.prediction, truth, cnn.magnitude_head, cnn.peak,
                                          wall), cnn.seconds + stage.fold_seconds)
    if "cfd" in cnn_of:
        cnn = cnn_of["cfd"]
        preds["cnn"] = {"erosion": cnn.prediction}
        rows += _rows("cnn", "erosion", kind,
                      _erosion_scores(cnn.prediction, truth, cnn.magnitude_head, cnn.peak,
                                      wall), cnn.seconds)
    rows += noise_ceiling_rows(_noise_data(config, run.ds), kind, echo)
    result.truth[kind], result.predictions[kind], result.logs[kind] = truth, preds, logs
    return rows


def _compare_splits(config: Experiment, ds: xr.Dataset, data: CaseTensors, kinds: Sequence[str],
                    out_dir: Path | None, runner: Runner, echo: Callable[[str], None],
                    result: CompareResult) -> list[dict[str, Any]]:
    """Every split's stage 1 in one batch of jobs, then every split's stage 2 in another,
    so that the workers stay busy across splits; then the scores, split by split."""
    runs = [_plan_split(config, ds, data, k, out_dir, echo) for k in kinds]
    flat = [j for run in runs for m in run.models for j in run.jobs[m]]
    results, at = runner.map(flat), 0
    for run in runs:
        for m in run.models:
            n = len(run.jobs[m])
            run.stages[m] = assemble_stage(m, run.split, results[at:at + n])
            at += n
    stage2 = [_erosion_jobs(config, run, out_dir) for run in runs]
    eroded = runner.map([j for jobs in stage2 for j in jobs])
    rows, at = [], 0
    for run, jobs in zip(runs, stage2):
        rows += _score_split(config, run, eroded[at:at + len(jobs)], echo, result)
        at += len(jobs)
    return rows


def run_compare(config: Experiment, split: str | None = None, output: str | Path | None = None,
                echo: Callable[[str], None] = print) -> CompareResult:
    """Train and score every model of ``config.compare.models`` on each split (``split``:
    these split kinds instead of ``config.split.kind``).

    Rows: model gpt / lstm / bilstm / nearest with target "trajectory" (metrics mse in m^2
    and r2 over x, y, z of the held-out cases, steps 1..T-1, valid particles) and target
    "erosion" (the erosion model trained on that model's out-of-fold rollouts and fed its
    rollouts of the held-out cases; nearest copies the map of the nearest case): r2 of the
    max-normalised maps over all wall faces, hotspot_distance_m (median over the test cases
    of the distance between the predicted and the true hot spot, maps smoothed over 2 cm of
    wall) and, for models that predict the magnitude, rel_peak_error and rel_total_error
    (mean over the test cases of the relative error of the area-integrated rate). Models
    "knn" and "pod" (erosion rows only): conditions -> erosion with no trajectories, the
    inverse-distance blend of the 4 nearest training maps and a POD + Gaussian-process
    surrogate (:mod:`fluidgpt.surrogates`). Model "cnn": the erosion model trained and fed
    with the true CFD trajectories (stage 2 alone). Model "noise_ceiling": another injection
    seed of the same case (when the dataset has such pairs).

    train_seconds: wall time to train that model (trajectory rows: the scored model; erosion
    rows: the erosion model plus the fold models that made its out-of-fold inputs).
    ``output``: a CSV path for the table; logs go next to it.
    """
    kinds = split_kinds(split or config.split.kind)
    ds = load_data(config)
    data = case_tensors(ds, config.data.conditions)
    echo(f"data: {ds.sizes['case']} cases, {data.n_particles} particles, {data.n_steps} steps, "
         f"conditions {list(data.condition_names)}"
         + ("" if data.erosion is None else f", {data.erosion.shape[1]} wall faces"))
    out_dir = None if output is None else Path(output).parent
    face_centre = (ds["face_centre"].transpose("face", "xyz").values
                   if "face_centre" in ds.coords else None)
    result = CompareResult(pd.DataFrame(columns=list(TABLE_COLUMNS)), face_centre=face_centre)
    with Runner(config.runtime.workers, echo) as runner:
        rows = _compare_splits(config, ds, data, kinds, out_dir, runner, echo, result)
    result.table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, lambda tmp: result.table.to_csv(tmp, index=False),
                     overwrite=True)  # the command refused an existing table up front
    return result


# ---------------------------------------------------------------------------------- fit
def fit_stage_two(kind: str, config: Experiment, ds: xr.Dataset, data: CaseTensors,
                  split: Split, final: JobResult, out: Path, erosion: bool = True,
                  dataset_name: str = "",
                  echo: Callable[[str], None] = print) -> dict[str, Any]:
    """What ``fluidgpt fit`` does once LightningCLI has trained ``final`` (the model of
    ``config.models[kind]`` on every non-test case, its test rollouts in
    ``final.prediction``): score it on the test cases; with ``erosion`` (and erosion maps
    in the data), train the fold models (each without its fold, rolling it out, saved as
    ``<kind>_fold<k>.ckpt``) and the erosion model of ``config.erosion.model`` on their
    out-of-fold rollouts (``erosion.ckpt``); write ``scores.csv``. Returns the paths and
    the table."""
    truth = data.subset(split.test)
    with_erosion = erosion and data.erosion is not None
    paths: dict[str, Any] = {"trajectory": final.checkpoint, "folds": []}
    with Runner(config.runtime.workers, echo) as runner:
        folds: list[JobResult] = []
        if with_erosion:
            jobs = trajectory_jobs(kind, config, ds, data, split, True, out, checkpoints=True,
                                   dataset_name=dataset_name)[:-1]
            folds = runner.map(jobs)
        stage = assemble_stage(kind, split, [*folds, final])
        rows = _rows(kind, "trajectory", split.kind, _trajectory_scores(stage.test, truth),
                     final.seconds)
        paths["folds"] = [f.checkpoint for f in stage.folds]
        if with_erosion:
            info = DataInfo.build(ds, data, split.trainval, split, None, dataset_name)
            job = erosion_job(config, data, split, stage.oof, stage.test, kind, out, info,
                              out / "erosion.ckpt")
            cnn = runner.map([job])[0]
            rows += _rows(kind, "erosion", split.kind,
                          _erosion_scores(cnn.prediction, truth, cnn.magnitude_head, cnn.peak,
                                          wall_geometry(ds)), cnn.seconds + stage.fold_seconds)
            paths["erosion"] = cnn.checkpoint
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "scores.csv", lambda tmp: table.to_csv(tmp, index=False),
                 overwrite=True)
    paths["scores"] = out / "scores.csv"
    paths["table"] = table
    return paths


# ----------------------------------------------------------------------------- evaluate
def evaluate_checkpoints(trajectory: str | Path, erosion: str | Path | None, ds: xr.Dataset,
                         kind: str | None = None) -> pd.DataFrame:
    """Score checkpoints (from ``fluidgpt fit``) on the held-out cases of ``ds``.

    The split is the one stored in the trajectory checkpoint when ``ds`` has as many cases
    (``kind`` must then match it: other test cases would include training cases); on
    another dataset it is rebuilt with the stored settings.
    """
    from ..datainfo import read_data_info
    from ..module import load_module

    info = read_data_info(str(trajectory))
    stored = Split.from_dict(info.split)
    kind = kind or stored.kind
    if stored.n_cases == ds.sizes["case"]:
        if kind != stored.kind:
            raise ValueError(f"{trajectory} was trained on the {stored.kind} split of this "
                             f"dataset; the test cases of the {kind} split include cases it "
                             f"trained on. Evaluate with --split {stored.kind}")
        split = stored
    else:
        split = make_split(ds, kind, n_folds=stored.n_folds, seed=stored.seed)
    data = case_tensors(ds, info.conditions)
    truth = data.subset(split.test)
    module = load_module(str(trajectory))
    pred = forecast(module, truth)
    name = {"gpt": "gpt", "lstm": "bilstm" if getattr(module.config, "bidirectional", False)
            else "lstm"}[module.kind]
    rows = _rows(name, "trajectory", kind, _trajectory_scores(pred, truth), float("nan"))
    if erosion is not None:
        cnn = load_module(str(erosion))
        if cnn.kind != "erosion":
            raise ValueError(f"{erosion} is a {cnn.kind} checkpoint, not an erosion model")
        if truth.erosion is None:
            raise ValueError("the dataset has no erosion_rate to score the erosion model on")
        rate, peak = predict_erosion(cnn, truth.with_positions(pred), with_peak=True)
        rows += _rows(name, "erosion", kind,
                      _erosion_scores(rate, truth, cnn.config.magnitude_head, peak,
                                      wall_geometry(ds)), float("nan"))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
