"""Sources of raw data: built-in datasets generated on demand (the Held-Suarez atmosphere,
made with dinosaur) and the reader of GRIB files as centres write them (``grib.py``, used by
:func:`geoformer.schema.open_dataset`)."""

from .held_suarez import build_held_suarez, load_or_build_held_suarez, simulate_held_suarez

__all__ = ["build_held_suarez", "load_or_build_held_suarez", "simulate_held_suarez"]
