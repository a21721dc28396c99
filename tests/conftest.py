"""Shared tiny factories: everything a test needs is made here, nothing is fetched."""

from __future__ import annotations

import os

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


def mock_era5(n_time: int = 8, grid=(8, 16), levels=(1000, 850, 500), freq: str = "6h",
              seed: int = 0, poles: bool = True, with_humidity: bool = True):
    """A small dataset in the internal schema with plausible magnitudes and units.

    Fields are smooth waves plus noise that move eastwards in time, so persistence is not
    perfect and a model has something to learn.
    """
    import numpy as np
    import pandas as pd
    import xarray as xr

    from geoformer.schema import VARIABLES

    rng = np.random.default_rng(seed)
    H, W = grid
    if poles:
        lat = np.linspace(90, -90, H)
    else:
        lat = np.linspace(90 - 90 / H, -90 + 90 / H, H)
    lon = np.arange(W) * 360.0 / W
    time = pd.date_range("2000-01-01", periods=n_time, freq=freq)
    levels = np.asarray(levels, dtype=np.int64)
    t = np.arange(n_time)[:, None, None]
    phase = np.deg2rad(lon)[None, None, :] - 0.3 * t
    wave = np.cos(np.deg2rad(lat))[None, :, None] * np.sin(phase)  # (T, H, W)

    def field(scale, offset):
        return (offset + scale * (wave + 0.1 * rng.standard_normal((n_time, H, W)))).astype(
            np.float32)

    upper = {
        "geopotential": lambda lv: field(500.0, 9.80665 * 16000 * np.log(1000 / lv) + 800),
        "specific_humidity": lambda lv: np.abs(field(1e-3, 5e-3 * lv / 1000)),
        "temperature": lambda lv: field(5.0, 288.0 - 60 * np.log(1000 / lv)),
        "u_component_of_wind": lambda lv: field(10.0, 5.0),
        "v_component_of_wind": lambda lv: field(5.0, 0.0),
    }
    surface = {
        "mean_sea_level_pressure": field(800.0, 101325.0),
        "10m_u_component_of_wind": field(4.0, 2.0),
        "10m_v_component_of_wind": field(3.0, 0.0),
        "2m_temperature": field(6.0, 285.0),
    }
    data = {}
    for name, make in upper.items():
        if name == "specific_humidity" and not with_humidity:
            continue
        data[name] = (("time", "level", "latitude", "longitude"),
                      np.stack([make(lv) for lv in levels], axis=1))
    for name, values in surface.items():
        data[name] = (("time", "latitude", "longitude"), values)
    data["land_sea_mask"] = (("latitude", "longitude"),
                             (rng.random((H, W)) > 0.7).astype(np.float32))
    data["soil_type"] = (("latitude", "longitude"), rng.integers(0, 7, (H, W)).astype(np.float32))
    data["geopotential_at_surface"] = (("latitude", "longitude"),
                                       (rng.random((H, W)) * 5000).astype(np.float32))
    ds = xr.Dataset(data, coords={"time": time, "level": levels, "latitude": lat,
                                  "longitude": lon})
    for name in ds.data_vars:
        info = VARIABLES[name]
        ds[name].attrs.update(units=info.units, standard_name=info.standard_name,
                              long_name=info.long_name)
    ds["level"].attrs["units"] = "hPa"
    return ds


def tiny_module(ds, lead_hours: int = 6, seed: int = 0, module_args: dict | None = None,
                **config_overrides):
    """An untrained GeoFormerModule for a mock_era5-like dataset (statistics from ``ds``);
    ``module_args`` go to GeoFormerModule, other keywords to the network configuration."""
    from geoformer.config import Network
    from geoformer.data import DataContract, variables_in
    from geoformer.module import GeoFormerModule
    from geoformer.normalization import Normalizer, compute_statistics, normalized_constants

    upper, surface, static = variables_in(ds)
    levels = [int(v) for v in ds.level.values]
    stats = compute_statistics(ds, upper, surface, static)
    config = tiny_config(grid=(ds.sizes["latitude"], ds.sizes["longitude"]), levels=levels,
                         upper_vars=upper, surface_vars=surface, constant_vars=static,
                         **config_overrides)
    contract = DataContract(
        lead_hours=lead_hours, upper_vars=upper, surface_vars=surface, constant_vars=static,
        levels=levels, latitude=ds.latitude.values.tolist(),
        longitude=ds.longitude.values.tolist(),
        normalization=Normalizer.from_statistics(stats, upper, surface, levels).to_dict())
    network = Network(preset="pangu", **{f: getattr(config, f) for f in (
        "patch", "window", "embed_dim", "depths", "heads", "mlp_ratio", "drop_path",
        "attention", "checkpoint_activations")})
    torch.manual_seed(seed)
    return GeoFormerModule(contract=contract, network=network,
                           constants=normalized_constants(ds, stats, static),
                           **{"warmup_steps": 2, **(module_args or {})})


class Payload:
    """A pickle payload for the untrusted-checkpoint tests of both packages: unpickling it
    runs a shell command that creates ``marker``, so a missing marker proves it did not run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
