"""Dataset loading and the case splits shared by both model stages.

One source of truth: ``make_split(ds, kind)`` returns a Split holding case indices for the
test set and k folds of the rest (train = the other folds, val = this fold), used by the
trajectory model and by the erosion CNN alike (the CNN's out-of-fold inputs come from the
same folds).

* ``interior`` (the default): a random share (15 %) of the distinct physical cases (whole
  groups) for test, drawn from the same design as the training cases, so they lie among
  them: "conditions between the ones I simulated", what a user asks of a surrogate.
  Replicated twins (paper-style variant) are always on one side; folds by whole groups.
* ``block``: holds out a whole range of one condition for test (by default the middle fifth
  of the particle diameters, between their 40th and 60th percentiles): the harder
  extrapolation-across-a-gap test, reported beside ``interior``. Never splits a ``group``
  across test/train or across folds, and deals whole groups (or whole values of
  ``fold_by``) to the folds.
* ``random``: FLUID-GPT's split: 10 % of the cases for test (seed 25), then k folds of the
  rest. With replicated cases (paper-style variant) it puts twins of test cases in training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .config import ConfigError
from .schema import open_dataset

__all__ = ["Split", "random_split", "interior_split", "block_split", "make_split",
           "load_dataset", "load_cases", "SplitSettings", "split_kinds",
           "sample_path", "SPLIT_KINDS", "PAPER_SEED"]

PAPER_SEED = 25
SPLIT_KINDS = ("interior", "block", "random")
_SAMPLES = {"physical": "elbow_sample.nc", "noise_ceiling": "elbow_sample_noise.nc"}


def sample_path(variant: str = "physical") -> Path:
    """A small dataset shipped in fluidgpt/sample_data (see datasets/elbow_erosion/README.md).

    physical: 108 cases x 32 particles x 50 steps, 4899 wall faces; noise_ceiling: 8 of
    those cases, each with injection seeds 25 and 26 (pairs share a group).
    """
    if variant not in _SAMPLES:
        raise ValueError(f"unknown sample {variant!r}; expected one of {sorted(_SAMPLES)}")
    return Path(__file__).parent / "sample_data" / _SAMPLES[variant]


def load_dataset(path=None) -> xr.Dataset:
    """Open and validate a canonical dataset; the shipped physical sample when path is None."""
    return open_dataset(sample_path() if path is None else path)


def load_cases(path: str | Path | None = None,
               paper_style: Mapping[str, Sequence[float]] | None = None) -> xr.Dataset:
    """:func:`load_dataset`, replicated under inert labels when ``paper_style`` is set
    (``{condition: [values]}``, see :func:`fluidgpt.sources.variants.paper_style_variant`)."""
    ds = load_dataset(path)
    if paper_style:
        from .sources.variants import paper_style_variant

        ds = paper_style_variant(ds, {k: tuple(v) for k, v in paper_style.items()})
    return ds


@dataclass(frozen=True)
class Split:
    """Case indices: test (n_test,), folds: k disjoint arrays covering every other case.

    train(f) is the union of the folds other than f and val(f) is fold f.
    """

    kind: str
    n_cases: int
    test: np.ndarray
    folds: tuple[np.ndarray, ...]
    seed: int
    description: str = ""

    def __post_init__(self):
        every = np.concatenate([self.test, *self.folds])
        if len(self.folds) < 2:
            raise ValueError(f"a split needs >= 2 folds, got {len(self.folds)}")
        if any(len(f) == 0 for f in self.folds):
            raise ValueError("every fold needs at least one case")
        if len(every) != self.n_cases or not np.array_equal(np.sort(every),
                                                            np.arange(self.n_cases)):
            raise ValueError(f"test and folds must partition range({self.n_cases}); "
                             f"they hold {len(every)} indices, {len(np.unique(every))} unique")

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    @property
    def trainval(self) -> np.ndarray:
        """Every case outside the test set, sorted."""
        return np.sort(np.concatenate(self.folds))

    def val(self, fold: int = 0) -> np.ndarray:
        return self.folds[self._check(fold)]

    def train(self, fold: int = 0) -> np.ndarray:
        self._check(fold)
        return np.sort(np.concatenate([f for i, f in enumerate(self.folds) if i != fold]))

    def _check(self, fold: int) -> int:
        if not 0 <= fold < self.n_folds:
            raise IndexError(f"fold {fold} out of range for {self.n_folds} folds")
        return fold

    def to_dict(self) -> dict:
        """Plain lists, for checkpoints and JSON."""
        return {"kind": self.kind, "n_cases": self.n_cases, "seed": self.seed,
                "description": self.description, "test": self.test.tolist(),
                "folds": [f.tolist() for f in self.folds]}

    @classmethod
    def from_dict(cls, d: Mapping) -> Split:
        # "grouped": the block split's name in checkpoints written before 2026-12-01
        kind = "block" if d["kind"] == "grouped" else d["kind"]
        return cls(kind=kind, n_cases=int(d["n_cases"]),
                   test=np.asarray(d["test"], np.int64),
                   folds=tuple(np.asarray(f, np.int64) for f in d["folds"]),
                   seed=int(d["seed"]), description=d.get("description", ""))


def random_split(n_cases: int, test_fraction: float = 0.1, n_folds: int = 5,
                 seed: int = PAPER_SEED) -> Split:
    """The paper's split: ceil(test_fraction * n) random test cases, k random folds of the rest."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = math.ceil(test_fraction * n_cases)
    if n_cases - n_test < n_folds:
        raise ValueError(f"{n_cases} cases leave {n_cases - n_test} after the test set: too "
                         f"few for {n_folds} folds")
    perm = np.random.default_rng(seed).permutation(n_cases)
    folds = tuple(np.sort(f) for f in np.array_split(perm[n_test:], n_folds))
    return Split("random", n_cases, np.sort(perm[:n_test]), folds, seed,
                 f"random: {n_test} test cases ({test_fraction:.0%}), {n_folds} folds, "
                 f"seed {seed}")


