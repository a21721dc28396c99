"""The ``fluidgpt`` command line.

    fluidgpt dataset build --recipe datasets/elbow_erosion/recipe.yaml --output elbow.zarr
    fluidgpt dataset import runs/a runs/b | a.csv b.parquet --mapping import.yaml \\
        --steps 11 --interval 0.004 --output tracks.zarr  (fluidgpt.importer; alias: table)
    fluidgpt fit --config experiments/fluidgpt/fit.yaml [--trainer.max_epochs=3 ...]
    fluidgpt validate|test --config experiments/fluidgpt/fit.yaml --ckpt_path gpt.ckpt
    fluidgpt predict --checkpoint gpt.ckpt --checkpoint erosion.ckpt \\
        --conditions "main_inlet_speed=9,side_inlet_speed=25,..." --output pred.zarr \\
        [--vtk [DIR]] [--plot hotspot.png] [--overwrite]
    fluidgpt evaluate --checkpoint gpt.ckpt [--checkpoint erosion.ckpt] --data X --split interior
    fluidgpt info --checkpoint gpt.ckpt [--json]  (fluidgpt.inspect_checkpoint)
    fluidgpt compare --config experiments/fluidgpt/compare.yaml [--output compare.csv]
        [--split.kind=interior,block] [--budget.epochs=5 ...] [--no_plots]
    fluidgpt demo [--data.path=elbow.zarr] [--seed=1 ...]

fit, validate and test run on LightningCLI (:mod:`fluidgpt.fitcli`); compare and demo parse
the experiment with the same module schema (:mod:`fluidgpt.compare.config`). Bad input,
including an unknown key or a wrongly typed value at any depth, ends with one line on
stderr and exit status 2 (``--debug``: the traceback instead); an existing output is
refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__

__all__ = ["main", "build_parser"]

_REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = _REPO / "experiments" / "fluidgpt" / "demo.yaml"
DEMO_OUTPUT = Path("demo-output") / "fluidgpt"
#: A full sweep built with `make fluidgpt-dataset`; the demo uses it when it is there.
BUILT_DATASET = Path("data") / "elbow_erosion.zarr"


class UsageError(Exception):
    """Bad input from the command line; the message is printed as one line."""


# ---------------------------------------------------------------------------- commands
def cmd_dataset_build(args: argparse.Namespace) -> int:
    from .sources import build_sweep

    if not Path(args.recipe).is_file():
        raise UsageError(f"{args.recipe}: no such recipe file")
    _refuse_existing(args.output, args.overwrite)
    build_sweep(args.recipe, args.output, workers=args.workers, variant=args.variant,
                profile=args.profile, work_dir=args.work_dir, keep_cases=args.keep_cases,
                overwrite=args.overwrite)
    return 0


def cmd_lightning(argv: Sequence[str]) -> int:
    """fit / validate / test: LightningCLI (fluidgpt.fitcli)."""
    from .fitcli import run_fit

    run_fit(list(argv))
    return 0


def _conditions(args: argparse.Namespace):
    from .predict import parse_conditions, read_conditions_file

    if (args.conditions is None) == (args.conditions_file is None):
        raise UsageError("give either --conditions name=value,... or --conditions-file FILE.csv")
    if args.conditions is not None:
        return parse_conditions(args.conditions)
    return read_conditions_file(args.conditions_file)


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import load_pipeline, predict, prediction_summary, write_outputs

    if not args.output.endswith((".zarr", ".nc")):
        raise UsageError(f"--output must end in .zarr or .nc, found {args.output!r}")
    _refuse_existing(args.output, args.overwrite)
    table = _conditions(args)
    pipeline = load_pipeline(args.checkpoint)
    wall_outputs = [f for f, v in (("--vtk", args.vtk), ("--plot", args.plot)) if v is not None]
    if wall_outputs and (pipeline.erosion is None or
                         not pipeline.erosion.config.magnitude_head):
        raise UsageError(f"{' and '.join(wall_outputs)} need predicted erosion rates: give an "
                         "erosion checkpoint with a magnitude head")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = predict(pipeline, table)
    for w in caught:
        if issubclass(w.category, UserWarning) and "extrapolation" in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)
    vtk_dir = None
    if args.vtk is not None:
        vtk_dir = Path(args.vtk) if args.vtk else Path(args.output).parent
    written = write_outputs(ds, args.output, vtk_dir, args.plot, overwrite=args.overwrite)
    print(f"wrote {written['prediction']}: {prediction_summary(ds)}")
    if written["vtk"]:
        print(f"wall maps for ParaView: {written['vtk'][0]}"
              + (f" .. {written['vtk'][-1].name}" if len(written["vtk"]) > 1 else ""))
        if not written["vtk_faces"]:
            print("note: the training data has no face corners (face_vertex), so the VTK "
                  "files hold one vertex cell per face centre (view with Point Gaussian)")
    if written["plot"]:
        print(f"hot-spot plot (case 0): {written['plot']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .atomic import atomic_write
    from .checkpoints import load_checkpoint
    from .compare import evaluate_checkpoints, format_table
    from .data import load_dataset

    _refuse_existing(args.output, args.overwrite)
    trajectory = erosion = None
    for path in args.checkpoint:
        kind = load_checkpoint(path).kind
        if kind == "erosion":
            erosion = path
        elif trajectory is None:
            trajectory = path
        else:
            raise UsageError("give one trajectory checkpoint (and optionally one erosion one)")
    if trajectory is None:
        raise UsageError("a trajectory checkpoint (gpt, lstm or bilstm) is needed")
    ds = load_dataset(args.data)
    table = evaluate_checkpoints(trajectory, erosion, ds, args.split)
    print(format_table(table))
    if args.output:
        atomic_write(args.output, lambda tmp: table.to_csv(tmp, index=False),
                     overwrite=args.overwrite)
        print(f"wrote {args.output}")
    return 0


def _refuse_existing(path: str | Path | None, overwrite: bool) -> None:
    if path is not None and Path(path).exists() and not overwrite:
        raise UsageError(f"{path} exists; pass --overwrite to replace it")


def _experiment_parser(command: str):
    from jsonargparse import ActionYesNo

    from .compare import experiment_parser

    parser = experiment_parser(f"fluidgpt {command}")
    parser.add_argument("--plots", action=ActionYesNo, default=True,
                        help="write the plots next to the table (--no_plots: none)")
    parser.add_argument("--overwrite", type=bool, default=False, nargs="?", const=True,
                        help="replace an existing table (and the plots and logs beside it)")
    return parser


def cmd_compare(argv: Sequence[str]) -> int:
    """compare: --config FILE, --output CSV (default: output of the config), overrides."""
    from .compare import format_table, parse_experiment, run_compare

    config, ns = parse_experiment(argv, _experiment_parser("compare"))
    if config.output is None:
        raise UsageError("give --output compare.csv (or output: in the experiment)")
    _refuse_existing(config.output, ns.overwrite)
    start = time.perf_counter()
    result = run_compare(config, None, config.output)
    print(format_table(result.table))
    print(f"wrote {config.output} ({time.perf_counter() - start:.0f} s)")
    if ns.plots:
        for path in write_compare_plots(result, Path(config.output).parent):
            print(f"plot: {path}")
    return 0


def write_compare_plots(result, out: Path) -> list[Path]:
    """Trajectories of one held-out case, the erosion maps of the GPT pipeline and the
    learning curves, per split."""
    from .plots import plot_erosion, plot_learning_curves, plot_trajectories

    paths = []
    for split, preds in result.predictions.items():
        truth = result.truth[split]
        case = len(truth) // 2
        trajs = {m: p["trajectory"][case].numpy() for m, p in preds.items()
                 if "trajectory" in p}
        if trajs:
            cond = ", ".join(f"{n}={v:.3g}" for n, v in
                             zip(truth.condition_names, truth.conditions[case].tolist()))
            paths.append(plot_trajectories(
                truth.positions[case].numpy(), trajs, truth.valid[case].numpy(),
                out / f"trajectories_{split}.png", f"{split} split, held-out case: {cond}"))
        if result.face_centre is not None:
            for model in ("gpt", "cnn"):
                if "erosion" in preds.get(model, {}):
                    paths.append(plot_erosion(
                        result.face_centre, truth.erosion[case].numpy(),
                        preds[model]["erosion"][case].numpy(),
                        out / f"erosion_{split}_{model}.png",
                        f"{split} split, {model}: erosion / its maximum, held-out case"))
        logs = {k: v for k, v in result.logs.get(split, {}).items()
                if (Path(v) / "metrics.csv").is_file()}
        if logs:
            paths.append(plot_learning_curves(logs, out / f"learning_curves_{split}.png",
                                              title=f"{split} split"))
    return paths


def cmd_demo(argv: Sequence[str]) -> int:
    """demo: compare on the demo experiment; --output DIR (compare.csv and plots go there),
    --data.path (default: a built sweep when there is one, else the shipped sample)."""
    from .compare import format_table, parse_experiment, run_compare

    argv = list(argv)
    out = Path(DEMO_OUTPUT)
    for i, a in enumerate(argv):  # --output is a directory here, not the table's path
        if a == "--output" and i + 1 < len(argv):
            out = Path(argv[i + 1])
            del argv[i:i + 2]
            break
        if a.startswith("--output="):
            out = Path(a.partition("=")[2])
            del argv[i]
            break
    given = [a.split("=")[0] for a in argv]
    head = [] if "--config" in given or not DEMO_CONFIG.is_file() else \
        ["--config", str(DEMO_CONFIG)]
    if "--data.path" not in given and BUILT_DATASET.exists():
        head.append(f"--data.path={BUILT_DATASET}")
    parser = _experiment_parser("demo")
    config, ns = parse_experiment([*head, *argv, f"--output={out / 'compare.csv'}"], parser)
    _refuse_existing(config.output, ns.overwrite)
    print(f"fluidgpt demo on {config.data.path or 'the shipped sample (fluidgpt/sample_data)'}")
    start = time.perf_counter()
    result = run_compare(config, None, out / "compare.csv")
    print(format_table(result.table))
    plots = write_compare_plots(result, out)
    print(f"\nfluidgpt demo done in {time.perf_counter() - start:.0f} s. Look at:\n"
          f"  {out / 'compare.csv'}  (the comparison table)\n"
          + "".join(f"  {p}\n" for p in plots)
          + f"  {out / 'logs'}  (Lightning CSV logs)")
    return 0


# ------------------------------------------------------------------------------ parser
class _OneLineParser(argparse.ArgumentParser):
    """argparse with the one-line error policy: ``prog: message`` on stderr, exit 2, no usage
    block (``--help`` still shows it). Subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .importer import add_import_parser
    from .inspect_checkpoint import add_info_parser

    parser = _OneLineParser(
        prog="fluidgpt",
        description="FLUID-GPT: particle trajectories (GPT-2) and wall erosion (CNN) from CFD "
                    "conditions, with LSTM/BiLSTM and nearest-case baselines.")
    parser.add_argument("--version", action="version", version=f"fluidgpt {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on bad input, show the traceback instead of the one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("dataset", help="build a canonical dataset")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = dsub.add_parser("build", help="run the OpenFOAM sweep of a recipe")
    b.add_argument("--recipe", required=True, help="recipe YAML (datasets/elbow_erosion/...)")
    b.add_argument("--output", required=True, help=".zarr, .zarr.zip or .nc")
    b.add_argument("--workers", type=int, default=2, help="cases run in parallel")
    b.add_argument("--variant", default="physical",
                   choices=("physical", "paper_style", "noise_ceiling"))
    b.add_argument("--profile", default=None, help="a named profile of the recipe (sample, tiny)")
    b.add_argument("--work-dir", default=None, help="where the cases run (default: temporary)")
    b.add_argument("--keep-cases", action="store_true", help="keep the OpenFOAM cases")
    b.add_argument("--overwrite", action="store_true", help="replace an existing output")
    b.set_defaults(func=cmd_dataset_build)
    add_import_parser(dsub)  # import (alias table): OpenFOAM cases or track tables

    # fit/validate/test (LightningCLI) and compare/demo (the experiment parser) are parsed
    # by jsonargparse in main(); listed here for --help
    sub.add_parser("fit", help="train one model (LightningCLI; then the erosion CNN on its "
                               "out-of-fold rollouts): fluidgpt fit --help", add_help=False)
    sub.add_parser("validate", help="score a checkpoint on a validation fold (LightningCLI)",
                   add_help=False)
    sub.add_parser("test", help="score a checkpoint on the test cases (LightningCLI)",
                   add_help=False)

    p = sub.add_parser("predict", help="trajectories and erosion for new conditions")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="trajectory checkpoint, and optionally an erosion checkpoint")
    p.add_argument("--conditions", default=None, help='"name=value,name=value" (one case)')
    p.add_argument("--conditions-file", default=None, help="CSV: one column per condition")
    p.add_argument("--output", required=True, help="pred.zarr or pred.nc")
    p.add_argument("--vtk", nargs="?", const="", default=None, metavar="DIR",
                   help="also write each case's wall map for ParaView as "
                        "DIR/<output stem>_case<k>.vtu (cell data erosion_rate in "
                        "kg m-2 s-1 and wall_loss_rate in mm/yr); --vtk alone writes them "
                        "next to --output. Needs an erosion checkpoint")
    p.add_argument("--plot", default=None, metavar="PATH.png",
                   help="also draw the first case's wall loss (mm/yr) with its raw and "
                        "2 cm-smoothed hot spots. Needs an erosion checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs (the prediction, VTK files, plot)")
    p.set_defaults(func=cmd_predict)

    e = sub.add_parser("evaluate", help="score checkpoints on held-out cases")
    e.add_argument("--checkpoint", action="append", required=True)
    e.add_argument("--data", default=None, help="canonical dataset (default: shipped sample)")
    e.add_argument("--split", default=None, choices=("interior", "block", "random"),
                   help="default: the split the checkpoint was trained on")
    e.add_argument("--output", default=None, help="CSV of the scores")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    e.set_defaults(func=cmd_evaluate)
    add_info_parser(sub)  # info --checkpoint FILE: what a checkpoint holds

    sub.add_parser("compare", help="train and score gpt, lstm, bilstm, nearest, knn, pod "
                                   "(+ CNN): fluidgpt compare --help", add_help=False)
    sub.add_parser("demo", help="compare all models on the demo data (a few minutes): "
                                "fluidgpt demo --help", add_help=False)
    return parser


def _quiet() -> None:
    import lightning.pytorch  # noqa: F401  (it sets its loggers to INFO when imported)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LightningCLI's args parameter.*")


#: Commands parsed by jsonargparse (the experiment schema), not by argparse.
_JSONARGPARSE = {"fit": cmd_lightning, "validate": cmd_lightning, "test": cmd_lightning,
                 "compare": cmd_compare, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    from .config import ConfigError
    from .sources import OpenFOAMNotFoundError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if argv and argv[0] in _JSONARGPARSE:
        command = argv[0]
        run = (lambda: cmd_lightning(argv)) if command in ("fit", "validate", "test") else \
            (lambda: _JSONARGPARSE[command](argv[1:]))
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        command = args.command
        run = lambda: args.func(args)  # noqa: E731
    _quiet()
    try:
        return run()
    except (UsageError, ConfigError, OSError, ValueError, KeyError,
            OpenFOAMNotFoundError) as err:
        if debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"fluidgpt {command}: error: {' '.join(str(message).split())}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
