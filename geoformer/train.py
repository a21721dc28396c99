"""`geoformer fit`, `validate` and `test`: LightningCLI over GeoFormerModule and GeoDataModule.

An experiment is a LightningCLI YAML file (``experiments/geoformer/*.yaml``). Its schema is the
typed ``__init__`` signature of each part, so every key is checked, with its type::

    model:    GeoFormerModule: network (a preset and any architecture field), loss, optimiser,
              schedule, residual
    data:     GeoDataModule: store (or ``held-suarez``), lead_hours, periods, batch size, ...
    trainer:  lightning.Trainer: every Trainer option (max_epochs, max_time, devices, ...)
    output:   Output: dir and name of the run folder
    init_from: checkpoint whose network weights start the run (weights only)
    seed_everything: the seed (0)
    ckpt_path: checkpoint of an interrupted run to resume (fit), or to validate / test
    overwrite: fit into a run folder that already holds files (refused otherwise)

The data-to-model contract (grid, levels, variables, statistics, constant fields) is never
typed: it is linked from the data module into the model, and ``trainer.max_time`` into the
time-based schedule. Overrides are LightningCLI's: ``--trainer.max_epochs=3
--data.lead_hours=6``; ``--print_config`` shows the resolved experiment. A wrong key or type
ends with one line naming the key, the expected type and the value (exit status 2).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
import shutil
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO

from .checkpoints import load_checkpoint
from .config import ConfigError
from .data import GeoDataModule, atomic_write
from .module import GeoFormerModule, init_from_checkpoint, upgrade_hparams
from .resume import AtomicCheckpointIO, RandomStates

__all__ = ["Output", "OneLineErrorParser", "GeoFormerCLI", "run", "max_time_seconds",
           "schedule_seconds", "auto_precision"]

#: Module arguments that ``geoformer fit`` links from the data or the trainer (never typed).
LINKED = ("contract", "constants", "schedule_seconds")


@dataclass(frozen=True)
class Output:
    """Where a run writes: TensorBoard and CSV logs, checkpoints, the resolved experiment
    (config.yaml) and the exported model, all under ``dir/name``.

    Args:
        dir: folder of the runs.
        name: folder of this run (default: geoformer-<lead>h).
        every_n_steps: also write ``checkpoints/last.ckpt`` every this many optimiser steps,
            so that a crash loses at most these steps (``--ckpt_path`` resumes from it);
            by default it is written at each validation only.
    """

    dir: str = "runs"
    name: str | None = None
    every_n_steps: int | None = None


def max_time_seconds(value: Any) -> float:
    """trainer.max_time ("DD:HH:MM:SS", a mapping of days/hours/minutes/seconds or a
    timedelta) in seconds."""
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
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


def schedule_seconds(schedule: str, max_time: Any) -> float | None:
    """The link model.schedule + trainer.max_time -> model.schedule_seconds."""
    if schedule != "time":
        return None
    if max_time is None:
        raise ConfigError("model.schedule=time needs trainer.max_time (the time budget the "
                          "learning-rate schedule spans)")
    return max_time_seconds(max_time)


def auto_precision() -> str:
    """bf16 mixed precision on GPUs that support it, float32 elsewhere."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


