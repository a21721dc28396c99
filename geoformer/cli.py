"""The ``geoformer`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import yaml

from . import __version__
from .config import PRESETS, ConfigError, GeoFormerConfig

__all__ = ["main", "parse_grid", "parse_overrides"]


def parse_grid(text: str) -> tuple[int, int]:
    """'721x1440' -> (721, 1440)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"grid must be written HxW (latitudes x longitudes), e.g. 121x240; found {text!r}"
        ) from None
    return h, w


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """['window=[2,6,10]', 'embed_dim=96'] -> {'window': [2, 6, 10], 'embed_dim': 96}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. window=[2,6,10]), found {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _time_step(config: GeoFormerConfig, repeats: int = 2) -> dict[str, float]:
    """Seconds of one forward and one forward+backward at batch 1 on this machine."""
    import torch

    from .model import GeoFormer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = GeoFormer(config).to(device)
    H, W = config.grid
    upper = torch.randn(1, len(config.upper_vars), len(config.levels), H, W, device=device)
    surface = torch.randn(1, len(config.surface_vars), H, W, device=device)

    def timed(fn) -> float:
        fn()  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / repeats

    def forward() -> None:
        with torch.no_grad():
            model(upper, surface)

    def step() -> None:
        u, s = model(upper, surface)
        (u.square().mean() + s.square().mean()).backward()

    return {"device": device, "forward_s": timed(forward), "train_step_s": timed(step)}


def cmd_info(args: argparse.Namespace) -> int:
    from .summary import format_summary, summarize

    overrides = parse_overrides(args.set or [])
    if args.grid:
        overrides["grid"] = args.grid
    config = GeoFormerConfig.from_preset(args.preset, **overrides)
    summary = summarize(config, memory=not args.no_memory)
    if args.time:
        summary["timing_batch1"] = _time_step(config)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
        if args.time:
            t = summary["timing_batch1"]
            print(f"timing on {t['device']} (batch 1): forward {t['forward_s']:.3f} s, "
                  f"training step {t['train_step_s']:.3f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geoformer",
        description="Pangu-Weather's 3D Earth-specific transformer: network, training, "
                    "forecasts and scores.")
    parser.add_argument("--version", action="version", version=f"geoformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser(
        "info", help="parameter count, token grids, window types and memory of a configuration")
    info.add_argument("--preset", default="pangu", choices=sorted(PRESETS),
                      help="named configuration (default: pangu, the released 0.25 deg model)")
    info.add_argument("--grid", type=parse_grid, help="grid as HxW, e.g. 121x240")
    info.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override any configuration field, e.g. --set window=[2,6,10]")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--no-memory", action="store_true",
                      help="skip the activation-memory estimate")
    info.add_argument("--time", action="store_true",
                      help="also time a forward pass and a training step at batch 1 "
                           "(allocates real memory: use small grids on a CPU)")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"geoformer {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
