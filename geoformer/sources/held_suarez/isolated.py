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
  (``NPY_ENABLE_CPU_FEATURES``).

glibc's libm variants (``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F``) changed
nothing. Each pin is read once, when its library loads, so they cannot be applied to a process
that has imported numpy: every build runs in a fresh child process
(:func:`main`), pinned to what every x86-64 CPU that
jaxlib runs on has (x86-64-v2: SSE4.2), whatever the environment says; the store records what
the build ran with. No library does this for us. On other architectures nothing is pinned.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

XLA_ISA = "SSE4_2"
OPENBLAS_CORE = "Nehalem"  # OpenBLAS's SSE4.2 kernels
NUMPY_FEATURES = "X86_V2"  # numpy's x86-64 baseline: no AVX2 / AVX-512 dispatch
_XLA_FLAG = "--xla_cpu_max_isa"
# The store attributes recording what a build ran with.
RECORD_KEYS = ("xla_cpu_max_isa", "openblas_coretype", "numpy_cpu_dispatch")


def pinned_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a build process: ``environ`` (default os.environ) with the pins.

    The pins replace any value already there (machines set ``OPENBLAS_CORETYPE`` for their
    own reasons; this one had ``Haswell``), since they apply to the build process only; other
    ``XLA_FLAGS`` are kept. Nothing is pinned on other architectures than x86-64.
    """
    env = dict(os.environ if environ is None else environ)
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return env
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_XLA_FLAG + "=")]
    env["XLA_FLAGS"] = " ".join([*flags, f"{_XLA_FLAG}={XLA_ISA}"])
    env["OPENBLAS_CORETYPE"] = OPENBLAS_CORE
    env.pop("NPY_DISABLE_CPU_FEATURES", None)  # numpy refuses both set at once
    env["NPY_ENABLE_CPU_FEATURES"] = NUMPY_FEATURES
    return env


def current_record() -> dict[str, str]:
    """What this process actually runs with, read back from the libraries themselves."""
    import numpy as np  # noqa: F401  (loads numpy's OpenBLAS)
    from numpy._core._multiarray_umath import (  # private, the only record of the dispatch
        __cpu_baseline__,
        __cpu_dispatch__,
        __cpu_features__,
    )

    isa = "host"
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith(_XLA_FLAG + "="):
            isa = flag.split("=", 1)[1]
    enabled = [t for t in __cpu_dispatch__ if __cpu_features__.get(t)]
    dispatch = " ".join(__cpu_baseline__) + (" + " + " ".join(enabled) if enabled else " only")
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
    errors come back as the same exception type with its message."""
    with tempfile.TemporaryDirectory(prefix="held-suarez-build-") as tmp:
        recipe_file, error_file = Path(tmp) / "recipe.json", Path(tmp) / "error.json"
        recipe_file.write_text(json.dumps(recipe))
        cmd = [sys.executable, "-c", f"from {__name__} import main; raise SystemExit(main())",
               str(recipe_file), str(out), str(error_file),
               "--log-level", str(logging.getLogger("geoformer").getEffectiveLevel())]
        if not store:
            cmd.append("--no-hash")
        done = subprocess.run(cmd, env=pinned_environment(), check=False)
        if done.returncode == 0:
            return
        if error_file.is_file():
            error = json.loads(error_file.read_text())
            kind = {"ImportError": ImportError, "ValueError": ValueError,
                    "MemoryError": MemoryError, "OSError": OSError}.get(error["type"])
            if kind is not None:
                raise kind(error["message"])
            raise RuntimeError(f"the Held-Suarez build process failed: {error['type']}: "
                               f"{error['message']}")
        raise RuntimeError(f"the Held-Suarez build process exited with status "
                           f"{done.returncode}")


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
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level, format="%(message)s")
    try:
        run_in_process(json.loads(a.recipe.read_text()), a.out, store=not a.no_hash)
    except (ImportError, ValueError, MemoryError, OSError) as error:  # one line each
        kind = next(k for k in (ImportError, ValueError, MemoryError, OSError)
                    if isinstance(error, k))
        a.error.write_text(json.dumps({"type": kind.__name__, "message": str(error)}))
        return 2
    except Exception as error:  # a crash: keep its traceback on stderr
        a.error.write_text(json.dumps({"type": type(error).__name__, "message": str(error)}))
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