# ------------------------------------------------------------------------ one-line errors
def _type_name(hint: Any) -> str:
    """Optional[int] -> 'int or null'; Literal['a', 'b'] -> "one of 'a', 'b'"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is None and isinstance(hint, type):
        return hint.__name__
    return re.sub(r"typing\.|<class '(?:[\w.]+\.)?(\w+)'>", r"\1", str(hint))


def _keys_under(parser: LightningArgumentParser, group: str) -> list[str]:
    prefix = f"{group}." if group else ""
    names = {a.dest[len(prefix):].split(".")[0] for a in parser._actions
             if a.dest.startswith(prefix)}
    hidden = {"help", "config", *(f"model.{k}" for k in LINKED)}
    return sorted(n for n in names if f"{prefix}{n}" not in hidden)


def _suggest(parser: LightningArgumentParser, key: str) -> str:
    """'; did you mean 'max_epochs'?' or '; model takes: a, b, c'."""
    parts, group = key.split("."), ""
    while len(parts) > 1 and _keys_under(parser, ".".join(filter(None, (group, parts[0])))):
        group = ".".join(filter(None, (group, parts.pop(0))))  # the deepest group that exists
    last, keys = parts[0], _keys_under(parser, group)
    close = difflib.get_close_matches(last, keys, n=1)
    if close:
        return f"; did you mean {'.'.join(k for k in (group, close[0]) if k)!r}?"
    return f"; {group or 'the experiment'} takes: " + ", ".join(keys)


def one_line(parser: LightningArgumentParser, message: str) -> str:
    """jsonargparse's multi-line error as one line: the key, the expected type, the value."""
    typed = re.match(r'Parser key "(?P<key>[^"]+)":\s*(?P<rest>.*)', message, re.S)
    if typed:
        key, rest = typed["key"], typed["rest"]
        if key in {f"model.{k}" for k in LINKED}:
            return f"{key}: not an experiment key (geoformer fit links it from the data)"
        values = re.findall(r"(?:Given|Got) value: (.*)", rest)
        hint = next((getattr(a, "_typehint", None) for a in parser._actions if a.dest == key),
                    None)
        if values and hint is not None:
            return f"{key}: expected {_type_name(hint)}, got {values[-1].strip()!r}"
        return f"{key}: " + " ".join(rest.split())
    unknown = (re.match(r"Group '(?P<group>[^']+)' does not accept option '(?P<key>[^']+)'",
                        message)
               or re.match(r"(?:Subcommand '\w+' does not accept option|Option) '(?P<key>[^']+)'",
                           message))
    if unknown:
        key = ".".join(k for k in (unknown.groupdict().get("group"), unknown["key"]) if k)
        return f"{key}: unknown key" + _suggest(parser, key)
    extra = re.match(r"(?i)unrecognized arguments: (?P<args>.*)", message, re.S)
    if extra:
        arg = extra["args"].split()[0]
        key, _, value = arg.lstrip("-").partition("=")
        shown = f" (value {value!r})" if value else ""
        return f"{key}: unknown key{shown}" + _suggest(parser, key)
    link = re.search(r"Call to compute_fn of link .* failed: (?P<why>.*)", message, re.S)
    if link:
        return " ".join(link["why"].split())
    return " ".join(message.split())


