"""`geoformer fit`: a YAML experiment plus dotted overrides -> a trained checkpoint.

The experiment file has the sections below (every key optional except data.store, data.train
and data.val); unknown keys are errors, so a typo never silently trains the wrong model::

    model:    {preset: small-5.625, <any GeoFormerConfig field>: ...}
    data:     {store, lead_hours, train: [start, stop], val: [...], test: [...], batch_size,
               num_workers, rollout_steps, upper_vars, surface_vars, levels,
               latitude_input}  (latitude_input: add sin(latitude) as a constant field)
    optim:    {lr, weight_decay, warmup_steps, min_lr, schedule}  (schedule: steps | time;
               time spreads the cosine over trainer.max_time instead of the step count)
    loss:     {kind: mae | mse, surface_weight, weights: {variable: weight}}
    task:     {residual}  (predict the state's change instead of the state; Pangu: false)
    trainer:  {max_epochs, max_steps, max_time, accelerator, devices, precision,
               gradient_clip_val, accumulate_grad_batches, log_every_n_steps, seed,
               limit_train_batches, limit_val_batches}
    output:   {dir, name}
    init_from: checkpoint to fine-tune from (weights only)
    resume:    checkpoint of an interrupted run to resume (weights, optimiser, epoch)
"""

from __future__ import annotations

import copy
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from .config import ConfigError, GeoFormerConfig

__all__ = ["DEFAULTS", "load_experiment", "apply_overrides", "resolve_store", "fit"]

DEFAULTS: dict[str, Any] = {
    "model": {"preset": "small-5.625"},
    "data": {"store": None, "lead_hours": 24, "train": None, "val": None, "test": None,
             "batch_size": 4, "num_workers": 0, "rollout_steps": 1, "upper_vars": None,
             "surface_vars": None, "levels": None, "in_memory": None, "latitude_input": False},
    "optim": {"lr": 5e-4, "weight_decay": 3e-6, "warmup_steps": 100, "min_lr": 0.0,
              "schedule": "steps"},
    "loss": {"kind": "mae", "surface_weight": 0.25, "weights": {}},
    "task": {"residual": False},
    "trainer": {"max_epochs": 100, "max_steps": -1, "max_time": None, "accelerator": "auto",
                "devices": "auto", "precision": "auto", "gradient_clip_val": None,
                "accumulate_grad_batches": 1, "log_every_n_steps": 10, "seed": 0,
                "limit_train_batches": None, "limit_val_batches": None,
                "enable_progress_bar": True},
    "output": {"dir": "runs", "name": None},
    "init_from": None,
    "resume": None,
}
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")
_FREE_FORM = {("model",), ("loss", "weights")}  # sections whose keys are checked elsewhere


def _merge(base: dict, update: Mapping, path: tuple[str, ...] = ()) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = ".".join((*path, str(key)))
        if path not in _FREE_FORM and key not in base:
            valid = sorted(base) if isinstance(base, dict) else []
            raise ConfigError(f"unknown experiment key {where!r}; valid keys here: {valid}")
        if isinstance(out.get(key), dict) and (*path, key) not in _FREE_FORM:
            if not isinstance(value, Mapping):
                raise ConfigError(f"experiment key {where!r} must be a mapping, found {value!r}")
            out[key] = _merge(out[key], value, (*path, key))
        elif isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = _number(value)
    return out


def _number(value: Any) -> Any:
    """YAML 1.1 reads 2e-3 as a string; a user writing it means the number."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def apply_overrides(experiment: dict, overrides: Sequence[str]) -> dict:
    """Dotted overrides: ['data.lead_hours=6', 'trainer.max_epochs=2'] (YAML values)."""
    update: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.lstrip("-").partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        node = update
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return _merge(experiment, update)


def load_experiment(path: str | Path | None, overrides: Sequence[str] = ()) -> dict:
    """Defaults <- YAML file <- overrides, checked for unknown keys and missing essentials."""
    experiment = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no experiment file at {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path} must hold a mapping of sections, found {type(loaded)}")
        experiment = _merge(experiment, loaded)
    experiment = apply_overrides(experiment, overrides)
    for key in ("store", "train", "val"):
        if experiment["data"][key] is None:
            raise ConfigError(f"data.{key} must be given (in the YAML or as --data.{key}=...)")
    return experiment


def resolve_store(store: str) -> str:
    """A training store path; 'held-suarez' builds (or reuses) the built-in dataset."""
    if store == "held-suarez":
        from .sources.held_suarez import load_or_build_held_suarez

        return str(load_or_build_held_suarez())
    return store


def max_time_seconds(value: Any) -> float:
    """trainer.max_time ("DD:HH:MM:SS", or a mapping of days/hours/minutes/seconds) in s."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"days", "hours", "minutes", "seconds"}
        if unknown:
            raise ConfigError(f"trainer.max_time has unknown keys {sorted(unknown)}")
        return float(value.get("days", 0) * 86400 + value.get("hours", 0) * 3600
                     + value.get("minutes", 0) * 60 + value.get("seconds", 0))
    parts = str(value).split(":")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"trainer.max_time must look like DD:HH:MM:SS, found {value!r}")
    d, h, m, s = (int(p) for p in parts)
    return float(d * 86400 + h * 3600 + m * 60 + s)


