"""Window geometry: pad/crop and partition/reverse round-trip; the shifted-window mask."""

import pytest
import torch

from geoformer.layers import (
    MASK_VALUE,
    crop_end,
    pad_end,
    shift_regions,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


@pytest.mark.parametrize("shape,sizes,dims", [
    ((2, 3, 5, 7, 4), (6, 8), (1, 2)),
    ((1, 4, 13, 33, 64), (14, 36), (2, 3)),
    ((2, 3, 5, 7, 4), (3,), (1,)),  # nothing to pad
    ((2, 7, 9), (10,), (-1,)),
])
def test_pad_then_crop_round_trips(shape, sizes, dims):
    x = torch.randn(shape)
    padded = pad_end(x, sizes, dims)
    for size, dim in zip(sizes, dims):
        assert padded.shape[dim] == size
    back = crop_end(padded, [x.shape[d] for d in dims], dims)
    assert torch.equal(back, x)
    # the padding is zeros at the end of each axis
    assert padded.double().sum().item() == pytest.approx(x.double().sum().item(), abs=1e-9)
    assert padded.abs().sum().item() == pytest.approx(x.abs().sum().item(), rel=1e-6)


def test_pad_end_refuses_to_shrink():
    with pytest.raises(ValueError, match="cannot pad"):
        pad_end(torch.zeros(2, 5), (3,), (1,))


@pytest.mark.parametrize("grid,window", [((4, 6, 16), (2, 2, 4)), ((8, 186, 360), (2, 6, 12))])
def test_window_partition_reverse_round_trip(grid, window):
    B, C = 2, 3
    x = torch.randn(B, *grid, C)
    windows = window_partition(x, window)
    wz, wh, ww = window
    Z, H, W = grid
    assert windows.shape == (B * (W // ww), (Z // wz) * (H // wh), wz * wh * ww, C)
    assert torch.equal(window_reverse(windows, window, grid), x)


def test_window_partition_layout_by_hand():
    # Each window holds the tokens of one (level-window, latitude-window, longitude-window)
    # block, longitude windows on the batch axis, window types level-major, tokens (z, h, w).
    Z, H, W = 4, 4, 6
    window = (2, 2, 3)
    x = torch.arange(Z * H * W).float().view(1, Z, H, W, 1)
    windows = window_partition(x, window)  # (nLon=2, nT=4, N=12, 1)
    lon_win, z_win, h_win = 1, 1, 0
    t = z_win * (H // 2) + h_win
    expected = x[0, 2:4, 0:2, 3:6, 0].reshape(-1)
    assert torch.equal(windows[lon_win, t, :, 0], expected)


def test_shift_regions():
    assert shift_regions(12, 6, 3).tolist() == [0] * 6 + [1] * 3 + [2] * 3
    assert shift_regions(8, 2, 0).tolist() == [0] * 8


def _wraps(grid, window, shift):
    """For every window and (query, key) pair: did the pair wrap around each axis when the
    grid was rolled by -shift? Returns three bool tensors (nLon, nT, N, N)."""
    Z, H, W = grid
    pos = torch.stack(torch.meshgrid(torch.arange(Z), torch.arange(H), torch.arange(W),
                                     indexing="ij"), dim=-1)[None].float()  # (1, Z, H, W, 3)
    orig = torch.roll(pos, shifts=[-s for s in shift], dims=(1, 2, 3))
    pos_w, orig_w = window_partition(pos, window), window_partition(orig, window)
    d_pos = pos_w[:, :, :, None] - pos_w[:, :, None, :]  # (nLon, nT, N, N, 3)
    d_orig = orig_w[:, :, :, None] - orig_w[:, :, None, :]
    wrap = d_pos != d_orig
    return wrap[..., 0], wrap[..., 1], wrap[..., 2]


@pytest.mark.parametrize("grid,window", [
    ((4, 18, 48), (2, 6, 12)),  # the released window
    ((4, 6, 16), (2, 2, 4)),
    ((8, 16, 32), (2, 4, 8)),
])
def test_shifted_mask_separates_exactly_the_level_and_latitude_wraps(grid, window):
    shift = tuple(w // 2 for w in window)
    mask = shifted_window_mask(grid, window, shift)  # (nT, N, N)
    wz, wh, ww = window
    assert mask.shape == ((grid[0] // wz) * (grid[1] // wh), wz * wh * ww, wz * wh * ww)
    wrap_z, wrap_h, wrap_w = _wraps(grid, window, shift)
    expected = (wrap_z | wrap_h).float() * MASK_VALUE  # (nLon, nT, N, N)
    assert torch.equal(mask.expand_as(expected), expected)
    # The seam windows exist and their longitude neighbours across 0/360 stay unmasked ...
    seam = wrap_w & ~wrap_z & ~wrap_h
    assert seam.any()
    assert (mask.expand_as(expected)[seam] == 0).all()
    # ... while the wrapped level and latitude regions are separated.
    assert wrap_z.any() and wrap_h.any()
    assert (mask.expand_as(expected)[wrap_z | wrap_h] == MASK_VALUE).all()
