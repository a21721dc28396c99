"""``fluidgpt fit``, ``validate`` and ``test`` on LightningCLI.

    fluidgpt fit --config experiments/fluidgpt/fit.yaml [--trainer.max_epochs=3]
        [--model.train.lr=3e-4] [--data.split.kind=block] [--output DIR] [--overwrite]
    fluidgpt fit --config experiments/fluidgpt/fit.yaml --print_config
    fluidgpt validate --config ... --data.fold=0 --ckpt_path DIR/gpt.ckpt
    fluidgpt test --config ... --ckpt_path DIR/gpt.ckpt

The schema is the modules' typed ``__init__`` signatures: ``model`` is a trajectory module
(:class:`~fluidgpt.module.GPTModule` or :class:`~fluidgpt.module.SequenceModule`, its
``model`` / ``train`` settings a preset plus typed overrides), ``data`` the
:class:`~fluidgpt.casedata.CaseDataModule`, ``trainer`` Lightning's Trainer. The sizes the
network needs (:class:`~fluidgpt.casetensors.DataContract`) are linked from the DataModule
into ``model.contract`` when both are built, never written. Added to LightningCLI's keys:
``erosion.model`` (an :class:`~fluidgpt.module.ErosionModule` section, null: no erosion
stage), ``erosion.epochs`` / ``erosion.seconds``, ``runtime`` (workers, threads of the fold
and erosion runs), ``output`` and ``overwrite``.

``fit`` trains the model on every non-test case with the configured Trainer and saves
``OUTPUT/<kind>.ckpt``; while it trains, ``OUTPUT/checkpoints/last.ckpt`` is rewritten every
``checkpoint.every_seconds`` (60) or ``checkpoint.every_n_steps``, and a fit killed at any
moment resumes with ``--ckpt_path OUTPUT/checkpoints/last.ckpt`` (no ``--overwrite``
needed) to the weights of an uninterrupted one (:mod:`fluidgpt.resume`); then, as before
LightningCLI, the fold models (the same section, each without its fold, rolling it out:
``<kind>_fold<k>.ckpt``) and the erosion model on their out-of-fold rollouts
(``erosion.ckpt``), and the held-out scores (``scores.csv``). Every checkpoint loads with
``torch.load(path, weights_only=True)``. An output directory that exists and is not empty
is refused before anything is read unless ``--overwrite``; a fit that fails removes what
it wrote into a new or empty one.
"""

from __future__ import annotations

import shutil
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import CheckpointIO

from .casedata import CaseDataModule
from .checkpoint_io import AtomicCheckpointIO
from .checkpoints import read_checkpoint
from .compare.config import (
    _DEFAULT_EROSION,
    DATA_ARGUMENTS,
    BudgetSettings,
    CompareSettings,
    DataSettings,
    ErosionStage,
    Experiment,
    RuntimeSettings,
)
from .compare.jobs import JobResult
from .compare.run import fit_stage_two
from .compare.training import forecast
from .config import ConfigError
from .datainfo import DataInfo, DataInfoCallback
from .module import MODULES, ErosionModule, SequenceModule, StopAtThreshold
from .modulebase import _FluidModule
from .parsing import FluidArgumentParser, one_line_errors
from .resume import RandomStates, ResumableCheckpoint

__all__ = ["FluidCLI", "run_fit", "TRAINER_DEFAULTS"]

#: Trainer defaults of ``fluidgpt fit`` (any is overridden by ``--trainer.KEY``): no default
#: checkpoint callback (fit adds its own last.ckpt and saves OUTPUT/<kind>.ckpt itself),
#: quiet, and no sanity validation. The logger defaults to a CSVLogger under
#: OUTPUT/logs/<split>/<kind>_final.
TRAINER_DEFAULTS: dict[str, Any] = {
    "enable_checkpointing": False, "enable_progress_bar": False,
    "enable_model_summary": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
}


