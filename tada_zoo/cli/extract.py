"""``tada-zoo extract``: features of every video (sliding windows), resumable, also under torchrun."""
import argparse
from pathlib import Path

from tada_zoo._files import check_writable
from tada_zoo.engine.checkpoint import resolve_run, run_protocol
from tada_zoo.engine.distributed import check_shared_folder, cleanup_distributed, init_distributed, is_main_process
from tada_zoo.engine.trainer import autocast_dtype
from tada_zoo.data.folders import summarize_skipped
from tada_zoo.data.shards import read_shard_index
from tada_zoo.inference.features import FeatureExtractor, extract_videos, list_videos

from ._args import HelpFormatter, add_decoder_arg, add_pretrained_args, json_object, non_negative_int, positive_int, resolve_pretrained

__all__ = ["register"]

_MAX_LISTED = 20  # failed videos printed one per line; the rest are in index.jsonl


def _layer(text: str):
    """argparse type: 'pooled', 'map' or a feature level index."""
    if text in ("pooled", "map"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'pooled', 'map' or a feature level index, got {text!r}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser("extract", help="features of every video (sliding windows), resumable",
                              formatter_class=HelpFormatter)
    p.add_argument("--model", default=None,
                   help="registered model, e.g. tada2d_r50_8f.k400 (default: what --checkpoint says, from train)")
    p.add_argument("--checkpoint", default=None, help="local weights (.safetensors / checkpoint); head ignored")
    add_pretrained_args(p, p)
    p.add_argument("--input", default=None, help="a video file or a folder of videos (recursive)")
    p.add_argument("--shards", default=None, metavar="PATTERN",
                   help="instead of --input: WebDataset shards of tada-zoo shard, e.g. "
                        "'out/train-{000000..000003}.tar', a pipe: command or a URL; features are named by the "
                        "videos' paths in the list")
    p.add_argument("--output", required=True,
                   help="folder: one feature file per video (its name + .safetensors / .npy), "
                        "index.jsonl, settings.json")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute every video even if --output holds features made with other settings "
                        "(its old index and the files it lists are removed)")
    p.add_argument("--layer", type=_layer, default="pooled",
                   help="'pooled' (clip embedding), 'map' (unpooled) or a level index")
    p.add_argument("--clip-len", type=positive_int, default=None, help="frames per window (default: the model's)")
    p.add_argument("--frame-interval", type=positive_int, default=None, help="frame step inside a window (default: the cfg's, else 8/5/2)")
    p.add_argument("--clip-stride", type=positive_int, default=None, help="frames between window starts (default: clip-len x interval)")
    p.add_argument("--size", type=positive_int, default=None, help="crop and short side (default: a trained run's test crop, else the cfg's)")
    p.add_argument("--format", choices=("safetensors", "npy"), default="safetensors", help="feature file format")
    p.add_argument("--batch-size", type=positive_int, default=8, help="windows per forward pass")
    p.add_argument("--workers", type=non_negative_int, default=2, help="decoding processes")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--model-kwargs", type=json_object, default={},
                   help="extra model arguments as a JSON object (a checkpoint written by train already says them)")
    add_decoder_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    if bool(args.input) == bool(args.shards):
        raise ValueError("give --input VIDEO_OR_DIR or --shards PATTERN (one of them)")
    skipped, shards, videos, root = [], None, [], None
    if args.shards:
        shards = read_shard_index(args.shards)
    else:
        videos = list_videos(args.input, skipped=skipped)  # before the model: a wrong --input fails fast
        root = Path(args.input) if Path(args.input).is_dir() else None
    check_writable(args.output, "--output")
    run = resolve_run(args.checkpoint, args.model, None, args.model_kwargs)  # --model / kwargs from the checkpoint
    device = init_distributed(args.device)
    main = is_main_process()
    if skipped and main:
        print(summarize_skipped(skipped, root))
    kwargs = dict(run["model_kwargs"])
    if args.clip_len:
        kwargs["num_frames"] = args.clip_len
    try:
        check_shared_folder(args.output, "--output")  # one index, one set of feature files for every node
        ex = FeatureExtractor.from_name(run["model"], args.checkpoint, resolve_pretrained(args, run["model"]), kwargs,
                                        layer=args.layer,
                                        batch_size=args.batch_size, device=device,
                                        autocast_dtype=autocast_dtype(args.amp, device))
        # the model's test transform (one centre crop); the windows are extract's own, in frames of the file
        protocol = run_protocol(ex.model, run, frame_interval=args.frame_interval, test_crop=args.size,
                                test_short_side=args.size)  # the run's stored input size, unless --size
        clip_len, interval = protocol.num_frames, protocol.frame_interval
        stride = args.clip_stride or clip_len * interval
        tf = protocol.eval_transform(crops=1)
        settings = dict(model_name=run["model"], model_kwargs=run["model_kwargs"], pretrained=args.pretrained,
                        checkpoint=str(Path(args.checkpoint).resolve()) if args.checkpoint else None)
        r = extract_videos(ex, videos, args.output, clip_len, interval, stride, tf, args.workers, args.format,
                           root, progress=not args.quiet and main, settings=settings, overwrite=args.overwrite,
                           shards=shards)
    finally:
        cleanup_distributed()
    if not main:
        return
    failed, corrupt = r["failed"], set(r["corrupt"])
    print(f"{r['done']} videos extracted ({r['clips']} clips, {r['seconds']:.1f}s), {r['skipped']} already done, "
          f"{len(failed)} failed{f' ({len(corrupt)} unreadable)' if corrupt else ''} -> {args.output}/index.jsonl"
          + (f"; {r['throughput']}" if r["clips"] else ""))
    if r["warning"]:
        print(r["warning"])
    for k, e in list(failed.items())[:_MAX_LISTED]:
        print(f"  {'unreadable' if k in corrupt else 'failed'}: {k}: {e}")
    if len(failed) > _MAX_LISTED:
        print(f"  ... and {len(failed) - _MAX_LISTED} more in {args.output}/index.jsonl")
    bad = [k for k in failed if k not in corrupt]
    if bad:  # unreadable files are the data's fault and stay skipped; these need fixing (weights, --amp)
        raise RuntimeError(f"{len(bad)} videos failed (e.g. {bad[0]}: {failed[bad[0]]}); "
                           f"see {args.output}/index.jsonl, a rerun retries them")
