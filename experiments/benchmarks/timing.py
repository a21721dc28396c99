"""The timing loop both benchmark scripts share (imported from their own folder)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def time_call(fn: Callable[[], object], repeats: int, device: str) -> tuple[float, float | None]:
    """Seconds per call of ``fn`` (one warm-up call, then the mean of ``repeats`` calls) and
    the peak GPU memory in GiB over the timed calls (None off CUDA)."""
    cuda = device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    fn()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return (time.perf_counter() - t0) / repeats, peak
