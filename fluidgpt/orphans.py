"""Worker processes that end when the process that started them dies.

A pool's workers outlive a parent killed by a signal (SIGKILL, an OOM kill, a CI timeout):
seen on 2026-12-01, spawned ``fluidgpt compare`` workers kept training for minutes with
PPID 1. The standard library offers no option for it, and ``prctl(PR_SET_PDEATHSIG)`` fires
when the *thread* that forked exits, which in a pool need not be the parent's death. So
each worker runs a daemon thread that compares its parent pid with the one it was started
by, once a second, and ends the worker at once when they differ.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["exit_with_parent"]

#: seconds between two looks at the parent pid
INTERVAL = 1.0


def exit_with_parent(parent: int, interval: float = INTERVAL) -> threading.Thread:
    """In a worker: end this process (``os._exit(1)``, no clean-up: the results have no one
    to go to) as soon as its parent is no longer ``parent`` (the pid the parent passed
    itself, ``os.getpid()``, as the pool's initializer argument). Returns the thread."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(interval)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread
