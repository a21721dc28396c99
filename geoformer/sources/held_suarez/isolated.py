"""The Held-Suarez simulation in a process of its own, with every CPU-chosen code path pinned.

The flow is chaotic, so two builds are the same weather only if every floating-point kernel
they run is the same code. Three libraries pick their kernels by the CPU at run time, and each
was measured to change the simulation (a 60-day run, SHA-256 over every variable; 2026-12-02 on
an Intel Xeon, 2026-12-03 on an AMD EPYC, both with AVX-512):

- XLA compiles the dycore for the host's instruction set (``--xla_cpu_max_isa``);
- OpenBLAS picks its kernels by CPU model, and dinosaur inverts its implicit-step matrices and
  solves for the equiangular quadrature weights with ``numpy.linalg`` when it sets up: the
  AMD machine's build equals the Intel machine's bit for bit once both use the same OpenBLAS
  kernels (``OPENBLAS_CORETYPE``), and differs otherwise;
- numpy dispatches its math functions to AVX2 or AVX-512 code when the CPU has them
  (``NPY_DISABLE_CPU_FEATURES``).

glibc's libm variants (``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F``) changed
nothing. Each pin is read once, when its library loads, so they cannot be applied to a process
that has imported numpy: every build runs in a fresh child process
(:func:`main`), pinned to what every x86-64 CPU that jaxlib runs on has (x86-64-v2: SSE4.2),
whatever the environment says, and jax to the CPU; the store records what the build ran with.
No library does this for us. On other architectures only jax's platform is pinned.
"""

from __future__ import annotations

import argparse
import builtins
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

XLA_ISA = "SSE4_2"
OPENBLAS_CORE = "Nehalem"  # OpenBLAS's SSE4.2 kernels
_XLA_FLAG = "--xla_cpu_max_isa"
# The store attributes recording what a build ran with.
RECORD_KEYS = ("xla_cpu_max_isa", "openblas_coretype", "numpy_cpu_dispatch")


def pinned_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a build process: ``environ`` (default os.environ) with the pins.

    jax always runs on the CPU (``JAX_PLATFORMS=cpu``: a CUDA jaxlib would otherwise take the
    simulation, and most of the GPU's memory, from a training run beside it). On x86-64 the
    pins replace any value already there (machines set ``OPENBLAS_CORETYPE`` for their own
    reasons; one had ``Haswell``), since they apply to the build process only; other
    ``XLA_FLAGS`` are kept. Nothing else is pinned on other architectures.
    """
    env = dict(os.environ if environ is None else environ)
    env["JAX_PLATFORMS"] = "cpu"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return env
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_XLA_FLAG + "=")]
    env["XLA_FLAGS"] = " ".join([*flags, f"{_XLA_FLAG}={XLA_ISA}"])
    env["OPENBLAS_CORETYPE"] = OPENBLAS_CORE
    # numpy's baseline only: every dispatch target this numpy was compiled with is switched
    # off (the same numpy runs in the child; numpy 2.4 accepts targets the CPU lacks, measured;
    # NPY_ENABLE_CPU_FEATURES is numpy 2 only, and numpy refuses both variables at once).
    env.pop("NPY_ENABLE_CPU_FEATURES", None)
    env["NPY_DISABLE_CPU_FEATURES"] = " ".join(_numpy_umath().__cpu_dispatch__)
    return env


def _numpy_umath():
    try:  # private, but the only record of the dispatch (numpy 2; numpy 1: numpy.core)
        from numpy._core import _multiarray_umath as umath
    except ImportError:
        from numpy.core import _multiarray_umath as umath
    return umath


def _numpy_dispatch() -> tuple[list[str], list[str]]:
    """numpy's baseline and the dispatch targets this process has switched on."""
    umath = _numpy_umath()
    enabled = [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)]
    return list(umath.__cpu_baseline__), enabled


def current_record() -> dict[str, str]:
    """What this process runs with: numpy's dispatch and OpenBLAS's kernels read back from
    the libraries, XLA's instruction set from ``XLA_FLAGS`` (which jax reads when it starts;
    "host" when it names none)."""
    isa = "host"
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith(_XLA_FLAG + "="):
            isa = flag.split("=", 1)[1]
    baseline, enabled = _numpy_dispatch()
    dispatch = " ".join(baseline) + (" + " + " ".join(enabled) if enabled else " only")
    return {"xla_cpu_max_isa": isa, "openblas_coretype": _openblas_core(),
            "numpy_cpu_dispatch": dispatch}


def _openblas_core() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # not a dependency: say what was asked for
        return os.environ.get("OPENBLAS_CORETYPE", "host") + " (requested)"
    cores = {i.get("architecture") for i in threadpool_info()
             if i.get("internal_api") == "openblas" and "numpy" in i.get("filepath", "")}
    return ", ".join(sorted(c for c in cores if c)) or "not found"


def run_build(recipe: dict, out: Path, store: bool = True) -> None:
    """Simulate ``recipe`` in a pinned child process that writes the zarr store ``out``
    (``store=False``: without the recipe hash, for an in-memory result). The child's own
    errors come back as the same exception type with its message; the child is stopped and
    waited for when this process is interrupted, and stops itself if this process dies."""
    with tempfile.TemporaryDirectory(prefix="held-suarez-build-") as tmp:
        recipe_file, error_file = Path(tmp) / "recipe.json", Path(tmp) / "error.json"
        recipe_file.write_text(json.dumps(recipe))
        cmd = [sys.executable, "-c", f"from {__name__} import main; raise SystemExit(main())",
               str(recipe_file), str(out), str(error_file), "--parent", str(os.getpid()),
               "--log-level", str(logging.getLogger("geoformer").getEffectiveLevel())]
        if not store:
            cmd.append("--no-hash")
        child = subprocess.Popen(cmd, env=pinned_environment())
        try:
            returncode = child.wait()
        except BaseException:  # KeyboardInterrupt, SystemExit: never leave it writing
            _stop(child)
            raise
        if returncode == 0:
            return
        try:
            error = json.loads(error_file.read_text())
        except (OSError, ValueError):
            error = None
        if error is None:
            if returncode < 0:
                name = signal.Signals(-returncode).name
                raise RuntimeError(f"the Held-Suarez build process was killed by {name}"
                                   + (" (out of memory?)" if name == "SIGKILL" else ""))
            raise RuntimeError(f"the Held-Suarez build process exited with status {returncode}")
        kind = getattr(builtins, error["type"], None)
        if isinstance(kind, type) and issubclass(kind, _PASSED_ON):
            raise kind(error["message"])
        raise RuntimeError(f"the Held-Suarez build process failed: {error['type']}: "
                           f"{error['message']}")


# The child's errors raised here as themselves (bad input, a missing extra, the disk); any
# other is a crash, raised as RuntimeError after the child's traceback.
_PASSED_ON = (ImportError, ValueError, MemoryError, OSError)


def _stop(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _exit_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when its parent dies (no orphan filling the disk)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own stop() still applies
        return
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def run_in_process(recipe: dict, out: Path, store: bool = True) -> None:
    """What :func:`run_build`'s child runs, in this process and so not pinned (for tests)."""
    from .cache import write_store

    write_store(out, recipe, current_record(), with_hash=store)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a Held-Suarez store (a pinned child process)")
    p.add_argument("recipe", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("error", type=Path)
    p.add_argument("--log-level", type=int, default=logging.WARNING)
    p.add_argument("--no-hash", action="store_true")
    p.add_argument("--parent", type=int, default=None)
    a = p.parse_args(argv)
    if a.parent is not None:
        _exit_with_parent(a.parent)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("geoformer").setLevel(a.log_level)
    try:
        run_in_process(json.loads(a.recipe.read_text()), a.out, store=not a.no_hash)
    except _PASSED_ON as error:  # one line each, raised again in the parent as themselves
        name = type(error).__name__
        if getattr(builtins, name, None) is not type(error):  # a library's own subclass
            name = next(k.__name__ for k in _PASSED_ON if isinstance(error, k))
        a.error.write_text(json.dumps({"type": name, "message": str(error)}))
        return 2
    except Exception as error:  # a crash: keep its traceback on stderr
        a.error.write_text(json.dumps({"type": type(error).__name__, "message": str(error)}))
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
