"""The sweep recipe: geometry, fluid, particles, erosion feed and the design of the cases.

A recipe is a YAML file (datasets/elbow_erosion/recipe.yaml) read into frozen dataclasses;
every key and type is checked by jsonargparse (unknown keys are an error). ``profiles`` in the
file are named overrides layered over the base, e.g. the small shipped sample or the tiny raw
case of the reader tests.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import qmc

from ..schema import CONDITION_ATTRS, PHYSICAL_CONDITIONS
from .elbow import WALL_PATCHES, ElbowGeometry

__all__ = ["FluidSettings", "ParticleSettings", "FeedSettings", "ConditionRange", "Design",
           "ErosionSettings", "NoiseCeiling", "Recipe", "load_recipe", "recipe_from_dict",
           "case_grid"]


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
    """The tracked particles: injection, tracking and sampling (their own solver pass).

    tracked: P particles whose trajectories are kept, injected once at t = 0 in a fixed
    order, all of the case's diameter, without turbulent dispersion, so that a re-run
    reproduces them bit for bit and the trajectories are a function of the conditions;
    seed/jitter: injection points (see elbow.injection_positions); n_steps samples every
    sample_interval [s] from t = 0; delta_t: solver step [s] (parcels sub-step to
    max_courant of a cell; shared with the erosion feed); interpolation: of the gas velocity
    at the parcel ("cell": the cell value, which with wall functions is the log-layer speed;
    "cellPoint" decays to zero at the walls and traps parcels sliding along them in this
    coarse RANS mesh); friction: tangential wall friction; gravity [m s-2].
    """

    tracked: int = 196
    seed: int = 25
    jitter: float = 0.5
    n_steps: int = 50
    sample_interval: float = 0.005
    delta_t: float = 0.001
    max_courant: float = 0.3
    interpolation: str = "cell"
    friction: float = 0.1
    gravity: tuple[float, float, float] = (0.0, -9.81, 0.0)

    @property
    def horizon(self) -> float:
        return (self.n_steps - 1) * self.sample_interval


FEED_SIZES = ("rosin_rammler", "fixed")
FEED_DISPERSION = ("stochastic", "none")


@dataclass(frozen=True)
class FeedSettings:
    """The erosion feed: a polydisperse, turbulent particle stream in its own solver pass.

    parcels: feed parcels released at once from a stratified, jittered grid over the branch
    (seed + 1000003: never the tracked points), each carrying an equal share of
    solids_mass_flow [kg s-1] x 1 s (OpenFOAM's mass basis), tracked for `duration` [s]
    (until nearly all have left: the share still inside is recorded), so that the eroded
    volume per face is what a steady feed erodes in one second (the parcels do not interact:
    one-way coupled, no collisions, so a steady feed is a superposition of single releases).
    size_distribution: "rosin_rammler" (the mass fraction coarser than x is exp(-(x / d)^n),
    d the case's particle_diameter, n = spread, Fluent's "spread parameter"), truncated to
    size_range x d and discretised into size_classes diameters of equal mass (as Fluent's
    Rosin-Rammler injections are); "fixed": every parcel of diameter d.
    dispersion: "stochastic" (stochasticDispersionRAS: a random eddy velocity from the
    flow's k-epsilon fields, Gosman-Ioannides) or "none".
    """

    parcels: int = 8000
    size_distribution: str = "rosin_rammler"
    spread: float = 3.5
    size_range: tuple[float, float] = (0.25, 3.0)
    size_classes: int = 20
    dispersion: str = "stochastic"
    duration: float = 0.4
    solids_mass_flow: float = 0.01


@dataclass(frozen=True)
class ErosionSettings:
    """OpenFOAM particleErosion (Finnie) on `patches`, and the wall density [kg m-3]."""

    patches: tuple[str, ...] = WALL_PATCHES
    flow_stress: float = 2.4e9
    psi: float = 2.0
    K: float = 2.0
    wall_density: float = 7800.0


@dataclass(frozen=True)
class NoiseCeiling:
    """Cases re-run with each injection seed: `cases` design points (a seeded random choice)."""

    seeds: tuple[int, ...] = (25, 26)
    cases: int = 8


@dataclass(frozen=True)
class ConditionRange:
    """A continuous range [min, max] of one condition for a space-filling design; scale
    "log" spreads the cases evenly in log(value) (particle size)."""

    min: float
    max: float
    scale: str = "linear"

    def __post_init__(self):
        if not self.max > self.min or (self.scale == "log" and self.min <= 0):
            raise ValueError(f"a condition range needs min < max (and min > 0 on a log scale), "
                             f"got [{self.min}, {self.max}] ({self.scale})")
        if self.scale not in ("linear", "log"):
            raise ValueError(f"a condition range's scale is linear or log, got {self.scale!r}")

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map u in [0, 1) onto the range."""
        if self.scale == "log":
            return np.exp(np.log(self.min) + u * (np.log(self.max) - np.log(self.min)))
        return self.min + u * (self.max - self.min)


DESIGNS = ("factorial", "sobol", "lhs")


@dataclass(frozen=True)
class Design:
    """How the case conditions are chosen: "factorial" (every combination of listed values)
    or a space-filling design over the condition ranges: "sobol" (scrambled Sobol points,
    best with a power-of-two `cases`) or "lhs" (a Latin hypercube optimised for centred
    discrepancy), both from scipy.stats.qmc with `seed`."""

    kind: str = "factorial"
    cases: int = 0
    seed: int = 25

    def __post_init__(self):
        if self.kind not in DESIGNS:
            raise ValueError(f"design.kind must be one of {DESIGNS}, got {self.kind!r}")
        if self.kind != "factorial" and self.cases < 2:
            raise ValueError(f"a {self.kind} design needs design.cases >= 2, got {self.cases}")


@dataclass(frozen=True)
class Recipe:
    """Everything a sweep needs; conditions maps each physical condition to its values (a
    factorial design) or to a ConditionRange (a space-filling design)."""

    name: str
    conditions: dict[str, tuple[float, ...] | ConditionRange]
    design: Design = field(default_factory=Design)
    geometry: ElbowGeometry = field(default_factory=ElbowGeometry)
    fluid: FluidSettings = field(default_factory=FluidSettings)
    particles: ParticleSettings = field(default_factory=ParticleSettings)
    feed: FeedSettings = field(default_factory=FeedSettings)
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
        ranges = [isinstance(v, ConditionRange) for v in self.conditions.values()]
        if self.design.kind == "factorial" and any(ranges):
            raise ValueError(f"recipe {self.name!r}: a factorial design lists values for every "
                             "condition; {min, max} ranges need design.kind sobol or lhs")
        if self.design.kind != "factorial" and not all(ranges):
            raise ValueError(f"recipe {self.name!r}: a {self.design.kind} design needs a "
                             "{min, max} range for every condition, found lists for "
                             f"{[c for c, r in zip(self.conditions, ranges) if not r]}")
        lists = {k: v for k, v in self.conditions.items() if not isinstance(v, ConditionRange)}
        for name, values in {**lists, **self.inert}.items():
            if len(values) == 0 or len(set(values)) != len(values):
                raise ValueError(f"recipe {self.name!r}: {name} needs distinct values, "
                                 f"got {list(values)}")
        bad = [c for c in self.inert if c in PHYSICAL_CONDITIONS or c not in CONDITION_ATTRS]
        if bad:
            raise ValueError(f"recipe {self.name!r}: inert labels must be known non-physical "
                             f"conditions {sorted(set(CONDITION_ATTRS) - set(PHYSICAL_CONDITIONS))}"
                             f", got {bad}")
        _check_times(self.particles)
        _check_feed(self.feed, self.particles)

    @property
    def n_cases(self) -> int:
        if self.design.kind != "factorial":
            return self.design.cases
        return math.prod(len(v) for v in self.conditions.values())


def _multiple(a: float, b: float) -> bool:
    ratio = a / b
    return abs(ratio - round(ratio)) < 1e-6 and round(ratio) >= 1


def _check_times(p: ParticleSettings) -> None:
    if not _multiple(p.sample_interval, p.delta_t):
        raise ValueError(f"particles.sample_interval ({p.sample_interval}) must be a whole "
                         f"multiple of particles.delta_t ({p.delta_t}) so that it falls on a "
                         "solver write")
    if p.tracked < 1 or p.n_steps < 2:
        raise ValueError(f"particles.tracked must be >= 1 and particles.n_steps >= 2, found "
                         f"{p.tracked} and {p.n_steps}")


def _check_feed(f: FeedSettings, p: ParticleSettings) -> None:
    if f.parcels < 1:
        raise ValueError(f"feed.parcels must be >= 1, got {f.parcels}")
    if f.size_classes < 1 or (f.size_distribution == "rosin_rammler"
                              and f.parcels < f.size_classes):
        raise ValueError(f"feed.size_classes must be >= 1 and at most feed.parcels "
                         f"({f.parcels}), got {f.size_classes}")
    if f.size_distribution not in FEED_SIZES:
        raise ValueError(f"feed.size_distribution must be one of {FEED_SIZES}, got "
                         f"{f.size_distribution!r}")
    if f.dispersion not in FEED_DISPERSION:
        raise ValueError(f"feed.dispersion must be one of {FEED_DISPERSION}, got "
                         f"{f.dispersion!r}")
    if f.size_distribution == "rosin_rammler" and not f.spread > 0:
        raise ValueError(f"feed.spread (the Rosin-Rammler spread parameter n) must be > 0, "
                         f"got {f.spread}")
    lo, hi = f.size_range
    if not 0 < lo < 1 < hi:
        raise ValueError(f"feed.size_range [lo, hi] (relative to the case's diameter) needs "
                         f"0 < lo < 1 < hi, got {list(f.size_range)}")
    if not _multiple(f.duration, p.delta_t):
        raise ValueError(f"feed.duration ({f.duration}) must be a whole multiple of "
                         f"particles.delta_t ({p.delta_t})")
    if not f.solids_mass_flow > 0:
        raise ValueError(f"feed.solids_mass_flow must be > 0, got {f.solids_mass_flow}")


def _recipe_parser():
    """A jsonargparse parser typed by :class:`Recipe`: every key and type checked, errors as
    one line (``recipe.fluid.density: expected float, found 'heavy'``)."""
    from ..parsing import ExperimentParser

    parser = ExperimentParser(exit_on_error=False)
    parser.add_argument("--recipe", type=Recipe)
    return parser


def _recipe_error(err: Exception) -> ValueError:
    line = getattr(err, "line", None) or " ".join(str(err).split())
    return ValueError(line if line.startswith("recipe") else f"recipe: {line}")


def _check_ranges(conditions: dict) -> None:
    """A {min, max} condition's own error, named (jsonargparse would report the whole union
    of a condition's types)."""
    for name, value in conditions.items():
        if isinstance(value, dict):
            try:
                ConditionRange(**value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"recipe.conditions.{name}: {err}") from None


def recipe_from_dict(data: dict, profile: str | None = None) -> Recipe:
    """Build a Recipe from a parsed YAML mapping, applying the named profile if given.

    A profile is parsed over the base recipe as a second configuration layer (jsonargparse
    merges the nested sections; a profile's ``conditions`` replace the base's whole, since a
    profile's design may need values where the base has ranges).
    """
    data = dict(data)
    profiles = data.pop("profiles", {}) or {}
    if profile is not None and profile not in profiles:
        raise ValueError(f"unknown recipe profile {profile!r}; the recipe has "
                         f"{sorted(profiles)}")
    if "name" not in data or "conditions" not in data:
        raise ValueError("recipe: 'name' and 'conditions' are required")
    if profile is not None:
        data["name"] = f"{data['name']}-{profile}"
    for layer in (data, profiles.get(profile) or {}):
        _check_ranges(layer.get("conditions") or {})
    parser = _recipe_parser()
    try:
        cfg = parser.parse_object({"recipe": data})
        if profile is not None:
            layer = dict(profiles[profile])
            if "conditions" in layer:
                cfg.recipe.conditions = None
            cfg = parser.parse_object({"recipe": layer}, namespace=cfg)
        recipe = parser.instantiate(cfg).recipe
    except (ValueError, TypeError) as err:
        raise _recipe_error(err) from None
    return dataclasses.replace(recipe, description=recipe.description.strip())


def load_recipe(path, profile: str | None = None) -> Recipe:
    """Read a recipe YAML file (optionally with one of its profiles applied)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ValueError(f"{path}: expected a YAML text file, found binary data") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}: not valid YAML{where} "
                         f"({getattr(err, 'problem', None) or type(err).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping, found {type(data).__name__}")
    return recipe_from_dict(data, profile)


def case_grid(recipe: Recipe) -> np.ndarray:
    """The case conditions (n_cases, len(PHYSICAL_CONDITIONS)) of the recipe's design.

    factorial: every combination of the listed values, last condition fastest; sobol / lhs:
    design.cases points of a scrambled Sobol sequence or an optimised Latin hypercube
    (scipy.stats.qmc, seeded) in the unit cube, mapped onto each condition's range.
    """
    if recipe.design.kind == "factorial":
        axes = [recipe.conditions[c] for c in PHYSICAL_CONDITIONS]
        return np.array(list(itertools.product(*axes)), dtype=float)
    d, n, seed = len(PHYSICAL_CONDITIONS), recipe.design.cases, recipe.design.seed
    if recipe.design.kind == "sobol":
        sampler = qmc.Sobol(d, scramble=True, seed=seed)
        with warnings.catch_warnings():     # balance needs 2^m points; any n is still valid
            warnings.simplefilter("ignore", UserWarning)
            unit = sampler.random(n)
    else:
        unit = qmc.LatinHypercube(d, optimization="random-cd", seed=seed).random(n)
    columns = [recipe.conditions[c].from_unit(unit[:, i])
               for i, c in enumerate(PHYSICAL_CONDITIONS)]
    # 4 significant digits: conditions a person can read and type back
    return np.vectorize(lambda v: float(f"{v:.4g}"))(np.stack(columns, axis=1))