def _schedule_seconds(experiment: dict) -> float | None:
    schedule = experiment["optim"]["schedule"]
    if schedule == "steps":
        return None
    if schedule != "time":
        raise ConfigError(f"optim.schedule must be 'steps' or 'time', found {schedule!r}")
    if experiment["trainer"]["max_time"] is None:
        raise ConfigError("optim.schedule=time needs trainer.max_time (the time budget the "
                          "learning-rate schedule spans)")
    return max_time_seconds(experiment["trainer"]["max_time"])


def _precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _atomic_copy_checkpoint(src: str | Path, dst: Path) -> None:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    for name, tensor in ckpt["state_dict"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise RuntimeError(f"refusing to write {dst}: weight {name} is not finite")
    tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def fit(experiment: dict) -> Path:
    """Train one lead-time model as the experiment says; returns the final checkpoint path.

    Logs go to TensorBoard and CSV under output.dir/output.name; the best checkpoint (by
    validation loss) is exported as output.dir/output.name/geoformer-<lead>h.ckpt, written
    atomically and only when every weight is finite.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from .data import GeoDataModule
    from .lightning import GeoFormerModule, load_module
    from .normalization import LATITUDE_INPUT, Normalizer, latitude_input, normalized_constants

    d, o, t = experiment["data"], experiment["optim"], experiment["trainer"]
    schedule_seconds = _schedule_seconds(experiment)
    if experiment["loss"]["kind"] not in ("mae", "mse"):
        raise ConfigError(f"loss.kind must be 'mae' or 'mse', found {experiment['loss']['kind']!r}")
    L.seed_everything(t["seed"], workers=True)
    dm = GeoDataModule(resolve_store(d["store"]), d["lead_hours"], d["train"], d["val"],
                       d["test"], d["upper_vars"], d["surface_vars"], None, d["levels"],
                       d["rollout_steps"], d["batch_size"], d["num_workers"], d["in_memory"])
    model_cfg = dict(experiment["model"])
    preset = model_cfg.pop("preset", "small-5.625")
    constant_vars = list(dm.static_vars)
    constants = normalized_constants(dm.statics(), dm.statistics, dm.static_vars)
    if d["latitude_input"]:
        constant_vars.append(LATITUDE_INPUT)
        constants = torch.cat([constants, latitude_input(dm.latitude, len(dm.longitude))])
    config = GeoFormerConfig.from_preset(
        preset, **{"grid": dm.grid, "levels": dm.levels, "upper_vars": dm.upper_vars,
                   "surface_vars": dm.surface_vars, "constant_vars": constant_vars,
                   **model_cfg})
    normalizer = Normalizer.from_statistics(dm.statistics, dm.upper_vars, dm.surface_vars,
                                            dm.levels)
    module = GeoFormerModule(
        model=config.to_dict(), normalization=normalizer.to_dict(),
        lead_hours=d["lead_hours"], latitude=dm.latitude, longitude=dm.longitude,
        constants=constants, loss_weights=experiment["loss"]["weights"],
        surface_weight=experiment["loss"]["surface_weight"], lr=o["lr"],
        weight_decay=o["weight_decay"], warmup_steps=o["warmup_steps"], min_lr=o["min_lr"],
        rollout_steps=d["rollout_steps"], residual=experiment["task"]["residual"],
        data=dm.describe(), schedule_seconds=schedule_seconds,
        loss_kind=experiment["loss"]["kind"])
    if experiment["init_from"]:
        source = load_module(experiment["init_from"])
        if source.config.replace(name=config.name, drop_path=config.drop_path,
                                 checkpoint_activations=config.checkpoint_activations,
                                 attention=config.attention) != config:
            raise ConfigError(f"cannot fine-tune from {experiment['init_from']}: its network "
                              f"configuration differs from this experiment's")
        module.net.load_state_dict(source.net.state_dict())
    name = experiment["output"]["name"] or f"geoformer-{d['lead_hours']}h"
    root = Path(experiment["output"]["dir"])
    loggers = [TensorBoardLogger(root, name=name, version=""),
               CSVLogger(root, name=name, version="")]
    run_dir = root / name
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor="val/loss", mode="min",
                           save_top_k=1, save_last=True, filename="best-{epoch}")
    callbacks = [best, LearningRateMonitor(logging_interval="step"),
                 EarlyStopping(monitor="val/loss", patience=10**9, check_finite=True)]
    trainer_kwargs = {k: v for k, v in t.items() if k != "seed" and v is not None}
    trainer_kwargs["precision"] = _precision(t["precision"])
    trainer = L.Trainer(logger=loggers, callbacks=callbacks, default_root_dir=run_dir,
                        **trainer_kwargs)
    trainer.fit(module, datamodule=dm, ckpt_path=experiment["resume"])
    if not best.best_model_path:
        raise RuntimeError("training produced no checkpoint with a finite validation loss")
    final = run_dir / f"geoformer-{d['lead_hours']}h.ckpt"
    _atomic_copy_checkpoint(best.best_model_path, final)
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False))
    return final
