"""An Earth-specific block mixes exactly the tokens of its (shifted) windows.

The oracle is written in the coordinates of the globe, independently of the roll / partition /
mask machinery: a shifted block's windows start half a window further along every axis; in
longitude they wrap around the 0/360 deg seam (periodic), in level and latitude the
wrapped-around part forms a window of its own (masked). Any mistake of roll direction, roll
axis, shift size, mask side or seam masking changes which tokens see each other.
"""

import pytest
import torch

from geoformer.config import GeoFormerConfig
from geoformer.model import EarthBlock


def _groups(n: int, window: int, shift: int, periodic: bool) -> torch.Tensor:
    pos = torch.arange(n)
    if periodic:
        return ((pos - shift) % n) // window
    return torch.div(pos - shift, window, rounding_mode="floor")  # -1: the wrapped-around part


def _expected_dependencies(grid, window, shift):
    Z, H, W = grid
    gz = _groups(Z, window[0], shift[0], periodic=False)
    gh = _groups(H, window[1], shift[1], periodic=False)
    gw = _groups(W, window[2], shift[2], periodic=True)
    key = (gz[:, None, None] * 10_000 + gh[None, :, None] * 100 + gw[None, None, :])  # (Z, H, W)
    return key[:, :, :, None, None, None] == key[None, None, None]  # (Z, H, W, Z, H, W)


def _measured_dependencies(block, grid, dim):
    torch.manual_seed(1)
    x = torch.randn(1, *grid, dim, dtype=torch.float64, requires_grad=True)
    out = block(x)
    # A random read-out: a plain channel sum would hide the dependencies, since the channel
    # sum of a LayerNorm output is constant.
    readout = torch.randn(dim, dtype=torch.float64)
    Z, H, W = grid
    dep = torch.zeros(Z, H, W, Z, H, W, dtype=torch.bool)
    for z in range(Z):
        for h in range(H):
            for w in range(W):
                (g,) = torch.autograd.grad(out[0, z, h, w] @ readout, x, retain_graph=True)
                dep[z, h, w] = g[0].abs().sum(-1) > 1e-8
    return dep


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("window", [(2, 2, 4), (2, 3, 4)])
def test_block_attends_exactly_within_its_windows(shifted, window):
    # 6 levels -> 3 level tokens + the surface token = 4; 12 latitudes -> 6 tokens;
    # 32 longitudes -> 16 tokens. No padding, so every wrap-around is between real tokens.
    config = GeoFormerConfig(
        grid=(12, 32), levels=(1000, 925, 850, 700, 500, 300), upper_vars=("temperature",),
        surface_vars=("2m_temperature",), constant_vars=(), patch=(2, 2, 2), window=window,
        embed_dim=8, depths=(2, 2, 2, 2), heads=(2, 2, 2, 2), drop_path=0.0)
    grid_info = config.token_grid(1)
    grid = (grid_info.levels, grid_info.lat, grid_info.lon)
    torch.manual_seed(0)
    block = EarthBlock(8, 2, window, grid_info, shifted=shifted).double().eval()
    with torch.no_grad():
        block.attn.bias_table.normal_()
    shift = config.shift if shifted else (0, 0, 0)
    expected = _expected_dependencies(grid, window, shift)
    measured = _measured_dependencies(block, grid, 8)
    assert torch.equal(measured, expected)
    if shifted:  # the seam is crossed: longitude 0 sees the last longitudes
        assert measured[0, 0, 0, 0, 0, -1]


def _padded_grid_blocks(window, shifted):
    # 3 levels -> 2 level tokens + the surface token = 3, padded to 4; 10 latitudes -> 5
    # tokens, padded to 6; 16 longitudes -> 8 tokens, 2 longitude windows (never padded).
    config = GeoFormerConfig(
        grid=(10, 16), levels=(1000, 850, 500), upper_vars=("temperature",),
        surface_vars=("2m_temperature",), constant_vars=(), patch=(2, 2, 2), window=window,
        embed_dim=8, depths=(2, 2, 2, 2), heads=(2, 2, 2, 2), drop_path=0.0)
    grid = config.token_grid(1)
    assert grid.padded_levels > grid.levels and grid.padded_lat > grid.lat
    torch.manual_seed(0)
    fast = EarthBlock(8, 2, window, grid, shifted=shifted, attention="reference").double()
    ref = EarthBlock(8, 2, window, grid, shifted=shifted, attention="reference",
                     windows="reference").double()
    with torch.no_grad():  # a bias large enough to matter
        fast.attn.bias_table.normal_()
    ref.load_state_dict(fast.state_dict())
    return fast.eval(), ref.eval(), (grid.levels, grid.lat, grid.lon)


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("window", [(2, 2, 4), (2, 3, 4)])
def test_gather_path_equals_reference_path_on_a_padded_grid(shifted, window):
    fast, ref, grid = _padded_grid_blocks(window, shifted)
    x = torch.randn(2, *grid, 8, dtype=torch.float64, requires_grad=True)  # (B, Z, H, W, C)
    out_fast, out_ref = fast(x), ref(x)
    torch.testing.assert_close(out_fast, out_ref)
    (g_fast,) = torch.autograd.grad(out_fast.square().sum(), x)
    (g_ref,) = torch.autograd.grad(out_ref.square().sum(), x)
    torch.testing.assert_close(g_fast, g_ref)


@pytest.mark.parametrize("windows", ["gather", "reference"])
def test_shifted_and_plain_windows_differ_with_the_same_weights(windows):
    # Guards the comparison above: were the roll (or the mask) a no-op, a shifted block would
    # equal a plain one with the same parameters.
    plain, plain_ref, grid = _padded_grid_blocks((2, 2, 4), shifted=False)
    shifted, shifted_ref, _ = _padded_grid_blocks((2, 2, 4), shifted=True)
    shifted.load_state_dict(plain.state_dict())
    shifted_ref.load_state_dict(plain.state_dict())
    a, b = (plain, shifted) if windows == "gather" else (plain_ref, shifted_ref)
    x = torch.randn(1, *grid, 8, dtype=torch.float64)
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() > 1e-3


def test_unknown_window_path_is_an_error():
    grid = GeoFormerConfig(grid=(10, 16), levels=(1000,), patch=(1, 2, 2), window=(1, 2, 4),
                           constant_vars=()).token_grid(1)
    with pytest.raises(ValueError, match="windows must be 'gather' or 'reference'"):
        EarthBlock(8, 2, (1, 2, 4), grid, shifted=False, windows="fast")
