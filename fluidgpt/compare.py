"""Train and score every model on the same data, split and budget: the comparison table.

One experiment configuration (YAML, see experiments/fluidgpt/) drives ``fluidgpt fit`` and
``fluidgpt compare``:

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
* models: a preset plus overrides of the network and of the training for gpt, lstm, bilstm;
  ``compare.models`` picks those to score, with the baselines nearest (the closest training
  case), knn and pod (conditions -> erosion directly, :mod:`fluidgpt.surrogates`);
* erosion: the CNN and the trajectory models whose rollouts it is trained on ("cfd": the
  true trajectories, reported as model "cnn": stage 2 alone).

Stage 2 is trained on out-of-fold rollouts: k models of a kind, each trained without one
fold, roll out the cases of that fold, so the CNN learns from trajectories as wrong as the
ones it will get on new cases. The scored stage-1 model is trained on every non-test case.

The table has the columns model, target, split, metric, value, train_seconds (see
:data:`TABLE_COLUMNS` and :func:`run_compare`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
import xarray as xr
import yaml
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor

from .baselines import NearestCase
from .config import ConfigError, ErosionConfig, GPTConfig, LSTMConfig, TrainConfig
from .data import SPLIT_KINDS, Split, load_dataset, make_split, sample_path
from .datamodule import (
    CaseTensors,
    DataInfo,
    DataInfoCallback,
    FluidDataModule,
    case_tensors,
    scaled_batch,
    scaler_sizes,
    to_dataarray,
)
from .lightning import ErosionModule, GPTModule, SequenceModule, StopAtThreshold
from .metrics import erosion_scores, trajectory_scores
from .scalers import Scaler
from .schema import open_dataset
from .surrogates import InverseDistanceErosion, PODErosion

__all__ = [
    "TABLE_COLUMNS",
    "TRAJECTORY_MODELS",
    "EROSION_SURROGATES",
    "COMPARE_MODELS",
    "DEFAULTS",
    "load_experiment",
    "apply_overrides",
    "load_data",
    "split_of",
    "split_kinds",
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
    "run_job",
    "Job",
    "JobResult",
    "Runner",
    "noise_ceiling_rows",
    "run_compare",
    "run_fit",
    "evaluate_checkpoints",
    "format_table",
    "CompareResult",
]

TABLE_COLUMNS = ("model", "target", "split", "metric", "value", "train_seconds")
TRAJECTORY_MODELS = ("gpt", "lstm", "bilstm")
#: Direct conditions -> erosion baselines (see :mod:`fluidgpt.surrogates`): erosion rows only.
EROSION_SURROGATES = ("knn", "pod")
#: Every name compare.models accepts: the trajectory models and the baselines.
COMPARE_MODELS = (*TRAJECTORY_MODELS, "nearest", *EROSION_SURROGATES)
#: The shipped pairs of injection seeds (next to the shipped sample), for the noise ceiling.
NOISE_SAMPLE = "elbow_sample_noise.nc"
_EROSION_SOURCES = (*TRAJECTORY_MODELS, "cfd")

#: Every key an experiment may set; None marks a free-form mapping checked later by the
#: network and training configurations (their unknown keys are errors too).
DEFAULTS: dict[str, Any] = {
    "data": {"path": None, "conditions": "physical", "paper_style": None,
             "noise_ceiling": "auto"},
    "split": {"kind": "interior", "n_folds": 3, "seed": 25, "test_fraction": 0.1,
              "interior_fraction": 0.15, "hold_out": None, "fold_by": None, "tune": False},
    "budget": {"epochs": 150, "seconds": None, "erosion_epochs": 300,
               "erosion_seconds": None},
    "models": {
        "gpt": {"model": {"preset": "fluidgpt"}, "train": {"preset": "fluidgpt"}},
        "lstm": {"model": {"preset": "paper-lstm"}, "train": {"preset": "paper-lstm"}},
        "bilstm": {"model": {"preset": "paper-bilstm"}, "train": {"preset": "paper-lstm"}},
    },
    "erosion": {"model": {"preset": "fluidgpt"}, "train": {"preset": "fluidgpt-cnn"},
                "inputs": ["gpt", "lstm", "bilstm", "cfd"]},
    "compare": {"models": ["gpt", "lstm", "bilstm", "nearest", "knn", "pod"]},
    "fit": {"model": "gpt", "erosion": True},
    "runtime": {"workers": 1, "threads": 1},
    "output": "fluidgpt-output",
    "seed": 0,
}
_FREE = {("models", m, s) for m in TRAJECTORY_MODELS for s in ("model", "train")} | {
    ("erosion", "model"), ("erosion", "train"), ("data", "paper_style"), ("split", "hold_out")}

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------- configuration
def _merge(base: Any, new: Any, where: tuple[str, ...]) -> Any:
    if where in _FREE:
        if new is None:
            return None
        if not isinstance(new, Mapping):
            raise ConfigError(f"{'.'.join(where)} must be a mapping, found {new!r}")
        return {**(base or {}), **new}
    if not isinstance(base, Mapping):
        return new
    if not isinstance(new, Mapping):
        raise ConfigError(f"{'.'.join(where) or 'the experiment'} must be a mapping, found "
                          f"{new!r}")
    unknown = sorted(set(new) - set(base))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {'.'.join(where) or 'the experiment'}; "
                          f"valid keys are {sorted(base)}")
    return {k: _merge(base[k], new[k], (*where, k)) if k in new else copy.deepcopy(base[k])
            for k in base}


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads 3e-4 (no dot) as a string; read it as the number it is."""
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def apply_overrides(config: dict, items: Sequence[str]) -> dict:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a merged config."""
    out = copy.deepcopy(config)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"overrides look like section.key=value (e.g. budget.seconds=30), "
                              f"found {item!r}")
        path = tuple(key.strip().split("."))
        nested: Any = _numbers(yaml.safe_load(value))
        for part in reversed(path):
            nested = {part: nested}
        out = _merge(out, nested, ())
    return out


def load_experiment(path: str | Path | None, overrides: Sequence[str] = ()) -> dict:
    """An experiment YAML merged over :data:`DEFAULTS`, then ``section.key=value`` overrides.

    Unknown keys are an error, as are unknown split kinds, models and erosion sources.
    """
    raw: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such experiment file")
        raw = _numbers(yaml.safe_load(path.read_text()) or {})
    config = apply_overrides(_merge(DEFAULTS, raw, ()), overrides)
    _check_experiment(config)
    return config


def split_kinds(kind: str | Sequence[str]) -> list[str]:
    """The splits named by split.kind / --split: one kind, a list (or comma-separated
    string) of kinds, or "all"; each one of SPLIT_KINDS."""
    if isinstance(kind, str):
        kinds = list(SPLIT_KINDS) if kind == "all" else [k.strip() for k in kind.split(",")]
    elif isinstance(kind, Sequence):
        kinds = [str(k) for k in kind]
    else:
        raise ConfigError(f"split.kind must be a split name, a list of them or 'all', found "
                          f"{kind!r}")
    bad = [k for k in kinds if k not in SPLIT_KINDS]
    if bad or not kinds or len(set(kinds)) != len(kinds):
        raise ConfigError(f"split.kind: each split must be one of {list(SPLIT_KINDS)} (or "
                          f"'all'), once; found {kind!r}")
    return kinds


def _check_experiment(c: dict) -> None:
    split_kinds(c["split"]["kind"])
    bad = [m for m in c["compare"]["models"] if m not in COMPARE_MODELS]
    if bad:
        raise ConfigError(f"compare.models: unknown {bad}; choose from {list(COMPARE_MODELS)}")
    bad = [m for m in c["erosion"]["inputs"] if m not in _EROSION_SOURCES]
    if bad:
        raise ConfigError(f"erosion.inputs: unknown {bad}; choose from {list(_EROSION_SOURCES)}")
    if c["fit"]["model"] not in TRAJECTORY_MODELS:
        raise ConfigError(f"fit.model must be one of {TRAJECTORY_MODELS}, found "
                          f"{c['fit']['model']!r}")
    b = c["budget"]
    for key in ("seconds", "erosion_seconds", "epochs", "erosion_epochs"):
        if b[key] is not None and not (isinstance(b[key], (int, float)) and b[key] > 0):
            raise ConfigError(f"budget.{key} must be a positive number or null, found "
                              f"{b[key]!r}")
    r = c["runtime"]
    if not (isinstance(r["workers"], int) and r["workers"] >= 1):
        raise ConfigError(f"runtime.workers must be an integer >= 1, found {r['workers']!r}")
    if r["threads"] is not None and not (isinstance(r["threads"], int) and r["threads"] >= 1):
        raise ConfigError(f"runtime.threads must be an integer >= 1 or null (torch's "
                          f"default), found {r['threads']!r}")
    if int(c["split"]["n_folds"]) < 2:
        raise ConfigError(f"split.n_folds must be >= 2, found {c['split']['n_folds']}")


# ---------------------------------------------------------------------------------- data
def load_data(config: Mapping) -> xr.Dataset:
    """The experiment's dataset (the shipped sample when data.path is null), replicated under
    inert labels when data.paper_style is set."""
    d = config["data"]
    ds = load_dataset(d["path"])
    if d["paper_style"]:
        from .sources.variants import paper_style_variant

        ds = paper_style_variant(ds, {k: tuple(v) for k, v in d["paper_style"].items()})
    return ds


def split_of(ds: xr.Dataset, config: Mapping, kind: str) -> Split:
    """The split of this kind with the experiment's settings (one source for both stages)."""
    s = config["split"]
    if kind not in SPLIT_KINDS:
        raise ConfigError(f"split.kind: expected one of {list(SPLIT_KINDS)} here, found "
                          f"{kind!r}")
    if kind == "random":
        return make_split(ds, "random", test_fraction=s["test_fraction"],
                          n_folds=int(s["n_folds"]), seed=int(s["seed"]))
    if kind == "interior":
        return make_split(ds, "interior", test_fraction=s["interior_fraction"],
                          n_folds=int(s["n_folds"]), seed=int(s["seed"]))
    return make_split(ds, "block", hold_out=s["hold_out"], n_folds=int(s["n_folds"]),
                      seed=int(s["seed"]), fold_by=s["fold_by"])


