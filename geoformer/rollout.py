"""Autoregressive rollout of a one-step model, shared by training and inference.

States stay in normalised space all the way: an output is fed back as the next input
exactly as the model produced it (never de-normalised in between).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import Tensor

__all__ = ["Step", "rollout"]

Step = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def rollout(step: Step, upper: Tensor, surface: Tensor, steps: int) -> Iterator[tuple[Tensor,
                                                                                      Tensor]]:
    """Apply ``step`` ``steps`` times; yield (upper (B, V, Z, H, W), surface (B, S, H, W))
    after every application."""
    for _ in range(steps):
        upper, surface = step(upper, surface)
        yield upper, surface
