"""``tada-zoo train``: fine-tune a registered model on an annotation list or a folder of class
folders (also under torchrun)."""
import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import List

from tada_zoo._files import check_writable, write_text
from tada_zoo.data.adapters import read_class_names, split_class_folders
from tada_zoo.data.protocol import FLIP_LABELS, protocol_from_cfg
from tada_zoo.data.shards import read_shard_index
from tada_zoo.deploy.profile import empty_model
from tada_zoo.engine.distributed import (barrier, check_shared_folder, cleanup_distributed, init_distributed,
                                        is_main_process)
from tada_zoo.engine.metrics import parse_num_classes
from tada_zoo.engine.recipes import ALIASES, LR_SCALING, RECIPES
from tada_zoo.engine.trainer import TrainConfig, fit, recipe_report, resolve_config, seed_everything
from tada_zoo.models import create_video_model, registered_cfg, registered_tags

from ._args import add_pretrained_args, resolve_pretrained
from ._args import (HelpFormatter, add_data_args, non_negative_float, open_fraction, positive_float, positive_int,
                    probability, protocol_overrides, require_readable)

__all__ = ["register"]

def _names(text: str) -> tuple:
    """argparse type: comma-separated parameter-name fragments ('' = none)."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


# TrainConfig fields as flags, validated where parsed (the rest: non-negative floats)
_FIELD_TYPES = dict(
    epochs=positive_int, batch_size=positive_int, max_steps_per_epoch=positive_int, eval_every=positive_int,
    seed=int, opt=str, rand_augment=str, lr=positive_float, warmup_lr=positive_float, clip_grad=positive_float,
    momentum=probability, label_smoothing=probability, drop_rate=probability, drop_path_rate=probability,
    mixup_prob=probability, random_erasing=probability, ema_decay=probability, new_params=_names,
    layer_decay=probability, head_lr_mult=positive_float, new_params_mult=positive_float)
_FIELD_CHOICES = dict(sched=("cosine", "cosine_v2"), lr_scaling=LR_SCALING)
_FIELD_BOOLS = ("nesterov", "lr_reduce", "ema", "drop_last")

_RECIPE = " (default: the recipe's)"
_FIELD_HELP = dict(
    epochs="training epochs" + _RECIPE,
    batch_size="clips per batch per process",
    lr="learning rate for the global batch (default: the recipe's, given for its own global batch, scaled "
       "by --lr-scaling)",
    lr_scaling="the recipe's learning rate at another global batch: linear (x global batch / the recipe's) or "
               "none (as given)",
    min_lr="learning rate at the end of the cosine" + _RECIPE,
    warmup_epochs="linear warm-up epochs (may be fractional)" + _RECIPE,
    warmup_lr="learning rate at the start of the warm-up (absolute; the warm-up ends at the schedule's value)"
              + _RECIPE,
    opt="timm optimizer name, e.g. sgd (nesterov with --nesterov), adamw" + _RECIPE,
    momentum="SGD momentum" + _RECIPE,
    nesterov="nesterov momentum for sgd" + _RECIPE,
    weight_decay="weight decay (not on biases and norms)" + _RECIPE,
    norm_weight_decay="weight decay of norm layers" + _RECIPE,
    sched="cosine (to --min-lr over all epochs) or cosine_v2 (cosine after the warm-up)" + _RECIPE,
    layer_decay="layer-wise learning-rate decay (1 = off; < 1: timm's layer ids)" + _RECIPE,
    lr_reduce="route-function and classifier weights x5, their biases x10 (layer decay 1)" + _RECIPE,
    head_lr_mult="classifier learning-rate multiplier (with layer decay)" + _RECIPE,
    new_params="comma-separated name fragments of new parameters (with layer decay)" + _RECIPE,
    new_params_mult="learning-rate multiplier of --new-params" + _RECIPE,
    label_smoothing="label smoothing" + _RECIPE,
    clip_grad="clip the gradient norm to this" + _RECIPE,
    drop_rate="dropout before the classifier" + _RECIPE,
    drop_path_rate="stochastic depth rate" + _RECIPE,
    mixup="mixup alpha, 0 = off" + _RECIPE,
    cutmix="cutmix alpha, 0 = off" + _RECIPE,
    mixup_prob="probability of mixing a batch when mixup / cutmix are on",
    rand_augment="timm RandAugment string, e.g. rand-m9-n4-mstd0.5 (default: the model's data protocol)",
    random_erasing="random erasing probability" + _RECIPE,
    ema="keep an EMA of the weights (used for validation and checkpoints)" + _RECIPE,
    ema_decay="EMA decay per step" + _RECIPE,
    seed="seed of weights init, shuffling and augmentation",
    eval_every="validate every this many epochs (and after the last)",
    max_steps_per_epoch="cut every epoch to this many steps (debugging; default: all batches)",
    drop_last="leave out each epoch's incomplete last batch, as the original does (how many videos that is "
              "is printed); --no-drop-last trains on every video every epoch",
)


def _add_config_flags(p) -> None:
    """Every TrainConfig field not set elsewhere becomes a flag (None = the recipe's value),
    validated where parsed."""
    skip = {"model", "num_classes", "output", "recipe", "workers", "progress", "stop_after_epoch", "resume", "amp",
            "compile", "sync_bn", "flip_labels", "model_kwargs", "class_names", "protocol", "sources", "finetune",
            "init", "dataset"}
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if f.name in _FIELD_BOOLS:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=_FIELD_HELP[f.name])
        elif f.name in _FIELD_CHOICES:
            p.add_argument(flag, choices=_FIELD_CHOICES[f.name], default=f.default, help=_FIELD_HELP[f.name])
        else:
            p.add_argument(flag, type=_FIELD_TYPES.get(f.name, non_negative_float), default=f.default,
                           help=_FIELD_HELP[f.name])


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune a video model (torchrun for several GPUs)", formatter_class=HelpFormatter,
        description="Fine-tune on an annotation list (--train-list, --val-list, --num-classes) or on a folder "
                    "of class folders (--data-root videos/ alone: DATA_ROOT/<class>/<video>, split into train / "
                    "val here and written to OUTPUT/train.txt, val.txt, classes.txt). Checkpoints carry the "
                    "model name, its arguments and the class names.")
    p.add_argument("--model", required=True, help="registered architecture, e.g. tada2d_r50_8f")
    _add_source_args(p)
    p.add_argument("--output", required=True, help="run folder: checkpoints, metrics.jsonl, curves.png")
    init = p.add_mutually_exclusive_group()
    add_pretrained_args(init, p)
    init.add_argument("--checkpoint-init", default=None, help="start from a local .safetensors / checkpoint")
    init.add_argument("--inflate-from", default=None, help="inflate 2D ImageNet weights (timm name or file)")
    p.add_argument("--recipe", choices=sorted(RECIPES) + sorted(ALIASES), default=None, metavar="RECIPE",
                   help="training recipe: a released original config, as it is (docs/training.md; default: the "
                        "tag's own, else the family's for the tag's dataset; from --pretrained / --checkpoint-init "
                        f"weights with the fine-tune schedule): {', '.join(sorted(RECIPES))}")
    add_data_args(p)
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="training crop (default: the cfg's); scales the short-side range and test size with it")
    p.add_argument("--no-hflip", action="store_true", help="no horizontal flips (direction-sensitive labels)")
    p.add_argument("--flip-labels", choices=sorted(FLIP_LABELS), default=None,
                   help="mirror clips with p=0.5 and swap these direction labels (the original's SSV2_FLIP; "
                        "default: the recipe's, 'ssv2' for the *_ssv2 recipes)")
    p.add_argument("--val-clips", type=positive_int, default=1, help="clips per video in per-epoch validation")
    _add_config_flags(p)
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes")
    p.add_argument("--resume", default="auto",
                   help="last.pt to resume from; 'auto' resumes from OUTPUT/last.pt when present, 'none' never")
    p.add_argument("--dry-run", action="store_true",
                   help="read no data: build the model and optimizer, print the resolved recipe (each value with "
                        "its source) and write OUTPUT/recipe.json (parameter groups, learning rate per step)")
    p.add_argument("--steps-per-epoch", type=positive_int, default=None,
                   help="with --dry-run: optimizer steps per epoch (a real run counts its batches)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _split_into_run_folder(args) -> tuple:
    """Split the class folders of --data-root and write the lists + classes.txt into the run folder
    (rank 0; the others wait), so the run says which videos it trained and validated on.
    A run folder being resumed must hold the same split."""
    classes, train, val = split_class_folders(args.data_root, args.val_fraction, args.split_seed)
    out = Path(args.output)
    files = {out / "train.txt": train, out / "val.txt": val}
    if is_main_process():
        texts = {f: "".join(f"{p} {l}\n" for p, l in s) for f, s in files.items()}
        texts[out / "classes.txt"] = "".join(f"{c}\n" for c in classes)
        resuming = args.resume != "none" and (out / "last.pt").exists()
        changed = [f.name for f, t in texts.items() if f.exists() and f.read_text(encoding="utf-8") != t]
        if resuming and changed:
            raise ValueError(f"{out} holds a run on another split ({', '.join(changed)} differ: videos added or "
                             f"removed under {args.data_root}, or another --val-fraction / --split-seed); resume with "
                             "the same videos, or use another --output (or --resume none to start over)")
        for f, text in texts.items():
            write_text(f, text)
        print(f"{args.data_root}: {len(classes)} classes, {len(train)} training / {len(val)} validation videos "
              f"(val fraction {args.val_fraction:g}, seed {args.split_seed}) -> {out}/train.txt, val.txt, classes.txt")
    barrier()
    return classes, str(out / "train.txt"), str(out / "val.txt")


def _classes_and_lists(args):
    if args.shards:  # the shards' index names the classes of class folders
        names = read_shard_index(args.shards).class_names
        return read_class_names(args.class_names) if args.class_names else names, None, None
    if args.train_list is None:
        if args.val_list or args.class_names:
            flag = "--val-list" if args.val_list else "--class-names"
            raise ValueError(f"{flag} needs --train-list; without it --data-root is a folder of class folders, "
                             "split here and named by its folders")
        return _split_into_run_folder(args)
    names = read_class_names(args.class_names) if args.class_names else None
    return names, args.train_list, args.val_list


def _training_name(args) -> str:
    """``arch.tag`` whose recipe and protocol a run uses: ``--model``'s tag, or ``--pretrained TAG``'s."""
    arch, _, tag = args.model.partition(".")
    if isinstance(args.pretrained, str) and args.pretrained in registered_tags(arch):
        tag = args.pretrained
    return f"{arch}.{tag}" if tag else arch


def _train_config(args, name: str, heads, class_names=None) -> TrainConfig:
    """The flags as a resolved TrainConfig (recipe values where a flag is not given)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and k not in (
        "model", "num_classes", "resume", "class_names")})
    cfg = dataclasses.replace(cfg, model=name, num_classes=heads, progress=not args.quiet,
                              resume=None if args.resume == "none" else args.resume,
                              finetune=bool(args.pretrained or args.checkpoint_init))
    return resolve_config(cfg)


