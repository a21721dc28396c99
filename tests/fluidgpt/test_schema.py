"""The canonical dataset: validation messages, write/read round trips, the paper-style variant."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fluidgpt.schema import (
    PHYSICAL_CONDITIONS,
    SchemaError,
    canonical_dataset,
    open_dataset,
    save_dataset,
    validate,
)
from fluidgpt.sources.variants import paper_style_variant

from .conftest import mock_trajectories


def test_mock_is_valid_and_condition_driven(mock_ds):
    assert validate(mock_ds) is mock_ds
    assert dict(mock_ds.sizes) == {"case": 24, "particle": 4, "step": 6, "xyz": 3,
                                   "condition": 5, "face": 10}
    assert list(mock_ds["condition"].values) == list(PHYSICAL_CONDITIONS)
    assert mock_ds["valid"].dtype == bool
    # different conditions give different trajectories
    a = mock_ds["position"].isel(case=0).values
    b = mock_ds["position"].isel(case=-1).values
    assert not np.allclose(a, b)


@pytest.mark.parametrize("suffix", [".nc", ".zarr", ".zarr.zip"])
def test_save_open_round_trip(mock_ds, tmp_path, suffix):
    path = save_dataset(mock_ds, tmp_path / f"mock{suffix}")
    back = open_dataset(path)
    assert back["valid"].dtype == bool
    xr.testing.assert_allclose(back.reset_coords(drop=False),
                               mock_ds.reset_coords(drop=False))
    assert list(back["patch"].values) == list(mock_ds["patch"].values)
    assert back["position"].attrs["units"] == "m"


def test_open_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        open_dataset(tmp_path / "absent.nc")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(SchemaError, match="expected .nc, .zarr or .zarr.zip"):
        open_dataset(tmp_path / "data.csv")


def _expect(ds, *fragments, erosion=True):
    with pytest.raises(SchemaError) as info:
        validate(ds, erosion=erosion)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_missing_variable_named(mock_ds):
    _expect(mock_ds.drop_vars("velocity"), "velocity: missing",
            "('case', 'particle', 'step', 'xyz')")


def test_wrong_dim_order_names_expected_and_found(mock_ds):
    ds = mock_ds.assign(position=mock_ds["position"].transpose("case", "step", "particle", "xyz"))
    _expect(ds, "position: expected dims ('case', 'particle', 'step', 'xyz')",
            "found ('case', 'step', 'particle', 'xyz')")


def test_wrong_units(mock_ds):
    ds = mock_ds.copy()
    ds["velocity"] = ds["velocity"].assign_attrs(units="km h-1")
    _expect(ds, "velocity: expected units 'm s-1', found 'km h-1'")
    ds = mock_ds.assign_coords(time=mock_ds["time"].assign_attrs(units="ms"))
    _expect(ds, "time: expected units 's', found 'ms'")


def test_condition_units_checked(mock_ds):
    units = mock_ds["condition_units"].values.astype(str).copy()
    units[2] = "um"
    ds = mock_ds.assign_coords(condition_units=("condition", units))
    _expect(ds, "condition particle_diameter: expected units 'm', found 'um'")


def test_bad_values(mock_ds):
    ds = mock_ds.copy(deep=True)
    ds["position"][0, 0, 0, 0] = np.nan
    _expect(ds, "position: contains NaN or inf")
    ds = mock_ds.assign(valid=mock_ds["valid"].astype(np.int8))
    _expect(ds, "valid: expected dtype bool, found int8")
    ds = mock_ds.copy(deep=True)
    ds["erosion_rate"][0, 0] = -1.0
    _expect(ds, "erosion_rate: must be finite and >= 0")
    ds = mock_ds.assign_coords(time=("step", mock_ds["time"].values[::-1],
                                     mock_ds["time"].attrs))
    _expect(ds, "time: must increase strictly along step")


def test_group_required_and_integer(mock_ds):
    _expect(mock_ds.drop_vars("group"), "group: missing")
    ds = mock_ds.assign(group=mock_ds["group"].astype(float))
    _expect(ds, "group: expected an integer dtype")


def test_erosion_optional(mock_ds):
    no_erosion = mock_ds.drop_vars(["erosion_rate", "face_centre", "face_area", "patch"])
    validate(no_erosion, erosion=False)
    _expect(no_erosion, "erosion_rate: missing", "face_area: missing")


def test_every_problem_listed(mock_ds):
    ds = mock_ds.drop_vars(["velocity", "diameter"])
    _expect(ds, "velocity: missing", "diameter: missing")
    with pytest.raises(SchemaError, match="expected an xarray.Dataset"):
        validate(mock_ds["position"])


def test_canonical_dataset_default_velocity_is_time_derivative():
    t = np.array([0.0, 0.1, 0.2, 0.3])
    x = np.stack([2.0 * t, 3.0 * t, np.zeros(4)], -1)[None, None]    # (1, 1, 4, 3)
    ds = canonical_dataset(x, np.ones((1, 1, 4), bool), t, [[1, 2, 1e-4, 2000, 0.5]],
                           PHYSICAL_CONDITIONS, diameter=[[1e-4]])
    np.testing.assert_allclose(ds["velocity"].values[0, 0, :, :2], [[2.0, 3.0]] * 4, rtol=1e-6)
    assert list(ds["condition_units"].values) == ["m s-1", "m s-1", "m", "kg m-3", "1"]


def test_canonical_dataset_unknown_condition_needs_units():
    with pytest.raises(SchemaError, match="condition_units needed"):
        canonical_dataset(np.zeros((1, 1, 2, 3)), np.ones((1, 1, 2), bool), [0.0, 1.0],
                          [[1.0]], ["inlet_temperature"], diameter=[[1e-4]])


def test_paper_style_variant_replicates_inert_labels(mock_ds):
    inert = {"main_inlet_pressure": (1.4e7, 1.6e7), "side_inlet_pressure": (2.3e6, 2.6e6, 3e6)}
    paper = paper_style_variant(mock_ds, inert)
    R = 6
    assert paper.sizes["case"] == mock_ds.sizes["case"] * R
    assert list(paper["condition"].values) == list(PHYSICAL_CONDITIONS) + list(inert)
    assert list(paper["condition_units"].values)[-2:] == ["Pa", "Pa"]
    np.testing.assert_array_equal(paper["group"].values,
                                  np.repeat(mock_ds["group"].values, R))
    block = paper.isel(case=slice(0, R))
    for name in ("position", "erosion_rate"):
        assert (block[name] == mock_ds[name].isel(case=0)).all()
    assert len(np.unique(block["conditions"].values, axis=0)) == R


def test_paper_style_variant_errors(mock_ds):
    with pytest.raises(ValueError, match="already conditions"):
        paper_style_variant(mock_ds, {"restitution": (0.1, 0.2)})
    with pytest.raises(ValueError, match="unknown inert labels"):
        paper_style_variant(mock_ds, {"colour": (1.0, 2.0)})
    with pytest.raises(ValueError, match="at least one"):
        paper_style_variant(mock_ds, {})


def test_mock_factory_sizes():
    ds = mock_trajectories(n_particles=2, n_steps=3, n_faces=4)
    assert (ds.sizes["particle"], ds.sizes["step"], ds.sizes["face"]) == (2, 3, 4)