def _condition(ds: xr.Dataset, name: str) -> np.ndarray:
    names = [str(c) for c in ds["condition"].values]
    if name not in names:
        raise KeyError(f"condition {name!r} not in the dataset; it has {names}")
    return ds["conditions"].sel(condition=name).values


def _middle_band(values: np.ndarray, lo: float = 0.4, hi: float = 0.6) -> list[float]:
    """[a, b]: the band between the lo and hi quantiles of the distinct values (for a
    3-level factorial, just its middle value); when no value falls in it (a 2- or 4-level
    factorial), the distinct value nearest the median, alone."""
    distinct = np.unique(values)
    band = [float(np.quantile(distinct, lo)), float(np.quantile(distinct, hi))]
    if not ((distinct >= band[0]) & (distinct <= band[1])).any():
        middle = float(distinct[np.argmin(np.abs(distinct - np.median(distinct)))])
        band = [middle, middle]
    return band


def _deal(units: np.ndarray, sizes: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each unit: shuffled, then largest first to the currently smallest fold."""
    order = np.random.default_rng(seed).permutation(len(units))
    order = order[np.argsort(-sizes[order], kind="stable")]
    load, fold = np.zeros(n_folds), np.empty(len(units), np.int64)
    for u in order:
        fold[u] = int(np.argmin(load))
        load[fold[u]] += sizes[u]
    return fold


def _groups(ds: xr.Dataset) -> np.ndarray:
    return ds["group"].values if "group" in ds else np.arange(ds.sizes["case"])


def _fold_cases(ds: xr.Dataset, rest: np.ndarray, n_folds: int, seed: int,
                fold_by: str | None) -> tuple[np.ndarray, ...]:
    """Deal the cases `rest` to k folds by whole groups (or whole values of `fold_by`)."""
    group = _groups(ds)
    if fold_by is None:
        units, unit_of = np.unique(group[rest], return_inverse=True)
    else:
        units, unit_of = np.unique(_condition(ds, fold_by)[rest], return_inverse=True)
    if len(units) < n_folds:
        raise ValueError(f"split.n_folds: only {len(units)} "
                         f"{'groups' if fold_by is None else fold_by + ' values'} outside the "
                         f"test set: too few for {n_folds} folds")
    fold_of_unit = _deal(units, np.bincount(unit_of), n_folds, seed)
    fold_of_case = fold_of_unit[unit_of]
    return tuple(np.sort(rest[fold_of_case == k]) for k in range(n_folds))


def interior_split(ds: xr.Dataset, test_fraction: float = 0.15, n_folds: int = 5,
                   seed: int = PAPER_SEED) -> Split:
    """Hold out a random share of the distinct physical cases (whole groups) for test.

    ceil(test_fraction * n_groups) groups are drawn at random (seed), so the test cases lie
    inside the sampled condition ranges; twins (cases sharing a group) are never on two
    sides. The rest is dealt to k folds by whole groups.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split.interior_fraction: expected a share in (0, 1), found "
                         f"{test_fraction}")
    n, group = ds.sizes["case"], _groups(ds)
    groups = np.unique(group)
    n_test = math.ceil(test_fraction * len(groups))
    held = np.random.default_rng(seed).permutation(groups)[:n_test]
    test = np.isin(group, held)
    folds = _fold_cases(ds, np.flatnonzero(~test), n_folds, seed, None)
    split = Split("interior", n, np.flatnonzero(test), folds, seed,
                  f"interior: {n_test} of {len(groups)} distinct cases held out at random "
                  f"({test.sum()} cases, {test_fraction:.0%}), {n_folds} folds by group, "
                  f"seed {seed}")
    _check_groups(split, group)
    return split


