"""One module of a comparison: built from a model section, trained within an epoch or
wall-clock budget, and its predictions (rollouts, erosion maps)."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor

from ..casetensors import CaseTensors
from ..checkpoint_io import AtomicCheckpointIO
from ..config import ConfigError
from ..datainfo import DataInfo, DataInfoCallback
from ..datamodule import FluidDataModule, scaled_batch
from ..module import ErosionModule, StopAtThreshold
from .config import MODULE_CLASSES, check_spec, module_class

__all__ = [
    "build_module",
    "Trained",
    "validation_interval",
    "TimeBudget",
    "train_module",
    "forecast",
    "predict_erosion",
]


# ------------------------------------------------------------------------------- models
def build_module(kind: str, section: Mapping[str, Any], data: CaseTensors) -> Any:
    """A fresh module of ``kind`` (gpt, lstm, bilstm or erosion) from its section
    (``{"class_path": ..., "init_args": {"model": ..., "train": ...}}``, what
    ``fluidgpt fit`` takes as ``model``), sized from the data."""
    if kind not in MODULE_CLASSES:
        raise ConfigError(f"unknown model kind {kind!r}")
    check_spec(kind, dict(section), kind)
    init = dict(section.get("init_args") or {})
    return module_class(dict(section))(**init, contract=data.contract())


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
        from ..modulebase import warmup_cosine

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
        limit_val_batches=0 if dm.fold is None else 1.0, log_every_n_steps=steps,
        plugins=[AtomicCheckpointIO()])  # checkpoints whole or not at all
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

