"""Peak memory and wall time of `geoformer evaluate` as the forecast store grows: prints JSON
lines and a table, asserts nothing. Run it alone (nothing else on the machine):

    .venv/bin/python experiments/benchmarks/evaluate_memory.py [--inits 2 8] [--lead 10d]
        [--truth auto|held-suarez|synthetic] [--scores-dir DIR] [--repeats N] [--keep-dir DIR]

The truth is the built-in Held-Suarez store when it is cached (it is never built here),
else a synthetic store on the same grid (32 x 64, 13 levels, a seasonal cycle, a year and
a half of 6-hourly steps) written with ``write_training_store``. For each N of ``--inits``
a forecast store of N initial times (one a day, after the training period), leads every
6 h out to ``--lead``, is written with ``write_forecast`` (chunks of one time and one
lead, as ``geoformer forecast`` writes them); its values are the mean of the truth at the
initial and at the valid time, a forecast that is neither perfect nor persistence.

Each run is a fresh process, so its peak resident set is the process's own ru_maxrss:

* ``evaluate``: ``geoformer evaluate`` through ``geoformer.cli.main``, with the training
  period for the day-of-year climatology (ACC, climatology, damped persistence) and every
  reference forecast (persistence, climatology, damped persistence).
* ``read``: the inputs read once: the forecast store, and the truth over the training
  period and at every initial and valid time, each ``.load()``-ed, chunk by chunk without
  dask (about three times faster here than through dask, so the stricter yardstick).

``wall_over_read`` is the evaluate seconds over the read seconds (wall times are noisy on
a busy machine; peak RSS is not). With ``--repeats N`` each store gets N evaluate / read
pairs, run alternately (evaluate, read, evaluate, read, ...), and the row holds the medians:
of the seconds, of the peak RSS, and ``wall_over_read`` the median of the N pairs' ratios
(``pair_ratios`` lists them); first touch of fresh memory and the page cache make single
runs spread by more than the goal's margin. ``--scores-dir`` keeps the score tables (CSV),
e.g. to compare the numbers of two versions of the code; ``--keep-dir`` keeps the forecast
stores (and names the truth) for profiling.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

ROOT = Path(__file__).resolve().parents[2]
UPPER = ["geopotential", "temperature", "u_component_of_wind", "v_component_of_wind"]
SURFACE = ["mean_sea_level_pressure", "10m_u_component_of_wind", "10m_v_component_of_wind",
           "2m_temperature"]
LEVELS = [1000, 925, 850, 700, 600, 500, 400, 300, 250, 200, 150, 100, 50]

CHILD_EVALUATE = r"""
import json, resource, sys, time
from geoformer.cli import main

forecast, truth, start, stop, out = sys.argv[1:6]
t0 = time.perf_counter()
rc = main(["evaluate", "--forecast", forecast, "--truth", truth, "--train-period", start, stop,
           "--climatology-kind", "dayofyear_hour",
           "--references", "persistence,climatology,damped_persistence", "--output", out])
seconds = time.perf_counter() - t0
print(json.dumps({"rc": rc, "seconds": round(seconds, 2),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1)}))
"""

CHILD_READ = r"""
import json, resource, sys, time
import numpy as np, pandas as pd, xarray as xr

