"""The experiment of a comparison: its typed sections, the parser that reads them from YAML
and ``--section.key=value`` overrides, and the data and splits it names.

One schema for every run: a model's section (``models.gpt``, ``models.lstm``,
``models.bilstm``, ``erosion.model``) is a LightningModule's ``class_path`` and
``init_args``, exactly what ``fluidgpt fit`` takes as ``model`` (the modules' typed
``__init__`` signatures, see :mod:`fluidgpt.module`); the comparison's own sections are the
frozen dataclasses below. jsonargparse validates every key at every depth (unknown keys and
wrong types are one-line errors, :mod:`fluidgpt.parsing`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from jsonargparse import ActionConfigFile, Namespace

from ..casetensors import CaseTensors, case_tensors
from ..config import ConfigError, TrainConfig
from ..data import Split, SplitSettings, load_cases, split_kinds
from ..module import ErosionModule, GPTModule, SequenceModule
from ..parsing import ExperimentParser, one_line_errors

__all__ = [
    "load_tuning_view",
    "TRAJECTORY_MODELS",
    "EROSION_SURROGATES",
    "COMPARE_MODELS",
    "MODULE_CLASSES",
    "DataSettings",
    "BudgetSettings",
    "RuntimeSettings",
    "CompareSettings",
    "ErosionStage",
    "Experiment",
    "module_spec",
    "module_class",
    "experiment_parser",
    "parse_experiment",
    "load_experiment",
    "split_kinds",
    "load_data",
    "split_of",
    "tuning_view",
]

TRAJECTORY_MODELS = ("gpt", "lstm", "bilstm")
#: Direct conditions -> erosion baselines (see :mod:`fluidgpt.surrogates`): erosion rows only.
EROSION_SURROGATES = ("knn", "pod")
#: Every name compare.models accepts: the trajectory models and the baselines.
COMPARE_MODELS = (*TRAJECTORY_MODELS, "nearest", *EROSION_SURROGATES)
_EROSION_SOURCES = (*TRAJECTORY_MODELS, "cfd")
#: The LightningModule class (or a subclass) each model section must name.
MODULE_CLASSES = {"gpt": GPTModule, "lstm": SequenceModule, "bilstm": SequenceModule,
                  "erosion": ErosionModule}
#: Arguments the pipeline fills in from the data: never written in an experiment.
DATA_ARGUMENTS = {"scalers", "contract"}


def module_spec(cls: type, model: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """A model section: ``{"class_path": ..., "init_args": {"model": ..., "train": ...}}``."""
    return {"class_path": f"{cls.__module__}.{cls.__name__}",
            "init_args": {"model": dict(model), "train": dict(train)}}


_DEFAULT_MODELS = {
    "gpt": module_spec(GPTModule, {"preset": "fluidgpt"}, {"preset": "fluidgpt"}),
    "lstm": module_spec(SequenceModule, {"preset": "paper-lstm"}, {"preset": "paper-lstm"}),
    "bilstm": module_spec(SequenceModule, {"preset": "paper-bilstm"},
                          {"preset": "paper-lstm"}),
}
_DEFAULT_EROSION = module_spec(ErosionModule, {"preset": "fluidgpt"},
                               {"preset": "fluidgpt-cnn"})


# ------------------------------------------------------------------------------ sections
@dataclass(frozen=True)
class DataSettings:
    """path: a canonical dataset (None: the shipped sample); conditions: "physical" (the
    columns that vary and change the physics), "all" or a list of names; paper_style:
    replicate every case under inert labels ({condition: [values]}); noise_ceiling: "auto"
    (paired injection seeds in the data, else the shipped noise sample), a path, or None."""

    path: str | None = None
    conditions: str | list[str] = "physical"
    paper_style: dict[str, list[float]] | None = None
    noise_ceiling: str | None = "auto"

    def load(self) -> xr.Dataset:
        return load_cases(self.path, self.paper_style)


def _positive(section: str, values: dict[str, Any]) -> None:
    for key, v in values.items():
        if v is not None and not v > 0:
            raise ConfigError(f"{section}.{key} must be a positive number or null, found {v!r}")


@dataclass(frozen=True)
class BudgetSettings:
    """The budget of every training run of a stage: epochs, or wall-clock seconds (then
    epochs is a cap and the schedules follow the clock); erosion_*: stage 2.

    model_epochs: the epochs of these trajectory models instead of ``epochs``, each chosen
    on the validation fold from the same candidates for every model (``tune.py --epochs``),
    for models whose error still falls when others have begun to overfit.
    """

    epochs: int | None = 150
    seconds: float | None = None
    erosion_epochs: int | None = 300
    erosion_seconds: float | None = None
    model_epochs: dict[str, int] | None = None

    def __post_init__(self) -> None:
        _positive("budget", {k: v for k, v in self.__dict__.items() if k != "model_epochs"})
        _positive("budget.model_epochs", self.model_epochs or {})

    def of(self, erosion: bool = False,
           model: str | None = None) -> tuple[float | None, int | None]:
        """(seconds or None, epochs or None) of the training runs of one stage (of one
        trajectory model: its ``model_epochs`` entry when it has one)."""
        if erosion:
            return self.erosion_seconds, self.erosion_epochs
        return self.seconds, (self.model_epochs or {}).get(model, self.epochs)


@dataclass(frozen=True)
class RuntimeSettings:
    """workers: trainings run in parallel (spawned processes); threads: torch threads of
    each (None: torch's default)."""

    workers: int = 1
    threads: int | None = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"runtime.workers must be an integer >= 1, found {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"runtime.threads must be an integer >= 1 or null (torch's "
                              f"default), found {self.threads}")


CompareModel = Literal["gpt", "lstm", "bilstm", "nearest", "knn", "pod"]
ErosionSource = Literal["gpt", "lstm", "bilstm", "cfd"]


@dataclass(frozen=True)
class CompareSettings:
    """models: the models scored, trajectory models and baselines (nearest, knn, pod)."""

    models: list[CompareModel] = field(default_factory=lambda: list(COMPARE_MODELS))


@dataclass(frozen=True)
class ErosionStage:
    """model: the erosion module's section; inputs: the trajectory models whose
    (out-of-fold) rollouts it is trained on, "cfd": the true trajectories (model "cnn")."""

    model: dict[str, Any] = field(default_factory=lambda: dict(_DEFAULT_EROSION))
    inputs: list[str] = field(default_factory=lambda: list(_EROSION_SOURCES))


@dataclass(frozen=True)
class Experiment:
    """A whole comparison, validated. ``models[kind]`` and ``erosion.model`` are module
    sections (class_path + init_args) as ``fluidgpt fit`` takes them."""

    data: DataSettings = field(default_factory=DataSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    models: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(_DEFAULT_MODELS))
    erosion: ErosionStage = field(default_factory=ErosionStage)
    compare: CompareSettings = field(default_factory=CompareSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    output: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for kind in self.compare.models:
            if kind in TRAJECTORY_MODELS and kind not in self.models:
                raise ConfigError(f"compare.models names {kind} but models.{kind} is null")
        for kind, spec in self.models.items():
            check_spec(kind, spec, f"models.{kind}")
        check_spec("erosion", self.erosion.model, "erosion.model")

    def replace(self, **sections: Any) -> Experiment:
        """A copy with these sections replaced, e.g. ``split=replace(e.split, kind=...)``."""
        return replace(self, **sections)


def module_class(spec: dict[str, Any]) -> type:
    """The class a section's class_path names."""
    module, _, name = str(spec["class_path"]).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"class_path {spec['class_path']!r} cannot be imported") from err


def check_spec(kind: str, spec: dict[str, Any], where: str) -> None:
    """Refuse a section whose class is not a module of this kind, or whose settings cannot
    make a network (sized with each preset's own defaults: the data comes later)."""
    cls = module_class(spec)
    if not issubclass(cls, MODULE_CLASSES[kind]):
        raise ConfigError(f"{where}: class_path must be {MODULE_CLASSES[kind].__name__} (or "
                          f"a subclass), found {spec['class_path']}")
    args = spec.get("init_args") or {}
    config = cls.config_class.from_settings(args.get("model"))
    TrainConfig.from_settings(args.get("train"))
    if kind in ("lstm", "bilstm") and config.bidirectional != (kind == "bilstm"):
        raise ConfigError(f"{where}: the {kind} is {'' if kind == 'bilstm' else 'not '}"
                          f"bidirectional: use preset paper-{kind} / tiny-{kind} or set "
                          f"bidirectional: {str(kind == 'bilstm').lower()}")


# -------------------------------------------------------------------------------- parser
def experiment_parser(prog: str = "fluidgpt compare") -> ExperimentParser:
    """The jsonargparse parser of an experiment: ``--config FILE``, ``--print_config``, and
    every key as ``--section.key=value`` (a model's as ``--models.gpt.train.lr=...``)."""
    p = ExperimentParser(prog=prog, description="A comparison of fluidgpt models "
                         "(experiments/fluidgpt/*.yaml).")
    p.add_argument("--config", action=ActionConfigFile, help="an experiment YAML")
    p.add_argument("--data", type=DataSettings, default=DataSettings())
    p.add_argument("--split", type=SplitSettings, default=SplitSettings())
    p.add_argument("--budget", type=BudgetSettings, default=BudgetSettings())
    # sections only: the pipeline builds the modules, sized from the data, in every job
    for kind in TRAJECTORY_MODELS:
        p.add_subclass_arguments(MODULE_CLASSES[kind], f"models.{kind}", required=False,
                                 skip=DATA_ARGUMENTS, instantiate=False,
                                 help=f"the {kind} module (what `fluidgpt fit` takes as "
                                      "--model; null: none)")
    p.add_subclass_arguments(ErosionModule, "erosion.model", required=False,
                             skip=DATA_ARGUMENTS, instantiate=False, help="the erosion module")
    p.set_defaults({f"models.{kind}": _DEFAULT_MODELS[kind] for kind in TRAJECTORY_MODELS})
    p.set_defaults({"erosion.model": _DEFAULT_EROSION})
    p.add_argument("--erosion.inputs", type=list[ErosionSource],
                   default=list(_EROSION_SOURCES))
    p.add_argument("--compare", type=CompareSettings, default=CompareSettings())
    p.add_argument("--runtime", type=RuntimeSettings, default=RuntimeSettings())
    p.add_argument("--output", type=str | None, default=None,
                   help="the table's CSV (logs go next to it)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every run")
    return p


def _canonical(spec: dict[str, Any]) -> dict[str, Any]:
    """The section with its class named where it is defined (jsonargparse writes the
    shortest import path, e.g. fluidgpt.GPTModule)."""
    cls = module_class(spec)
    return {**spec, "class_path": f"{cls.__module__}.{cls.__qualname__}"}


def _experiment(d: dict[str, Any]) -> Experiment:
    models = {k: _canonical(v) for k, v in (d.get("models") or {}).items() if v is not None}
    erosion = d.get("erosion") or {}
    unknown = sorted(set((d["budget"] or {}).get("model_epochs") or {}) - set(models))
    if unknown:
        raise ConfigError(f"budget.model_epochs: {', '.join(map(repr, unknown))} is not a "
                          f"model of this experiment (models: {', '.join(models)})")
    return Experiment(
        data=DataSettings(**d["data"]), split=SplitSettings(**d["split"]),
        budget=BudgetSettings(**d["budget"]), models=models,
        erosion=ErosionStage(_canonical(erosion["model"] or dict(_DEFAULT_EROSION)),
                             list(erosion.get("inputs") or [])),
        compare=CompareSettings(**d["compare"]), runtime=RuntimeSettings(**d["runtime"]),
        output=d["output"], seed=d["seed"])


@one_line_errors
def parse_experiment(argv: Sequence[str],
                     parser: ExperimentParser | None = None) -> tuple[Experiment, Namespace]:
    """Parse command-line arguments into an :class:`Experiment` (and the parsed namespace,
    which holds any arguments the caller added to the parser)."""
    parser = parser or experiment_parser()
    ns = parser.parse_args(list(argv))
    d = ns.clone().as_dict()
    known = {"data", "split", "budget", "models", "erosion", "compare", "runtime", "output",
             "seed"}
    return _experiment({k: v for k, v in d.items() if k in known}), ns


def load_experiment(path: str | Path | None = None,
                    overrides: Sequence[str] = ()) -> Experiment:
    """An experiment YAML (None: the defaults) with ``--section.key=value`` overrides.

    Unknown keys and wrong types at any depth are an :class:`~fluidgpt.parsing.
    ExperimentError` naming the key, the expected type and the value.
    """
    argv: list[str] = []
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such experiment file")
        argv += ["--config", str(path)]
    return parse_experiment([*argv, *overrides])[0]


# ---------------------------------------------------------------------------------- data
def load_data(experiment: Experiment) -> xr.Dataset:
    """The experiment's dataset (the shipped sample when data.path is null), replicated under
    inert labels when data.paper_style is set."""
    return experiment.data.load()


def split_of(ds: xr.Dataset, experiment: Experiment, kind: str) -> Split:
    """The split of this kind with the experiment's settings (one source for both stages)."""
    return experiment.split.make(ds, kind)


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


def load_tuning_view(path: str | Path, overrides: Sequence[str] = ()):
    """The experiment at ``path`` (with ``overrides``) on the interior split with at least 3
    folds, reduced by :func:`tuning_view`: (config, full dataset, full tensors, view dataset,
    view tensors, view split). What experiments/fluidgpt/tune*.py score trials on."""
    config = load_experiment(path, overrides)
    overrides = [*overrides, "--split.kind=interior",
                 f"--split.n_folds={max(3, config.split.n_folds)}"]
    config = load_experiment(path, overrides)
    ds = load_data(config)
    data = case_tensors(ds, config.data.conditions)
    return (config, ds, data, *tuning_view(ds, data, split_of(ds, config, "interior")))
