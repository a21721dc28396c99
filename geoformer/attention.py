"""Window attention with Pangu-Weather's Earth-specific positional bias.

The bias is absolute in level and latitude inside a window, relative in longitude, and has
its own values for every (level-window, latitude-window) position of the window on the
globe ("window type"); all longitude windows share it, which keeps the network equivariant
to rotations of the globe by whole windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

from .linear import Linear

__all__ = ["earth_position_index", "EarthAttention"]


def earth_position_index(window: Sequence[int]) -> Tensor:
    """Row of the bias table for every (query, key) pair of one window.

    For query (zq, hq, wq) and key (zk, hk, wk) in a window (Wz, Wh, Ww):
    idx = (zq + Wz zk) (2 Ww - 1) Wh^2 + (hq + Wh hk) (2 Ww - 1) + (wq - wk + Ww - 1).
    Returns (N, N) long, N = Wz Wh Ww, tokens ordered (z, h, w) as in window_partition.
    """
    wz, wh, ww = window
    z, h, w = torch.meshgrid(
        torch.arange(wz), torch.arange(wh), torch.arange(ww), indexing="ij")
    z, h, w = z.flatten(), h.flatten(), w.flatten()  # (N,)
    span = 2 * ww - 1
    return (
        (z[:, None] + wz * z[None, :]) * span * wh * wh
        + (h[:, None] + wh * h[None, :]) * span
        + (w[:, None] - w[None, :] + ww - 1)
    )  # (N, N)


class EarthAttention(nn.Module):
    """Multi-head self-attention inside 3D windows, with the Earth-specific bias.

    Args:
        dim: channels C.
        heads: number of heads nh (head size hs = C / nh).
        window: (Wz, Wh, Ww).
        window_types: nT, the number of (level-window, latitude-window) positions.
        implementation: "sdpa" (torch's scaled_dot_product_attention with the bias and mask
            as an additive float mask; while the bias takes a gradient, one baddbmm of the
            bias and q k^T, then softmax and bmm) or "reference" (explicit
            softmax(q k^T + bias) v, written out).
    """

    def __init__(self, dim: int, heads: int, window: Sequence[int], window_types: int,
                 implementation: str = "sdpa") -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} does not divide into {heads} heads")
        if implementation not in ("sdpa", "reference"):
            raise ValueError(
                f"implementation must be 'sdpa' or 'reference', got {implementation!r}")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.implementation = implementation
        wz, wh, ww = window
        self.qkv = Linear(dim, 3 * dim)
        self.proj = Linear(dim, dim)
        rows = (2 * ww - 1) * wh**2 * wz**2
        self.bias_table = nn.Parameter(torch.empty(rows, window_types, heads))
        trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("position_index", earth_position_index(window), persistent=False)

    def bias(self) -> Tensor:
        """The gathered Earth-specific bias, (nT, nh, N, N)."""
        N, rows = self.position_index.shape[0], self.bias_table.shape[0]
        # the embedding gather: its backward accumulates the repeated rows faster than
        # indexing's (index_put), with the same values
        b = F.embedding(self.position_index, self.bias_table.view(rows, -1))  # (N, N, nT*nh)
        return b.view(N, N, -1, self.heads).permute(2, 3, 0, 1)  # (nT, nh, N, N)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B * nLon, nT, N, C); mask: (nT, N, N) additive or None. Returns x's shape."""
        Bl, T, N, C = x.shape
        nh, hs = self.heads, self.head_dim
        qkv = self.qkv(x).view(Bl, T, N, 3, nh, hs)  # (Bl, T, N, 3, nh, hs)
        qkv = qkv.permute(3, 0, 1, 4, 2, 5)  # (3, Bl, T, nh, N, hs)
        q, k, v = qkv.unbind(0)  # (Bl, T, nh, N, hs)
        bias = self.bias()  # (T, nh, N, N)
        if mask is not None:
            bias = bias + mask[:, None]  # (T, nh, N, N)
        if self.implementation == "sdpa" and bias.requires_grad and torch.is_grad_enabled():
            # Training: torch's fused kernels give no gradient for the mask, so SDPA would
            # take its unfused path with extra passes over the logits (_safe_softmax). One
            # batched multiply-add of the bias and the two products are faster (0.96x forward
            # and backward on a 1.5 deg stage-1 layer, experiments/benchmarks/training_parts.py).
            q, k, v = (t.reshape(Bl * T * nh, N, hs) for t in (q, k, v))  # (Bl*T*nh, N, hs)
            logits = torch.baddbmm(bias.to(q.dtype).expand(Bl, T, nh, N, N).reshape(-1, N, N),
                                   q, k.transpose(1, 2), alpha=self.scale)
            out = logits.softmax(dim=-1).bmm(v).view(Bl, T, nh, N, hs)  # (Bl, T, nh, N, hs)
        elif self.implementation == "sdpa":
            # Fold (T, nh) into one head axis so the fused 4-D kernels apply.
            q, k, v = (t.reshape(Bl, T * nh, N, hs) for t in (q, k, v))  # (Bl, T*nh, N, hs)
            attn_mask = bias.reshape(1, T * nh, N, N).to(q.dtype)  # (1, T*nh, N, N)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
            out = out.view(Bl, T, nh, N, hs)  # (Bl, T, nh, N, hs)
        else:
            logits = (q * self.scale) @ k.transpose(-2, -1) + bias  # (Bl, T, nh, N, N)
            out = logits.softmax(dim=-1) @ v  # (Bl, T, nh, N, hs)
        out = out.transpose(2, 3).reshape(Bl, T, N, C)  # (Bl, T, N, C)
        return self.proj(out)
