"""geoformer: Pangu-Weather's 3D Earth-specific transformer for medium-range forecasting."""

from .config import PRESETS, ConfigError, GeoFormerConfig
from .model import GeoFormer

__version__ = "0.1.0"

__all__ = ["GeoFormer", "GeoFormerConfig", "ConfigError", "PRESETS", "__version__"]
