"""Case splits: interior (the default), block and the paper's random split, one source of truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fluidgpt.data import (
    Split,
    block_split,
    interior_split,
    load_dataset,
    make_split,
    random_split,
    sample_path,
)
from fluidgpt.sources.variants import paper_style_variant

INERT = {"main_inlet_pressure": (1.4e7, 1.5e7), "side_inlet_pressure": (2.3e6, 3.0e6)}


def _assert_partition(split: Split):
    every = np.concatenate([split.test, *split.folds])
    np.testing.assert_array_equal(np.sort(every), np.arange(split.n_cases))
    for k in range(split.n_folds):
        train, val = split.train(k), split.val(k)
        assert not set(train) & set(val)
        assert not set(train) & set(split.test) and not set(val) & set(split.test)
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), split.trainval)


def _sides(split: Split, group: np.ndarray):
    return [set(group[part]) for part in (split.test, *split.folds)]


def test_random_split_sizes_and_partition():
    split = random_split(3125)
    assert len(split.test) == math.ceil(0.1 * 3125) == 313
    assert split.n_folds == 5 and split.seed == 25
    sizes = [len(f) for f in split.folds]
    assert sum(sizes) == 3125 - 313 and max(sizes) - min(sizes) <= 1
    _assert_partition(split)


def test_random_split_deterministic_with_seed_25():
    a, b = random_split(108), random_split(108, seed=25)
    np.testing.assert_array_equal(a.test, b.test)
    for fa, fb in zip(a.folds, b.folds):
        np.testing.assert_array_equal(fa, fb)
    c = random_split(108, seed=26)
    assert not np.array_equal(a.test, c.test)
    # frozen regression: the seed-25 test cases of a 108-case dataset
    np.testing.assert_array_equal(a.test, np.sort(np.random.default_rng(25).permutation(108)[:11]))


def test_random_split_errors():
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(10, test_fraction=1.5)
    with pytest.raises(ValueError, match="too few for 5 folds"):
        random_split(5)


def test_block_split_holds_out_middle_diameter(mock_ds):
    split = block_split(mock_ds)
    d = mock_ds["conditions"].sel(condition="particle_diameter").values
    assert np.allclose(d[split.test], 5e-5)
    assert not np.isclose(d[split.trainval], 5e-5).any()
    assert len(split.test) == 8
    _assert_partition(split)


def test_block_split_never_splits_a_group(mock_ds):
    paper = paper_style_variant(mock_ds, INERT)
    group = paper["group"].values
    split = make_split(paper, "block", hold_out={"main_inlet_speed": {"values": [12.0]}}, n_folds=4)
    sides = _sides(split, group)
    for i in range(len(sides)):
        for j in range(i + 1, len(sides)):
            assert not sides[i] & sides[j], f"a group is in parts {i} and {j}"
    _assert_partition(split)


def test_random_split_leaks_twins_in_paper_variant(mock_ds):
    paper = paper_style_variant(mock_ds, INERT)
    group = paper["group"].values
    split = make_split(paper, "random", n_folds=4)
    leaked = set(group[split.test]) & set(group[split.trainval])
    assert leaked, "replicas should straddle a random split: that is the paper's leak"


def test_block_split_block_and_group_expansion(mock_ds):
    # a case in the block drags its whole group (replicas with other labels) into test
    ds = mock_ds.copy()
    group = ds["group"].values.copy()
    group[1] = group[0]  # pretend cases 0 and 1 are the same physics
    ds["group"] = ("case", group, ds["group"].attrs)
    block = {"main_inlet_speed": [6.0, 6.0], "side_inlet_speed": [15.0, 15.0],
             "particle_diameter": {"values": [2e-5]}, "restitution": [0.5, 0.7]}
    split = block_split(ds, hold_out=block, n_folds=3)
    assert 0 in split.test and 1 in split.test


def test_block_split_fold_by_condition(mock_ds):
    split = block_split(mock_ds, hold_out={"particle_diameter": [9e-5, 2e-4]}, n_folds=2,
                          fold_by="particle_diameter")
    d = mock_ds["conditions"].sel(condition="particle_diameter").values
    assert [len(np.unique(d[f])) for f in split.folds] == [1, 1]


def test_block_split_deterministic(mock_ds):
    a, b = block_split(mock_ds), block_split(mock_ds)
    for fa, fb in zip(a.folds, b.folds):
        np.testing.assert_array_equal(fa, fb)


def test_block_split_errors(mock_ds):
    with pytest.raises(ValueError, match="matches no case"):
        block_split(mock_ds, hold_out={"particle_diameter": [3e-5, 4e-5]})
    with pytest.raises(ValueError, match=r"expected a range \[min, max\]"):
        block_split(mock_ds, hold_out={"particle_diameter": [5e-5]})
    with pytest.raises(ValueError, match="expected \\[min, max\\] or"):
        block_split(mock_ds, hold_out={"particle_diameter": {"value": 5e-5}})
    with pytest.raises(KeyError, match="not in the dataset"):
        block_split(mock_ds, hold_out={"temperature": [1.0, 2.0]})
    with pytest.raises(ValueError, match="too few for 5 folds"):
        block_split(mock_ds, fold_by="particle_diameter")
    with pytest.raises(ValueError, match="unknown split kind"):
        make_split(mock_ds, "stratified")


def test_split_dict_round_trip_and_checks(mock_ds):
    split = make_split(mock_ds, "block", n_folds=3)
    back = Split.from_dict(split.to_dict())
    np.testing.assert_array_equal(back.test, split.test)
    assert back.description == split.description and back.kind == "block"
    with pytest.raises(IndexError, match="fold 3 out of range"):
        split.val(3)
    with pytest.raises(ValueError, match="partition"):
        Split("random", 5, np.array([0]), (np.array([1]), np.array([1, 2])), 25)


def test_interior_split_holds_out_whole_groups_inside_the_ranges(mock_ds):
    split = interior_split(mock_ds, test_fraction=0.15, n_folds=3)
    n = mock_ds.sizes["case"]
    assert len(split.test) == math.ceil(0.15 * n) and split.kind == "interior"
    _assert_partition(split)
    again = make_split(mock_ds, "interior", test_fraction=0.15, n_folds=3)
    np.testing.assert_array_equal(split.test, again.test)
    other = interior_split(mock_ds, test_fraction=0.15, n_folds=3, seed=26)
    assert not np.array_equal(split.test, other.test)
    # replicated twins (paper-style variant) are always on one side
    paper = paper_style_variant(mock_ds, INERT)
    group = paper["group"].values
    twins = interior_split(paper, test_fraction=0.15, n_folds=3)
    assert len(np.unique(group[twins.test])) == math.ceil(0.15 * n)
    sides = _sides(twins, group)
    for i in range(len(sides)):
        for j in range(i + 1, len(sides)):
            assert not sides[i] & sides[j], f"a group is in parts {i} and {j}"
    with pytest.raises(ValueError, match="split.interior_fraction"):
        interior_split(mock_ds, test_fraction=0.0)


def test_block_split_default_is_the_middle_band_of_diameters():
    """A continuous design: the default block is every diameter between the 40th and 60th
    percentiles of the distinct diameters."""
    ds = load_dataset()
    d = ds["conditions"].sel(condition="particle_diameter").values
    split = make_split(ds, "block")
    lo, hi = np.quantile(np.unique(d), [0.4, 0.6])
    inside = (d >= lo) & (d <= hi)
    np.testing.assert_array_equal(split.test, np.flatnonzero(inside))
    assert d[split.trainval].min() < lo and d[split.trainval].max() > hi


def test_shipped_samples_load_and_split():
    ds = load_dataset()
    assert dict(ds.sizes) == {"case": 160, "particle": 32, "step": 50, "xyz": 3,
                              "condition": 5, "face": 4899, "corner": 4}
    interior = make_split(ds)
    assert interior.kind == "interior" and len(interior.test) == 24
    noise = load_dataset(sample_path("noise_ceiling"))
    assert noise.sizes["case"] == 16
    assert (np.bincount(noise["group"].values)[np.unique(noise["group"].values)] == 2).all()
    with pytest.raises(ValueError, match="unknown sample"):
        sample_path("huge")


def test_block_default_on_a_four_level_factorial_falls_back_to_the_middle_value(mock_ds):
    """No level of [20, 40, 70, 100] um lies between the 40th and 60th percentiles: the
    default block is then the level nearest the median, alone."""
    ds = mock_ds.copy(deep=True)
    d = ds["conditions"].sel(condition="particle_diameter").values
    levels = np.array([2e-5, 4e-5, 7e-5, 1e-4])
    four = levels[np.searchsorted(np.unique(d), d) % 4]
    ds["conditions"].loc[{"condition": "particle_diameter"}] = four
    split = block_split(ds, n_folds=2)
    assert len(np.unique(four[split.test])) == 1
    assert four[split.test][0] in (4e-5, 7e-5)


def test_checkpoints_naming_the_old_grouped_split_read_as_block(mock_ds):
    stored = block_split(mock_ds, n_folds=3).to_dict()
    stored["kind"] = "grouped"
    assert Split.from_dict(stored).kind == "block"
