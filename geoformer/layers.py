"""Pure geometry of the 3D windows: padding, window partition, the shifted-window mask.

Token grids are laid out channels-last, (B, Z, H, W, C): level tokens, latitude tokens
(north to south), longitude tokens (eastwards from 0). Longitude is periodic: nothing here
ever pads it or masks across the 0/360 deg seam.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MASK_VALUE",
    "pad_end",
    "crop_end",
    "window_partition",
    "window_reverse",
    "shift_regions",
    "shifted_window_mask",
]

# Added to the logits of (query, key) pairs the shifted-window mask separates. Finite, so no
# NaN can appear, and representable in bf16 and fp16.
MASK_VALUE = -1.0e4


def pad_end(x: Tensor, sizes: Sequence[int], dims: Sequence[int]) -> Tensor:
    """Zero-pad the axes ``dims`` of ``x`` at their end up to ``sizes``.

    The released model pads at the end: the top level token and the southern rows.
    """
    pads = [0] * (2 * x.ndim)
    for size, dim in zip(sizes, dims):
        dim = dim % x.ndim
        extra = size - x.shape[dim]
        if extra < 0:
            raise ValueError(f"cannot pad axis {dim} of size {x.shape[dim]} down to {size}")
        pads[2 * (x.ndim - 1 - dim) + 1] = extra  # F.pad lists (left, right) from the last axis
    if not any(pads):
        return x
    return F.pad(x, pads)


def crop_end(x: Tensor, sizes: Sequence[int], dims: Sequence[int]) -> Tensor:
    """Inverse of :func:`pad_end`: keep the first ``sizes`` entries of the axes ``dims``."""
    for size, dim in zip(sizes, dims):
        x = x.narrow(dim, 0, size)
    return x


def window_partition(x: Tensor, window: Sequence[int]) -> Tensor:
    """Cut a token grid into 3D windows.

    x: (B, Z, H, W, C) with Z, H, W divisible by the window (Wz, Wh, Ww).
    Returns (B * nLon, nT, N, C): nLon = W / Ww longitude windows, nT = (Z / Wz) * (H / Wh)
    window types (level-window major), N = Wz * Wh * Ww tokens ordered (z, h, w).
    """
    B, Z, H, W, C = x.shape
    wz, wh, ww = window
    x = x.view(B, Z // wz, wz, H // wh, wh, W // ww, ww, C)
    x = x.permute(0, 5, 1, 3, 2, 4, 6, 7)  # (B, nLon, nZ, nH, wz, wh, ww, C)
    return x.reshape(B * (W // ww), (Z // wz) * (H // wh), wz * wh * ww, C)  # (B*nLon, nT, N, C)


def window_reverse(windows: Tensor, window: Sequence[int], grid: Sequence[int]) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nLon, nT, N, C) -> (B, Z, H, W, C)."""
    wz, wh, ww = window
    Z, H, W = grid
    n_lon = W // ww
    C = windows.shape[-1]
    B = windows.shape[0] // n_lon
    x = windows.view(B, n_lon, Z // wz, H // wh, wz, wh, ww, C)
    x = x.permute(0, 2, 4, 3, 5, 1, 6, 7)  # (B, nZ, wz, nH, wh, nLon, ww, C)
    return x.reshape(B, Z, H, W, C)  # (B, Z, H, W, C)


def shift_regions(size: int, window: int, shift: int) -> Tensor:
    """Swin's three regions along one non-periodic axis of a grid rolled by ``-shift``.

    After the roll, the last ``shift`` positions come from the start of the axis: they belong
    to region 2 and must not attend to region 1 (the rest of the last window) or region 0.
    """
    labels = torch.zeros(size, dtype=torch.long)
    if shift > 0:
        labels[size - window:size - shift] = 1
        labels[size - shift:] = 2
    return labels


def shifted_window_mask(grid: Sequence[int], window: Sequence[int], shift: Sequence[int]) -> Tensor:
    """Additive attention mask of the shifted windows, one per window type.

    grid: the padded token grid (Z, H, W); the grid is rolled by ``-shift`` before partition.
    Only the level and latitude wrap-arounds are masked; longitude is periodic, so a window
    that wraps across 0/360 deg is a real neighbourhood and stays unmasked. The mask is thus
    the same for every longitude window.

    Returns (nT, N, N) float: 0 where query and key may attend, MASK_VALUE where not.
    """
    Z, H, _ = grid
    wz, wh, ww = window
    sz, sh, _ = shift
    rz = shift_regions(Z, wz, sz)
    rh = shift_regions(H, wh, sh)
    label = (rz[:, None] * 3 + rh[None, :])  # (Z, H) region id of every position
    label = label[:, :, None, None].expand(Z, H, ww, 1).contiguous().float()  # one lon window
    label = window_partition(label[None], window)[:, :, :, 0]  # (1, nT, N)
    label = label[0]  # (nT, N)
    separated = label[:, :, None] != label[:, None, :]  # (nT, N, N)
    return separated.float() * MASK_VALUE
