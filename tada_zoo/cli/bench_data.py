"""``tada-zoo bench-data``: decode + transform clips/s of one loader worker for a model's training and test
pipelines, and the ``--workers`` that would feed the model."""
import argparse
import os

from tada_zoo.data.bench import bench_loading, folder_samples, suggest_workers
from tada_zoo.data.protocol import protocol_from_cfg
from tada_zoo.engine.throughput import model_clips_per_s, usable_cores
from tada_zoo.models import create_video_model

from ._args import HelpFormatter, positive_float, positive_int

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench-data", help="clips/s one loader worker decodes for a model's pipelines; a --workers suggestion",
        formatter_class=HelpFormatter,
        description="Read the videos of --list (or every video under --data-root, or --shards) through the model's "
                    "training and test pipelines (the ones train and evaluate use) in one process with one thread, "
                    "which is what one DataLoader worker does, and print clips/s per worker. Then time the model "
                    "(random weights, random clips: training steps and test forwards) to say how many workers keep "
                    "it fed, unless --target gives the clips/s to reach.")
    p.add_argument("--model", required=True, help="NAME[.TAG]: its data protocol (frames, sampling, sizes, views)")
    p.add_argument("--data-root", default=None, help="folder of the videos (the root of --list's paths)")
    p.add_argument("--list", default=None, help="annotation list (default: every video under --data-root)")
    p.add_argument("--shards", default=None, help="WebDataset shards (tada-zoo shard) instead of --data-root")
    p.add_argument("--workers", type=positive_int, default=None, help="loader workers you plan (default: the cores)")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="how long each pipeline is read")
    p.add_argument("--batch-size", type=positive_int, default=4, help="batch of the model timing")
    p.add_argument("--target", type=positive_float, default=None,
                   help="clips/s the loader must deliver (skips timing the model)")
    p.add_argument("--device", default="cuda" if _has_cuda() else "cpu", help="device of the model timing")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _datasets(args, protocol) -> dict:
    """The training and test datasets the commands would build from these flags."""
    if args.shards:
        if args.data_root or args.list:
            raise ValueError("--shards replaces --data-root and --list")
        return {mode: protocol.dataset(shards=args.shards, train=mode == "train") for mode in ("train", "test")}
    if args.data_root is None:
        raise ValueError("--data-root DIR (or --shards PATTERN) is needed")
    if not os.path.isdir(args.data_root):
        raise FileNotFoundError(f"--data-root {args.data_root} is not a folder")
    extra = {} if args.list else dict(samples=folder_samples(args.data_root))
    where = args.list or args.data_root
    out = {mode: protocol.dataset(args.data_root, where, train=mode == "train", **extra) for mode in ("train", "test")}
    out["test"] = out["test"].per_video()  # evaluate decodes each video once for all its clips
    return out


def _main(args: argparse.Namespace) -> None:
    import torch

    model = create_video_model(args.model, 400, pretrained=False)
    protocol = protocol_from_cfg(model.pretrained_cfg)
    datasets = _datasets(args, protocol)
    cores = usable_cores()
    workers = args.workers or cores
    print(f"{args.model}: one worker (one process, one thread), {args.seconds:g} s per pipeline; {cores} cores")
    print(f"  train: {protocol.describe(train=True)}\n  test:  {protocol.describe()}")
    print(f"{'pipeline':<9} {'clips/s per worker':>18} {'ms per clip':>12} {f'clips/s, {workers} workers':>20}")
    rates = {}
    for mode, ds in datasets.items():
        r = bench_loading(ds, args.seconds, clips_per_item=1 if mode == "train" else protocol.clips)
        rates[mode] = r["clips_per_s"]
        print(f"{mode:<9} {r['clips_per_s']:>18.3g} {r['ms_per_clip']:>12.1f} {r['clips_per_s'] * workers:>20.3g}")
    device = torch.device(args.device)
    for mode in ("train", "test"):
        if args.target:
            need, how = args.target, "--target"
        else:
            crop = protocol.train_crop if mode == "train" else protocol.test_crop
            shape = (3, protocol.num_frames, crop, crop)
            per_view = model_clips_per_s(model, shape, args.batch_size, train=mode == "train", device=device)
            need = per_view / (1 if mode == "train" else protocol.crops)
            how = (f"the model's {'training step' if mode == 'train' else 'test forward'} on {device}, "
                   f"batch {args.batch_size}{'' if mode == 'train' else f', {protocol.crops} crops a clip'}")
        s = suggest_workers(need, rates[mode], cores)
        note = "" if s["fits"] else (f"; more than {cores} cores allow: re-encode (short side 256, dense GOP) or "
                                     "use shards, see docs/performance.md")
        print(f"{mode}: the model takes {need:.3g} clips/s ({how}): --workers {s['workers']}{note}")
