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
