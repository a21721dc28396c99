"""The geoformer network: composition of the Earth-specific blocks into the Pangu U-shape.

Pure tensors in, tensors out: no xarray, files, normalisation or training logic here.
Fields are expected already normalised, in the internal order (levels from the surface up,
latitude north to south, longitude eastwards from 0).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import EarthAttention
from .config import GeoFormerConfig, TokenGrid
from .embedding import DownSample, PatchEmbed, PatchRecovery, UpSample
from .layers import crop_end, pad_end, shifted_window_mask, window_partition, window_reverse
from .linear import Mlp, onednn_enabled, use_onednn

__all__ = ["EarthBlock", "Stage", "GeoFormer"]


def _pad_gather(x: Tensor, index: Tensor) -> Tensor:
    """(B, L, C) -> (B, len(index), C): row ``index[i] - 1`` of ``x``, zeros where it is 0."""
    return torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]), x], dim=1)[:, index]


class _ToWindows(torch.autograd.Function):
    """Grid tokens (B, L, C) into window slots (B, S, C) by ``into`` (1-based, 0 = padding);
    the gradient comes back by ``back`` (the slot of every token), one gather each way.
    Hand-written because autograd's backward of an index gather is a general scatter-add
    (``index_put`` with accumulation): there and back took twice as long on the CPU
    (experiments/benchmarks/training_parts.py)."""

    @staticmethod
    def forward(ctx, x: Tensor, into: Tensor, back: Tensor) -> Tensor:
        ctx.into, ctx.back = into, back
        return _pad_gather(x, into)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad[:, ctx.back], None, None


class _FromWindows(torch.autograd.Function):
    """The inverse of :class:`_ToWindows`: slots (B, S, C) back to grid tokens (B, L, C)."""

    @staticmethod
    def forward(ctx, windows: Tensor, into: Tensor, back: Tensor) -> Tensor:
        ctx.into, ctx.back = into, back
        return windows[:, back]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return _pad_gather(grad, ctx.into), None, None


class EarthBlock(nn.Module):
    """One 3D Earth-specific transformer block with post-norm residuals (Swin v2 style).

    x = x + drop_path(norm1(attention(x))); x = x + drop_path(norm2(mlp(x))).
    Shifted blocks roll the grid by -shift before attention and back after; only the
    level/latitude wrap-around is masked, never the longitude seam.

    windows: "gather" (the fast path: pad, roll and partition as one precomputed index
    gather, see :meth:`_attend_gather`) or "reference" (the same steps written out one by
    one with the geometry functions, see :meth:`_attend_reference`; read this one first).
    Both give the same numbers and the same parameters.
    """

    def __init__(self, dim: int, heads: int, window: Sequence[int], grid: TokenGrid,
                 shifted: bool, drop_path: float = 0.0, mlp_ratio: float = 4.0,
                 attention: str = "sdpa", windows: str = "gather") -> None:
        super().__init__()
        if windows not in ("gather", "reference"):
            raise ValueError(f"windows must be 'gather' or 'reference', got {windows!r}")
        self.windows = windows
        self.window = tuple(window)
        self.grid = grid
        self.shift = tuple(w // 2 for w in window) if shifted else (0, 0, 0)
        self.attn = EarthAttention(dim, heads, window, grid.window_types, attention)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        padded = (grid.padded_levels, grid.padded_lat, grid.lon)
        mask = shifted_window_mask(padded, window, self.shift) if shifted else None
        self.register_buffer("attn_mask", mask, persistent=False)
        into, back = self._window_indices()
        self.register_buffer("to_windows", into, persistent=False)
        self.register_buffer("from_windows", back, persistent=False)

    def _window_indices(self) -> tuple[Tensor, Tensor]:
        """Pad, roll and window partition as one gather, and its inverse.

        The geometry functions are applied once to a grid of token numbers (1-based; 0
        stands for a padding token), so the forward pass moves each token exactly once in
        each direction instead of padding, rolling and permuting the activations.
        """
        g = self.grid
        ids = torch.arange(1, g.levels * g.lat * g.lon + 1, device="cpu")
        ids = ids.view(1, g.levels, g.lat, g.lon, 1)
        ids = pad_end(ids, (g.padded_levels, g.padded_lat), dims=(1, 2))  # 0 = padding
        if self.attn_mask is not None:
            ids = torch.roll(ids, shifts=tuple(-s for s in self.shift), dims=(1, 2, 3))
        into = window_partition(ids, self.window).flatten()  # (nLon*nT*N,) token per slot
        back = torch.empty(g.levels * g.lat * g.lon, dtype=torch.long)
        real = into > 0
        back[into[real] - 1] = torch.nonzero(real).flatten()  # slot of every real token
        return into, back

    def _attend_reference(self, x: Tensor) -> Tensor:
        """Window attention step by step: pad, roll, partition, attend, reverse, roll, crop.

        (B, Z, H, W, C) -> (B, Z, H, W, C). The readable twin of :meth:`_attend_gather`.
        """
        g = self.grid
        padded = (g.padded_levels, g.padded_lat, g.lon)
        x = pad_end(x, padded[:2], dims=(1, 2))  # (B, Zp, Hp, W, C), zeros at the end
        if any(self.shift):
            x = torch.roll(x, shifts=tuple(-s for s in self.shift), dims=(1, 2, 3))
        windows = window_partition(x, self.window)  # (B*nLon, nT, N, C)
        windows = self.attn(windows, self.attn_mask)  # bias per window type, mask if shifted
        x = window_reverse(windows, self.window, padded)  # (B, Zp, Hp, W, C)
        if any(self.shift):
            x = torch.roll(x, shifts=self.shift, dims=(1, 2, 3))
        return crop_end(x, (g.levels, g.lat), dims=(1, 2))  # (B, Z, H, W, C)

    def _attend_gather(self, x: Tensor) -> Tensor:
        """:meth:`_attend_reference` with pad/roll/partition and their inverses as gathers.

        (B, Z, H, W, C) -> (B, Z, H, W, C). Index 0 of ``to_windows`` is the zero padding token.
        """
        g = self.grid
        B, Z, H, W, C = x.shape
        into, back = self.to_windows, self.from_windows
        # (B, nLon*nT*N, C): padded, rolled, partitioned
        windows = _ToWindows.apply(x.reshape(B, Z * H * W, C), into, back)
        n_types = self.grid.window_types
        windows = windows.view(B * g.lon_windows, n_types, -1, C)  # (B*nLon, nT, N, C)
        windows = self.attn(windows, self.attn_mask)
        x = _FromWindows.apply(windows.reshape(B, -1, C), into, back)  # (B, Z*H*W, C)
        return x.view(B, Z, H, W, C)  # (B, Z, H, W, C)

    def forward(self, x: Tensor) -> Tensor:
        """(B, Z, H, W, C) -> (B, Z, H, W, C)."""
        attend = self._attend_reference if self.windows == "reference" else self._attend_gather
        x = x + self.drop_path(self.norm1(attend(x)))
        return x + self.drop_path(self.norm2(self.mlp(x)))


def _with_route(block: nn.Module, route: bool, x: Tensor) -> Tensor:
    with use_onednn(route):
        return block(x)


class Stage(nn.Module):
    """A run of EarthBlocks on one token grid; odd blocks use shifted windows."""

    def __init__(self, depth: int, dim: int, heads: int, window: Sequence[int], grid: TokenGrid,
                 drop_path: Sequence[float], mlp_ratio: float, attention: str,
                 checkpoint_activations: bool = False) -> None:
        super().__init__()
        self.checkpoint_activations = checkpoint_activations
        self.blocks = nn.ModuleList(
            EarthBlock(dim, heads, window, grid, shifted=i % 2 == 1, drop_path=drop_path[i],
                       mlp_ratio=mlp_ratio, attention=attention)
            for i in range(depth)
        )
    def forward(self, x: Tensor) -> Tensor:
        """(B, Z, H, W, C) -> (B, Z, H, W, C)."""
        for block in self.blocks:
            if self.checkpoint_activations and torch.is_grad_enabled():
                # recomputed with the linear layers' route of this forward pass
                x = checkpoint(_with_route, block, onednn_enabled(), x, use_reentrant=False)
            else:
                x = block(x)
        return x


class GeoFormer(nn.Module):
    """Pangu-Weather's 3D Earth-specific transformer.

    Args:
        config: the architecture and variable contract (see :class:`GeoFormerConfig`).
        constants: (K, H, W) normalised constant fields (land-sea mask, soil type, surface
            geopotential, ...), appended to the surface input. Zeros when not given. They are
            buffers (saved in checkpoints, never trained).

    Call with upper (B, V, Z, H, W) and surface (B, S, H, W); returns tensors of the same shapes.
    """

    def __init__(self, config: GeoFormerConfig, constants: Tensor | None = None) -> None:
        super().__init__()
        self.config = cfg = config
        H, W = cfg.grid
        K = len(cfg.constant_vars)
        self.register_buffer("constants", torch.zeros(K, H, W))
        if constants is not None:
            self.set_constants(constants)

        C1, C2, _, _ = cfg.stage_dims
        d1, d2, _, _ = cfg.depths
        n = d1 + d2
        rates = [cfg.drop_path * i / max(n - 1, 1) for i in range(n)]  # linspace(0, rate, n)
        outer, inner = rates[:d1], rates[d1:]
        g1, g2 = cfg.token_grid(1), cfg.token_grid(2)
        Zp, Hp, _ = cfg.padded_grid

        def stage(i: int, grid: TokenGrid, dim: int, rates: list[float]) -> Stage:
            return Stage(cfg.depths[i], dim, cfg.heads[i], cfg.window, grid, rates,
                         cfg.mlp_ratio, cfg.attention, cfg.checkpoint_activations)

        self.embed = PatchEmbed(len(cfg.upper_vars), len(cfg.surface_vars) + K, cfg.patch, C1,
                                (Zp, Hp))
        self.stage1 = stage(0, g1, C1, outer)
        self.down = DownSample(C1)
        self.stage2 = stage(1, g2, C2, inner)
        self.stage3 = stage(2, g2, C2, inner)
        self.up = UpSample(C2, C1, g1.lat)
        self.stage4 = stage(3, g1, C1, outer)
        self.recover = PatchRecovery(2 * C1, len(cfg.upper_vars), len(cfg.surface_vars),
                                     cfg.patch, (len(cfg.levels), H, W))
        self.apply(self._init_weights)
        self._share_buffers()

    def _share_buffers(self) -> None:
        """Blocks of the same token grid and shift hold the same mask and window indices,
        and blocks of the same window the same position index: one copy of each is kept
        (at 0.25 deg, 121 MiB of buffers become 47 MiB). Buffers are constants, never
        written to, so sharing them changes no result."""
        geometry: dict[tuple, EarthBlock] = {}
        for block in (b for m in self.modules() if isinstance(m, Stage) for b in m.blocks):
            first = geometry.setdefault((block.grid, block.window, block.shift), block)
            if first is not block:
                for name in ("attn_mask", "to_windows", "from_windows"):
                    block._buffers[name] = first._buffers[name]
            index = geometry.setdefault(("position", block.window), block).attn.position_index
            block.attn._buffers["position_index"] = index

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .half(): kept shared
        super()._apply(fn, recurse)
        self._share_buffers()
        return self

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, constants: Tensor | None = None,
                    **overrides: Any) -> GeoFormer:
        """``GeoFormer.from_preset("pangu", grid=(121, 240), window=(2, 6, 10))``."""
        return cls(GeoFormerConfig.from_preset(name, **overrides), constants=constants)

    def set_constants(self, constants: Tensor) -> None:
        """Replace the constant fields; (K, H, W), already normalised, finite."""
        expected = tuple(self.constants.shape)
        if tuple(constants.shape) != expected:
            raise ValueError(
                f"constant fields must have shape (K, H, W) = {expected} for "
                f"{list(self.config.constant_vars)} on grid {self.config.grid}, "
                f"found {tuple(constants.shape)}")
        if constants.device.type != "meta" and not torch.isfinite(constants).all():
            raise ValueError("constant fields contain NaN or infinite values")
        with torch.no_grad():
            self.constants.copy_(constants)

    # -------------------------------------------------------------------------- forward
    def _check_inputs(self, upper: Tensor, surface: Tensor) -> None:
        cfg = self.config
        V, Z, S = len(cfg.upper_vars), len(cfg.levels), len(cfg.surface_vars)
        H, W = cfg.grid
        if upper.ndim != 5 or tuple(upper.shape[1:]) != (V, Z, H, W):
            raise ValueError(
                f"upper-air input must be (B, V, Z, H, W) = (B, {V}, {Z}, {H}, {W}) for "
                f"variables {list(cfg.upper_vars)} on levels {list(cfg.levels)}, "
                f"found {tuple(upper.shape)}")
        if surface.ndim != 4 or tuple(surface.shape[1:]) != (S, H, W):
            raise ValueError(
                f"surface input must be (B, S, H, W) = (B, {S}, {H}, {W}) for variables "
                f"{list(cfg.surface_vars)}, found {tuple(surface.shape)}")
        if upper.shape[0] != surface.shape[0]:
            raise ValueError(f"upper-air batch {upper.shape[0]} != surface batch "
                             f"{surface.shape[0]}")

    def forward(self, upper: Tensor, surface: Tensor) -> tuple[Tensor, Tensor]:
        """upper (B, V, Z, H, W), surface (B, S, H, W) -> the same shapes, one lead time on."""
        self._check_inputs(upper, surface)
        B = upper.shape[0]
        const = self.constants.to(surface.dtype).expand(B, *self.constants.shape)  # (B, K, H, W)
        x = self.embed(upper, torch.cat([surface, const], dim=1))  # (B, Zt, Ht, Wt, C)
        skip = self.stage1(x)
        x = self.stage3(self.stage2(self.down(skip)))  # (B, Zt, Ht/2, Wt/2, 2C)
        x = self.stage4(self.up(x))  # (B, Zt, Ht, Wt, C)
        return self.recover(torch.cat([skip, x], dim=-1))  # skip concat: (B, Zt, Ht, Wt, 2C)

    # ---------------------------------------------------------------------- optimisation
    def no_weight_decay(self) -> set[str]:
        """Parameters that must not be decayed: Earth-specific bias tables, biases, norms."""
        names = set()
        for name, p in self.named_parameters():
            if name.endswith("bias_table") or p.ndim <= 1:
                names.add(name)
        return names

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups with :meth:`no_weight_decay` excluded from decay."""
        skip = self.no_weight_decay()
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if name in skip else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def num_parameters(self, bias_tables_only: bool = False) -> int:
        return sum(p.numel() for n, p in self.named_parameters()
                   if not bias_tables_only or n.endswith("bias_table"))

    def blocks(self) -> Iterator[EarthBlock]:
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            yield from stage.blocks
