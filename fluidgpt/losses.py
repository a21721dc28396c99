"""Masked losses, metrics and training windows over tensors (torch only).

Pure functions the Lightning modules (:mod:`fluidgpt.module`) train and validate with.
Invalid entries (``valid`` False: a particle that has left the domain) are left out and may
hold anything, NaN included.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_mse", "masked_r2", "sliding_windows"]


def masked_mse(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean squared error over every feature of the valid entries.

    pred, target (..., F); valid (...) bool or None (all valid). Invalid entries may hold
    anything, NaN included.
    """
    diff = pred - target
    if valid is None:
        return diff.square().mean()
    mask = valid[..., None].expand_as(diff)
    # Mask the difference, not its square: the gradient of a NaN entry is then 0, not NaN.
    return torch.where(mask, diff, 0.0).square().sum() / mask.sum().clamp_min(1)


def masked_r2(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Coefficient of determination of each feature over the valid entries, then averaged
    over features: mean_f [1 - sum (pred - target)^2 / sum (target - mean target)^2].

    pred, target (..., F); valid (...) bool or None.
    """
    if valid is None:
        valid = torch.ones(target.shape[:-1], dtype=torch.bool, device=target.device)
    mask = valid[..., None].expand_as(target)
    dims = tuple(range(target.ndim - 1))
    n = mask.sum(dims).clamp_min(1)  # (F,)
    mean = torch.where(mask, target, 0.0).sum(dims) / n  # (F,)
    ss_res = torch.where(mask, pred - target, 0.0).square().sum(dims)
    ss_tot = torch.where(mask, target - mean, 0.0).square().sum(dims)
    return (1.0 - ss_res / ss_tot).mean()


def sliding_windows(x: Tensor, size: int, stride: int) -> Tensor:
    """Windows along dim 1: x (B, T, ...) -> (B nW, size, ...), nW = (T - size) // stride + 1,
    case-major (the windows of case 0 first)."""
    if x.shape[1] < size:
        raise ValueError(f"trajectories of {x.shape[1]} steps are shorter than the training "
                         f"window of {size} steps")
    w = x.unfold(1, size, stride)  # (B, nW, ..., size)
    return w.movedim(-1, 2).flatten(0, 1)  # (B*nW, size, ...)