forecast, truth, start, stop = sys.argv[1:5]
t0 = time.perf_counter()
# chunks=None: each zarr chunk read straight into numpy, no dask graph (the fastest way)
fc = xr.open_zarr(forecast, chunks=None).load()
truth = xr.open_zarr(truth, chunks=None)[list(fc.data_vars)]
scored = pd.DatetimeIndex((fc["time"] + fc["prediction_timedelta"]).values.ravel())
scored = scored.union(pd.DatetimeIndex(fc["time"].values))
train = truth.sel(time=slice(start, stop)).load()
at_scored = truth.sel(time=scored.values).load()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": round(seconds, 2), "train_times": train.sizes["time"],
                  "scored_times": at_scored.sizes["time"],
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1)}))
"""


def cached_held_suarez() -> tuple[Path, tuple[str, str], str] | None:
    """(store, training period, first initial time) of the cached built-in store, or None."""
    from geoformer.sources.held_suarez import default_cache_dir, recipe_hash, resolve_recipe

    recipe = resolve_recipe(None)
    path = Path(default_cache_dir()) / f"held_suarez-{recipe_hash(recipe)}.zarr"
    if not (path / ".zattrs").exists():
        return None
    attrs = json.loads((path / ".zattrs").read_text())
    if attrs.get("recipe_hash") != recipe_hash(recipe):
        return None
    splits = recipe["splits"]
    return path, tuple(splits["train"]), splits["test"][0]


def synthetic_truth(path: Path, days: int) -> tuple[Path, tuple[str, str], str]:
    """A 32 x 64, 13-level store of ``days`` 6-hourly steps: a seasonal cycle, an eastward
    wave and noise, built chunk by chunk (dask) and written with ``write_training_store``."""
    import dask.array as da

    from geoformer.data import write_training_store
    from geoformer.schema import VARIABLES

    time = pd.date_range("2000-01-01", periods=days * 4, freq="6h")
    lat = np.linspace(90 - 90 / 32, -90 + 90 / 32, 32)
    lon = np.arange(64) * 360.0 / 64
    season = xr.DataArray(np.cos(2 * np.pi * time.dayofyear.values / 365.25), dims="time",
                          coords={"time": time})
    phase = (xr.DataArray(np.deg2rad(lon), dims="longitude", coords={"longitude": lon})
             - xr.DataArray(0.3 * np.arange(time.size), dims="time", coords={"time": time}))
    wave = np.cos(np.deg2rad(xr.DataArray(lat, dims="latitude", coords={"latitude": lat}))) \
        * np.sin(phase)
    rng = da.random.RandomState(0)

    def noise(*dims):
        shape = tuple({"time": time.size, "level": 13, "latitude": 32, "longitude": 64}[d]
                      for d in dims)
        chunks = tuple(1 if d == "time" else -1 for d in dims)
        return xr.DataArray(rng.standard_normal(shape, chunks=chunks), dims=dims)

    level = xr.DataArray(LEVELS, dims="level", coords={"level": LEVELS})
    offsets = {"geopotential": 9.80665 * 16000 * np.log(1000 / level) + 800,
               "temperature": 288.0 - 60 * np.log(1000 / level),
               "u_component_of_wind": 5.0, "v_component_of_wind": 0.0,
               "mean_sea_level_pressure": 101325.0, "10m_u_component_of_wind": 2.0,
               "10m_v_component_of_wind": 0.0, "2m_temperature": 285.0}
    scales = {"geopotential": 500.0, "temperature": 5.0, "u_component_of_wind": 10.0,
              "v_component_of_wind": 5.0, "mean_sea_level_pressure": 800.0,
              "10m_u_component_of_wind": 4.0, "10m_v_component_of_wind": 3.0,
              "2m_temperature": 6.0}
    data = {}
    for name in UPPER + SURFACE:
        dims = ("time", "level", "latitude", "longitude") if name in UPPER else (
            "time", "latitude", "longitude")
        field = offsets[name] + scales[name] * (season + wave + 0.3 * noise(*dims))
        data[name] = field.transpose(*dims).astype(np.float32)
        data[name].attrs = {"units": VARIABLES[name].units,
                            "standard_name": VARIABLES[name].standard_name}
    ds = xr.Dataset(data, coords={"time": time, "level": level, "latitude": lat,
                                  "longitude": lon})
    ds["level"].attrs["units"] = "hPa"
    write_training_store(ds, path)
    train_stop = time[0] + pd.Timedelta(days=days - 90) - pd.Timedelta(hours=6)
    first = train_stop + pd.Timedelta(days=20, hours=6)
    return path, (str(time[0]), str(train_stop)), str(first)


def forecast_store(truth_path: Path, path: Path, n: int, first: str, lead: str) -> None:
    """N initial times a day apart from ``first``, leads every 6 h to ``lead``: the mean of
    the truth at the initial and at the valid time, written with ``write_forecast``."""
    from geoformer.forecast import parse_hours, write_forecast

    truth = xr.open_zarr(truth_path)[UPPER + SURFACE]
    inits = pd.date_range(first, periods=n, freq="1D")
    hours = parse_hours(lead)
    leads = pd.Index(pd.to_timedelta(np.arange(6, hours + 1, 6), unit="h"),
                     name="prediction_timedelta")
    index = pd.DatetimeIndex(truth["time"].values)
    valid = index.get_indexer((inits.values[:, None] + leads.values[None, :]).ravel())
    start = index.get_indexer(inits)
    if (valid < 0).any() or (start < 0).any():
        raise SystemExit(f"the truth does not cover {n} initial times from {first} + {lead}")
    at_valid = truth.isel(time=xr.DataArray(valid.reshape(n, leads.size),
                                            dims=("time", "prediction_timedelta")))
    at_init = truth.isel(time=xr.DataArray(start, dims="time"))
    fc = (0.5 * (at_valid.drop_vars("time") + at_init.drop_vars("time"))).astype(np.float32)
    fc = fc.assign_coords(time=inits.values, prediction_timedelta=leads)
    fc = fc.transpose("time", "prediction_timedelta", ...)
    for name in fc.data_vars:
        fc[name].attrs = dict(truth[name].attrs)
    fc["valid_time"] = fc["time"] + fc["prediction_timedelta"]
    write_forecast(fc.set_coords("valid_time"), path)


def child(code: str, *args: str, env: dict) -> dict:
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         cwd=ROOT, env=env)
    if run.returncode:
        raise SystemExit(f"child failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--inits", type=int, nargs="+", default=[2, 8])
    p.add_argument("--lead", default="10d")
    p.add_argument("--truth", choices=["auto", "held-suarez", "synthetic"], default="auto")
    p.add_argument("--synthetic-days", type=int, default=550)
    p.add_argument("--scores-dir", type=Path, help="keep the score tables (CSV) here")
    p.add_argument("--repeats", type=int, default=1,
                   help="evaluate / read pairs per store, alternating; medians reported")
    p.add_argument("--keep-dir", type=Path, help="keep the forecast stores here")
    a = p.parse_args()
    if a.repeats < 1:
        p.error(f"--repeats must be at least 1, got {a.repeats}")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        found = None if a.truth == "synthetic" else cached_held_suarez()
        if found is None and a.truth == "held-suarez":
            raise SystemExit("the Held-Suarez store is not cached (this script never builds it)")
        if found is None:
            found = synthetic_truth(Path(tmp) / "truth.zarr", a.synthetic_days)
        truth, (start, stop), first = found
        print(json.dumps({"truth": str(truth), "train_period": [start, stop],
                          "first_init": first}), flush=True)
        for n in a.inits:
            fc = Path(tmp) / f"forecast-{n}.zarr"
            forecast_store(truth, fc, n, first, a.lead)
            out = Path(tmp) / f"scores-{n}.csv"
            evs, rds = [], []
            for _ in range(a.repeats):  # alternating: a slow spell hits both sides alike
                out.unlink(missing_ok=True)
                evs.append(child(CHILD_EVALUATE, str(fc), str(truth), start, stop, str(out),
                                 env=env))
                rds.append(child(CHILD_READ, str(fc), str(truth), start, stop, env=env))
            ratios = [e["seconds"] / r["seconds"] for e, r in zip(evs, rds)]

            def median(runs, key):
                return round(float(np.median([r[key] for r in runs])), 2)

            row = {"bench": "store", "initial_times": n, "lead": a.lead, "forecast_mib": round(
                       sum(f.stat().st_size for f in fc.rglob("*") if f.is_file()) / 2**20, 1),
                   "repeats": a.repeats,
                   "evaluate_peak_rss_mib": median(evs, "peak_rss_mib"),
                   "evaluate_seconds": median(evs, "seconds"),
                   "read_seconds": median(rds, "seconds"),
                   "read_peak_rss_mib": median(rds, "peak_rss_mib"),
                   "wall_over_read": round(float(np.median(ratios)), 2),
                   "pair_ratios": [round(x, 2) for x in ratios],
                   "rows": len(pd.read_csv(out))}
            print(json.dumps(row), flush=True)
            rows.append(row)
            if a.scores_dir:
                a.scores_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, a.scores_dir / out.name)
            if a.keep_dir:
                a.keep_dir.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(a.keep_dir / fc.name, ignore_errors=True)
                shutil.move(fc, a.keep_dir / fc.name)
                (a.keep_dir / "truth.txt").write_text(f"{truth}\n{start}\n{stop}\n")
            else:
                shutil.rmtree(fc)
    print(f"\n{'inits':>5} {'store MiB':>9} {'eval RSS MiB':>12} {'eval s':>7} {'read s':>7} "
          f"{'eval/read':>9} {'read RSS MiB':>12}")
    for r in rows:
        print(f"{r['initial_times']:>5} {r['forecast_mib']:>9.1f} "
              f"{r['evaluate_peak_rss_mib']:>12.1f} {r['evaluate_seconds']:>7.2f} "
              f"{r['read_seconds']:>7.2f} {r['wall_over_read']:>9.2f} "
              f"{r['read_peak_rss_mib']:>12.1f}")
    ratio = rows[-1]["evaluate_peak_rss_mib"] / rows[0]["evaluate_peak_rss_mib"]
    print(f"rss_ratio_4x_vs_1x {ratio:.3f}  ({rows[-1]['initial_times']} vs "
          f"{rows[0]['initial_times']} initial times); evaluate / read, "
          f"{rows[-1]['initial_times']} initial times: {rows[-1]['wall_over_read']:.2f}")
    print(json.dumps({"bench": "ratio", "rss_ratio_4x_vs_1x": round(ratio, 3),
                      "time_ratio_4x": rows[-1]["wall_over_read"],
                      "initial_times": [r["initial_times"] for r in rows]}), flush=True)


if __name__ == "__main__":
    main()
