"""State: checked on construction, round trips through xarray, leading dims, rollout over it."""

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from geoformer.forecast import forecast
from geoformer.rollout import rollout
from geoformer.state import State
from tests.conftest import mock_era5, tiny_module

UPPER = ["geopotential", "temperature"]
SURFACE = ["2m_temperature"]
LAT, LON = np.linspace(90, -90, 4), np.arange(6) * 60.0


def _state(**changes):
    """A valid (T=2, V=2, Z=3, H=4, W=6) state, with some fields changed."""
    fields = dict(upper=torch.zeros(2, 2, 3, 4, 6), surface=torch.zeros(2, 1, 4, 6),
                  upper_vars=UPPER, surface_vars=SURFACE, levels=[1000, 850, 500],
                  latitude=LAT, longitude=LON, dims=("time",),
                  coords={"time": pd.date_range("2000-01-01", periods=2, freq="6h").values})
    return State(**{**fields, **changes})


def test_a_valid_state_keeps_its_fields():
    state = _state()
    assert state.shape == (2,) and state.upper_vars == tuple(UPPER)
    assert state.times[1] == np.datetime64("2000-01-01T06:00")
    assert isinstance(state.levels, np.ndarray) and state.latitude.shape == (4,)


@pytest.mark.parametrize("changes,message", [
    (dict(upper=np.zeros((2, 2, 3, 4, 6))), r"upper must be a tensor \(\.\.\., V, Z, H, W\), "
                                            r"found ndarray"),
    (dict(upper=torch.zeros(2, 3, 4)), r"upper must be a tensor .* found shape \(2, 3, 4\)"),
    (dict(surface=torch.zeros(4, 6)), r"surface must be a tensor \(\.\.\., S, H, W\)"),
    (dict(surface=torch.zeros(3, 1, 4, 6)), r"upper has leading dims \(2,\) but surface has "
                                            r"\(3,\)"),
    (dict(upper_vars=["temperature"]), r"upper has shape \(2, 2, 3, 4, 6\): 2 along the "
                                       r"upper_vars axis, but upper_vars has 1"),
    (dict(levels=[1000, 500]), "3 along the levels axis, but levels has 2"),
    (dict(surface_vars=SURFACE * 2), "surface has .* 1 along the surface_vars axis, but "
                                     "surface_vars has 2"),
    (dict(latitude=LAT[:3]), "4 along the latitude axis, but latitude has 3"),
    (dict(longitude=np.arange(8.0)), "6 along the longitude axis, but longitude has 8"),
    (dict(latitude=np.zeros((4, 1))), r"latitude must be 1-D, found shape \(4, 1\)"),
    (dict(upper=torch.zeros(2, 0, 3, 4, 6), upper_vars=[]), "at least one upper-air and one "
                                                             "surface variable"),
    (dict(dims=()), r"dims \(\) must name each of the 1 leading dim\(s\) \(2,\)"),
    (dict(upper=torch.zeros(2, 1, 2, 3, 4, 6), surface=torch.zeros(2, 1, 1, 4, 6),
          dims=("time", "time")), r"dims \('time', 'time'\) must name each .* once"),
    (dict(dims=("level",), coords={}), r"must not include \['level'\]"),
    (dict(coords={"number": np.arange(2)}), r"coords name 'number', which is not in dims"),
    (dict(coords={"time": pd.date_range("2000", periods=3).values}),
     r"coords 'time' has shape \(3,\), expected \(2,\)"),
    (dict(coords={"time": np.arange(2)}), "coords 'time' must be datetime64, found int64"),
])
def test_construction_names_what_was_expected_and_found(changes, message):
    with pytest.raises(ValueError, match=message):
        _state(**changes)


def test_xarray_round_trip():
    ds = mock_era5(n_time=3)
    state = State.from_xarray(ds, UPPER, SURFACE)
    assert state.dims == ("time",) and state.upper.shape == (3, 2, 3, 8, 16)
    assert state.upper.dtype == torch.float32 and state.surface.shape == (3, 1, 8, 16)
    np.testing.assert_array_equal(state.upper[1, 1].numpy(), ds["temperature"].values[1])
    np.testing.assert_array_equal(state.times, ds.time.values)
    back = state.to_xarray()
    xr.testing.assert_equal(back, ds[UPPER + SURFACE])
    assert back["temperature"].attrs["units"] == "K"
    again = State.from_xarray(back, UPPER, SURFACE)
    assert torch.equal(again.upper, state.upper) and torch.equal(again.surface, state.surface)


def test_levels_are_picked_and_dims_transposed_by_name():
    ds = mock_era5(n_time=2).transpose("longitude", "latitude", "level", "time")
    state = State.from_xarray(ds, UPPER, SURFACE, levels=[500, 1000])
    assert state.levels.tolist() == [500, 1000] and state.upper.shape == (2, 2, 2, 8, 16)
    expected = ds["geopotential"].sel(level=500).transpose("time", "latitude", "longitude")
    np.testing.assert_array_equal(state.upper[:, 0, 0].numpy(), expected.values)


def test_leading_dims_time_and_number_flatten_index_and_round_trip():
    ds = mock_era5(n_time=3)
    members = xr.concat([ds, ds + 1.0], dim=pd.Index([0, 1], name="number"))  # number first
    state = State.from_xarray(members, UPPER, SURFACE, dims=("time", "number"))
    assert state.shape == (3, 2) and state.coords["number"].tolist() == [0, 1]
    np.testing.assert_array_equal(state.surface[2, 1, 0].numpy(),
                                  ds["2m_temperature"].values[2] + 1.0)
    flat = state.flatten()
    assert flat.dims == ("batch",) and flat.upper.shape == (6, 2, 3, 8, 16) and not flat.coords
    back = flat.unflatten(state)
    assert back.dims == state.dims and torch.equal(back.upper, state.upper)
    np.testing.assert_array_equal(back.times, state.times)
    one = state[np.int64(1)]
    assert one.dims == ("number",) and "time" not in one.coords and len(one) == 2
    with pytest.raises(TypeError, match="indexed by an int or a slice"):
        state[[0, 1]]
    part = state[1:]
    assert part.shape == (2, 2) and part.times.tolist() == state.times[1:].tolist()
    xr.testing.assert_equal(state.to_xarray(),
                            members[UPPER + SURFACE].transpose("time", "number", ...))
    with pytest.raises(ValueError, match=r"cannot unflatten leading dims \(6,\) into \(2,\)"):
        flat.unflatten(state[0])  # 2 states, not 6


@pytest.mark.parametrize("call,message", [
    (lambda ds: State.from_xarray(ds, ["ozone"], SURFACE), r"lacks variable\(s\) \['ozone'\]"),
    (lambda ds: State.from_xarray(ds, UPPER, SURFACE, levels=[250]),
     r"lacks pressure level\(s\) \[250\]"),
    (lambda ds: State.from_xarray(ds, UPPER, ["land_sea_mask"]),
     r"'land_sea_mask' has dims \('latitude', 'longitude'\), expected \('time', 'latitude', "
     r"'longitude'\)"),
])
def test_from_xarray_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call(mock_era5(n_time=2))


def test_a_state_without_leading_dims_has_no_length_and_moves_and_casts():
    state = _state()[0]
    assert state.dims == () and state.times is None
    with pytest.raises(TypeError, match="no length"):
        len(state)
    assert state.to(torch.float64).upper.dtype == torch.float64
    assert state.replace(upper=state.upper + 1).upper.sum() == state.upper.numel()


def test_rollout_over_states_checks_what_the_step_returns():
    state = _state()
    out = list(rollout(lambda u, s: (u + 1, s - 1), state, 2))
    assert len(out) == 2 and out[1].upper.max() == 2 and out[1].surface.min() == -2
    np.testing.assert_array_equal(out[1].times, state.times)
    with pytest.raises(ValueError, match="1 along the upper_vars axis, but upper_vars has 2"):
        next(rollout(lambda u, s: (u[:, :1], s), state, 1))


def test_rollout_over_a_state_is_what_forecast_writes():
    ds = mock_era5(n_time=6)
    model = tiny_module(ds, 6, seed=2).eval()
    c = model.config
    fc = forecast({6: model}, ds, ds.time.values[:2], lead_time="12h", every="6h",
                  batch_size=2, device="cpu")
    state = State.from_xarray(ds.isel(time=[0, 1]), c.upper_vars, c.surface_vars)
    with torch.no_grad():
        states = list(rollout(model.forecast_step, state, 2))
    back = State.from_xarray(fc, c.upper_vars, c.surface_vars)
    assert back.dims == ("time", "prediction_timedelta")
    np.testing.assert_array_equal(back.times, ds.time.values[:2])
    for k, expected in enumerate(states):
        assert torch.equal(back.upper[:, k], expected.upper)  # the same batch: bit for bit
        assert torch.equal(back.surface[:, k], expected.surface)
