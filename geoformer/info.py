"""``geoformer info``: what a configuration's network costs, or what a checkpoint holds.

    geoformer info --preset P [--grid HxW] [--network.FIELD=VALUE ...] [--json]
    geoformer info --checkpoint FILE [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .config import PRESETS, ConfigError, GeoFormerConfig

__all__ = ["parse_grid", "info_parser", "run_info"]


def parse_grid(text: str) -> tuple[int, int]:
    """'721x1440' -> (721, 1440)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"grid must be written HxW (latitudes x longitudes), e.g. 121x240; found {text!r}"
        ) from None
    return h, w


def info_parser():
    """``geoformer info``'s parser: jsonargparse, typed by :class:`~geoformer.config.Network`
    (the ``model.network`` section of an experiment), with one-line errors."""
    from .config import Network
    from .train import OneLineErrorParser

    parser = OneLineErrorParser(
        prog="geoformer info", description="parameter count, token grids, window types and "
                                           "memory of a configuration, or what a checkpoint "
                                           "holds (--checkpoint)")
    parser.add_argument("--config", action="config", help="a YAML file of these options")
    parser.add_argument("--preset", default="pangu", choices=sorted(PRESETS),
                        help="named configuration (default: pangu, the released 0.25 deg model)")
    parser.add_class_arguments(Network, "network", skip={"preset"})
    parser.add_argument("--grid", type=str | None, default=None,
                        help="grid as HxW, e.g. 121x240")
    parser.add_argument("--checkpoint", type=str | None, default=None,
                        help="describe this checkpoint instead: kind, format version, sha256, "
                             "grid, levels, variables, statistics period, training data, "
                             "parameter count (read with weights_only; nothing in it runs)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the activation-memory estimate")
    parser.add_argument("--time", action="store_true",
                        help="also time a forward pass and a training step at batch 1 "
                             "(allocates real memory: use small grids on a CPU)")
    return parser


def _checkpoint_info(args: argparse.Namespace, overrides: dict) -> int:
    """``geoformer info --checkpoint FILE [--json]``."""
    from .inspect_checkpoint import describe_checkpoint, format_checkpoint

    if overrides or args.grid or args.time:
        raise ConfigError("--checkpoint describes a file: --grid, --time and --network.* "
                          "describe a configuration (give one or the other)")
    info = describe_checkpoint(args.checkpoint)
    print(json.dumps(info, indent=2) if args.json else format_checkpoint(info))
    return 0


def run_info(argv: Sequence[str]) -> int:
    """``geoformer info --preset P [--grid HxW] [--network.FIELD=VALUE ...]``, or
    ``geoformer info --checkpoint FILE``."""
    from .summary import format_summary, summarize, time_step

    args = info_parser().parse_args(list(argv))
    overrides = {k: v for k, v in vars(args.network).items() if v is not None}
    if args.checkpoint:
        return _checkpoint_info(args, overrides)
    try:
        if args.grid:
            overrides["grid"] = parse_grid(args.grid)
        config = GeoFormerConfig.from_preset(args.preset, **overrides)
    except (ValueError, argparse.ArgumentTypeError) as err:
        print(f"geoformer info: {err}", file=sys.stderr)
        return 2
    summary = summarize(config, memory=not args.no_memory)
    if args.time:
        summary["timing_batch1"] = time_step(config)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
        if args.time:
            t = summary["timing_batch1"]
            print(f"timing on {t['device']} (batch 1): forward {t['forward_s']:.3f} s, "
                  f"training step {t['train_step_s']:.3f} s")
    return 0
