"""geoformer: Pangu-Weather's 3D Earth-specific transformer for medium-range forecasting.

The network is imported eagerly; data, training and scoring entry points (which pull
in xarray and Lightning) load on first use. Forecasts: ``from geoformer.forecast import
forecast``.
"""

from importlib import import_module
from typing import Any

from .config import PRESETS, ConfigError, GeoFormerConfig
from .model import GeoFormer

__version__ = "0.1.0"

_LAZY = {
    "open_dataset": "schema",
    "standardize": "schema",
    "SchemaError": "schema",
    "write_training_store": "data",
    "GeoDataModule": "data",
    "Normalizer": "normalization",
    "compute_statistics": "normalization",
    "State": "state",
    "GeoFormerModule": "module",
    "load_module": "module",
    "plan": "aggregation",
    "write_forecast": "forecast",
    "evaluate": "evaluation",
    "score_table": "scores",
    "compute_climatology": "climatology",
}

__all__ = ["GeoFormer", "GeoFormerConfig", "ConfigError", "PRESETS", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'geoformer' has no attribute {name!r}")
