"""Hierarchical temporal aggregation: reach each lead time in the fewest model calls.

The plan is pure arithmetic on hours. The rollout walks the plans of all requested lead
times as one tree, so states are shared: for every 6 h out to 10 days with 24 h and 6 h
models, the 24 h chain is the backbone and each 6 h branch starts from its latest state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from torch import Tensor

__all__ = ["UnreachableLeadTime", "plan", "plans", "aggregated_rollout"]

State = tuple[Tensor, Tensor]


class UnreachableLeadTime(ValueError):
    """A lead time that is not a sum of the available model lead times."""


def plan(lead: int, available: Iterable[int]) -> list[int]:
    """The fewest model steps (in hours) that sum exactly to ``lead``, largest first.

    Dynamic programming over hours, so it also works where greedy fails ({18, 24} reach 36 h
    as 18 + 18). Among plans of equal length the one using the largest steps first wins,
    which for {1, 3, 6, 24} is exactly the greedy plan: 56 h = 24 + 24 + 6 + 1 + 1.
    """
    steps = sorted({int(a) for a in available}, reverse=True)
    if not steps or any(s <= 0 for s in steps):
        raise ValueError(f"model lead times must be positive hours, found {sorted(available)}")
    if lead <= 0:
        raise ValueError(f"lead time must be positive, found {lead} h")
    best: list[list[int] | None] = [[]] + [None] * lead
    for h in range(1, lead + 1):
        for s in steps:  # largest first: ties keep the larger step
            if s <= h and best[h - s] is not None:
                candidate = sorted([s, *best[h - s]], reverse=True)  # type: ignore[misc]
                if best[h] is None or len(candidate) < len(best[h]) or (
                        len(candidate) == len(best[h]) and candidate > best[h]):
                    best[h] = candidate
    if best[lead] is None:
        raise UnreachableLeadTime(
            f"lead time {lead} h cannot be reached with models of {sorted(steps)} h: it is not "
            "a sum of those lead times")
    return best[lead]  # type: ignore[return-value]


def plans(leads: Iterable[int], available: Iterable[int]) -> dict[int, list[int]]:
    """The plan of every requested lead time (errors name the first unreachable one)."""
    available = list(available)
    return {int(lead): plan(int(lead), available) for lead in sorted(set(leads))}


def aggregated_rollout(models: Mapping[int, Callable[[Tensor, Tensor], State]],
                       upper: Tensor, surface: Tensor,
                       leads: Sequence[int]) -> Iterator[tuple[int, State]]:
    """Yield (lead hours, state) once for every requested lead (depth-first order).

    ``models`` maps a lead time in hours to a one-step function on (upper, surface). The
    plans are walked as a prefix tree: every shared prefix (e.g. 24 + 24) is computed once,
    and only the states on the current path are held, at most one per step of the longest
    plan. Raises :class:`UnreachableLeadTime` before any model call if a lead cannot be met.
    """
    wanted = plans(leads, models.keys())
    lead_of = {tuple(p): lead for lead, p in wanted.items()}
    children: dict[tuple[int, ...], set[int]] = {}
    for p in wanted.values():
        for i in range(len(p)):
            children.setdefault(tuple(p[:i]), set()).add(p[i])

    def walk(path: tuple[int, ...], state: State) -> Iterator[tuple[int, State]]:
        if path in lead_of:
            yield lead_of[path], state
        for step in sorted(children.get(path, ()), reverse=True):
            yield from walk((*path, step), models[step](*state))

    yield from walk((), (upper, surface))
