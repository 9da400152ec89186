"""``tada-zoo evaluate``: multi-view accuracy of one model or an ensemble (the paper's TAda2DEn)."""
import argparse
import json
import os
import tempfile
from pathlib import Path

from tada_zoo._files import check_writable, write_text
from tada_zoo.data.adapters import read_class_names, scan_class_folders
from tada_zoo.data.datasets import write_annotations
from tada_zoo.engine.checkpoint import resolve_run, run_protocol
from tada_zoo.engine.distributed import cleanup_distributed, init_distributed, is_main_process
from tada_zoo.engine.evaluate import evaluate_model, write_confusion, write_predictions
from tada_zoo.engine.metrics import compute_metrics, ensemble_scores, parse_num_classes
from tada_zoo.engine.throughput import data_wait_warning
from tada_zoo.engine.trainer import autocast_dtype
from tada_zoo.models import create_video_model, registered_cfg
from tada_zoo.weights.hub import sha256_file

from ._args import HelpFormatter, add_data_args, positive_int, protocol_overrides, require_readable

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="multi-view accuracy of one model or an ensemble", formatter_class=HelpFormatter,
        description="Accuracy on an annotation list (--val-list) or on a folder of class folders (--data-root "
                    "alone: every video of DATA_ROOT/<class>/, labelled by the checkpoint's class names). A "
                    "checkpoint written by train says its model, arguments and classes: --model, --num-classes "
                    "and --model-kwargs are then optional and, when given, must agree with it.")
    p.add_argument("--model", nargs="+", default=None,
                   help="architecture(s); several = an ensemble (default: what each --checkpoint says)")
    p.add_argument("--checkpoint", nargs="+", default=None,
                   help="weights per model (.safetensors or checkpoint; default: the weights of a tagged --model "
                        "such as tada2d_r50_8f.k400, see docs/models.md, else random init)")
    p.add_argument("--data-root", default=None,
                   help="folder the list paths are relative to; without --val-list: a folder of class folders")
    p.add_argument("--shards", default=None, metavar="PATTERN",
                   help="WebDataset shards of tada-zoo shard instead of --data-root / --val-list, e.g. "
                        "'val/val-{000000..000003}.tar', a pipe: command or a URL (pip install 'tada-zoo[shards]')")
    p.add_argument("--val-list", default=None, help="annotation list to evaluate (omit for class folders)")
    p.add_argument("--num-classes", default=None,
                   help="N, or N1,N2 for several heads (default: the checkpoint's, or --class-names')")
    p.add_argument("--class-names", default=None,
                   help="class folders: class names file (line i = class i) when the checkpoint has none")
    p.add_argument("--clips", type=positive_int, default=None,
                   help="clips per video (default: the views of the tag's reported accuracy, else 1)")
    p.add_argument("--crops", type=int, choices=(1, 3), default=None, help="crops per clip (default: the cfg's, else 1)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision")
    p.add_argument("--output", default=None, help="folder for metrics.json and predictions.csv (default: none written)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    add_data_args(p)
    p.set_defaults(func=_main)


def _runs(args) -> list:
    """One resolved run (model, heads, kwargs, class names, protocol) per ensemble member."""
    names = args.model or []
    ckpts = args.checkpoint or []
    n = max(len(names), len(ckpts))
    if n == 0:
        raise ValueError("give --model, --checkpoint (a file written by tada-zoo train), or both")
    if names and ckpts and len(names) != len(ckpts):
        raise ValueError(f"{len(names)} models but {len(ckpts)} checkpoints; give one per model")
    heads = parse_num_classes(args.num_classes) if args.num_classes else None
    runs = [resolve_run(ckpts[i] if ckpts else None, names[i] if names else None, heads, args.model_kwargs)
            for i in range(n)]
    if len({json.dumps(r["num_classes"]) for r in runs}) > 1:
        raise ValueError("the ensemble members have different heads ("
                         + ", ".join(f"{r['model']}: {r['num_classes']}" for r in runs) + ")")
    return runs


def _class_folder_list(args, runs, heads, tmp: str) -> str:
    """An annotation list of every video under the class folders of --data-root, labelled by
    the checkpoint's class names (by name, so a folder may hold some of the classes only)."""
    folders, samples = scan_class_folders(args.data_root)
    known = [r["class_names"] for r in runs if r["class_names"]]
    if args.class_names:
        known.insert(0, read_class_names(args.class_names))
    if any(k != known[0] for k in known[1:]):
        raise ValueError("the checkpoints (or --class-names) name different classes; evaluate them separately")
    if known:
        index = {c: i for i, c in enumerate(known[0])}
        unknown = [c for c in folders if c not in index]
        if unknown:
            where = args.class_names or args.checkpoint[0]
            raise ValueError(f"class folder{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown[:5]))} under "
                             f"{args.data_root} {'are' if len(unknown) > 1 else 'is'} not among the {len(index)} "
                             f"classes of {where}")
        samples = [(p, index[folders[label]]) for p, label in samples]
    elif len(heads) != 1 or len(folders) != heads[0]:
        raise ValueError(f"{args.data_root} has {len(folders)} class folders but the model has {heads} classes, and "
                         "no class names say which is which; give --class-names FILE (or a checkpoint from train)")
    path = os.path.join(tmp, "classes_folder_list.txt")
    write_annotations(samples, path)
    return path


def _check_source(args: argparse.Namespace) -> None:
    if args.shards and (args.data_root or args.val_list):
        raise ValueError("--shards replaces --data-root and --val-list; give one or the other")
    if not args.shards and not args.data_root:
        raise ValueError("give --data-root (with --val-list, or a folder of class folders) or --shards PATTERN")


def _main(args: argparse.Namespace) -> None:
    _check_source(args)
    if args.output:
        check_writable(args.output, "--output")  # before the evaluation, whose results would be lost
    device = init_distributed(args.device)
    try:
        runs = _runs(args)
        heads = runs[0]["num_classes"]
        if heads is None and not args.checkpoint and "." in runs[0]["model"]:  # a tag's own head
            heads = [registered_cfg(runs[0]["model"]).num_classes]
        if heads is None:
            names = runs[0]["class_names"] or (read_class_names(args.class_names) if args.class_names else None)
            if names is None:
                raise ValueError("--num-classes is needed: the checkpoint does not say it")
            heads = [len(names)]
        if args.shards:
            return _evaluate(args, runs, heads, None, f"--shards {args.shards}", device)
        with tempfile.TemporaryDirectory(prefix="tada-zoo-eval-") as tmp:
            val_list = args.val_list or _class_folder_list(args, runs, heads, tmp)
            what = f"--val-list {args.val_list}" if args.val_list else f"the class folders of {args.data_root}"
            return _evaluate(args, runs, heads, val_list, what, device)
    finally:
        cleanup_distributed()


def _evaluate(args, runs, heads, val_list, what, device):
    members, results, labels, names, views, speeds, warning = [], {}, None, None, 0, {}, None
    models = [r["model"] for r in runs]
    for i, (run, ckpt) in enumerate(zip(runs, args.checkpoint or [None] * len(runs))):
        name = run["model"]
        key = name if models.count(name) == 1 else f"{name}[{i}]"
        extra = dict(run["model_kwargs"])
        if args.num_frames and len(runs) == 1:
            extra["num_frames"] = args.num_frames
        # no checkpoint: a tagged name (tada2d_r50_8f.k400) means that tag's weights, as in predict
        pretrained = not ckpt and "." in name
        if not ckpt and not pretrained and is_main_process():
            print(f"note: {name} has no --checkpoint and no tag: evaluating random weights")
        model = create_video_model(name, sum(heads), checkpoint=ckpt, pretrained=pretrained or None, head="strict",
                                   **extra).eval()
        # the run's stored data flags, then the command line's; --num-frames only a single model's (built with it)
        protocol = run_protocol(model, run, **dict(protocol_overrides(args), num_frames=model.num_frames,
                                                     clips=args.clips, crops=args.crops))
        ds = protocol.dataset(args.data_root, val_list, train=False, num_classes=heads, shards=args.shards)
        if i == 0 and not args.shards:  # every member reads the same videos (shards: decoded as they stream)
            require_readable(ds, what, args.workers)
        if is_main_process():
            print(f"{name}: {len(ds.samples)} videos, {protocol.describe()}")
        res = evaluate_model(model, ds, heads, args.batch_size, args.workers, device,
                             autocast_dtype(args.amp, device), progress=not args.quiet)
        members.append(res["scores"])
        speeds[key] = res["throughput"].summary()  # rank 0's
        warning = warning or data_wait_warning(res["throughput"], args.workers, ds, what="evaluation")
        views = views + res["views"]  # per video, summed over an ensemble's models
        labels, names = res["labels"], [p for p, _ in ds.samples]
        results[key] = dict(compute_metrics(res["scores"], labels), protocol=protocol.describe(), videos=len(names),
                            data=what)
        if ckpt:  # which weights these figures are of (tada-zoo push puts them in the model card)
            results[key].update(checkpoint=os.path.abspath(ckpt), checkpoint_sha256=sha256_file(ckpt))
    if len(members) > 1:
        results["ensemble"] = compute_metrics(ensemble_scores(members), labels)
    final = results["ensemble"] if len(members) > 1 else results[key]
    if is_main_process():
        for key, m in results.items():
            extra = f", top-5 {m['top5']:.2f}%" if "top5" in m else ""
            speed = f" ({speeds[key]})" if key in speeds else ""
            print(f"{key}: top-1 {m['top1']:.2f}%{extra}, mean class accuracy "
                  f"{m.get('mean_class_acc', float('nan')):.2f}%{speed}")
        if warning:  # once a run, however many models
            print(warning)
        if args.output:
            out = Path(args.output)
            out.mkdir(parents=True, exist_ok=True)
            scores = ensemble_scores(members) if len(members) > 1 else members[0]
            write_predictions(out / "predictions.csv", scores, labels, names, views=views)
            write_confusion(out, scores, labels, runs[0]["class_names"] or (
                read_class_names(args.class_names) if args.class_names else None))
            write_text(out / "metrics.json", json.dumps(results, indent=2))
            print(f"wrote {out / 'metrics.json'} and {out / 'predictions.csv'}")
    return final