def _print_recipe(cfg: TrainConfig) -> None:
    print(f"recipe {cfg.recipe} ({cfg.sources['recipe']}); every value and where it came from:")
    for key in sorted(k for k in cfg.sources if k != "recipe"):
        print(f"  {key:<18} {str(getattr(cfg, key)):<14} {cfg.sources[key]}")


def _dry_run(args: argparse.Namespace) -> None:
    """Build the model (parameters on the meta device: no memory, no weights) and its optimizer,
    print the recipe and write OUTPUT/recipe.json; reads no data."""
    if args.steps_per_epoch is None:
        raise ValueError("--dry-run needs --steps-per-epoch N (a real run counts its batches)")
    name = _training_name(args)
    heads = parse_num_classes(args.num_classes) if args.num_classes else [registered_cfg(name).num_classes]
    cfg = _train_config(args, name, heads)
    model = empty_model(name, num_classes=sum(heads), drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate,
                        **dict(args.model_kwargs, **({"num_frames": args.num_frames} if args.num_frames else {})))
    protocol = protocol_from_cfg(model.pretrained_cfg, **_protocol_flags(args, cfg, model))
    report = recipe_report(model, cfg, args.steps_per_epoch, data=protocol.describe(train=True))
    _print_recipe(cfg)
    out = Path(args.output) / "recipe.json"
    write_text(out, json.dumps(report, indent=1))
    print(f"{name}: {sum(len(g['params']) for g in report['param_groups'])} parameters in "
          f"{len(report['param_groups'])} groups, {len(report['lr_per_step'])} steps -> {out}")


