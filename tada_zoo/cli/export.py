"""``tada-zoo export``: a model as ONNX, TorchScript (traced) or a torch.export program, optionally checked."""
import argparse
import sys
from pathlib import Path

import torch

from tada_zoo._files import check_writable
from tada_zoo.engine.checkpoint import resolve_run, run_protocol
from tada_zoo.engine.metrics import DIVERGED_LOGITS
from tada_zoo.deploy.export import FORMATS, check_export, example_input, export_model
from tada_zoo.models import create_video_model

from ._args import HelpFormatter, add_pretrained_args, json_object, positive_int, resolve_pretrained

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model (ONNX, TorchScript, torch.export) for deployment",
                              formatter_class=HelpFormatter)
    p.add_argument("--model", default=None,
                   help="registered model, e.g. tada2d_r50_8f.k400 (default: what --checkpoint says, from train)")
    p.add_argument("--checkpoint", default=None, help="local weights (.safetensors / checkpoint)")
    add_pretrained_args(p, p)
    p.add_argument("--num-classes", type=positive_int, default=None, help="classifier size (default: the model's)")
    p.add_argument("--model-kwargs", type=json_object, default={},
                   help="extra model arguments as a JSON object (a checkpoint written by train already says them)")
    p.add_argument("--format", choices=FORMATS, default="onnx",
                   help="onnx (TorchScript-based exporter), onnx-dynamo, torchscript (traced) or exported-program (.pt2)")
    p.add_argument("--output", required=True, help="file to write")
    p.add_argument("--frames", type=positive_int, default=None, help="clip length (default: the model's)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="input height and width (default: a trained run's test crop, else the cfg's input size)")
    p.add_argument("--batch", type=positive_int, default=2,
                   help="example batch size (>= 2: the exported batch axis is dynamic unless --static-batch)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch size to --batch")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (>= 17; onnx-dynamo uses >= 18)")
    p.add_argument("--check", action="store_true",
                   help="run the exported file (onnxruntime for ONNX) at --batch and --batch + 1 against the model")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    if args.opset < 17:
        raise ValueError(f"--opset must be >= 17, got {args.opset}")
    if not args.static_batch and args.batch < 2:
        raise ValueError("--batch must be >= 2 for a dynamic batch axis (or give --static-batch)")
    check_writable(Path(args.output).resolve().parent, "--output's folder")
    run = resolve_run(args.checkpoint, args.model, [args.num_classes] if args.num_classes else None,
                      args.model_kwargs)
    num_classes = run["num_classes"]
    if num_classes and len(num_classes) > 1:
        raise ValueError(f"--checkpoint has {len(num_classes)} classifier heads; export takes single-head models")
    model = create_video_model(run["model"], num_classes=num_classes[0] if num_classes else None,
                               pretrained=resolve_pretrained(args, run["model"]), checkpoint=args.checkpoint,
                               head="strict", **run["model_kwargs"]).eval()
    size = args.size or (run_protocol(model, run).test_crop if run["trained"] else None)  # a run: its input size
    x = example_input(model, args.frames, size, args.batch)
    with torch.no_grad():
        peak = model(x).abs().max().item()
    if not peak <= DIVERGED_LOGITS:  # NaN too
        print(f"warning: {args.checkpoint or run['model']}: the logits reach {peak:.3g} on a random clip; these "
              "look like the weights of a diverged run (exported all the same)", file=sys.stderr)
    path = export_model(model, args.output, args.format, x, dynamic_batch=not args.static_batch, opset=args.opset)
    print(f"{run['model']} -> {path} ({args.format}, input {'x'.join(map(str, x.shape[1:]))}, "
          f"batch {'fixed at ' + str(args.batch) if args.static_batch else 'dynamic'})")
    if args.check:
        sizes = [args.batch] if args.static_batch else [args.batch, args.batch + 1]
        inputs = [torch.randn(b, *x.shape[1:]) for b in sizes]
        err = check_export(path, args.format, model, inputs)
        print(f"check: outputs match the model at batch {', '.join(map(str, sizes))} (max abs difference {err:.2g})")
