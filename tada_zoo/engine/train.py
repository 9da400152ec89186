"""``tada-zoo train``: fine-tune a registered model on an annotation list (also under torchrun)."""
import argparse
import dataclasses
import json
import os
from typing import Optional

from .checkpoint import create_video_model
from .distributed import cleanup_distributed, init_distributed, is_main_process
from .metrics import parse_num_classes
from .recipes import RECIPES
from .trainer import TrainConfig, fit, resolve_config, seed_everything

__all__ = ["register", "default_frame_interval", "build_transforms"]

_INTERVALS = {8: 8, 16: 5, 32: 2}  # Appendix C.1: interval per clip length


def default_frame_interval(num_frames: int) -> int:
    return _INTERVALS.get(num_frames, max(1, 64 // num_frames))


def build_transforms(pretrained_cfg, input_size: Optional[int], test_size: Optional[int],
                     hflip: Optional[bool] = None, num_crops: int = 1, **train_overrides):
    """(train, eval) transforms from the model's cfg; ``input_size`` / ``test_size`` override crops."""
    from tada_zoo.data import transforms_from_cfg

    tr = dict(train_overrides)
    if input_size:
        tr.update(crop_size=input_size, scale_range=(round(256 * input_size / 224), round(320 * input_size / 224)))
    if hflip is not None:
        tr["hflip"] = hflip
    ev = dict(num_crops=num_crops)
    test_size = test_size or (round(input_size * 256 / 224) if input_size else None)
    if test_size:
        ev.update(crop_size=test_size, short_side=test_size)
    return transforms_from_cfg(pretrained_cfg, train=True, **tr), transforms_from_cfg(pretrained_cfg, train=False, **ev)


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-frames", type=int, default=None, help="frames per clip (default: the model's)")
    p.add_argument("--sampling", choices=("interval", "segment"), default=None,
                   help="frame sampling (default: the pretrained cfg's, else interval)")
    p.add_argument("--frame-interval", type=int, default=None, help="interval sampling stride (default 8/5/2 for 8/16/32 frames)")
    p.add_argument("--test-size", type=int, default=None, help="evaluation crop and short side (default: the cfg's)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="data loader processes per process")
    p.add_argument("--model-kwargs", type=json.loads, default={},
                   help='extra model arguments as JSON, e.g. \'{"layers": [1, 1, 1, 1]}\'')
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="fine-tune a video model (torchrun for several GPUs)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="registered architecture, e.g. tada2d_r50_8f")
    p.add_argument("--data-root", required=True, help="folder the list paths are relative to")
    p.add_argument("--train-list", required=True)
    p.add_argument("--val-list", default=None)
    p.add_argument("--num-classes", required=True, help="N, or N1,N2 for several heads (EPIC verb,noun)")
    p.add_argument("--output", required=True, help="run folder: checkpoints, metrics.jsonl, curves.png")
    init = p.add_mutually_exclusive_group()
    init.add_argument("--pretrained", nargs="?", const=True, default=None,
                      help="start from registered weights: the default tag, or the tag given (e.g. k400)")
    init.add_argument("--checkpoint-init", default=None, help="start from a local .safetensors / checkpoint")
    init.add_argument("--inflate-from", default=None, help="inflate 2D ImageNet weights (timm name or file)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="paper preset (default: tadaconvnext_k400 for ConvNeXt/former models, else tada2d_k400)")
    add_data_args(p)
    p.add_argument("--input-size", type=int, default=None, help="training crop (default: the cfg's)")
    p.add_argument("--no-hflip", action="store_true", help="no horizontal flips (direction-sensitive labels)")
    p.add_argument("--val-clips", type=int, default=1, help="clips per video in per-epoch validation")
    # every TrainConfig field not set above becomes a flag; None = recipe value
    skip = {"model", "num_classes", "output", "recipe", "workers", "progress", "stop_after_epoch", "resume", "amp",
            "ema", "compile", "sync_bn"}
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        default = f.default
        typ = {int: int, float: float, str: str}.get(type(default), float)
        if f.name in ("epochs", "max_steps_per_epoch", "eval_every", "batch_size", "seed"):
            typ = int
        if f.name in ("opt", "sched", "rand_augment"):
            typ = str
        p.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=default)
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision")
    p.add_argument("--ema", action="store_true", help="keep an EMA of the weights (used for validation and checkpoints)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes")
    p.add_argument("--resume", default="auto",
                   help="last.pt to resume from; 'auto' resumes from OUTPUT/last.pt when present, 'none' never")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    from tada_zoo.data import VideoDataset

    device = init_distributed(args.device)
    try:
        heads = parse_num_classes(args.num_classes)
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and k not in ("num_classes", "resume")})
        cfg = dataclasses.replace(cfg, num_classes=heads, progress=not args.quiet,
                                  resume=None if args.resume == "none" else args.resume)
        cfg = resolve_config(cfg)
        seed_everything(cfg.seed)  # same initial weights on every rank
        model = create_video_model(
            args.model, sum(heads), pretrained=args.pretrained, checkpoint_init=args.checkpoint_init,
            inflate_from=args.inflate_from, drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate,
            **(dict(num_frames=args.num_frames) if args.num_frames else {}), **args.model_kwargs)
        pcfg = model.pretrained_cfg or {}
        num_frames = args.num_frames or getattr(model, "num_frames", None) or pcfg.get("num_frames") or 8
        sampling = args.sampling or pcfg.get("sampling") or "interval"
        interval = args.frame_interval or pcfg.get("frame_interval") or default_frame_interval(num_frames)
        train_tf, eval_tf = build_transforms(
            pcfg, args.input_size, args.test_size, hflip=False if args.no_hflip else None,
            rand_augment=cfg.rand_augment, random_erasing=cfg.random_erasing or 0.0)
        common = dict(num_frames=num_frames, sampling=sampling, frame_interval=interval)
        train_set = VideoDataset(args.data_root, args.train_list, train=True, transform=train_tf, **common)
        val_set = None
        if args.val_list:
            val_set = VideoDataset(args.data_root, args.val_list, train=False, num_clips=args.val_clips,
                                   transform=eval_tf, **common)
        if is_main_process():
            print(f"{args.model}: {len(train_set.samples)} training videos, "
                  f"{len(val_set.samples) if val_set else 0} validation videos, {num_frames} frames "
                  f"({sampling}{f', interval {interval}' if sampling == 'interval' else ''}), recipe {cfg.recipe}, "
                  f"{cfg.opt} lr {cfg.lr:.3g} (head {cfg.head_lr:.3g}), {cfg.epochs} epochs on {device}")
        summary = fit(model, train_set, val_set, cfg, device)
        if is_main_process():
            print(json.dumps(dict(best=summary["best"], ranks_in_sync=summary["ranks_in_sync"],
                                  output=args.output)))
    finally:
        cleanup_distributed()
