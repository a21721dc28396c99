"""The ``fluidgpt`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluidgpt",
        description="FLUID-GPT: particle trajectories (GPT-2) and wall erosion (CNN) from CFD "
                    "conditions, with LSTM/BiLSTM baselines.")
    parser.add_argument("--version", action="version", version=f"fluidgpt {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
