"""The ``tada-zoo`` command: thin argparse front ends over the library, one module per command.

Each module has ``register(subparsers)``; library code never imports this package.
"""
import argparse
import os
import sys
from typing import List, Optional

from tada_zoo.data import VideoDecodeError
from tada_zoo.engine.distributed import peer_failure
from tada_zoo.models import WeightsNotAvailableError

from . import (bench_data, convert, download, evaluate, export, extract, inflate, make_list, predict, profile, push,
               serve, shard, train, visualize)

COMMANDS = (profile, make_list, shard, bench_data, convert, inflate, download, train, evaluate, extract, predict,
            visualize, export, push, serve)  # each has register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tada-zoo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _version() -> str:
    """The installed distribution's version (what pip shows)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tada-zoo")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from tada_zoo import __version__
        return f"{__version__} (not installed)"


def _one_line(e: BaseException) -> str:
    """The message of an error; for one re-raised from a DataLoader worker, the worker's own message
    (its last line) instead of the worker's traceback."""
    text = str(e).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].strip()
    return " ".join(text.split("\n")) if text else type(e).__name__


def main(argv: Optional[List[str]] = None) -> int:
    """Run a command; every error is one line naming the file or flag (``--debug`` or
    ``TADA_ZOO_DEBUG=1`` shows the traceback)."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("TADA_ZOO_DEBUG", "") not in ("", "0")
    try:
        args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"tada-zoo {args.command}: interrupted; what was finished is saved (run the same command again "
              "to resume)", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, VideoDecodeError, WeightsNotAvailableError) as e:
        if debug:
            raise
        print(f"tada-zoo {args.command}: error: {peer_failure(e) or _one_line(e)}", file=sys.stderr)
        return 1
    return 0
