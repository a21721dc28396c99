"""The experiment configuration of a comparison: the defaults, loading and overriding a YAML
file, validating it, and the data and splits it names."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from ..config import ConfigError
from ..data import SPLIT_KINDS, Split, load_dataset, make_split
from ..datamodule import CaseTensors

__all__ = [
    "TRAJECTORY_MODELS",
    "EROSION_SURROGATES",
    "COMPARE_MODELS",
    "DEFAULTS",
    "load_experiment",
    "apply_overrides",
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
        from ..sources.variants import paper_style_variant

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

