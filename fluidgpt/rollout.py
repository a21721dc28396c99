"""Autoregressive generation of whole trajectories from the one-step GPT.

One function for training (a multi-step loss backpropagates through it) and inference. The
known conditions are put back at every step: a paper-style network also predicts its token's
condition slots, but those predictions are only a training target, never fed back.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .gpt import FluidGPT, KVCache

__all__ = ["rollout"]


def rollout(model: FluidGPT, first: Tensor, conditions: Tensor, steps: int,
            use_cache: bool = True) -> Tensor:
    """Generate ``steps`` steps after the known ones.

    Args:
        model: the one-step network.
        first: (B, T0, P, F) known steps (T0 >= 1; the paper starts from the true step 0).
        conditions: (B, K) case conditions.
        steps: how many steps to generate.
        use_cache: with a full-trajectory context (``config.context == 0``), feed each new step
            alone through a :class:`KVCache`; False recomputes the whole context every step
            (same result to rounding, for checks). A sliding context (the paper's 4 steps,
            positions restarting at 0) always recomputes its window.

    Returns:
        (B, T0 + steps, P, F): the known steps followed by the generated ones.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, found {steps}")
    if steps == 0:
        return first
    F = model.config.n_features
    context = model.config.context
    traj = list(first.unbind(1))  # T0 x (B, P, F)
    if context or not use_cache:
        for _ in range(steps):
            window = torch.stack(traj[-context:] if context else traj, dim=1)  # (B, W, P, F)
            traj.append(model(window, conditions)[:, -1, :, :F])
        return torch.stack(traj, dim=1)
    cache = KVCache()
    nxt = model(first, conditions, start=0, cache=cache)[:, -1, :, :F]  # (B, P, F)
    for s in range(steps):
        traj.append(nxt)
        if s + 1 < steps:
            nxt = model(nxt[:, None], conditions, start=len(traj) - 1, cache=cache)[:, -1, :, :F]
    return torch.stack(traj, dim=1)  # (B, T0+steps, P, F)
