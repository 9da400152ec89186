"""``tada-zoo predict``: top-k class names and scores of a video or of every video in a folder."""
import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from tada_zoo.engine.distributed import cleanup_distributed, init_distributed, is_main_process
from tada_zoo.engine.trainer import autocast_dtype
from tada_zoo.data.folders import summarize_skipped
from tada_zoo.inference.features import list_videos
from tada_zoo.inference.predict import load_classifier, top_dicts

from ._args import HelpFormatter, add_data_args, positive_int, protocol_overrides

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="top-k class names and scores of videos", formatter_class=HelpFormatter,
        description="Classify one video, or every video under a folder (recursively), with the model's own "
                    "evaluation protocol (its clips x crops views, softmax averaged, as evaluate does). A file "
                    "that cannot be read is an error for a single video and skipped with a warning in a folder. "
                    "Class names: --labels, else the checkpoint's (train stores them), else the dataset's "
                    "(Something-Something V2 tags); Kinetics tags print class indices, since the original code "
                    "never published its Kinetics label order.")
    p.add_argument("input", metavar="VIDEO_OR_FOLDER", help="a video file, or a folder of videos (searched recursively)")
    p.add_argument("--model", default=None,
                   help="registered NAME[.TAG]; without --checkpoint its Hub weights are used (default: what "
                        "--checkpoint says)")
    p.add_argument("--checkpoint", default=None, help="weights written by train (or any .safetensors / checkpoint)")
    p.add_argument("--labels", default=None, help="class names file, line i = class i (e.g. a run's classes.txt)")
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="classifier size, for a checkpoint that does not say it (default: the checkpoint's or the cfg's)")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes printed per video")
    p.add_argument("--json", action="store_true", help="print one JSON list of {video, top: [{index, name, score}]}")
    p.add_argument("--clips", type=positive_int, default=None, help="clips per video (default: the model's protocol)")
    p.add_argument("--crops", type=int, choices=(1, 3), default=None, help="crops per clip (default: the model's protocol)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    add_data_args(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    src = Path(args.input)
    folder = src.is_dir()
    if not folder and not src.is_file():
        raise FileNotFoundError(f"{src} is neither a video file nor a folder")
    skipped = []
    videos = list_videos(src, skipped=skipped) if folder else [src]
    device = init_distributed(args.device)
    try:
        over = {k: v for k, v in protocol_overrides(args).items() if v is not None}
        clf = load_classifier(args.model, args.checkpoint, labels=args.labels, model_kwargs=args.model_kwargs,
                              num_classes=[args.num_classes] if args.num_classes else None, clips=args.clips,
                              crops=args.crops, **over)
        main = is_main_process()
        if main:
            print(f"{clf.name}: {len(videos)} video{'s' * (len(videos) > 1)}, {clf.protocol.describe()}", file=sys.stderr)
            if skipped:
                print(summarize_skipped(skipped, src), file=sys.stderr)
            if clf.note:
                print(f"note: {clf.note}", file=sys.stderr)
        with warnings.catch_warnings(record=True) as caught:  # skipped unreadable videos: one line each
            warnings.simplefilter("always", RuntimeWarning)
            results = clf.predict(videos, args.top_k, skip_unreadable=folder, batch_size=args.batch_size,
                                  workers=args.workers, device=device, autocast_dtype=autocast_dtype(args.amp, device),
                                  progress=not args.quiet and main)
        if not main:
            return
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        for r in results:  # paths as the user sees them: relative to the folder given
            r["video"] = os.path.relpath(r["video"], os.path.abspath(src)) if folder else str(src)
        if args.json:
            print(json.dumps([dict(video=r["video"], top=top_dicts(r["top"])) for r in results], indent=1))
        else:
            for r in results:
                print(r["video"])
                heads = [r["top"]] if len(clf.heads) == 1 else r["top"]
                for h, top in enumerate(heads):
                    if len(heads) > 1:
                        print(f"  head {h}:")
                    for index, name, score in top:
                        print(f"  {score:.4f}  {name} ({index})" if name is not None else f"  {score:.4f}  class {index}")
        if not results:
            raise ValueError(f"none of the {len(videos)} videos under {src} could be read")
    finally:
        cleanup_distributed()
