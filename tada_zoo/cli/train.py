"""``tada-zoo train``: fine-tune a registered model on an annotation list (also under torchrun)."""
import argparse
import dataclasses
import json

from tada_zoo.data.protocol import FLIP_LABELS, protocol_from_cfg
from tada_zoo.engine.distributed import cleanup_distributed, init_distributed, is_main_process
from tada_zoo.engine.metrics import parse_num_classes
from tada_zoo.engine.recipes import RECIPES
from tada_zoo.engine.trainer import TrainConfig, fit, resolve_config, seed_everything
from tada_zoo.models._builder import create_video_model

from ._args import (add_data_args, non_negative_float, positive_float, positive_int, probability, protocol_overrides,
                    require_readable)

__all__ = ["register"]

# TrainConfig fields as flags, validated where parsed (the rest: non-negative floats)
_FIELD_TYPES = dict(
    epochs=positive_int, batch_size=positive_int, max_steps_per_epoch=positive_int, eval_every=positive_int,
    seed=int, opt=str, sched=str, rand_augment=str, lr=positive_float, head_lr=positive_float,
    warmup_lr=positive_float, clip_grad=positive_float, momentum=probability, label_smoothing=probability,
    drop_rate=probability, drop_path_rate=probability, mixup_prob=probability, random_erasing=probability,
    ema_decay=probability)


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
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="training crop (default: the cfg's); scales the short-side range and test size with it")
    p.add_argument("--no-hflip", action="store_true", help="no horizontal flips (direction-sensitive labels)")
    p.add_argument("--flip-labels", choices=sorted(FLIP_LABELS), default=None,
                   help="mirror clips with p=0.5 and swap these direction labels (the original's SSV2_FLIP; "
                        "default: the recipe's, 'ssv2' for the *_ssv2 recipes)")
    p.add_argument("--val-clips", type=positive_int, default=1, help="clips per video in per-epoch validation")
    # every TrainConfig field not set above becomes a flag; None = recipe value
    skip = {"model", "num_classes", "output", "recipe", "workers", "progress", "stop_after_epoch", "resume", "amp",
            "ema", "compile", "sync_bn", "flip_labels"}
    for f in dataclasses.fields(TrainConfig):
        if f.name not in skip:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=_FIELD_TYPES.get(f.name, non_negative_float),
                           default=f.default)
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
            args.model, sum(heads), pretrained=args.pretrained, checkpoint=args.checkpoint_init,
            inflate_from=args.inflate_from, drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate,
            **(dict(num_frames=args.num_frames) if args.num_frames else {}), **args.model_kwargs)
        over = dict(protocol_overrides(args), train_crop=args.input_size, hflip=False if args.no_hflip else None,
                    flip_labels=args.flip_labels or cfg.flip_labels, rand_augment=cfg.rand_augment,
                    random_erasing=cfg.random_erasing or None)
        over["num_frames"] = args.num_frames or getattr(model, "num_frames", None)
        protocol = protocol_from_cfg(model.pretrained_cfg, **over)
        train_set = protocol.dataset(args.data_root, args.train_list, train=True, num_classes=heads)
        val_set = None
        if args.val_list:
            val_set = protocol.dataset(args.data_root, args.val_list, train=False, clips=args.val_clips, crops=1,
                                       num_classes=heads)
            require_readable(val_set, f"--val-list {args.val_list}", args.workers)
        if is_main_process():
            print(f"{args.model}: {len(train_set.samples)} training videos, "
                  f"{len(val_set.samples) if val_set else 0} validation videos, recipe {cfg.recipe}, "
                  f"{cfg.opt} lr {cfg.lr:.3g} (head {cfg.head_lr:.3g}), {cfg.epochs} epochs on {device}\n"
                  f"  training data: {protocol.describe(train=True)}\n"
                  f"  validation: {protocol.describe(clips=args.val_clips, crops=1)}")
        summary = fit(model, train_set, val_set, cfg, device)
        if is_main_process():
            print(json.dumps(dict(best=summary["best"], ranks_in_sync=summary["ranks_in_sync"],
                                  output=args.output)))
    finally:
        cleanup_distributed()