def tuning_view(ds: xr.Dataset, data: CaseTensors,
                split: Split) -> tuple[xr.Dataset, CaseTensors, Split]:
    """The split's non-test cases only, fold 0 standing in for the test cases and the other
    folds as the folds: for tuning, which must never see the test cases."""
    if split.n_folds < 3:
        raise ConfigError("tuning scores on fold 0 and needs 2 more folds: set split.n_folds "
                          f">= 3 (found {split.n_folds})")
    keep = split.trainval
    local = {int(c): i for i, c in enumerate(keep)}

    def at(cases: np.ndarray) -> np.ndarray:
        return np.sort(np.array([local[int(c)] for c in cases], np.int64))

    view = Split(split.kind, len(keep), at(split.folds[0]),
                 tuple(at(f) for f in split.folds[1:]), split.seed,
                 f"tuning on {split.description}: scored on fold 0, test cases left out")
    return ds.isel(case=keep), data.subset(keep), view


# ------------------------------------------------------------------------------- models
def _section(section: Mapping, what: str) -> tuple[str, dict]:
    values = dict(section)
    if "preset" not in values:
        raise ConfigError(f"{what} needs a preset")
    return values.pop("preset"), values


def build_module(kind: str, section: Mapping, data: CaseTensors) -> Any:
    """A fresh module of ``kind`` (gpt, lstm, bilstm or erosion) sized from the data.

    section: {"model": {"preset": ..., overrides}, "train": {"preset": ..., overrides}}.
    """
    preset, over = _section(section["model"], f"{kind}.model")
    t_preset, t_over = _section(section["train"], f"{kind}.train")
    train = TrainConfig.from_preset(t_preset, **t_over)
    sizes = dict(n_particles=data.n_particles, n_conditions=data.n_conditions)
    n_features = int(over.get("n_features", 3))
    if n_features != 3:
        raise ConfigError(f"{kind}: the pipeline feeds positions only (n_features 3), found "
                          f"{n_features}")
    scalers = scaler_sizes(data.n_conditions, n_features)
    if kind == "gpt":
        base = GPTConfig.PRESETS.get(preset, {})
        steps = max(int(base.get("max_steps", 0)), data.n_steps)
        model = GPTConfig.from_preset(preset, **{**sizes, "max_steps": steps, **over})
        return GPTModule(model, train, scalers)
    if kind in ("lstm", "bilstm"):
        model = LSTMConfig.from_preset(preset, **{**sizes, "bidirectional": kind == "bilstm",
                                                  **over})
        return SequenceModule(model, train, scalers)
    if kind == "erosion":
        if data.erosion is None:
            raise ConfigError("the erosion model needs erosion_rate in the dataset")
        model = ErosionConfig.from_preset(preset, **{**sizes, "n_steps": data.n_steps,
                                                     "n_faces": data.erosion.shape[1],
                                                     "n_features": 3, **over})
        return ErosionModule(model, train, scalers)
    raise ConfigError(f"unknown model kind {kind!r}")


