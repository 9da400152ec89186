"""``tada-zoo shard``: pack an annotation list or a folder of class folders into WebDataset tar shards."""
import argparse
import os
from pathlib import Path

from tada_zoo.data.adapters import read_class_names, scan_class_folders
from tada_zoo.data.datasets import read_annotations
from tada_zoo.data.shards import parse_size, write_shards

from ._args import HelpFormatter

__all__ = ["register"]


def _size(text: str) -> int:
    """argparse type: a shard size (1GB, 500MB, 2GiB, bytes)."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "shard", help="pack videos and labels into WebDataset tar shards (resumable)", formatter_class=HelpFormatter,
        description="Pack the videos of --list (or, without it, of the class folders DATA_ROOT/<class>/<video>) into "
                    "OUTPUT/<prefix>-000000.tar, ... of at most --max-size each: each sample is the video's original "
                    "bytes, its label (.cls, .json with path and class name) and sha256; OUTPUT/index.json says which "
                    "video went into which shard. A killed run resumes: rerun the same command. train, evaluate and "
                    "extract read the shards with --shards 'OUTPUT/<prefix>-{000000..000009}.tar'.")
    p.add_argument("--data-root", required=True, help="folder the list paths are relative to; without --list: a "
                                                       "folder of class folders")
    p.add_argument("--list", default=None, help="annotation list to pack (omit for class folders)")
    p.add_argument("--class-names", default=None, help="class names file (line i = class i) stored with the labels "
                                                       "(class folders: their names)")
    p.add_argument("--output", required=True, help="folder for the shards and index.json (empty, or this packing's)")
    p.add_argument("--max-size", type=_size, default=parse_size("1GB"),
                   help="largest shard (1GB, 500MB, 2GiB, bytes); a larger video gets a shard of its own")
    p.add_argument("--prefix", default=None, help="shard names' start (default: the list's name, e.g. train, or "
                                                  "'shard' for class folders)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    if args.list:
        samples = read_annotations(args.list)
        names = read_class_names(args.class_names) if args.class_names else None
    elif not os.path.isdir(args.data_root):
        raise FileNotFoundError(f"--data-root {args.data_root} is not a folder")
    else:
        names, samples = scan_class_folders(args.data_root)
        if args.class_names:
            names = read_class_names(args.class_names)
    if names is not None and any(isinstance(label, int) and not 0 <= label < len(names) for _, label in samples):
        raise ValueError(f"--class-names {args.class_names} has {len(names)} names, fewer than the labels need")
    prefix = args.prefix or (Path(args.list).stem if args.list else "shard")
    r = write_shards(samples, args.data_root, args.output, args.max_size, prefix, names, progress=not args.quiet)
    shards = r["index"]["shards"]
    print(f"{len(samples)} videos in {len(shards)} shards ({r['written']} written, {r['kept']} already complete) "
          f"-> {args.output}/{prefix}-{{000000..{len(shards) - 1:06d}}}.tar, index {args.output}/index.json")
