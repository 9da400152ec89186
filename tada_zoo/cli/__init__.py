"""The ``tada-zoo`` command: thin argparse front ends over the library, one module per command.

Each module has ``register(subparsers)``; library code never imports this package.
"""
import argparse
import sys
from typing import List, Optional

from . import convert, evaluate, extract, make_list, profile, train

COMMANDS = (profile, make_list, convert, train, evaluate, extract)  # each has register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tada-zoo", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        if getattr(args, "debug", False):
            raise
        print(f"tada-zoo {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0