@dataclass
class Trained:
    """A trained module, its training wall time (s), the epochs run and its CSV log."""

    module: Any
    seconds: float
    epochs: int
    log_dir: Path | None = None
    checkpoint: Path | None = None


def _step_seconds(module: Any, batches: list[dict[str, Tensor]],
                  min_seconds: float = 0.3) -> tuple[float, float]:
    """Seconds of one training step and of one prediction, on a copy of the module: one
    warm-up step, then steps until a whole epoch or ``min_seconds`` has been timed."""
    probe = copy.deepcopy(module)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-12)
    probe.train()

    def step(batch: dict[str, Tensor]) -> None:
        loss = probe.losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(batches[0])  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < len(batches) or time.perf_counter() - t0 < min_seconds:
        step(batches[n % len(batches)])
        n += 1
        if n >= 2 and time.perf_counter() - t0 >= min_seconds:
            break
    t_step = (time.perf_counter() - t0) / n
    probe.eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        probe.predict_step(batches[0])
        t_pred = time.perf_counter() - t0
    return t_step, t_pred


def validation_interval(module: Any, dm: FluidDataModule, seconds: float,
                        times: int = 20) -> int:
    """Validate every n epochs so that validation runs about ``times`` times in the budget
    and costs at most about a tenth of it (n measured on a copy of the module)."""
    if dm.fold is None:
        return 1
    train = list(dm.train_dataloader())
    t_step, t_pred = _step_seconds(module, train)
    epoch = t_step * len(train)
    val = t_pred * len(dm.val_dataloader())
    epochs = max(1.0, seconds / epoch)
    return max(1, int(epochs / times), math.ceil(10 * val / epoch))


