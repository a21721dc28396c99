"""Training runs as jobs: the job and result dataclasses, running one job, the process-pool
Runner (spawned workers, longest job first) and the jobs of stage 1 (trajectory models,
out of fold) and stage 2 (the erosion model)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from ..casetensors import CaseTensors
from ..data import Split
from ..datainfo import DataInfo
from ..datamodule import FluidDataModule
from ..orphans import exit_with_parent
from .config import Experiment
from .training import build_module, forecast, predict_erosion, train_module

__all__ = [
    "Job",
    "JobResult",
    "run_job",
    "job_cost",
    "Runner",
    "trajectory_jobs",
    "StageOne",
    "assemble_stage",
    "fit_trajectory_model",
    "erosion_job",
]


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
    """One training run: build ``kind`` from its module ``section`` (class_path + init_args)
    sized from ``data``, train it on the
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


def _quiet_worker(parent: int | None = None) -> None:
    if parent is not None:  # end with the parent, not as an orphan (fluidgpt.orphans)
        exit_with_parent(parent)
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
        # longest first (by an estimate) keeps both workers busy to the end
        order = sorted(range(len(jobs)), key=lambda i: -job_cost(jobs[i]))
        pool = self._pool()
        futures = {pool.submit(_remote_job, jobs[i]): i for i in order}
        results: list[JobResult | None] = [None] * len(jobs)
        for done in as_completed(futures):
            results[futures[done]] = self._report(done.result())
        return [r for r in results if r is not None]

    def _pool(self) -> ProcessPoolExecutor:
        """The spawned workers, started once; each ends when this process dies."""
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                            initializer=_quiet_worker,
                                            initargs=(os.getpid(),))
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------ stages
def trajectory_jobs(kind: str, config: Experiment, ds: xr.Dataset, data: CaseTensors,
                    split: Split, out_of_fold: bool, out_dir: Path | None = None,
                    checkpoints: bool = False, dataset_name: str = "") -> list[Job]:
    """The runs of one trajectory model: one per fold (each trained without that fold and
    rolling it out) when ``out_of_fold``, then the final one (trained on every non-test case,
    rolling out the test cases)."""
    seconds, epochs = config.budget.of(model=kind)
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
            f"{split.kind} {kind} {tag}", kind, config.models[kind], data, split, fold,
            data.subset(cases), seconds, epochs, config.seed, config.runtime.threads,
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


def fit_trajectory_model(kind: str, config: Experiment, ds: xr.Dataset, data: CaseTensors,
                         split: Split, out_of_fold: bool, out_dir: Path | None = None,
                         checkpoints: bool = False, echo: Callable[[str], None] = print,
                         dataset_name: str = "", runner: Runner | None = None) -> StageOne:
    """Train ``kind`` on every non-test case (and, with out_of_fold, once per fold without
    that fold); roll out the test cases and the out-of-fold cases."""
    jobs = trajectory_jobs(kind, config, ds, data, split, out_of_fold, out_dir, checkpoints,
                           dataset_name)
    results = (runner or Runner(1, echo)).map(jobs)
    return assemble_stage(kind, split, results)


def erosion_job(config: Experiment, data: CaseTensors, split: Split,
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
    seconds, epochs = config.budget.of(erosion=True)
    logs = out_dir / "logs" / split.kind / f"erosion_from_{name}" if out_dir else None
    return Job(f"{split.kind} erosion from {name}", "erosion", config.erosion.model, train,
               local, None, test, seconds, epochs, config.seed, config.runtime.threads,
               logs, checkpoint, info)

