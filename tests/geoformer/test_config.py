"""Configuration: presets, geometry, serialisation and the errors users meet."""

import json

import pytest
import torch

from geoformer import PRESETS, ConfigError, GeoFormer, GeoFormerConfig


def test_every_preset_builds_and_serialises_to_plain_values():
    for name in PRESETS:
        config = GeoFormerConfig.from_preset(name)
        d = config.to_dict()
        assert json.loads(json.dumps(d)) == d  # plain values only
        assert GeoFormerConfig.from_dict(d) == config


def test_released_model_size_and_geometry():
    config = GeoFormerConfig.from_preset("pangu")
    assert config.bias_rows == 3312
    assert config.shift == (1, 3, 6)
    assert [config.token_grid(s).window_types for s in (1, 2, 3, 4)] == [124, 64, 64, 124]
    g1, g2 = config.token_grid(1), config.token_grid(2)
    assert (g1.levels, g1.lat, g1.lon, g1.padded_lat) == (8, 181, 360, 186)
    assert (g2.levels, g2.lat, g2.lon, g2.padded_lat) == (8, 91, 180, 96)
    with torch.device("meta"):
        model = GeoFormer(config)
    n, tables = model.num_parameters(), model.num_parameters(bias_tables_only=True)
    # Published: about 64 million per lead-time model, about 63 % in the bias tables.
    assert 63e6 < n < 65.5e6
    assert 0.62 < tables / n < 0.64


def test_shift_is_half_the_window_whatever_the_window():
    assert GeoFormerConfig.from_preset("pangu-1.5").shift == (1, 3, 5)
    assert GeoFormerConfig.from_preset("pangu-5.625").shift == (1, 2, 4)


def test_small_grid_presets_never_pad_longitude():
    for name in ("pangu-lite", "pangu-1.5", "pangu-5.625", "small-5.625"):
        c = GeoFormerConfig.from_preset(name)
        assert c.grid[1] % c.patch[2] == 0
        for stage in (1, 2):
            g = c.token_grid(stage)
            assert g.lon % c.window[2] == 0


def test_overrides_and_replace():
    c = GeoFormerConfig.from_preset("pangu", grid=(121, 240), window=(2, 6, 10))
    assert c.grid == (121, 240) and c.window == (2, 6, 10) and c.name == "pangu"
    assert c.replace(embed_dim=96).embed_dim == 96
    assert GeoFormerConfig.from_dict({**c.to_dict(), "levels": [850, 500]}).levels == (850, 500)


@pytest.mark.parametrize("overrides,message", [
    ({"grid": (121, 240)}, r"stage 2 has 30 longitude tokens.*window 12"),
    ({"grid": (32, 66), "patch": (2, 4, 4)}, r"66 longitudes do not divide by the longitude patch"),
    ({"grid": (32, 36), "patch": (2, 2, 4), "window": (2, 4, 9)}, r"9 longitude tokens .* odd"),
    ({"embed_dim": 100}, r"embedding dim 100 does not divide into 6 heads"),
    ({"depths": (2, 6, 4, 2)}, r"depths must be"),
    ({"attention": "flash"}, r"'sdpa' or 'reference'"),
    ({"levels": (1000, 1000)}, r"levels has duplicates"),
    ({"drop_path": 1.5}, r"drop_path"),
])
def test_bad_configurations_fail_at_construction_with_a_clear_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        GeoFormerConfig.from_preset("pangu", **overrides)


def test_unknown_keys_and_presets_are_errors():
    with pytest.raises(ConfigError, match=r"unknown geoformer config key\(s\) \['widow'\]"):
        GeoFormerConfig.from_preset("pangu", widow=(2, 6, 10))
    with pytest.raises(ConfigError, match="unknown preset 'pangu-xl'; available presets"):
        GeoFormerConfig.from_preset("pangu-xl")
    with pytest.raises(ConfigError, match="stage must be"):
        GeoFormerConfig().token_grid(5)


def test_network_holds_every_architecture_field_and_no_contract_field():
    import dataclasses
    import typing

    from geoformer.config import CONTRACT_FIELDS, PRESETS, Network, PresetName

    arch = {f.name for f in dataclasses.fields(GeoFormerConfig)} - set(CONTRACT_FIELDS)
    assert {f.name for f in dataclasses.fields(Network)} == (arch - {"name"}) | {"preset"}
    assert set(typing.get_args(PresetName)) == set(PRESETS)
    resolved = Network(preset="small-5.625", embed_dim=32).resolved()
    assert resolved.embed_dim == 32 and resolved.window == (2, 4, 8)
    config = resolved.config(grid=(32, 64), levels=(1000, 500))
    assert config.levels == (1000, 500) and config.name == "small-5.625"
    with pytest.raises(ConfigError, match="not data-contract fields"):
        resolved.config(embed_dim=8)
    with pytest.raises(ConfigError, match="unknown preset"):
        Network(preset="tiny")
