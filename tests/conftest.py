"""Shared tiny factories: everything a test needs is made here, nothing is fetched."""

from __future__ import annotations

import pytest
import torch

from geoformer import GeoFormer, GeoFormerConfig


def tiny_config(**overrides) -> GeoFormerConfig:
    """A network small enough for seconds-long CPU tests, with padding on every axis.

    10 x 32 grid, 3 levels: level tokens 2 + 1 surface = 3 (padded to 4), latitude tokens 5
    (padded to 6) and 3 after down-sampling (padded to 4), longitude tokens 16 and 8.
    """
    values = dict(
        grid=(10, 32), levels=(1000, 850, 500),
        upper_vars=("geopotential", "temperature"),
        surface_vars=("mean_sea_level_pressure", "2m_temperature"),
        constant_vars=("land_sea_mask",),
        patch=(2, 2, 2), window=(2, 2, 4), embed_dim=8,
        depths=(2, 2, 2, 2), heads=(2, 2, 2, 2), drop_path=0.0, name="tiny",
    )
    values.update(overrides)
    return GeoFormerConfig(**values)


def random_inputs(config: GeoFormerConfig, batch: int = 2, seed: int = 0):
    """Random (upper (B, V, Z, H, W), surface (B, S, H, W)) for a configuration."""
    g = torch.Generator().manual_seed(seed)
    H, W = config.grid
    upper = torch.randn(batch, len(config.upper_vars), len(config.levels), H, W, generator=g)
    surface = torch.randn(batch, len(config.surface_vars), H, W, generator=g)
    return upper, surface


def tiny_model(seed: int = 0, **overrides) -> GeoFormer:
    torch.manual_seed(seed)
    config = tiny_config(**overrides)
    H, W = config.grid
    constants = torch.randn(len(config.constant_vars), H, W)
    return GeoFormer(config, constants=constants)


@pytest.fixture
def tiny():
    return tiny_model()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