class _SaveFitConfig(SaveConfigCallback):
    """The resolved config.yaml beside the model's logs, for fit (validate and test only
    read a checkpoint)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


def _kind(module: _FluidModule) -> str:
    if isinstance(module, SequenceModule):
        return "bilstm" if module.config.bidirectional else "lstm"
    return module.kind


class FluidCLI(LightningCLI):
    """LightningCLI over the fluidgpt modules and :class:`CaseDataModule` (module doc)."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        with warnings.catch_warnings():  # args are always given: the warning would be noise
            warnings.filterwarnings("ignore", ".*LightningCLI's args parameter.*")
            self._init(args, run)

    def _init(self, args: list[str] | None, run: bool) -> None:
        super().__init__(
            model_class=_FluidModule, datamodule_class=CaseDataModule,
            subclass_mode_model=True, parser_class=FluidArgumentParser,
            seed_everything_default=0, save_config_callback=_SaveFitConfig,
            save_config_kwargs={"overwrite": True}, trainer_defaults=TRAINER_DEFAULTS,
            auto_configure_optimizers=False, load_from_checkpoint_support=False,
            parser_kwargs={"prog": "fluidgpt"}, args=args, run=run)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The configured Trainer, its checkpoints written through the package's atomic
        writer (:class:`~fluidgpt.checkpoint_io.AtomicCheckpointIO`) unless the config
        names a CheckpointIO of its own."""
        plugins = dict(self._get(self.config_init, "trainer", default={})).get("plugins")
        plugins = list(plugins) if isinstance(plugins, list | tuple) else \
            [] if plugins is None else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        if self.subcommand == "fit":
            kwargs.update(self._resumable())
        return super().instantiate_trainer(**kwargs)

    def _resumable(self) -> dict[str, Any]:
        """Trainer arguments of a fit a crash cannot lose: OUTPUT/checkpoints/last.ckpt
        written every ``checkpoint.every_n_steps`` optimiser steps (or every
        ``checkpoint.every_seconds``), and the random states kept in it
        (:mod:`fluidgpt.resume`); ``--ckpt_path OUTPUT/checkpoints/last.ckpt`` resumes."""
        cfg = self._settings()
        every = cfg.checkpoint.every_n_steps
        timer = {"every_n_train_steps": every} if every else {
            "train_time_interval": timedelta(seconds=cfg.checkpoint.every_seconds)}
        last = ResumableCheckpoint(dirpath=Path(cfg.output) / "checkpoints", save_top_k=0,
                                   save_last=True, **timer)
        callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks")
        callbacks = list(callbacks) if isinstance(callbacks, list | tuple) else \
            [] if callbacks is None else [callbacks]
        return {"enable_checkpointing": True, "callbacks": [*callbacks, last, RandomStates()]}

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # `fluidgpt predict` is the pipeline's own command (checkpoints -> new conditions)
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def add_core_arguments_to_parser(self, parser: FluidArgumentParser) -> None:
        # LightningCLI's, with the scalers (sized from the data) left out of the model
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items()})
        parser.add_subclass_arguments(_FluidModule, "model", skip={"scalers"}, required=True,
                                      fail_untyped=False)
        parser.add_lightning_class_args(CaseDataModule, "data")

    def add_arguments_to_parser(self, parser: FluidArgumentParser) -> None:
        parser.link_arguments("data", "model.init_args.contract",
                              compute_fn=lambda dm: dm.contract, apply_on="instantiate")
        parser.add_subclass_arguments(
            ErosionModule, "erosion.model", required=False, skip=DATA_ARGUMENTS,
            instantiate=False,
            help="the erosion module trained after the model on its out-of-fold rollouts "
                 "(null: none)")
        parser.set_defaults({"erosion.model": _DEFAULT_EROSION})
        parser.add_argument("--erosion.epochs", type=int | None, default=300,
                            help="epochs of the erosion model")
        parser.add_argument("--erosion.seconds", type=float | None, default=None,
                            help="wall-clock budget of the erosion model (epochs: a cap)")
        parser.add_argument("--runtime", type=RuntimeSettings, default=RuntimeSettings(),
                            help="parallel fold / erosion runs and their torch threads")
        parser.add_argument("--output", type=str, default="fluidgpt-output",
                            help="directory of the checkpoints, scores.csv and logs")
        parser.add_argument("--checkpoint.every_n_steps", type=int | None, default=None,
                            help="write OUTPUT/checkpoints/last.ckpt every this many optimiser "
                                 "steps of the model's training (--ckpt_path resumes from it)")
        parser.add_argument("--checkpoint.every_seconds", type=float, default=60.0,
                            help="... or, without every_n_steps, every this many seconds")
        parser.add_argument("--overwrite", type=bool, default=False, nargs="?", const=True,
                            help="write into an output directory that is not empty (an "
                                 "earlier fit's files are replaced)")

    def _parse_ckpt_path(self) -> None:
        """validate / test --ckpt_path: the model is rebuilt as the checkpoint was trained
        (LightningCLI reads its hyperparameters; ours are the full configs, written back
        here as settings without the sizes, which come from the data as always)."""
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if not path or not Path(path).is_file():
            return
        ckpt = read_checkpoint(path)  # weights_only, the format version checked
        ckpt = ckpt if isinstance(ckpt, dict) else {}
        cls, hparams = MODULES.get(ckpt.get("fluidgpt_module")), ckpt.get("hyper_parameters")
        if cls is None or not hparams:
            raise ConfigError(f"{path} is not a fluidgpt checkpoint (expected a file written "
                              "by `fluidgpt fit`)")
        skip = {"name", *cls.config_class.DATA_FIELDS}
        model = {k: v for k, v in hparams["model"].items() if k not in skip}
        train = {k: v for k, v in hparams["train"].items() if k != "name"}
        spec = {"class_path": f"{cls.__module__}.{cls.__name__}",
                "init_args": {"model": model, "train": train}}
        self.config = self.parser.parse_object({sub: {"model": spec}}, self.config)

    def before_instantiate_classes(self) -> None:
        config = self._settings()
        out = Path(config.output)
        if self.subcommand == "fit" and not config.overwrite and not config.get(
                "ckpt_path") and out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(f"output {out} exists and is not an empty directory; pass "
                                  "--overwrite to write into it (or --ckpt_path "
                                  f"{out / 'checkpoints' / 'last.ckpt'} to resume)")
        if config.trainer.default_root_dir is None:
            config.trainer.default_root_dir = config.output
        if self.subcommand in ("validate", "test") and config.trainer.logger is None:
            config.trainer.logger = False  # the scores are printed; nothing to log over time

    def _settings(self) -> Any:
        """The parsed settings of the subcommand (all of them without one, run=False)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_validate(self) -> None:
        if self.datamodule.fold is None:
            raise ConfigError("validate scores the validation fold: set data.fold (0 .. "
                              f"{self.datamodule.split.n_folds - 1})")

    def fit(self, model: _FluidModule, datamodule: CaseDataModule, **kwargs: Any) -> None:
        """Train, save and score the model, then the fold models and the erosion model. A
        fit that fails leaves nothing in an output directory that was new or empty."""
        out = Path(self._settings().output)
        created, empty = not out.exists(), out.is_dir() and not any(out.iterdir())
        try:
            self._fit(model, datamodule, **kwargs)
        except Exception:  # an interrupted fit (Ctrl-C) keeps what it has
            if created:
                shutil.rmtree(out, ignore_errors=True)
            elif empty:
                for child in out.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            raise

    def _fit(self, model: _FluidModule, datamodule: CaseDataModule, **kwargs: Any) -> None:
        cfg, trainer, dm = self._settings(), self.trainer, datamodule
        kind, out = _kind(model), Path(cfg.output)
        print(f"fit {kind} on the {dm.split.description}"
              + ("" if dm.fold is None else f", without fold {dm.fold}"))
        if cfg.trainer.logger is None:
            name = f"{kind}_final" if dm.fold is None else f"{kind}_fold{dm.fold}"
            trainer.logger = CSVLogger(str(out / "logs"), name=dm.split.kind,
                                       version=name)
        info = DataInfo.build(dm.ds, dm.data, dm.indices("train"), dm.split, dm.fold,
                              dm.dataset_name)
        trainer.callbacks.append(DataInfoCallback(info))
        t = model.train_config
        if cfg.trainer.max_epochs is None and cfg.trainer.max_steps == -1:
            trainer.fit_loop.max_epochs = t.max_epochs
        if t.early_stop_mse > 0 and dm.fold is not None:
            trainer.callbacks.append(StopAtThreshold("val/loss", t.early_stop_mse,
                                                     t.early_stop_patience))
        if dm.fold is None:
            trainer.limit_val_batches = 0
        seed = int(cfg.seed_everything)
        torch.manual_seed(seed)  # as every run of `fluidgpt compare`
        start = time.perf_counter()
        with warnings.catch_warnings():  # the sampler resumes mid-epoch (fluidgpt.resume)
            warnings.filterwarnings("ignore", ".*your dataloader is not resumable.*")
            trainer.fit(model, datamodule=dm, **kwargs)
        seconds = time.perf_counter() - start
        epochs = max(1, trainer.current_epoch)
        model.train_config = model.train_config.replace(max_epochs=epochs)
        model.hparams["train"] = model.train_config.to_dict()
        out.mkdir(parents=True, exist_ok=True)
        checkpoint = out / f"{kind}.ckpt"
        trainer.save_checkpoint(checkpoint)
        model.eval()
        final = JobResult(f"{dm.split.kind} {kind} final", forecast(model, dm.cases("test")),
                          seconds, trainer.current_epoch, None, checkpoint, module=model)
        paths = fit_stage_two(kind, self._experiment(kind, trainer.max_epochs, seed), dm.ds,
                              dm.data, dm.split, final, out,
                              erosion=cfg.erosion.model is not None and dm.fold is None,
                              dataset_name=dm.dataset_name)
        self.paths = paths
        from .compare import format_table

        print(format_table(paths["table"]))
        print(f"checkpoints: {paths['trajectory']}"
              + "".join(f", {p}" for p in paths["folds"])
              + (f", {paths['erosion']}" if paths.get("erosion") else "")
              + f"\nscores: {paths['scores']}")

    def _experiment(self, kind: str, epochs: int | None, seed: int) -> Experiment:
        """This fit as the experiment whose jobs train the fold and erosion models."""
        cfg = self._settings()
        spec = cfg.model.clone().as_dict()
        spec["init_args"] = {k: v for k, v in (spec.get("init_args") or {}).items()
                             if k not in DATA_ARGUMENTS}
        erosion = cfg.erosion.model
        d = cfg.data
        return Experiment(
            data=DataSettings(d.path, d.conditions, d.paper_style, None),
            split=self.datamodule.settings,
            budget=BudgetSettings(epochs=epochs, erosion_epochs=cfg.erosion.epochs,
                                  erosion_seconds=cfg.erosion.seconds),
            models={kind: spec},
            erosion=ErosionStage(erosion.clone().as_dict() if erosion is not None
                                 else dict(_DEFAULT_EROSION), [kind]),
            compare=CompareSettings([kind]),
            runtime=RuntimeSettings(**cfg.runtime.clone().as_dict()),
            output=cfg.output, seed=seed)


@one_line_errors
def run_fit(args: list[str]) -> FluidCLI:
    """Run ``fluidgpt fit|validate|test ARGS`` (the CLI object holds ``paths`` after fit)."""
    return FluidCLI(args=list(args))
