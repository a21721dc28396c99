"""Configurations of the fluidgpt networks and of their training.

One frozen dataclass per network (:class:`GPTConfig`, :class:`LSTMConfig`,
:class:`ErosionConfig`, in :mod:`.networks`) and one for the optimisation
(:class:`TrainConfig`, in :mod:`.training`): architecture is kept apart from the task. Each
travels inside checkpoints as a plain dict (``to_dict`` / ``from_dict``: lists, numbers,
strings, None) so that checkpoints load with ``torch.load(weights_only=True)``; unknown keys
are an error. Every combination that cannot work is refused at construction with a message
that says why (:class:`ConfigError`, with the shared machinery in :mod:`.base`).

Sizes that come from the data (P particles, F state features per particle, K conditions, T
steps, wall faces) have the paper's values as defaults and are overridden from the dataset,
e.g. ``GPTConfig.from_preset("paper", n_particles=P, n_conditions=K)``.

What an experiment file writes for a network or its training is a *settings* mapping
(:data:`GPTSettings`, :data:`LSTMSettings`, :data:`ErosionSettings`, :data:`TrainSettings`):
an optional ``preset`` name plus any fields to override, every key typed, the sizes that come
from the data left out (``DATA_FIELDS``: they are read from the DataModule, never typed).
These TypedDicts are generated from the dataclasses, so the fields are written once; they are
the types of the LightningModules' ``model`` / ``train`` arguments, which LightningCLI
(jsonargparse) validates key by key. ``_Config.from_settings`` turns settings plus the
data's sizes into the frozen dataclass.

This package is the public import path (``from fluidgpt.config import GPTConfig``); its
files are ``base`` (errors, serialisation, presets, settings types), ``networks`` and
``training``.
"""

from .base import ConfigError
from .networks import (
    ErosionConfig,
    ErosionSettings,
    GPTConfig,
    GPTSettings,
    LSTMConfig,
    LSTMSettings,
)
from .training import TrainConfig, TrainSettings

__all__ = [
    "ConfigError",
    "GPTConfig",
    "LSTMConfig",
    "ErosionConfig",
    "TrainConfig",
    "GPTSettings",
    "LSTMSettings",
    "ErosionSettings",
    "TrainSettings",
]
