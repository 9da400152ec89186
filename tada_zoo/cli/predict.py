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
from tada_zoo._files import check_writable
from tada_zoo.inference.predict import load_classifier, top_dicts
from tada_zoo.inference.timeline import write_timeline

from ._args import HelpFormatter, add_data_args, positive_float, positive_int, protocol_overrides

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
    p.add_argument("input", metavar="VIDEO_OR_FOLDER", nargs="?", default=None,
                   help="a video file, or a folder of videos (searched recursively); with --timeline also - "
                        "(standard input, e.g. ffmpeg ... -f mpegts -)")
    p.add_argument("--shards", default=None, metavar="PATTERN",
                   help="instead of VIDEO_OR_FOLDER: every video of WebDataset shards of tada-zoo shard, e.g. "
                        "'val/val-{000000..000003}.tar' (pip install 'tada-zoo[shards]')")
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
    p.add_argument("--timeline", action="store_true",
                   help="a long video: scores per window over the whole video, decoded as a stream, written to "
                        "--output as timeline.csv / .json / .png with the segments where the top class changes")
    p.add_argument("--output", default=None, help="--timeline: folder for timeline.csv, timeline.json, timeline.png")
    p.add_argument("--window-seconds", type=positive_float, default=None,
                   help="--timeline: window length (default: the model's clip, e.g. 8 frames x 8 at 30 fps = 2.13 s; "
                        "segment-sampled models 4 s)")
    p.add_argument("--stride-seconds", type=positive_float, default=None,
                   help="--timeline: a window every this many seconds (default: half a window)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    add_data_args(p)
    p.set_defaults(func=_main)


def _check_timeline_flags(args: argparse.Namespace) -> None:
    if args.timeline:
        if not args.output:
            raise ValueError("--timeline needs --output DIR (where timeline.csv, .json and .png go)")
        check_writable(args.output, "--output")
        if args.input != "-" and not Path(args.input).is_file():
            raise FileNotFoundError(f"{args.input}: --timeline takes one video file (or - for standard input)")
        return
    extra = [f for f, v in (("--output", args.output), ("--window-seconds", args.window_seconds),
                            ("--stride-seconds", args.stride_seconds)) if v is not None]
    if extra or args.input == "-":
        raise ValueError(f"{extra[0] if extra else 'reading - (standard input)'} needs --timeline")


def _timeline(args: argparse.Namespace, clf, device) -> None:
    """``--timeline``: one long video (or a pipe), window by window."""
    result = clf.timeline(args.input, args.window_seconds, args.stride_seconds, topk=args.top_k,
                          batch_size=args.batch_size, device=device, autocast_dtype=autocast_dtype(args.amp, device))
    files = write_timeline(result, args.output)
    last = result["windows"][-1]["end"]
    print(f"{len(result['windows'])} windows of {result['window_seconds']:.3g} s over {last:.1f} s, "
          f"{len(result['segments'])} segments:")
    for seg in result["segments"][:20]:
        name = seg["name"] if seg["name"] is not None else f"class {seg['index']}"
        print(f"  {seg['start']:8.2f} - {seg['end']:8.2f} s  {name} ({seg['score']:.3f})")
    if len(result["segments"]) > 20:
        print(f"  ... {len(result['segments']) - 20} more in timeline.json")
    print("wrote " + ", ".join(str(f) for f in files))


def _main(args: argparse.Namespace) -> None:
    if bool(args.input) == bool(args.shards):
        raise ValueError("give a VIDEO_OR_FOLDER or --shards PATTERN (one of them)")
    _check_timeline_flags(args)
    if args.timeline:
        return _run_timeline(args)
    src = Path(args.input) if args.input else None
    if src is not None and not src.is_dir() and not src.is_file():
        raise FileNotFoundError(f"{src} is neither a video file nor a folder")
    device = init_distributed(args.device)
    try:
        clf = _classifier(args)
        results = _predict_shards(args, clf, device) if args.shards else _predict_files(args, clf, src, device)
        if is_main_process():
            _print(args, clf, results)
    finally:
        cleanup_distributed()


def _classifier(args: argparse.Namespace):
    over = {k: v for k, v in protocol_overrides(args).items() if v is not None}
    clf = load_classifier(args.model, args.checkpoint, labels=args.labels, model_kwargs=args.model_kwargs,
                          num_classes=[args.num_classes] if args.num_classes else None,
                          clips=None if args.timeline else args.clips, crops=args.crops, **over)
    if clf.note and is_main_process():
        print(f"note: {clf.note}", file=sys.stderr)
    return clf


def _predict_files(args: argparse.Namespace, clf, src: Path, device) -> list:
    """A video, or every video under a folder (unreadable ones skipped, one warning line each)."""
    folder, skipped = src.is_dir(), []
    videos = list_videos(src, skipped=skipped) if folder else [src]
    main = is_main_process()
    if main:
        print(f"{clf.name}: {len(videos)} video{'s' * (len(videos) > 1)}, {clf.protocol.describe()}", file=sys.stderr)
        if skipped:
            print(summarize_skipped(skipped, src), file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        results = clf.predict(videos, args.top_k, skip_unreadable=folder, batch_size=args.batch_size,
                              workers=args.workers, device=device, autocast_dtype=autocast_dtype(args.amp, device),
                              progress=not args.quiet and main)
    if main:
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    if not results:
        raise ValueError(f"none of the {len(videos)} videos under {src} could be read")
    for r in results:  # paths as the user sees them: relative to the folder given
        r["video"] = os.path.relpath(r["video"], os.path.abspath(src)) if folder else str(src)
    return results


def _predict_shards(args: argparse.Namespace, clf, device) -> list:
    """Every video of WebDataset shards, named by its path in the shards' index."""
    if is_main_process():
        print(f"{clf.name}: --shards {args.shards}, {clf.protocol.describe()}", file=sys.stderr)
    return clf.predict_shards(args.shards, args.top_k, batch_size=args.batch_size, workers=args.workers,
                              device=device, autocast_dtype=autocast_dtype(args.amp, device),
                              progress=not args.quiet and is_main_process())


def _print(args: argparse.Namespace, clf, results: list) -> None:
    if args.json:
        print(json.dumps([dict(video=r["video"], top=top_dicts(r["top"])) for r in results], indent=1))
        return
    for r in results:
        print(r["video"])
        heads = [r["top"]] if len(clf.heads) == 1 else r["top"]
        for h, top in enumerate(heads):
            if len(heads) > 1:
                print(f"  head {h}:")
            for index, name, score in top:
                print(f"  {score:.4f}  {name} ({index})" if name is not None else f"  {score:.4f}  class {index}")


def _run_timeline(args: argparse.Namespace) -> None:
    device = init_distributed(args.device)
    try:
        if not is_main_process():
            raise ValueError("--timeline reads one video in one process; run it without torchrun")
        clf = _classifier(args)
        print(f"{clf.name}: timeline of {'standard input' if args.input == '-' else args.input}, "
              f"{clf.protocol.describe(clips=1)} per window", file=sys.stderr)
        _timeline(args, clf, device)
    finally:
        cleanup_distributed()
