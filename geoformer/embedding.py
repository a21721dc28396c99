"""Patch embedding and recovery, and the down- and up-sampling between stages.

Grids go in as (B, V, Z, H, W) upper air and (B, S, H, W) surface; token grids are
channels-last (B, Z, H, W, C) with the surface as level-token 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import crop_end, pad_end
from .linear import Linear

__all__ = ["PatchEmbed", "PatchRecovery", "DownSample", "UpSample"]


class PatchEmbed(nn.Module):
    """Upper air and surface (with the constant fields appended) to one token grid.

    Args:
        upper_vars: V upper-air variables.
        surface_channels: S surface variables plus K constant fields.
        patch: (pz, ph, pw).
        dim: embedding channels C.
        padded: (Zp, Hp) levels and latitudes after zero-padding to whole patches.
    """

    def __init__(self, upper_vars: int, surface_channels: int, patch: Sequence[int], dim: int,
                 padded: Sequence[int]) -> None:
        super().__init__()
        self.padded = tuple(padded)
        self.upper = nn.Conv3d(upper_vars, dim, kernel_size=tuple(patch), stride=tuple(patch))
        self.surface = nn.Conv2d(surface_channels, dim, kernel_size=tuple(patch[1:]),
                                 stride=tuple(patch[1:]))

    def forward(self, upper: Tensor, surface: Tensor) -> Tensor:
        """upper (B, V, Z, H, W), surface (B, S+K, H, W) -> tokens (B, Zt, Ht, Wt, C)."""
        Zp, Hp = self.padded
        upper = pad_end(upper, (Zp, Hp), dims=(2, 3))  # (B, V, Zp, Hp, W)
        surface = pad_end(surface, (Hp,), dims=(2,))  # (B, S+K, Hp, W)
        u = self.upper(upper)  # (B, C, Zp/pz, Ht, Wt)
        s = self.surface(surface)  # (B, C, Ht, Wt)
        x = torch.cat([s[:, :, None], u], dim=2)  # (B, C, Zt, Ht, Wt)
        # channels-last in memory too: the blocks' linear layers take contiguous tokens
        return x.permute(0, 2, 3, 4, 1).contiguous()  # (B, Zt, Ht, Wt, C)


class PatchRecovery(nn.Module):
    """Token grid back to fields: transposed convolutions, then an exact crop.

    Level-tokens 1.. become the upper air, level-token 0 the surface.
    """

    def __init__(self, dim: int, upper_vars: int, surface_vars: int, patch: Sequence[int],
                 out_grid: Sequence[int]) -> None:
        super().__init__()
        self.out_grid = tuple(out_grid)  # (Z, H, W) of the output fields
        self.upper = nn.ConvTranspose3d(dim, upper_vars, kernel_size=tuple(patch),
                                        stride=tuple(patch))
        self.surface = nn.ConvTranspose2d(dim, surface_vars, kernel_size=tuple(patch[1:]),
                                          stride=tuple(patch[1:]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """tokens (B, Zt, Ht, Wt, C) -> upper (B, V, Z, H, W), surface (B, S, H, W)."""
        Z, H, W = self.out_grid
        x = x.permute(0, 4, 1, 2, 3)  # (B, C, Zt, Ht, Wt)
        upper = self.upper(x[:, :, 1:])  # (B, V, Zp, Hp, W)
        surface = self.surface(x[:, :, 0])  # (B, S, Hp, W)
        return crop_end(upper, (Z, H), dims=(2, 3)), crop_end(surface, (H,), dims=(2,))


class DownSample(nn.Module):
    """Merge 2 x 2 (latitude, longitude) token neighbours: C -> 2C, H -> ceil(H/2), W -> W/2.

    Latitude is padded to an even count (at the south end); levels are not merged.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduce = Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, Z, H, W, C) -> (B, Z, ceil(H/2), W/2, 2C)."""
        B, Z, H, W, C = x.shape
        H2 = H + H % 2
        x = pad_end(x, (H2,), dims=(2,))  # (B, Z, H2, W, C)
        x = x.view(B, Z, H2 // 2, 2, W // 2, 2, C)
        x = x.permute(0, 1, 2, 4, 3, 5, 6)  # (B, Z, H2/2, W/2, 2, 2, C)
        x = x.reshape(B, Z, H2 // 2, W // 2, 4 * C)  # (B, Z, H2/2, W/2, 4C)
        return self.reduce(self.norm(x))


class UpSample(nn.Module):
    """Inverse of DownSample: 2C -> C, split every token into 2 x 2, crop latitude to ``lat``."""

    def __init__(self, dim: int, out_dim: int, lat: int) -> None:
        super().__init__()
        self.lat = lat
        self.expand = Linear(dim, 4 * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)
        self.mix = Linear(out_dim, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, Z, H2, W2, 2C) -> (B, Z, lat, 2 W2, C)."""
        B, Z, H2, W2, _ = x.shape
        x = self.expand(x)  # (B, Z, H2, W2, 4C)
        C = x.shape[-1] // 4
        x = x.view(B, Z, H2, W2, 2, 2, C).permute(0, 1, 2, 4, 3, 5, 6)  # (B, Z, H2, 2, W2, 2, C)
        x = x.reshape(B, Z, 2 * H2, 2 * W2, C)[:, :, : self.lat]  # (B, Z, H, W, C)
        return self.mix(self.norm(x))
