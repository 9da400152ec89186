"""The ``tada-zoo`` command. Each sub-command lives with its feature and registers itself."""
import argparse
import importlib
import sys
from typing import List, Optional

# modules with a ``register(subparsers)`` function, one per sub-command family
COMMAND_MODULES = [
    "tada_zoo.profile",
    "tada_zoo.data.adapters",
    "tada_zoo.convert",
    "tada_zoo.engine.train",
    "tada_zoo.engine.evaluate",
    "tada_zoo.features",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tada-zoo", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    import tada_zoo  # noqa: F401  (registers the models with timm)

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        if getattr(args, "debug", False):
            raise
        print(f"tada-zoo {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
