"""``tada-zoo evaluate``: multi-view accuracy of one model or an ensemble (the paper's TAda2DEn)."""
import argparse
import json
from pathlib import Path

from tada_zoo._files import write_text
from tada_zoo.data import protocol_from_cfg
from tada_zoo.engine.distributed import cleanup_distributed, init_distributed, is_main_process
from tada_zoo.engine.evaluate import evaluate_model, write_predictions
from tada_zoo.engine.metrics import compute_metrics, ensemble_scores, parse_num_classes
from tada_zoo.engine.trainer import autocast_dtype
from tada_zoo.models._builder import create_video_model

from ._args import add_data_args, positive_int, protocol_overrides, require_readable

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="multi-view accuracy of one model or an ensemble",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, nargs="+", help="architecture(s); several = an ensemble")
    p.add_argument("--checkpoint", nargs="+", default=None, help="weights per model (.safetensors or checkpoint)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--val-list", required=True)
    p.add_argument("--num-classes", required=True, help="N, or N1,N2 for several heads")
    p.add_argument("--clips", type=positive_int, default=None,
                   help="clips per video (default: the views of the tag's reported accuracy, else 1)")
    p.add_argument("--crops", type=int, choices=(1, 3), default=None, help="crops per clip (default: the cfg's, else 1)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--output", default=None, help="folder for metrics.json and predictions.csv")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--debug", action="store_true")
    add_data_args(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    device = init_distributed(args.device)
    try:
        heads = parse_num_classes(args.num_classes)
        ckpts = args.checkpoint or [None] * len(args.model)
        if len(ckpts) != len(args.model):
            raise ValueError(f"{len(args.model)} models but {len(ckpts)} checkpoints; give one per model")
        members, results, labels, names = [], {}, None, None
        for i, (name, ckpt) in enumerate(zip(args.model, ckpts)):
            key = name if args.model.count(name) == 1 else f"{name}[{i}]"
            extra = dict(args.model_kwargs)
            if args.num_frames and len(args.model) == 1:
                extra["num_frames"] = args.num_frames
            model = create_video_model(name, sum(heads), checkpoint=ckpt, head="strict", **extra).eval()
            # flags override every member's protocol; --num-frames only a single model's (built with it)
            over = dict(protocol_overrides(args), num_frames=model.num_frames, clips=args.clips, crops=args.crops)
            protocol = protocol_from_cfg(model.pretrained_cfg, **over)
            ds = protocol.dataset(args.data_root, args.val_list, train=False, num_classes=heads)
            if i == 0:  # every member reads the same videos
                require_readable(ds, f"--val-list {args.val_list}", args.workers)
            if is_main_process():
                print(f"{name}: {len(ds.samples)} videos, {protocol.describe()}")
            res = evaluate_model(model, ds, heads, args.batch_size, args.workers, device,
                                 autocast_dtype(args.amp, device), progress=not args.quiet)
            members.append(res["scores"])
            labels, names = res["labels"], [p for p, _ in ds.samples]
            results[key] = dict(compute_metrics(res["scores"], labels), protocol=protocol.describe())
        if len(members) > 1:
            results["ensemble"] = compute_metrics(ensemble_scores(members), labels)
        final = results["ensemble"] if len(members) > 1 else results[key]
        if is_main_process():
            for key, m in results.items():
                extra = f", top-5 {m['top5']:.2f}%" if "top5" in m else ""
                print(f"{key}: top-1 {m['top1']:.2f}%{extra}, mean class accuracy "
                      f"{m.get('mean_class_acc', float('nan')):.2f}%")
            if args.output:
                out = Path(args.output)
                out.mkdir(parents=True, exist_ok=True)
                scores = ensemble_scores(members) if len(members) > 1 else members[0]
                write_predictions(out / "predictions.csv", scores, labels, names)
                write_text(out / "metrics.json", json.dumps(results, indent=2))
                print(f"wrote {out / 'metrics.json'} and {out / 'predictions.csv'}")
        return final
    finally:
        cleanup_distributed()