def _add_source_args(p) -> None:
    """Where the videos and their labels come from: lists, class folders or shards."""
    p.add_argument("--data-root", default=None,
                   help="folder the list paths are relative to; without --train-list: a folder of class folders "
                        "(<class>/<video>, classes in sorted order)")
    p.add_argument("--train-list", default=None,
                   help="training annotation list ('relative/path label' lines); omit to split --data-root's "
                        "class folders")
    p.add_argument("--val-list", default=None, help="validation list (with --train-list; none: no validation)")
    p.add_argument("--shards", default=None, metavar="PATTERN",
                   help="instead of --data-root / --train-list: WebDataset shards of tada-zoo shard, e.g. "
                        "'out/train-{000000..000031}.tar', a pipe: command or a URL (pip install 'tada-zoo[shards]')")
    p.add_argument("--val-shards", default=None, metavar="PATTERN", help="with --shards: validation shards")
    p.add_argument("--shuffle-buffer", type=positive_int, default=64,
                   help="with --shards: samples (encoded videos) each loader worker shuffles among")
    p.add_argument("--num-classes", default=None,
                   help="N, or N1,N2 for several heads (EPIC verb,noun); default: the number of class names "
                        "(class folders or --class-names)")
    p.add_argument("--class-names", default=None,
                   help="with --train-list: class names file (line i = class i, e.g. make-list --class-names-out); "
                        "stored in the checkpoints")
    p.add_argument("--val-fraction", type=open_fraction, default=0.2,
                   help="class folders: share of each class's videos held out for validation")
    p.add_argument("--split-seed", type=int, default=0, help="class folders: seed of the train / val split")


