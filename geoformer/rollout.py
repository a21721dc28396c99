"""Autoregressive rollout of a one-step model, shared by training and inference.

States stay in normalised space all the way: an output is fed back as the next input
exactly as the model produced it (never de-normalised in between).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import Tensor

from .state import State

__all__ = ["Step", "advance", "rollout"]

#: A one-step model on tensors: (upper (B, V, Z, H, W), surface (B, S, H, W)) -> the same.
Step = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def advance(step: Step, state: State) -> State:
    """``state`` one application of ``step`` on: new tensors, the same names and grid."""
    upper, surface = step(state.upper, state.surface)
    return state.replace(upper=upper, surface=surface)


def rollout(step: Step, state: State, steps: int) -> Iterator[State]:
    """Apply ``step`` ``steps`` times; yield the state after every application."""
    for _ in range(steps):
        state = advance(step, state)
        yield state
