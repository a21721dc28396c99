"""Built-in datasets generated on demand (the Held-Suarez atmosphere, made with dinosaur)."""

from .held_suarez import build_held_suarez, load_or_build_held_suarez, simulate_held_suarez

__all__ = ["build_held_suarez", "load_or_build_held_suarez", "simulate_held_suarez"]