class TimeBudget(L.Callback):
    """Make a step-counted schedule follow the wall clock: warm-up and cosine decay of the
    ``adamw_cosine`` optimiser run over the time budget instead of a guessed step count, so
    the rate reaches its floor when ``Trainer(max_time=...)`` stops the run. Other
    schedules (constant, the paper's epoch-wise cyclic rate) are left as they are."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def progress(self) -> float:
        return min(1.0, (time.perf_counter() - self.start) / self.seconds)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from .lightning import warmup_cosine

        self.start = time.perf_counter()
        t = pl_module.train_config
        if t.optimizer != "adamw_cosine":
            return
        resolution = 100_000
        factor = warmup_cosine(resolution, t.warmup_fraction, t.min_lr / t.lr)
        for config in trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                sched.lr_lambdas = [lambda _step: factor(int(self.progress() * resolution))
                                    for _ in sched.lr_lambdas]


def train_module(module: Any, dm: FluidDataModule, seconds: float | None,
                 epochs: int | None, log_dir: Path | None = None, info: DataInfo | None = None,
                 checkpoint: Path | None = None, seed: int = 0) -> Trained:
    """Fit the module's scalers on the training cases, then train it within the budget.

    epochs: the number of epochs (None: the training config's max_epochs); seconds: a
    wall-clock limit enforced by ``Trainer(max_time)``, with the cosine schedule stretched
    over it (:class:`TimeBudget`), epochs then being a cap. The checkpoint's training config
    records the epochs run.
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    dm.fit_scalers(module)
    if seconds is not None and epochs is None:
        epochs = 100_000  # the clock decides
    t = module.train_config
    if epochs is not None:
        t = module.train_config = t.replace(max_epochs=epochs)
        module.hparams["train"] = t.to_dict()
    epochs = t.max_epochs
    callbacks: list[L.Callback] = []
    if seconds is None:
        every = max(1, epochs // 20)
    else:
        every = validation_interval(module, dm, seconds)
        callbacks.append(TimeBudget(seconds))
    if info is not None:
        callbacks.append(DataInfoCallback(info))
    if t.early_stop_mse > 0 and dm.fold is not None:
        callbacks.append(StopAtThreshold("val/loss", t.early_stop_mse, t.early_stop_patience))
    logger: Any = False
    if log_dir is not None:
        logger = CSVLogger(str(log_dir.parent), name=log_dir.name, version="")
    steps = max(1, math.ceil(len(dm.indices("train")) / dm.batch_size))
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=logger,
        max_time=None if seconds is None else {"seconds": seconds},
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=callbacks, num_sanity_val_steps=0, check_val_every_n_epoch=every,
        limit_val_batches=0 if dm.fold is None else 1.0, log_every_n_steps=steps)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        trainer.fit(module, datamodule=dm)
    seconds_used = time.perf_counter() - start
    module.train_config = module.train_config.replace(max_epochs=max(1, trainer.current_epoch))
    module.hparams["train"] = module.train_config.to_dict()
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(checkpoint)
    module.eval()
    return Trained(module, seconds_used, int(trainer.current_epoch),
                   None if log_dir is None else log_dir, checkpoint)


# ---------------------------------------------------------------------------- prediction
@torch.no_grad()
def forecast(module: Any, cases: CaseTensors, chunk: int = 64) -> Tensor:
    """Rolled-out trajectories (N, T, P, 3) in metres from each case's true first step."""
    module.eval()
    F = module.config.n_features
    out = []
    for i in range(0, len(cases), chunk):
        part = cases.subset(np.arange(i, min(i + chunk, len(cases))))
        batch = scaled_batch(part, module.scalers, F)
        pred = module.predict_step(batch)  # (B, T, P, F) scaled
        out.append(module.scalers["positions"].inverse(pred[..., :3]))
    return torch.cat(out)


@torch.no_grad()
def predict_erosion(module: ErosionModule, cases: CaseTensors, chunk: int = 64,
                    with_peak: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Erosion (N, faces): rates in kg m-2 s-1 with a magnitude head, else the pattern
    (map / its max, no unit) the paper's CNN predicts.

    with_peak: also return the predicted peak (N,): exp(log_peak) in kg m-2 s-1 with a
    magnitude head, else 1 (the pattern's own unit). The predicted pattern is map / peak; the
    maximum of the map is not the peak (an uncertain model spreads its pattern out).
    """
    module.eval()
    out, peaks = [], []
    for i in range(0, len(cases), chunk):
        part = cases.subset(np.arange(i, min(i + chunk, len(cases))))
        batch = scaled_batch(part, module.scalers, 3)
        pred = module.predict_step(batch)
        out.append(pred["rate"] if "rate" in pred else pred["pattern"])
        peaks.append(pred["log_peak"].exp() if "log_peak" in pred
                     else torch.ones(len(part), dtype=out[-1].dtype))
    maps = torch.cat(out)
    return (maps, torch.cat(peaks)) if with_peak else maps


# --------------------------------------------------------------------------------- jobs
@contextlib.contextmanager
def _threads(n: int | None):
    """torch intra-op threads for a block (None: leave as is). One thread per training and
    one training per core is much faster than two threads on a shared machine, where a
    thread waiting at a barrier for a descheduled partner burns its time slice."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Job:
    """One training run: build ``kind`` from ``section`` sized from ``data``, train it on the
    training cases of ``split`` / ``fold`` within the budget (seconds, epochs), then predict
    the ``predict`` cases (rollouts (n, T, P, 3) or erosion (n, faces))."""

    tag: str
    kind: str
    section: Mapping[str, Any]
    data: CaseTensors
    split: Split
    fold: int | None
    predict: CaseTensors
    seconds: float | None
    epochs: int | None
    seed: int = 0
    threads: int | None = 1
    log_dir: Path | None = None
    checkpoint: Path | None = None
    info: DataInfo | None = None


@dataclass
class JobResult:
    """What a job gives back: its predictions, training wall time (s), epochs run, log and
    checkpoint paths, and the module itself when it ran in this process."""

    tag: str
    prediction: Tensor
    seconds: float
    epochs: int
    log_dir: Path | None
    checkpoint: Path | None
    magnitude_head: bool = False
    module: Any = None
    peak: Tensor | None = None  # erosion jobs: the predicted peak of each case (N,)


def run_job(job: Job, keep_module: bool = True) -> JobResult:
    """Run one job here; the seed fixes the initial weights and the batch order."""
    with _threads(job.threads):
        torch.manual_seed(job.seed)
        module = build_module(job.kind, job.section, job.data)
        dm = FluidDataModule(job.data, job.split, job.fold, module.train_config.batch_size,
                             seed=job.seed)
        trained = train_module(module, dm, job.seconds, job.epochs, job.log_dir, job.info,
                               job.checkpoint, job.seed)
        peak = None
        if job.kind == "erosion":
            prediction, peak = predict_erosion(module, job.predict, with_peak=True)
        else:
            prediction = forecast(module, job.predict)
    return JobResult(job.tag, prediction, trained.seconds, trained.epochs, trained.log_dir,
                     trained.checkpoint, bool(getattr(module.config, "magnitude_head", False)),
                     module if keep_module else None, peak)


def _quiet_worker() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")


def _remote_job(job: Job) -> JobResult:
    return run_job(job, keep_module=False)


#: Relative wall time of one training case-epoch of each kind of job, measured in the demo
#: (2026-12-01, one thread each, 136 training cases: GPT 275 s for 50 epochs, BiLSTM 97 s,
#: LSTM 43 s, the paper erosion CNN 201 s for 100 epochs). Used only to order the jobs.
_JOB_COST = {"gpt": 1.0, "bilstm": 0.35, "lstm": 0.16, "erosion": 0.37}


def job_cost(job: Job) -> float:
    """An estimate of the job's wall time (relative units): a time budget, else training
    cases x epochs x the kind's cost per case-epoch."""
    if job.seconds is not None:
        return float(job.seconds)
    cases = len(job.split.trainval) if job.fold is None else len(job.split.train(job.fold))
    return _JOB_COST.get(job.kind, 1.0) * cases * float(job.epochs or 1)


class Runner:
    """Runs jobs in this process (workers <= 1) or in a pool of spawned worker processes
    (each job single-threaded by default: independent trainings on separate cores)."""

    def __init__(self, workers: int = 1, echo: Callable[[str], None] = print) -> None:
        self.workers, self.echo = int(workers), echo
        self.pool: ProcessPoolExecutor | None = None

    def _report(self, r: JobResult) -> JobResult:
        self.echo(f"  {r.tag}: {r.epochs} epochs in {r.seconds:.0f} s")
        return r

    def map(self, jobs: Sequence[Job]) -> list[JobResult]:
        if self.workers <= 1 or len(jobs) <= 1:
            return [self._report(run_job(j)) for j in jobs]
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                            initializer=_quiet_worker)
        # longest first (by an estimate) keeps both workers busy to the end
        order = sorted(range(len(jobs)), key=lambda i: -job_cost(jobs[i]))
        futures = {self.pool.submit(_remote_job, jobs[i]): i for i in order}
        results: list[JobResult | None] = [None] * len(jobs)
        for done in as_completed(futures):
            results[futures[done]] = self._report(done.result())
        return [r for r in results if r is not None]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------ stages
def _budget(config: Mapping, erosion: bool = False) -> tuple[float | None, int | None]:
    """(seconds or None, epochs or None) of every training run of one stage."""
    b = config["budget"]
    seconds, epochs = (b["erosion_seconds"], b["erosion_epochs"]) if erosion else \
        (b["seconds"], b["epochs"])
    return seconds, None if epochs is None else int(epochs)


def trajectory_jobs(kind: str, config: Mapping, ds: xr.Dataset, data: CaseTensors,
                    split: Split, out_of_fold: bool, out_dir: Path | None = None,
                    checkpoints: bool = False, dataset_name: str = "") -> list[Job]:
    """The runs of one trajectory model: one per fold (each trained without that fold and
    rolling it out) when ``out_of_fold``, then the final one (trained on every non-test case,
    rolling out the test cases)."""
    seconds, epochs = _budget(config)
    folds: list[int | None] = list(range(split.n_folds)) if out_of_fold else []
    jobs = []
    for fold in [*folds, None]:
        tag = "final" if fold is None else f"fold{fold}"
        train = split.trainval if fold is None else split.train(fold)
        cases = split.test if fold is None else split.val(fold)
        ckpt = None
        if checkpoints and out_dir is not None:
            ckpt = out_dir / (f"{kind}.ckpt" if fold is None else f"{kind}_{tag}.ckpt")
        jobs.append(Job(
            f"{split.kind} {kind} {tag}", kind, config["models"][kind], data, split, fold,
            data.subset(cases), seconds, epochs, int(config["seed"]),
            config["runtime"]["threads"],
            None if out_dir is None else out_dir / "logs" / split.kind / f"{kind}_{tag}",
            ckpt, DataInfo.build(ds, data, train, split, fold, dataset_name)))
    return jobs


@dataclass
class StageOne:
    """A trajectory model on one split: the final run (trained on every non-test case) with
    its test rollouts (n_test, T, P, 3), the fold runs, and the out-of-fold rollouts of every
    non-test case aligned with ``split.trainval`` (None without fold runs)."""

    kind: str
    final: JobResult
    folds: list[JobResult]
    oof: Tensor | None

    @property
    def test(self) -> Tensor:
        return self.final.prediction

    @property
    def fold_seconds(self) -> float:
        return sum(f.seconds for f in self.folds)


def assemble_stage(kind: str, split: Split, results: Sequence[JobResult]) -> StageOne:
    """The results of :func:`trajectory_jobs` (same order) as one :class:`StageOne`."""
    *folds, final = results
    oof = None
    if folds:
        first = folds[0].prediction
        oof = torch.zeros(len(split.trainval), *first.shape[1:], dtype=first.dtype)
        where = {int(c): i for i, c in enumerate(split.trainval)}
        for f, r in enumerate(folds):
            oof[[where[int(c)] for c in split.val(f)]] = r.prediction
    return StageOne(kind, final, list(folds), oof)


def fit_trajectory_model(kind: str, config: Mapping, ds: xr.Dataset, data: CaseTensors,
                         split: Split, out_of_fold: bool, out_dir: Path | None = None,
                         checkpoints: bool = False, echo: Callable[[str], None] = print,
                         dataset_name: str = "", runner: Runner | None = None) -> StageOne:
    """Train ``kind`` on every non-test case (and, with out_of_fold, once per fold without
    that fold); roll out the test cases and the out-of-fold cases."""
    jobs = trajectory_jobs(kind, config, ds, data, split, out_of_fold, out_dir, checkpoints,
                           dataset_name)
    results = (runner or Runner(1, echo)).map(jobs)
    return assemble_stage(kind, split, results)


def erosion_job(config: Mapping, data: CaseTensors, split: Split,
                trainval_inputs: Tensor | None, test_inputs: Tensor | None, name: str,
                out_dir: Path | None = None, info: DataInfo | None = None,
                checkpoint: Path | None = None) -> Job:
    """The erosion model trained on every non-test case, its inputs the out-of-fold rollouts
    ``trainval_inputs`` (aligned with split.trainval) or the true trajectories (None), then
    predicting the test cases from ``test_inputs`` (rollouts; None: true trajectories)."""
    train = data.subset(split.trainval)
    if trainval_inputs is not None:
        train = train.with_positions(trainval_inputs)
    test = data.subset(split.test)
    if test_inputs is not None:
        test = test.with_positions(test_inputs)
    # The model sees only its own cases: one "split" whose non-test part is all of them.
    local = Split("trainval", len(train), np.zeros(0, np.int64),
                  tuple(np.array_split(np.arange(len(train)), 2)), split.seed)
    seconds, epochs = _budget(config, erosion=True)
    logs = out_dir / "logs" / split.kind / f"erosion_from_{name}" if out_dir else None
    return Job(f"{split.kind} erosion from {name}", "erosion", config["erosion"], train, local,
               None, test, seconds, epochs, int(config["seed"]), config["runtime"]["threads"],
               logs, checkpoint, info)


# ------------------------------------------------------------------------------- scoring
def _rows(model: str, target: str, split: str, scores: Mapping[str, float],
          seconds: float) -> list[dict[str, Any]]:
    return [{"model": model, "target": target, "split": split, "metric": k, "value": float(v),
             "train_seconds": round(float(seconds), 2)} for k, v in scores.items()]


def _trajectory_scores(pred: Tensor, truth: CaseTensors) -> dict[str, float]:
    return trajectory_scores(to_dataarray(pred), to_dataarray(truth.positions),
                             to_dataarray(truth.valid, "valid"))


WallGeometry = tuple[np.ndarray, np.ndarray]


def wall_geometry(ds: xr.Dataset | None) -> WallGeometry | None:
    """(face_centre (F, 3) m, face_area (F,) m2) of the dataset's wall faces, None without
    them: what the hot-spot and total-rate scores need."""
    if ds is None or "face_centre" not in ds.coords or "face_area" not in ds.coords:
        return None
    return ds["face_centre"].transpose("face", "xyz").values, ds["face_area"].values


def _erosion_scores(pred: Tensor, truth: CaseTensors, has_magnitude: bool,
                    peak: Tensor | None = None,
                    wall: WallGeometry | None = None) -> dict[str, float]:
    """Scores of predicted maps; ``peak`` (N,): the predicted peak of each case when the
    model predicts it apart from the pattern (see :func:`predict_erosion`), None for a map
    whose own maximum is its peak (a copied case); ``wall``: the geometry for the hot-spot
    distance and the relative total error (see :func:`fluidgpt.metrics.erosion_scores`)."""
    p, t = to_dataarray(pred, "erosion"), to_dataarray(truth.erosion, "erosion")
    q = None if peak is None else xr.DataArray(peak.detach().cpu().numpy(), dims=("case",))
    centre, area = wall if wall is not None else (None, None)
    return erosion_scores(p, t, q, centre, area, magnitude=has_magnitude)


def _paired_cases(ds: xr.Dataset) -> list[tuple[int, int]]:
    """(a, b) case pairs that share a group but not a seed: the same physics, another
    injection."""
    if "group" not in ds or "seed" not in ds:
        return []
    group, seed = ds["group"].values, ds["seed"].values
    pairs = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        for i in members:
            for j in members:
                if i != j and seed[i] != seed[j]:
                    pairs.append((int(i), int(j)))
    return pairs


def noise_ceiling_rows(ds: xr.Dataset | None, split: str,
                       echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Scores of one injection seed taken as the prediction of another seed of the same case:
    the best any model can do. Empty when there is no dataset or it holds no such pairs.

    Trajectories are compared particle by particle (particle i of both seeds starts in the
    same cell of the injection grid, at a seeded point in it).
    """
    pairs = [] if ds is None else _paired_cases(ds)
    if not pairs:
        return []
    data = case_tensors(ds, "all")
    a = data.subset([p[0] for p in pairs])
    b = data.subset([p[1] for p in pairs])
    rows = _rows("noise_ceiling", "trajectory", split, _trajectory_scores(a.positions, b), 0.0)
    gap = float((a.positions[:, 0] - b.positions[:, 0]).abs().max())
    if gap > 0:
        echo(f"  noise ceiling: the seeds inject particle i up to {gap:.3g} m apart (the same "
             "cell of the injection grid); trajectories are compared particle by particle")
    if data.erosion is not None:
        rows += _rows("noise_ceiling", "erosion", split,
                      _erosion_scores(a.erosion, b, True, wall=wall_geometry(ds)), 0.0)
    echo(f"  noise ceiling from {len(pairs) // 2} pairs of injection seeds")
    return rows


def _noise_data(config: Mapping, ds: xr.Dataset) -> xr.Dataset | None:
    """The dataset of paired injection seeds: data.noise_ceiling "auto" (the experiment's
    dataset when it holds pairs, else the shipped noise sample next to the shipped sample),
    a path, or null (none)."""
    setting = config["data"]["noise_ceiling"]
    if setting is None:
        return None
    if setting != "auto":
        return open_dataset(setting)
    if _paired_cases(ds):
        return ds
    noise = sample_path().with_name(NOISE_SAMPLE)
    if config["data"]["path"] is None and noise.is_file():
        return open_dataset(noise)
    return None


#: Conditions the baselines compare on a log scale: a particle size matters by ratio, and
#: the sweeps spread it evenly in log(d).
LOG_CONDITIONS = ("particle_diameter",)


def condition_space(data: CaseTensors, train: CaseTensors,
                    test: CaseTensors) -> tuple[Tensor, Tensor]:
    """Training and test conditions (n, K) where the baselines measure distance: the sizes
    on a log scale, every column z-scored on the training cases."""
    logged = [i for i, n in enumerate(data.condition_names) if n in LOG_CONDITIONS]

    def warp(c: Tensor) -> Tensor:
        c = c.clone()
        c[:, logged] = c[:, logged].log()
        return c

    scaler = Scaler(data.n_conditions).fit(warp(train.conditions))
    return scaler(warp(train.conditions)), scaler(warp(test.conditions))


def _nearest(data: CaseTensors, split: Split) -> tuple[dict[str, Tensor], float]:
    start = time.perf_counter()
    train, test = data.subset(split.trainval), data.subset(split.test)
    x_train, x_test = condition_space(data, train, test)
    outputs = {"trajectories": train.positions}
    if train.erosion is not None:
        outputs["erosion"] = train.erosion
    model = NearestCase().fit(x_train, **outputs)
    pred = model.predict(x_test)
    return pred, time.perf_counter() - start


def _surrogate(name: str, data: CaseTensors, split: Split, face_area: np.ndarray | None,
               seed: int = 0) -> tuple[dict[str, Tensor], float]:
    """A direct conditions -> erosion baseline (knn or pod) fitted on the non-test cases,
    their conditions scaled as the nearest case's (condition_space); its prediction of the
    test cases ({"erosion": (n, faces), "peak": (n,)}) and the seconds it took."""
    start = time.perf_counter()
    train, test = data.subset(split.trainval), data.subset(split.test)
    x, x_test = condition_space(data, train, test)
    if name == "pod":
        model = PODErosion(seed=seed).fit(x, train.erosion, face_area)
    elif name == "knn":
        model = InverseDistanceErosion().fit(x, train.erosion)
    else:
        raise ConfigError(f"unknown erosion surrogate {name!r}; choose from "
                          f"{list(EROSION_SURROGATES)}")
    pred = model.predict(x_test)
    return pred, time.perf_counter() - start


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


def _plan_split(config: Mapping, ds: xr.Dataset, data: CaseTensors, kind: str,
                out_dir: Path | None, echo: Callable[[str], None]) -> _SplitRun:
    split = split_of(ds, config, kind)
    if config["split"]["tune"]:
        ds, data, split = tuning_view(ds, data, split)
    echo(f"{kind} split: {split.description}")
    sources = list(config["erosion"]["inputs"]) if data.erosion is not None else []
    models = [m for m in config["compare"]["models"] if m in TRAJECTORY_MODELS]
    jobs = {m: trajectory_jobs(m, config, ds, data, split, m in sources, out_dir)
            for m in models}
    return _SplitRun(kind, ds, data, split, models, sources, jobs)


def _erosion_jobs(config: Mapping, run: _SplitRun, out_dir: Path | None) -> list[Job]:
    """Stage 2 of one split, in the order of run.stage2."""
    return [erosion_job(config, run.data, run.split, None, None, "cfd", out_dir) if m == "cfd"
            else erosion_job(config, run.data, run.split, run.stages[m].oof,
                             run.stages[m].test, m, out_dir) for m in run.stage2]


def _score_split(config: Mapping, run: _SplitRun, eroded: Sequence[JobResult],
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
    for model in config["compare"]["models"]:
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
            pred, seconds = _surrogate(model, data, split, area, int(config["seed"]))
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


def _compare_splits(config: Mapping, ds: xr.Dataset, data: CaseTensors, kinds: Sequence[str],
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


def run_compare(config: Mapping, split: str | None = None, output: str | Path | None = None,
                echo: Callable[[str], None] = print) -> CompareResult:
    """Train and score every model of ``config["compare"]["models"]`` on each split.

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
    kinds = split_kinds(split or config["split"]["kind"])
    ds = load_data(config)
    data = case_tensors(ds, config["data"]["conditions"])
    echo(f"data: {ds.sizes['case']} cases, {data.n_particles} particles, {data.n_steps} steps, "
         f"conditions {list(data.condition_names)}"
         + ("" if data.erosion is None else f", {data.erosion.shape[1]} wall faces"))
    out_dir = None if output is None else Path(output).parent
    face_centre = (ds["face_centre"].transpose("face", "xyz").values
                   if "face_centre" in ds.coords else None)
    result = CompareResult(pd.DataFrame(columns=list(TABLE_COLUMNS)), face_centre=face_centre)
    with Runner(config["runtime"]["workers"], echo) as runner:
        rows = _compare_splits(config, ds, data, kinds, out_dir, runner, echo, result)
    result.table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(output).with_name(f".{Path(output).name}.tmp")
        result.table.to_csv(tmp, index=False)
        tmp.replace(output)
    return result


def format_table(table: pd.DataFrame) -> str:
    """The tidy table as one line per (split, model), metrics as columns."""
    if table.empty:
        return "(empty table)"
    wide = table.pivot_table(index=["split", "model"], columns=["target", "metric"],
                             values="value", aggfunc="first")
    wide.columns = [f"{t} {m}" for t, m in wide.columns]
    secs = table.groupby(["split", "model"])["train_seconds"].max().rename("train s (max)")
    return wide.join(secs).to_string(float_format=lambda v: f"{v:.4g}")


# ---------------------------------------------------------------------------------- fit
def run_fit(config: Mapping, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``fit.model`` on the split's non-test cases (plus its fold models and the
    erosion model on their out-of-fold rollouts when fit.erosion), save checkpoints, logs and
    the held-out scores under ``output``. Returns the paths and the table."""
    kinds = split_kinds(config["split"]["kind"])
    if len(kinds) != 1:
        raise ConfigError(f"fluidgpt fit trains on one split: set split.kind to one of "
                          f"{list(SPLIT_KINDS)}, found {config['split']['kind']!r}")
    kind = kinds[0]
    model = config["fit"]["model"]
    out = Path(config["output"])
    out.mkdir(parents=True, exist_ok=True)
    ds = load_data(config)
    name = str(config["data"]["path"] or "shipped sample")
    data = case_tensors(ds, config["data"]["conditions"])
    split = split_of(ds, config, kind)
    echo(f"fit {model} on the {split.description}")
    with_erosion = bool(config["fit"]["erosion"]) and data.erosion is not None
    with Runner(config["runtime"]["workers"], echo) as runner:
        stage = fit_trajectory_model(model, config, ds, data, split, with_erosion, out,
                                     checkpoints=True, echo=echo, dataset_name=name,
                                     runner=runner)
        truth = data.subset(split.test)
        rows = _rows(model, "trajectory", kind, _trajectory_scores(stage.test, truth),
                     stage.final.seconds)
        paths = {"trajectory": stage.final.checkpoint,
                 "folds": [f.checkpoint for f in stage.folds]}
        if with_erosion:
            info = DataInfo.build(ds, data, split.trainval, split, None, name)
            job = erosion_job(config, data, split, stage.oof, stage.test, model, out, info,
                              out / "erosion.ckpt")
            cnn = runner.map([job])[0]
            rows += _rows(model, "erosion", kind,
                          _erosion_scores(cnn.prediction, truth, cnn.magnitude_head, cnn.peak,
                                          wall_geometry(ds)), cnn.seconds + stage.fold_seconds)
            paths["erosion"] = cnn.checkpoint
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table.to_csv(out / "scores.csv", index=False)
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
    from .datamodule import read_data_info
    from .lightning import load_module

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
