"""The ``geoformer`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .config import ConfigError
from .errors import OneLineParser, guarded, naming, read_yaml, refuse_existing, yaml_configs
from .info import info_parser, parse_grid, run_info  # `geoformer info`; parse_grid for scripts

__all__ = ["main", "parse_grid", "info_parser"]


TRAINING = {"fit": "train one lead-time model from an experiment YAML",
            "validate": "score a model on the validation period",
            "test": "score a model on the test period"}


def run_training(argv: Sequence[str]) -> int:
    """``geoformer fit|validate|test``: LightningCLI, whose parse errors are one line (exit 2);
    every --config file is parsed first, so that a broken one is named."""
    from .train import run

    yaml_configs(list(argv[1:]))
    run(list(argv))
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    if args.which == "held-suarez":
        from .sources.held_suarez import (
            build_held_suarez,
            check_reference_build,
            load_or_build_held_suarez,
        )

        recipe = read_yaml(args.recipe) if args.recipe else None
        if recipe is not None and not isinstance(recipe, dict):
            raise ConfigError(f"{args.recipe}: expected a mapping of recipe keys, found a "
                              f"{type(recipe).__name__}")
        if args.output:
            refuse_existing(args.output, overwrite=args.overwrite)
            path = build_held_suarez(args.output, recipe=recipe, overwrite=args.overwrite)
        else:
            path = load_or_build_held_suarez(recipe=recipe)
        print(f"Held-Suarez dataset: {path}")
        import xarray as xr

        with xr.open_zarr(path) as ds:
            print(f"note: {check_reference_build(ds).message}")
        return 0
    from .data import write_training_store
    from .schema import SchemaError

    refuse_existing(args.output, overwrite=args.overwrite)
    notes: list[str] = []
    with naming(args.input, SchemaError):
        path = write_training_store(_open_input(args, notes), args.output,
                                    overwrite=args.overwrite)
    for note in notes:
        print(f"note: {note}")
    print(f"training store: {path}")
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from .forecast_store import forecast_to_store
    from .perturbation import PERTURBATIONS

    if args.members < 1:
        raise ConfigError(f"--members must be at least 1, found {args.members}")
    if not args.perturbation_scale >= 0:
        raise ConfigError(f"--perturbation-scale must be >= 0, found {args.perturbation_scale}")
    if args.perturbation not in PERTURBATIONS:
        raise ConfigError(f"--perturbation must be one of {list(PERTURBATIONS)}, found "
                          f"{args.perturbation!r}")
    refuse_existing(args.output, overwrite=args.overwrite)
    notes: list[str] = []
    # forecast() opens a path itself, with the loader's defaults
    data = _open_input(args, notes) if args.grib_filter or args.humidity_from_rh else args.input
    # streamed: each initial time's leads are written as they are computed
    path, sizes = forecast_to_store(
        args.checkpoint, data, args.init, args.output, overwrite=args.overwrite,
        lead_time=args.lead_time, every=args.every, batch_size=args.batch_size,
        device=args.device, notes=notes, members=args.members,
        perturbation=args.perturbation, perturbation_scale=args.perturbation_scale,
        seed=args.seed, compile=args.compile)
    for note in notes:
        print(f"note: {note}")
    print(f"forecast: {path} ({sizes['time']} initial time(s), "
          f"{sizes['prediction_timedelta']} lead time(s)"
          + (f", {sizes['number']} members)" if "number" in sizes else ")"))
    return 0


def cmd_climatology(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_zarr
    from .climatology import compute_climatology
    from .schema import SchemaError, open_dataset

    refuse_existing(args.output, overwrite=args.overwrite)
    ds = open_dataset(args.input, chunks={})  # dask, by the store's chunks: never all at once
    if args.period:
        ds = ds.sel(time=slice(*args.period))
    keep = [v for v in ds.data_vars if "time" in ds[v].dims]
    if not ds.sizes.get("time"):
        raise SchemaError(f"{args.input}: no time in --period {' .. '.join(args.period)}")
    with naming(args.input, SchemaError):  # the reads happen as the store is written
        clim = compute_climatology(ds[keep], kind=args.kind, window_days=args.window_days)
        atomic_write_zarr(clim, args.output, overwrite=args.overwrite)
    print(f"climatology ({args.kind}): {args.output}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .atomic import atomic_write
    from .evaluation import evaluate

    refuse_existing(args.output, args.plot, overwrite=args.overwrite)
    refs = [r for r in args.references.split(",") if r] if args.references else []
    notes: list[str] = []
    scores = evaluate(args.forecast, args.truth, args.climatology, refs, args.train_period,
                      args.climatology_kind, args.regions, notes=notes,
                      allow_missing_valid_times=args.allow_missing_valid_times,
                      spectra=args.spectra)
    for note in notes:
        print(f"note: {note}")
    if args.plot:  # drawn first: a failed plot leaves no table either
        from .plots import plot_scores

        atomic_write(args.plot, lambda tmp: plot_scores(scores, tmp), overwrite=args.overwrite)
    atomic_write(args.output, lambda tmp: scores.to_csv(tmp, index=False),
                 overwrite=args.overwrite)
    print(f"scores: {args.output} ({len(scores)} rows)")
    if args.plot:
        print(f"score plot: {args.plot}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from .atomic import atomic_write
    from .evaluation import open_forecast
    from .forecast import parse_hours
    from .plots import has_land, map_title, plot_maps
    from .schema import SchemaError, open_dataset

    refuse_existing(args.output, overwrite=args.overwrite)
    fc, truth = open_forecast(args.forecast), open_dataset(args.truth)
    if args.variable not in fc:
        raise ConfigError(f"variable {args.variable!r} is not in the forecast; it has "
                          f"{sorted(map(str, fc.data_vars))}")
    init = pd.Timestamp(args.init) if args.init else pd.Timestamp(fc.time.values[0])
    lead = pd.Timedelta(hours=parse_hours(args.lead_time))
    if init not in fc.indexes["time"] or lead not in fc.indexes["prediction_timedelta"]:
        raise SchemaError(f"{args.forecast}: no forecast from {init} at lead {lead}")
    if init + lead not in truth.indexes["time"]:
        raise SchemaError(f"{args.truth}: no truth at the valid time {init + lead}")
    f = fc[args.variable].sel(time=init, prediction_timedelta=lead)
    t = truth[args.variable].sel(time=init + lead)
    if "number" in f.dims:
        f = f.mean("number")
    if "level" in f.dims:
        if args.level is None:
            raise ConfigError(f"{args.variable} is an upper-air variable: give --level")
        f, t = f.sel(level=args.level), t.sel(level=args.level)
    t = t.sel(latitude=f.latitude, longitude=f.longitude)
    title = map_title(f, init_time=init, lead_time=lead, level=args.level,
                      name=args.variable)
    coastlines = has_land(truth) if args.coastlines == "auto" else args.coastlines == "on"
    f, t = f.load(), t.load()
    path = atomic_write(args.output, lambda tmp: plot_maps(
        f, t, tmp, title=title, units=fc[args.variable].attrs.get("units", ""),
        coastlines=coastlines, projection=args.projection, variable=args.variable,
        geopotential_in_dam=args.geopotential_units == "dam"), overwrite=args.overwrite)
    print(f"map: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.config, args.plan, args.output, overwrite=args.overwrite)
    return 0


def _input_options(parser: argparse.ArgumentParser) -> None:
    """How ``--input`` is read (``dataset convert``, ``forecast``): see _open_input."""
    parser.add_argument("--grib-filter", action="append", metavar="KEY=VALUE",
                        help="read only GRIB fields with KEY=VALUE (cfgrib's filter_by_keys, e.g."
                             " typeOfLevel=isobaricInhPa or shortName=t,gh; repeatable)")
    parser.add_argument("--humidity-from-rh", action="store_true",
                        help="derive specific humidity from relative humidity and temperature "
                             "where the input has none (Bolton 1980, over water)")


def _open_input(args: argparse.Namespace, notes: list[str]):
    from .schema import open_dataset
    from .sources.grib import parse_grib_filter

    return open_dataset(args.input, notes, grib_filter=parse_grib_filter(args.grib_filter or []),
                        humidity_from_rh=args.humidity_from_rh)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="geoformer",
        description="Pangu-Weather's 3D Earth-specific transformer: network, training, "
                    "forecasts and scores.")
    parser.add_argument("--version", action="version", version=f"geoformer {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("info", add_help=False,
                   help="parameter count, token grids, window types and memory of a "
                        "configuration, or what a checkpoint holds (geoformer info --help)")

    ds = sub.add_parser("dataset", help="build the Held-Suarez dataset or convert data to a "
                                        "training store")
    ds_sub = ds.add_subparsers(dest="which", required=True)
    hs = ds_sub.add_parser("held-suarez", help="simulate the built-in Held-Suarez dataset "
                                               "(dinosaur; cached)")
    hs.add_argument("--output", help="write here instead of the cache")
    hs.add_argument("--recipe", help="a recipe YAML (default: datasets/held_suarez)")
    hs.add_argument("--overwrite", action="store_true")
    conv = ds_sub.add_parser("convert", help="ERA5-like zarr/netCDF/GRIB -> training store "
                                             "(one time step per chunk)")
    conv.add_argument("--input", required=True)
    conv.add_argument("--output", required=True)
    conv.add_argument("--overwrite", action="store_true")
    _input_options(conv)
    ds.set_defaults(func=cmd_dataset)

    for name, what in TRAINING.items():  # parsed by LightningCLI (see main)
        sub.add_parser(name, help=f"{what} (LightningCLI; see geoformer {name} --help)",
                       add_help=False)

    fc = sub.add_parser("forecast", help="forecast with one or more lead-time checkpoints")
    fc.add_argument("--checkpoint", action="append", required=True,
                    help="a lead-time model checkpoint (repeat for 1/3/6/24 h models)")
    fc.add_argument("--input", required=True, help="initial states (zarr, netCDF or GRIB)")
    _input_options(fc)
    fc.add_argument("--init", action="append", required=True,
                    help="initialisation time, e.g. 2000-07-01T00 (repeatable)")
    fc.add_argument("--lead-time", default="10d", help="furthest lead time (e.g. 10d, 72h)")
    fc.add_argument("--every", help="output interval (default: the lead time only)")
    fc.add_argument("--output", required=True, help="forecast store (.zarr or .nc)")
    fc.add_argument("--batch-size", type=int, default=1)
    fc.add_argument("--compile", action="store_true",
                    help="run the networks through torch.compile (minutes of compiling first; "
                         "on a CPU the eager network was faster)")
    fc.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    fc.add_argument("--overwrite", action="store_true")
    fc.add_argument("--members", type=int, default=1,
                    help="ensemble size N: member 0 is the control, 1..N-1 are perturbed "
                         "(default 1: a single forecast)")
    fc.add_argument("--perturbation", default="perlin",
                    help="initial-state perturbation for members > 0 (perlin: Pangu's "
                         "fractal Perlin noise)")
    fc.add_argument("--perturbation-scale", type=float, default=0.2,
                    help="noise amplitude in standard deviations of each field (default 0.2)")
    fc.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    fc.set_defaults(func=cmd_forecast)

    cl = sub.add_parser("climatology", help="a climatology for ACC and reference forecasts")
    cl.add_argument("--input", required=True)
    cl.add_argument("--output", required=True, help="climatology store (.zarr)")
    cl.add_argument("--kind", default="dayofyear_hour", choices=["dayofyear_hour", "time_mean"],
                    help="time_mean for data without seasons (Held-Suarez)")
    cl.add_argument("--period", nargs=2, metavar=("START", "STOP"),
                    help="time range to average (use the training period)")
    cl.add_argument("--window-days", type=int, default=61)
    cl.add_argument("--overwrite", action="store_true")
    cl.set_defaults(func=cmd_climatology)

    ev = sub.add_parser("evaluate", help="score a forecast and reference forecasts")
    ev.add_argument("--forecast", required=True)
    ev.add_argument("--truth", required=True)
    ev.add_argument("--climatology", help="climatology store (default: computed from the "
                                          "truth over --train-period)")
    ev.add_argument("--train-period", nargs=2, metavar=("START", "STOP"),
                    help="training period: climatology and damped-persistence fit")
    ev.add_argument("--climatology-kind", default="dayofyear_hour",
                    choices=["dayofyear_hour", "time_mean"])
    ev.add_argument("--references", default="persistence,climatology,damped_persistence",
                    help="comma-separated reference forecasts ('' for none)")
    ev.add_argument("--regions", nargs="+", default=["global"],
                    help="global tropics extratropics_north extratropics_south")
    ev.add_argument("--output", required=True, help="scores CSV")
    ev.add_argument("--plot", help="also draw RMSE/ACC against lead time to this PNG")
    ev.add_argument("--allow-missing-valid-times", action="store_true",
                    help="score what the truth covers when it lacks some valid times (each "
                         "lead then averages its own subset of initial times; a note says so)")
    ev.add_argument("--spectra", action="store_true", help="add zonal energy spectrum rows")
    ev.add_argument("--overwrite", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    pl = sub.add_parser("plot", help="forecast, truth and error maps (PNG)")
    pl.add_argument("--forecast", required=True)
    pl.add_argument("--truth", required=True)
    pl.add_argument("--variable", default="geopotential")
    pl.add_argument("--level", type=int, help="pressure level (hPa) for upper-air variables")
    pl.add_argument("--init", help="initialisation time (default: the first)")
    pl.add_argument("--lead-time", default="24h")
    pl.add_argument("--output", required=True, help="PNG path")
    pl.add_argument("--overwrite", action="store_true")
    pl.add_argument("--coastlines", choices=("auto", "on", "off"), default="auto",
                    help="auto (default): drawn unless the truth dataset says it has no land "
                         "(attribute land = none, e.g. Held-Suarez)")
    pl.add_argument("--projection", choices=("platecarree", "robinson", "orthographic"),
                    default="platecarree", help="map projection (default platecarree)")
    pl.add_argument("--geopotential-units", choices=("m2s-2", "dam"), default="m2s-2",
                    help="geopotential as drawn: m2 s-2 (default) or height in dam (/ 10 g)")
    pl.set_defaults(func=cmd_plot)

    dm = sub.add_parser("demo", help="dataset, training, forecasts, scores and maps on the "
                                     "built-in Held-Suarez data (CPU, minutes)")
    dm.add_argument("--config", default="experiments/geoformer/demo.yaml",
                    help="the runs' geoformer fit experiment (LightningCLI YAML)")
    dm.add_argument("--plan", default="experiments/geoformer/demo_plan.yaml",
                    help="what to train, forecast, score and draw")
    dm.add_argument("--output", help="output folder (default: the plan's)")
    dm.add_argument("--overwrite", action="store_true",
                    help="replace what an earlier demo wrote in the output folder")
    dm.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``geoformer ARGS``; a bad input is one line on stderr and exit status 2 (``--debug``,
    anywhere on the line: the traceback instead)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, argv = "--debug" in argv, [a for a in argv if a != "--debug"]
    if argv and argv[0] in TRAINING:
        return guarded(lambda: run_training(argv), f"geoformer {argv[0]}", debug)
    if argv and argv[0] == "info":
        return guarded(lambda: run_info(argv[1:]), "geoformer info", debug)
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.func(args), f"geoformer {args.command}", debug)


if __name__ == "__main__":
    sys.exit(main())