def _in_block(ds: xr.Dataset, hold_out: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Cases whose listed conditions lie in the block: a condition's entry is [a, b] (a
    closed range) or {"values": [...]} (any of these values)."""
    n = ds.sizes["case"]
    in_block = np.ones(n, dtype=bool)
    for name, spec in hold_out.items():
        column = _condition(ds, name)
        if isinstance(spec, Mapping):
            if set(spec) != {"values"}:
                raise ValueError(f"split.hold_out.{name}: expected [min, max] or "
                                 f"{{values: [...]}}, found {dict(spec)}")
            values = np.asarray(spec["values"], float)
            in_block &= np.isclose(column[:, None], values[None, :], rtol=1e-6,
                                   atol=0).any(axis=1)
            continue
        bounds = np.asarray(spec, float)
        if bounds.shape != (2,) or not bounds[0] <= bounds[1]:
            raise ValueError(f"split.hold_out.{name}: expected a range [min, max] with "
                             f"min <= max, found {list(spec)}")
        tol = 1e-6 * np.abs(bounds).max()
        in_block &= (column >= bounds[0] - tol) & (column <= bounds[1] + tol)
    return in_block


def block_split(ds: xr.Dataset, hold_out: Mapping[str, Sequence[float]] | None = None,
                n_folds: int = 5, seed: int = PAPER_SEED, fold_by: str | None = None) -> Split:
    """Hold out a block of condition space for test; keep every group on one side.

    hold_out: {condition: [min, max]} (a closed range) or {condition: {values: [...]}};
    a case is in the block when every listed condition is in its range (default: the
    particle diameters between the 40th and 60th percentiles of the distinct diameters; the
    middle value of a 3-level factorial). Any group touching the block goes to test whole.
    The rest is dealt to folds by whole groups, or by whole values of the condition
    `fold_by` (then each fold is itself a held-out block).
    """
    n, group = ds.sizes["case"], _groups(ds)
    if hold_out is None:
        hold_out = {"particle_diameter": _middle_band(_condition(ds, "particle_diameter"))}
    in_block = _in_block(ds, hold_out)
    if not in_block.any():
        raise ValueError(f"split.hold_out {dict(hold_out)} matches no case")
    test = np.isin(group, np.unique(group[in_block]))
    folds = _fold_cases(ds, np.flatnonzero(~test), n_folds, seed, fold_by)
    shown = {k: (v if isinstance(v, Mapping) else [float(f"{x:.4g}") for x in v])
             for k, v in hold_out.items()}
    split = Split("block", n, np.flatnonzero(test), folds, seed,
                  f"block: test block {shown} ({test.sum()} cases), {n_folds} folds "
                  f"by {'group' if fold_by is None else fold_by}, seed {seed}")
    _check_groups(split, group)
    return split


def _check_groups(split: Split, group: np.ndarray) -> None:
    parts = [split.test, *split.folds]
    owner = {}
    for k, part in enumerate(parts):
        for g in np.unique(group[part]):
            if owner.setdefault(int(g), k) != k:
                raise ValueError(f"group {g} falls in two parts of the split (fold_by must be "
                                 "constant within each group)")


def make_split(ds: xr.Dataset, kind: str = "interior", **kwargs) -> Split:
    """The split of `ds` used by every stage: 'interior', 'block' or 'random' (module doc)."""
    if kind == "random":
        return random_split(ds.sizes["case"], **kwargs)
    if kind == "interior":
        return interior_split(ds, **kwargs)
    if kind == "block":
        return block_split(ds, **kwargs)
    raise ValueError(f"unknown split kind {kind!r}; expected one of {SPLIT_KINDS}")


def split_kinds(kind: str | Sequence[str]) -> list[str]:
    """The splits named by a split kind: one kind, a list (or comma-separated string) of
    kinds, or "all"; each one of SPLIT_KINDS, once."""
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


#: A block split's held-out block: {condition: [min, max]} or {condition: {values: [...]}}.
HoldOut = dict[str, list[float] | dict[str, list[float]]]


@dataclass(frozen=True)
class SplitSettings:
    """How an experiment splits its cases (the ``split`` section of ``fluidgpt compare`` and
    ``data.split`` of ``fluidgpt fit``).

    kind: "interior", "block" or "random" (compare: also a list of them, or "all");
    n_folds: folds of the non-test cases; seed: of the test draw and the folds;
    test_fraction: the random split's test share (the paper's 10 %); interior_fraction: the
    interior split's share of the distinct cases; hold_out, fold_by: the block split's
    block and fold grouping (see :func:`block_split`); tune: compare only: score on fold 0
    of the non-test cases, never on test cases (for tuning).
    """

    kind: str | list[str] = "interior"
    n_folds: int = 3
    seed: int = PAPER_SEED
    test_fraction: float = 0.1
    interior_fraction: float = 0.15
    hold_out: HoldOut | None = None
    fold_by: str | None = None
    tune: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.kind, (list, tuple)):
            object.__setattr__(self, "kind", [str(k) for k in self.kind])
        split_kinds(self.kind)
        if self.n_folds < 2:
            raise ConfigError(f"split.n_folds must be >= 2, found {self.n_folds}")
        for name in ("test_fraction", "interior_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"split.{name} must be in (0, 1), found "
                                  f"{getattr(self, name)}")

    @property
    def kinds(self) -> list[str]:
        return split_kinds(self.kind)

    def make(self, ds: xr.Dataset, kind: str | None = None) -> Split:
        """The split of this kind (default: the one kind named) with these settings."""
        if kind is None:
            kinds = self.kinds
            if len(kinds) != 1:
                raise ConfigError(f"one split is needed here: set split.kind to one of "
                                  f"{list(SPLIT_KINDS)}, found {self.kind!r}")
            kind = kinds[0]
        if kind == "random":
            return make_split(ds, "random", test_fraction=self.test_fraction,
                              n_folds=self.n_folds, seed=self.seed)
        if kind == "interior":
            return make_split(ds, "interior", test_fraction=self.interior_fraction,
                              n_folds=self.n_folds, seed=self.seed)
        if kind == "block":
            return make_split(ds, "block", hold_out=self.hold_out, n_folds=self.n_folds,
                              seed=self.seed, fold_by=self.fold_by)
        raise ConfigError(f"split.kind: expected one of {list(SPLIT_KINDS)} here, found "
                          f"{kind!r}")