def _heads(args, class_names) -> List[int]:
    """The classifier heads: --num-classes, which must agree with the classes named, or their count."""
    if args.num_classes is not None:
        heads = parse_num_classes(args.num_classes)
        if class_names is not None and heads != [len(class_names)]:
            where = args.class_names or f"the class folders of {args.data_root}"
            raise ValueError(f"--num-classes {args.num_classes} disagrees with the {len(class_names)} classes of "
                             f"{where}; drop --num-classes")
        return heads
    if class_names is not None:
        return [len(class_names)]
    raise ValueError("--num-classes is needed with --train-list (or --class-names FILE to name the classes)")


def _datasets(args, protocol, heads, train_list, val_list, seed: int) -> tuple:
    """Training and validation data through the protocol: lists, class folders or shards."""
    train_set = protocol.dataset(args.data_root, train_list, train=True, num_classes=heads, shards=args.shards,
                                 seed=seed, shuffle_buffer=args.shuffle_buffer)
    val_set = None
    if args.val_shards:
        val_set = protocol.dataset(shards=args.val_shards, train=False, clips=args.val_clips, crops=1,
                                   num_classes=heads)
    elif val_list:
        val_set = protocol.dataset(args.data_root, val_list, train=False, clips=args.val_clips, crops=1,
                                   num_classes=heads)
        require_readable(val_set, f"--val-list {val_list}", args.workers)
    return train_set, val_set


