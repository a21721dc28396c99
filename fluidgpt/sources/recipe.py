"""The sweep recipe: geometry, fluid, particles, erosion and the grid of case conditions.

A recipe is a YAML file (datasets/elbow_erosion/recipe.yaml) read into frozen dataclasses;
unknown keys are an error. ``profiles`` in the file are named overrides (deep-merged), e.g.
the small shipped sample or the tiny raw case of the reader tests.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import yaml

from ..schema import CONDITION_ATTRS, PHYSICAL_CONDITIONS
from .elbow import WALL_PATCHES, ElbowGeometry

__all__ = ["FluidSettings", "ParticleSettings", "ErosionSettings", "NoiseCeiling", "Recipe",
           "load_recipe", "recipe_from_dict", "case_grid"]


@dataclass(frozen=True)
class FluidSettings:
    """Carrier gas and the steady RANS (k-epsilon) solve that gives the frozen flow.

    density [kg m-3], viscosity: kinematic [m2 s-1]; iterations: SIMPLE cap; tolerance:
    initial-residual target that stops SIMPLE early; turbulence_intensity: at both inlets.
    """

    density: float = 1.2
    viscosity: float = 1.5e-5
    iterations: int = 1000
    tolerance: float = 1e-4
    turbulence_intensity: float = 0.05


@dataclass(frozen=True)
class ParticleSettings:
    """Injection, tracking and sampling of the particles.

    tracked: P particles whose trajectories are kept (injected once at t = 0, fixed order);
    streams: parcels per erosion burst, injected every burst_interval [s] from delta_t on, a
    periodic feed carrying solids_mass_flow [kg s-1] in total; feed_patterns: distinct sets of
    `streams` feed injection points, taken by the bursts in turn (burst k from set
    k mod feed_patterns), so that the erosion window sees streams * feed_patterns distinct
    (deterministic) parcel paths for the cost of `streams` parcels per burst; 1 feeds every
    burst from the same points; feed_size_spread: s, the feed's diameters drawn uniformly
    from [d (1 - s), d (1 + s)] around the case's diameter d (a sieved size class; 0: every
    feed parcel has diameter d), drawn by OpenFOAM's own seeded generator, so a re-run
    reproduces them; the tracked particles keep diameter d; seed/jitter: injection points
    (see elbow.injection_positions); n_steps samples every sample_interval [s] from t = 0;
    delta_t: solver step [s] (parcels sub-step to max_courant of a cell); interpolation: of
    the gas velocity at the parcel ("cell": the cell value, which with wall functions is the
    log-layer speed; "cellPoint" decays to zero at the walls and traps parcels sliding along
    them in this coarse RANS mesh); erosion rate from
    the eroded volume between steady_after and steady_after + erosion_window [s]; friction:
    tangential wall friction; gravity [m s-2].
    """

    tracked: int = 196
    streams: int = 196
    feed_patterns: int = 1
    seed: int = 25
    jitter: float = 0.5
    n_steps: int = 50
    sample_interval: float = 0.005
    delta_t: float = 0.001
    burst_interval: float = 0.01
    feed_size_spread: float = 0.0
    steady_after: float = 0.3
    erosion_window: float = 0.1
    solids_mass_flow: float = 0.01
    max_courant: float = 0.3
    interpolation: str = "cell"
    friction: float = 0.1
    gravity: tuple[float, float, float] = (0.0, -9.81, 0.0)

    @property
    def horizon(self) -> float:
        return (self.n_steps - 1) * self.sample_interval

    @property
    def end_time(self) -> float:
        return self.steady_after + self.erosion_window

    @property
    def erosion_paths(self) -> int:
        """Distinct feed parcel paths behind the erosion rate (streams * feed_patterns)."""
        return self.streams * self.feed_patterns

    @property
    def erosion_parcels(self) -> int:
        """Feed parcels injected per erosion window (streams per burst, every burst)."""
        return self.streams * int(round(self.erosion_window / self.burst_interval))


@dataclass(frozen=True)
class ErosionSettings:
    """OpenFOAM particleErosion (Finnie) on `patches`, and the wall density [kg m-3]."""

    patches: tuple[str, ...] = WALL_PATCHES
    flow_stress: float = 5.2e6
    psi: float = 2.0
    K: float = 2.0
    wall_density: float = 7800.0


@dataclass(frozen=True)
class NoiseCeiling:
    """Cases re-run with each injection seed: `cases` grid points spread over the grid."""

    seeds: tuple[int, ...] = (25, 26)
    cases: int = 8


@dataclass(frozen=True)
class Recipe:
    """Everything a sweep needs; conditions maps each physical condition to its values."""

    name: str
    conditions: dict[str, tuple[float, ...]]
    geometry: ElbowGeometry = field(default_factory=ElbowGeometry)
    fluid: FluidSettings = field(default_factory=FluidSettings)
    particles: ParticleSettings = field(default_factory=ParticleSettings)
    erosion: ErosionSettings = field(default_factory=ErosionSettings)
    inert: dict[str, tuple[float, ...]] = field(default_factory=dict)
    noise_ceiling: NoiseCeiling = field(default_factory=NoiseCeiling)
    nice: int = 10
    description: str = ""

    def __post_init__(self):
        missing = [c for c in PHYSICAL_CONDITIONS if c not in self.conditions]
        extra = [c for c in self.conditions if c not in PHYSICAL_CONDITIONS]
        if missing or extra:
            raise ValueError(f"recipe {self.name!r}: conditions must be exactly "
                             f"{list(PHYSICAL_CONDITIONS)}; missing {missing}, unknown {extra} "
                             "(labels that change nothing go under 'inert')")
        for name, values in {**self.conditions, **self.inert}.items():
            if len(values) == 0 or len(set(values)) != len(values):
                raise ValueError(f"recipe {self.name!r}: {name} needs distinct values, "
                                 f"got {list(values)}")
        bad = [c for c in self.inert if c in PHYSICAL_CONDITIONS or c not in CONDITION_ATTRS]
        if bad:
            raise ValueError(f"recipe {self.name!r}: inert labels must be known non-physical "
                             f"conditions {sorted(set(CONDITION_ATTRS) - set(PHYSICAL_CONDITIONS))}"
                             f", got {bad}")
        _check_times(self.particles)

    @property
    def n_cases(self) -> int:
        return math.prod(len(v) for v in self.conditions.values())


def _multiple(a: float, b: float) -> bool:
    ratio = a / b
    return abs(ratio - round(ratio)) < 1e-6 and round(ratio) >= 1


def _check_times(p: ParticleSettings) -> None:
    checks = [
        ("sample_interval", p.sample_interval, "delta_t", p.delta_t),
        ("burst_interval", p.burst_interval, "delta_t", p.delta_t),
        ("steady_after", p.steady_after, "sample_interval", p.sample_interval),
        ("erosion_window", p.erosion_window, "sample_interval", p.sample_interval),
    ]
    for a_name, a, b_name, b in checks:
        if not _multiple(a, b):
            raise ValueError(f"particles.{a_name} ({a}) must be a whole multiple of "
                             f"particles.{b_name} ({b}) so that it falls on a solver write")
    if p.horizon > p.steady_after:
        raise ValueError(f"the trajectory horizon (n_steps - 1) * sample_interval = {p.horizon} s "
                         f"must not exceed particles.steady_after = {p.steady_after} s")
    if p.tracked < 1 or p.streams < 1 or p.n_steps < 2:
        raise ValueError("particles.tracked and particles.streams must be >= 1, n_steps >= 2")
    if not 0.0 <= p.feed_size_spread < 1.0:
        raise ValueError(f"particles.feed_size_spread is a relative half-width, 0 <= s < 1; "
                         f"got {p.feed_size_spread}")
    if p.feed_patterns < 1:
        raise ValueError(f"particles.feed_patterns must be >= 1, got {p.feed_patterns}")
    period = p.feed_patterns * p.burst_interval
    if not _multiple(p.erosion_window, period):
        raise ValueError(f"particles.erosion_window ({p.erosion_window}) must be a whole "
                         f"multiple of feed_patterns * burst_interval ({period}), the period "
                         "of the feed, so that the rate averages whole periods")


def _build(cls, values: dict | None, where: str):
    values = dict(values or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected some of {sorted(names)}")
    for f in fields(cls):
        if f.name in values:
            values[f.name] = _coerce(values[f.name], str(f.type), f"{where}.{f.name}")
    return cls(**values)


_SCALARS = {"float": float, "int": int, "str": str}


def _coerce(value, annotation: str, where: str):
    """Convert a YAML value to the annotated type (PyYAML reads 5.2e6 as a string)."""
    try:
        if annotation.startswith("tuple["):
            cast = _SCALARS[annotation[6:].split(",")[0].strip(" ]")]
            return tuple(cast(v) for v in _as_list(value))
        cast = _SCALARS.get(annotation)
        if cast is int and float(value) != int(float(value)):
            raise ValueError("not a whole number")
        return cast(float(value)) if cast is int else cast(value) if cast else value
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: cannot read {value!r} as {annotation} ({e})") from None


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "conditions":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_from_dict(data: dict, profile: str | None = None) -> Recipe:
    """Build a Recipe from a parsed YAML mapping, applying the named profile if given."""
    data = dict(data)
    profiles = data.pop("profiles", {}) or {}
    if profile is not None:
        if profile not in profiles:
            raise ValueError(f"unknown recipe profile {profile!r}; the recipe has "
                             f"{sorted(profiles)}")
        data = _merge(data, profiles[profile])
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"recipe: unknown keys {unknown}; expected some of {sorted(known)}")
    if "name" not in data or "conditions" not in data:
        raise ValueError("recipe: 'name' and 'conditions' are required")
    name = data["name"] + (f"-{profile}" if profile else "")
    return Recipe(
        name=name,
        description=str(data.get("description", "")).strip(),
        conditions={k: tuple(float(x) for x in _as_list(v)) for k, v in
                    data["conditions"].items()},
        inert={k: tuple(float(x) for x in _as_list(v)) for k, v in
               (data.get("inert") or {}).items()},
        geometry=_build(ElbowGeometry, data.get("geometry"), "recipe.geometry"),
        fluid=_build(FluidSettings, data.get("fluid"), "recipe.fluid"),
        particles=_build(ParticleSettings, data.get("particles"), "recipe.particles"),
        erosion=_build(ErosionSettings, data.get("erosion"), "recipe.erosion"),
        noise_ceiling=_build(NoiseCeiling, data.get("noise_ceiling"), "recipe.noise_ceiling"),
        nice=int(data.get("nice", 10)),
    )


def _as_list(v):
    return v if isinstance(v, (list, tuple)) else [v]


def load_recipe(path, profile: str | None = None) -> Recipe:
    """Read a recipe YAML file (optionally with one of its profiles applied)."""
    path = Path(path)
    with path.open() as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping, found {type(data).__name__}")
    return recipe_from_dict(data, profile)


def case_grid(recipe: Recipe) -> np.ndarray:
    """The full factorial grid (n_cases, len(PHYSICAL_CONDITIONS)), last condition fastest."""
    axes = [recipe.conditions[c] for c in PHYSICAL_CONDITIONS]
    return np.array(list(itertools.product(*axes)), dtype=float)
