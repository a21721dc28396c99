"""Pool workers end with their parent: a ``fluidgpt compare`` parent killed by SIGKILL must
not leave its spawned training workers running (seen on 2026-12-01), nor the OpenFOAM
sweep its forked ones."""

import os
import signal
import subprocess
import sys
import time

import pytest

PARENT = r"""
import os, sys, time
kind = sys.argv[1]
if kind == "compare":
    from fluidgpt.compare.jobs import Runner
    pool = Runner(workers=2)._pool()
else:  # the OpenFOAM sweep's pool, as _run_all builds it
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    from fluidgpt.orphans import exit_with_parent
    pool = ProcessPoolExecutor(2, mp_context=get_context("fork"), initializer=exit_with_parent,
                               initargs=(os.getpid(),))
futures = [pool.submit(os.getpid) for _ in range(4)]
print(" ".join(sorted({str(f.result()) for f in futures})), flush=True)
pool.submit(time.sleep, 600)  # busy: a worker that would keep running as an orphan
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has died
        return f.read().split()[2] != "Z"


def _children(pid: int) -> set[int]:
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found |= {int(c) for c in f.read().split()}
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("kind", ["compare", "sweep"])
def test_workers_end_when_the_parent_is_killed(kind):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, kind], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers and all(_alive(p) for p in workers)
        workers = sorted(set(workers) | _children(parent.pid))  # the resource tracker too
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for pid in left:  # do not leave them behind either way
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"