def _run_record(args, model, protocol, train_set, val_set) -> dict:
    """What the run's weights say of their making (``init``, ``dataset``), so a model card built from
    them (``tada-zoo push``) is true: the weights it started from and the data it saw."""
    arch = args.model.partition(".")[0]
    if args.checkpoint_init or (args.pretrained and args.pretrained is not True
                                and args.pretrained not in registered_tags(arch)):
        init = f"file {Path(args.checkpoint_init or args.pretrained).name}"
    elif args.inflate_from:
        init = f"2D weights {args.inflate_from}, inflated"
    elif args.pretrained:
        init = f"{arch}.{model.pretrained_cfg.get('tag')}"
    else:
        init = "random"
    where = args.data_root or os.path.dirname(train_set.shards.index_file)  # class folders, or the shards' folder
    dataset = dict(name=Path(os.path.abspath(where)).name, train_videos=len(train_set.samples),
                   val_videos=len(val_set.samples) if val_set else 0, training=protocol.describe(train=True))
    if val_set is not None:
        dataset["validation"] = protocol.describe(clips=args.val_clips, crops=1)
    return dict(init=init, dataset=dataset)


def _protocol_flags(args, cfg: TrainConfig, model) -> dict:
    over = dict(protocol_overrides(args), train_crop=args.input_size, hflip=False if args.no_hflip else None,
                flip_labels=args.flip_labels or cfg.flip_labels, rand_augment=cfg.rand_augment,
                random_erasing=cfg.random_erasing or None)
    over["num_frames"] = args.num_frames or getattr(model, "num_frames", None)
    return over


def _main(args: argparse.Namespace) -> None:
    if args.dry_run:
        return _dry_run(args)
    if args.shards and (args.data_root or args.train_list or args.val_list):
        raise ValueError("--shards replaces --data-root, --train-list and --val-list (--val-shards: validation)")
    if args.val_shards and not args.shards:
        raise ValueError("--val-shards needs --shards (the training shards)")
    if args.data_root is None and not args.shards:
        raise ValueError("--data-root is needed (a folder of class folders, or the root of --train-list's paths), "
                         "or --shards PATTERN")
    check_writable(args.output, "--output")
    device = init_distributed(args.device)
    try:
        check_shared_folder(args.output, "--output")  # every node resumes from and writes to one run folder
        class_names, train_list, val_list = _classes_and_lists(args)
        heads = _heads(args, class_names)
        name = _training_name(args)
        cfg = _train_config(args, name, heads)
        model_kwargs = dict(args.model_kwargs, **(dict(num_frames=args.num_frames) if args.num_frames else {}))
        seed_everything(cfg.seed)  # same initial weights on every rank
        model = create_video_model(
            args.model, sum(heads), pretrained=resolve_pretrained(args, args.model), checkpoint=args.checkpoint_init,
            inflate_from=args.inflate_from, drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate,
            **model_kwargs)
        protocol = protocol_from_cfg(model.pretrained_cfg, **_protocol_flags(args, cfg, model))
        # what the checkpoints need to rebuild this model and its test protocol (checkpoint_info)
        tag = (model.pretrained_cfg or {}).get("tag")
        name = f"{args.model}.{tag}" if args.pretrained and "." not in args.model and tag else args.model
        stored = {k: v for k, v in protocol_overrides(args).items() if v is not None and k != "num_frames"}
        if args.input_size:
            stored["train_crop"] = args.input_size
        cfg = dataclasses.replace(cfg, model=name, model_kwargs=model_kwargs, class_names=class_names,
                                  protocol=stored)
        train_set, val_set = _datasets(args, protocol, heads, train_list, val_list, cfg.seed)
        if is_main_process():
            print(f"{args.model}: {len(train_set.samples)} training videos, "
                  f"{len(val_set.samples) if val_set else 0} validation videos, recipe {cfg.recipe} "
                  f"({cfg.sources['recipe']}), {cfg.opt} lr {cfg.lr:.3g} ({cfg.sources['lr']}), {cfg.epochs} epochs "
                  f"on {device} (all values: OUTPUT/recipe.json, or --dry-run)\n"
                  f"  training data: {protocol.describe(train=True)}\n"
                  f"  validation: {protocol.describe(clips=args.val_clips, crops=1)}")
        cfg = dataclasses.replace(cfg, **_run_record(args, model, protocol, train_set, val_set))
        summary = fit(model, train_set, val_set, cfg, device)
        if is_main_process():
            print(json.dumps(dict(best=summary["best"], ranks_in_sync=summary["ranks_in_sync"],
                                  output=args.output)))
    finally:
        cleanup_distributed()
