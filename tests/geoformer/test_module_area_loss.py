"""GeoFormerModule's area-weighted loss: each grid row's error counts by its cell area."""

import numpy as np
import pytest
import torch
import xarray as xr

from geoformer.area import latitude_weights
from geoformer.module import PANGU_LOSS_WEIGHTS
from tests.conftest import mock_era5, tiny_module


def _zeros(module):
    cfg = module.config
    (H, W), V, Z, S = cfg.grid, len(cfg.upper_vars), len(cfg.levels), len(cfg.surface_vars)
    return torch.zeros(1, V, Z, H, W), torch.zeros(1, S, H, W)


def test_an_error_on_one_row_counts_by_that_rows_area():
    ds = mock_era5()
    plain = tiny_module(ds)
    weighted = tiny_module(ds, module_args={"area_weighted_loss": True})
    cfg = weighted.config
    zero_u, zero_s = _zeros(weighted)
    area = latitude_weights(xr.DataArray(ds.latitude.values, dims="latitude")).values
    H = cfg.grid[0]
    for row in (0, H // 2):  # a polar row and a tropical one
        pu = zero_u.clone()
        pu[:, cfg.upper_vars.index("geopotential"), :, row] = 1.0
        unweighted_value = PANGU_LOSS_WEIGHTS["geopotential"] / len(cfg.upper_vars) / H
        assert plain.loss((pu, zero_s), (zero_u, zero_s)).item() == pytest.approx(
            unweighted_value, rel=1e-6)
        assert weighted.loss((pu, zero_s), (zero_u, zero_s)).item() == pytest.approx(
            unweighted_value * area[row], rel=1e-5)
    assert area[0] < 1 < area[H // 2]


def test_a_uniform_error_gives_the_same_loss_weighted_or_not():
    ds = mock_era5()
    plain = tiny_module(ds, module_args={"loss_kind": "mse"})
    weighted = tiny_module(ds, module_args={"loss_kind": "mse", "area_weighted_loss": True})
    zero_u, zero_s = _zeros(weighted)
    pred = (zero_u + 0.5, zero_s - 2.0)
    a = plain.loss(pred, (zero_u, zero_s)).item()
    b = weighted.loss(pred, (zero_u, zero_s)).item()
    assert b == pytest.approx(a, rel=1e-6) and np.isfinite(a)
