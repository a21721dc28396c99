"""Peak memory and seconds per model call of `geoformer forecast`: prints JSON lines and a
table, asserts nothing. Run it alone (nothing else on the machine):

    .venv/bin/python experiments/benchmarks/forecast_memory.py [--inits 1 8] [--lead 10d]

Each run is a fresh process (its peak resident set is the process's own ru_maxrss): the
shipped Held-Suarez checkpoints (24 h and 6 h, 32 x 64 grid) forecast 10 days every 6 h
from the first N initial times of the built-in store, written to zarr, either streamed
(``forecast_to_store``, what the command line does) or held in memory first
(``forecast`` then ``write_forecast``, what the command line did before streaming).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, resource, sys, time
import xarray as xr
from geoformer.data import resolve_store
from geoformer.forecast import forecast, load_models, write_forecast
from geoformer.forecast_store import forecast_to_store

mode, n, lead, out, ckpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
store = resolve_store("held-suarez")
inits = xr.open_zarr(store)["time"].values[:n]
models = load_models(ckpts)
calls = [0]
for m in models.values():
    step = m.forecast_step
    def counted(*a, _step=step, **k):
        calls[0] += 1
        return _step(*a, **k)
    m.forecast_step = counted
start = time.perf_counter()
if mode == "streamed":
    forecast_to_store(models, store, inits, out, lead_time=lead, every="6h", device="cpu")
else:
    write_forecast(forecast(models, store, inits, lead_time=lead, every="6h", device="cpu"),
                   out)
seconds = time.perf_counter() - start
print(json.dumps({"mode": mode, "initial_times": n, "lead": lead, "model_calls": calls[0],
                  "seconds": round(seconds, 2),
                  "seconds_per_call": round(seconds / max(calls[0], 1), 4),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1)}))
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--inits", type=int, nargs="+", default=[1, 8])
    p.add_argument("--lead", default="10d")
    p.add_argument("--modes", nargs="+", default=["streamed", "in-memory"])
    a = p.parse_args()
    ckpts = [str(ROOT / "geoformer" / "pretrained" / f"held_suarez_{h}.ckpt")
             for h in ("24h", "6h")]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    # the Held-Suarez store is built (or found) first, in its own process: built inside the
    # first child, it made that child's peak twice the others' (2026-12-02, a fresh machine)
    subprocess.run([sys.executable, "-c", "from geoformer.data import resolve_store; "
                    "resolve_store('held-suarez')"], check=True, cwd=ROOT, env=env)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.inits:
            for mode in a.modes:
                out = Path(tmp) / f"{mode}-{n}.zarr"
                run = subprocess.run([sys.executable, "-c", CHILD, mode, str(n), a.lead,
                                      str(out), *ckpts], capture_output=True, text=True,
                                     check=True, cwd=ROOT, env=env)
                row = json.loads(run.stdout.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f"\n{'mode':<10} {'inits':>5} {'calls':>6} {'s/call':>8} {'peak RSS MiB':>13}")
    for r in rows:
        print(f"{r['mode']:<10} {r['initial_times']:>5} {r['model_calls']:>6} "
              f"{r['seconds_per_call']:>8.4f} {r['peak_rss_mib']:>13.1f}")


if __name__ == "__main__":
    main()
