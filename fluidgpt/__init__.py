"""fluidgpt: FLUID-GPT particle trajectories (GPT-2) and wall erosion (CNN) from CFD conditions.

The public API, imported on first use (``import fluidgpt`` stays light for the command line):

* data: ``load_dataset``, ``make_split``, ``Split``, ``open_dataset``, ``save_dataset``,
  ``validate``, ``case_tensors``, ``CaseTensors``, ``FluidDataModule``;
* networks and modules: ``FluidGPT``, ``GPTModule``, ``SequenceModule``, ``ErosionModule``,
  ``NearestCase``, ``InverseDistanceErosion``, ``PODErosion``, ``load_module``,
  ``GPTConfig``, ``LSTMConfig``, ``ErosionConfig``, ``TrainConfig``;
* workflow: ``load_experiment`` (an ``Experiment``), ``run_fit`` (``fluidgpt fit`` on
  LightningCLI, arguments as on the command line), ``run_compare``, ``evaluate_checkpoints``,
  ``load_pipeline``, ``write_prediction`` (and ``fluidgpt.predict.predict``, the function
  of the submodule of that name);
* scores: ``trajectory_scores``, ``erosion_scores``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_dataset": "data", "make_split": "data", "Split": "data",
    "open_dataset": "schema", "save_dataset": "schema", "validate": "schema",
    "case_tensors": "casetensors", "CaseTensors": "casetensors", "FluidDataModule": "datamodule",
    "FluidGPT": "gpt", "NearestCase": "baselines",
    "InverseDistanceErosion": "surrogates", "PODErosion": "surrogates",
    "GPTModule": "module", "SequenceModule": "module", "ErosionModule": "module",
    "load_module": "module",
    "GPTConfig": "config", "LSTMConfig": "config", "ErosionConfig": "config",
    "TrainConfig": "config",
    "load_experiment": "compare", "Experiment": "compare", "run_fit": "fitcli",
    "run_compare": "compare", "CaseDataModule": "casedata", "DataContract": "casetensors",
    "evaluate_checkpoints": "compare",
    "load_pipeline": "predict", "write_prediction": "predict",
    "trajectory_scores": "metrics", "erosion_scores": "metrics",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fluidgpt' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