class OneLineErrorParser(LightningArgumentParser):
    """LightningCLI's parser, with every error as one line on stderr and exit status 2, and no
    abbreviated options (``--trainer.max_epoch`` is a typo, not ``max_epochs``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        parser = self
        subcommands = getattr(getattr(self, "_subcommands_action", None), "choices", {})
        named = (re.match(r"Subcommand '(?P<sub>\w+)' does not accept", message)
                 or re.match(r"the following arguments are required: (?P<sub>\w+)\.", message))
        if named and named["sub"] in subcommands:
            parser = subcommands[named["sub"]]
            message = message.replace(f" {named['sub']}.", " ")  # fit.data.store -> data.store
        prog = parser.prog.replace(" [options]", "")  # a subcommand's prog holds its parent's
        print(f"{prog}: {one_line(parser, message)}", file=sys.stderr)
        sys.exit(2)


# ----------------------------------------------------------------------------- the CLI
class GeoFormerCLI(LightningCLI):
    """LightningCLI with the project's own parts: the data-to-model links, the run folder,
    init-from-checkpoint, the default loggers and callbacks and the atomic model export."""

    final: Path | None = None

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        commands = LightningCLI.subcommands()
        return {k: commands[k] for k in ("fit", "validate", "test")}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(Output, "output")
        parser.add_argument("--init_from", type=str | None, default=None,
                            help="checkpoint whose network weights start the run (weights "
                                 "only: a fresh optimiser and schedule; the architecture "
                                 "must match)")
        parser.add_argument("--overwrite", type=bool, default=False, nargs="?", const=True,
                            help="fit into a run folder that already holds files (theirs "
                                 "are replaced); resuming with --ckpt_path needs none")
        parser.link_arguments("data", "model.contract", compute_fn=lambda dm: dm.contract,
                              apply_on="instantiate")
        parser.link_arguments("data", "model.constants", compute_fn=lambda dm: dm.constants(),
                              apply_on="instantiate")
        parser.link_arguments(("model.schedule", "trainer.max_time"), "model.schedule_seconds",
                              compute_fn=schedule_seconds)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.config = parser.parse_args(args)  # args come from geoformer's own main()

    def _parse_ckpt_path(self) -> None:
        """With --ckpt_path, the model section comes from the checkpoint (as LightningCLI
        does), less what is linked from the data and the trainer."""
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if not path:
            return
        hparams = upgrade_hparams(load_checkpoint(path)["hyper_parameters"])
        skip = {*LINKED, "_instantiator"}
        if sub != "fit":
            skip.add("schedule")  # no optimiser: a time schedule needs no trainer.max_time
        model = {k: v for k, v in hparams.items() if k not in skip}
        self.config = self.parser.parse_object({sub: {"model": model}}, self.config)

    def before_instantiate_classes(self) -> None:
        """A fit refuses a run folder that holds files (an earlier run's) unless --overwrite
        or --ckpt_path (resuming an interrupted run); it notes whether it made the folder."""
        config = self.config.get(self.subcommand) if self.subcommand else None
        if self.subcommand != "fit" or config is None:
            return
        run = Path(config.output.dir) / (config.output.name
                                         or f"geoformer-{config.data.lead_hours}h")
        self._created = not run.exists()
        if (not config.overwrite and not config.get("ckpt_path") and run.is_dir()
                and any(run.iterdir())):
            raise FileExistsError(f"run folder {run} exists and holds files; pass "
                                  "--overwrite to fit into it (or --ckpt_path to resume)")

    def fit(self, model: GeoFormerModule, **kwargs: Any) -> None:
        """trainer.fit; a fit that fails (not one interrupted by Ctrl-C) removes the run
        folder it made, so nothing half-written is left."""
        try:
            self.trainer.fit(model, **kwargs)
        except Exception:
            if getattr(self, "_created", False) and self.trainer.is_global_zero:
                shutil.rmtree(self.run_dir(), ignore_errors=True)
            raise

    def _config(self, key: str) -> Any:
        return self._get(self.config_init, key)

    def run_dir(self) -> Path:
        output = self._config("output")
        return Path(output.dir) / (output.name or f"geoformer-{self.datamodule.lead_hours}h")

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        run_dir = self.run_dir()
        trainer = dict(self._get(self.config_init, "trainer", default={}))
        root, name = run_dir.parent, run_dir.name
        if trainer.get("logger") in (None, True):
            trainer["logger"] = ([TensorBoardLogger(root, name=name, version=""),
                                  CSVLogger(root, name=name, version="")]
                                 if self.subcommand == "fit"
                                 else CSVLogger(root, name=name, version=self.subcommand))
        if trainer.get("default_root_dir") is None:
            trainer["default_root_dir"] = run_dir
        callbacks = [self._config(c) for c in self._parser(self.subcommand).callback_keys]
        if self.subcommand == "fit":
            self.best = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor="val/loss",
                                        mode="min", save_top_k=1, save_last=True,
                                        filename="best-{epoch}")
            callbacks += [self.best, LearningRateMonitor(logging_interval="step"),
                          EarlyStopping(monitor="val/loss", patience=10**9, check_finite=True,
                                        # at validation only: max_steps may end an epoch
                                        # before its validation (after_fit then says so)
                                        check_on_train_epoch_end=False),
                          RandomStates()]
            every = self._config("output").every_n_steps
            if every:
                callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", save_top_k=0,
                                                 save_last=True, every_n_train_steps=every))
        plugins = trainer.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):  # a user's own IO wins
            trainer["plugins"] = [*plugins, AtomicCheckpointIO()]
        return self._instantiate_trainer({**trainer, **kwargs}, callbacks)

    def _start_from_weights(self) -> None:
        path = self._config("init_from")
        if path:
            init_from_checkpoint(self.model, path)

    before_validate = before_test = _start_from_weights

    def before_fit(self) -> None:
        self._start_from_weights()

    def after_fit(self) -> None:
        if self.trainer.fast_dev_run:
            print("fast_dev_run: no checkpoint exported")
            return
        if not self.best.best_model_path:
            raise RuntimeError("training produced no checkpoint with a finite validation loss")
        self.final = self.run_dir() / f"geoformer-{self.datamodule.lead_hours}h.ckpt"
        if self.trainer.is_global_zero:
            _atomic_copy_checkpoint(self.best.best_model_path, self.final)
            print(f"checkpoint: {self.final}")


def _atomic_copy_checkpoint(src: str | Path, dst: Path) -> None:
    """Copy a checkpoint so that a reader never sees half of it, refusing non-finite weights."""
    ckpt = load_checkpoint(src)
    for name, tensor in ckpt["state_dict"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise RuntimeError(f"refusing to write {dst}: weight {name} is not finite")
    atomic_write(dst, lambda tmp: torch.save(ckpt, tmp), overwrite=True)


def run(args: list[str]) -> GeoFormerCLI:
    """``geoformer fit|validate|test ARGS``: parse, build, run; the CLI keeps what it built
    (``.model``, ``.datamodule``, ``.trainer``, and ``.final``, the exported checkpoint)."""
    return GeoFormerCLI(
        GeoFormerModule, GeoDataModule,
        parser_class=OneLineErrorParser,
        parser_kwargs={"prog": "geoformer", "description": "geoformer training on LightningCLI"},
        seed_everything_default=0,
        trainer_defaults={"max_epochs": 100, "log_every_n_steps": 10,
                          "precision": auto_precision()},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        load_from_checkpoint_support=False,
        args=args,
    )
