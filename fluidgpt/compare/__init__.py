"""Train and score every model on the same data, split and budget: the comparison table.

One experiment (YAML, see experiments/fluidgpt/; typed sections in :mod:`.config`, every
model section the ``class_path`` + ``init_args`` that ``fluidgpt fit`` takes as ``model``)
drives ``fluidgpt compare``:

* data: the canonical dataset (the shipped sample when ``path`` is null), the conditions fed
  to the models ("physical": the ones that vary and change the physics; "all": the paper's
  way, inert labels included) and optionally a paper-style replication under inert labels;
* split: ``interior`` (a random 15 % of the distinct physical cases, so the test cases lie
  inside the sampled ranges; the default), ``block`` (a held-out range of one condition,
  whole groups on one side), ``random`` (the paper's: 10 % test, seed 25, then k folds), a
  list of these, or ``all``; every split's rows go in one table;
* budget: the same number of epochs for every training run of every trajectory model (the
  default: reproducible on a shared machine, and the training times show what each costs),
  or the same wall-clock seconds (then ``epochs`` is a cap and learning-rate schedules are
  stretched over the time, see :class:`TimeBudget`); one budget for every erosion model;
* models: the LightningModule of gpt, lstm, bilstm, each with its network and training
  settings (a preset plus typed overrides); ``compare.models`` picks those to score, with
  the baselines nearest (the closest training case), knn and pod (conditions -> erosion
  directly, :mod:`fluidgpt.surrogates`);
* erosion: the CNN and the trajectory models whose rollouts it is trained on ("cfd": the
  true trajectories, reported as model "cnn": stage 2 alone).

Stage 2 is trained on out-of-fold rollouts: k models of a kind, each trained without one
fold, roll out the cases of that fold, so the CNN learns from trajectories as wrong as the
ones it will get on new cases. The scored stage-1 model is trained on every non-test case.

The table has the columns model, target, split, metric, value, train_seconds (see
:data:`TABLE_COLUMNS` and :func:`run_compare`).

The code is split by responsibility, data flowing one way: :mod:`.config` (the typed
sections and their parser, data and splits) -> :mod:`.training` (building, training and
predicting with one module) -> :mod:`.jobs` (training runs as jobs, the process pool, the
jobs of both stages) -> :mod:`.scoring` (scores, the noise ceiling, the baselines, the
table) -> :mod:`.run` (the comparison, the stage 2 of ``fluidgpt fit``, the scoring of
checkpoints).
"""

from __future__ import annotations

# The names imported "as" themselves are not public: experiments/ and tests/ reach them as
# compare.<name>, and jobs pickled by a process that imported the one-file compare.py name
# compare._remote_job.
from ..datamodule import scaled_batch as scaled_batch
from .config import (
    COMPARE_MODELS,
    EROSION_SURROGATES,
    TRAJECTORY_MODELS,
    BudgetSettings,
    CompareSettings,
    DataSettings,
    ErosionStage,
    Experiment,
    RuntimeSettings,
    experiment_parser,
    load_data,
    load_experiment,
    module_spec,
    parse_experiment,
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
    fit_trajectory_model,
    job_cost,
    run_job,
    trajectory_jobs,
)
from .jobs import _quiet_worker as _quiet_worker
from .jobs import _remote_job as _remote_job
from .run import CompareResult, evaluate_checkpoints, fit_stage_two, run_compare
from .scoring import (
    LOG_CONDITIONS,
    NOISE_SAMPLE,
    TABLE_COLUMNS,
    WallGeometry,
    condition_space,
    format_table,
    noise_ceiling_rows,
    wall_geometry,
)
from .scoring import _erosion_scores as _erosion_scores
from .scoring import _nearest as _nearest
from .scoring import _surrogate as _surrogate
from .scoring import _trajectory_scores as _trajectory_scores
from .training import (
    TimeBudget,
    Trained,
    build_module,
    forecast,
    predict_erosion,
    train_module,
    validation_interval,
)

__all__ = [
    "TABLE_COLUMNS",
    "TRAJECTORY_MODELS",
    "EROSION_SURROGATES",
    "COMPARE_MODELS",
    "Experiment",
    "DataSettings",
    "BudgetSettings",
    "RuntimeSettings",
    "CompareSettings",
    "ErosionStage",
    "experiment_parser",
    "parse_experiment",
    "load_experiment",
    "module_spec",
    "load_data",
    "split_of",
    "split_kinds",
    "tuning_view",
    "condition_space",
    "wall_geometry",
    "job_cost",
    "build_module",
    "train_module",
    "forecast",
    "predict_erosion",
    "fit_trajectory_model",
    "erosion_job",
    "trajectory_jobs",
    "assemble_stage",
    "run_job",
    "Job",
    "JobResult",
    "Runner",
    "StageOne",
    "Trained",
    "TimeBudget",
    "validation_interval",
    "noise_ceiling_rows",
    "run_compare",
    "fit_stage_two",
    "evaluate_checkpoints",
    "format_table",
    "CompareResult",
    "WallGeometry",
    "LOG_CONDITIONS",
    "NOISE_SAMPLE",
]
