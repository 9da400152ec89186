"""``tada-zoo visualize``: Grad-CAM over a clip's frames and TAdaConv's calibration weights over time."""
import argparse
from pathlib import Path

from tada_zoo._files import check_writable
from tada_zoo.data.adapters import read_class_names
from tada_zoo.engine.checkpoint import resolve_run, run_protocol
from tada_zoo.engine.distributed import init_distributed
from tada_zoo.models import create_video_model
from tada_zoo.inference.visualize import visualize_video

from ._args import (HelpFormatter, add_pretrained_args, json_object, non_negative_int, positive_float, positive_int,
                    resolve_pretrained)

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "visualize", help="Grad-CAM heat maps and TAdaConv calibration weights alpha_t of one video",
        formatter_class=HelpFormatter,
        description="Runs the first test view of VIDEO (centre clip, centre crop, as the model's evaluation) and "
                    "writes OUTPUT/gradcam.png, gradcam.gif, alpha.png, values.npz and summary.json.")
    p.add_argument("video", help="a video file")
    p.add_argument("--model", default=None, help="registered model, NAME or NAME.TAG (e.g. tada2d_r50_8f.k400; "
                                                 "default: what --checkpoint says)")
    p.add_argument("--checkpoint", default=None, help="local weights (.safetensors / checkpoint; one written by train "
                                                      "also gives the model, its arguments and class names)")
    add_pretrained_args(p, p)
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="classifier size of --checkpoint (default: the model cfg's)")
    p.add_argument("--output", required=True, help="folder for the pictures and values")
    p.add_argument("--class", dest="class_index", type=non_negative_int, default=None,
                   help="class whose score is explained (default: the top-1 prediction)")
    p.add_argument("--class-names", default=None, help="file with one class name per line, for the titles")
    p.add_argument("--layer", default=None,
                   help="Grad-CAM feature level: its module name (stages.3, layer4, blocks.10, fast.layer4) or "
                        "index (default: the last level; TAdaFormer: the last but one block)")
    p.add_argument("--alpha-layers", default=None,
                   help="TAdaConv layers whose alpha_t to plot: comma-separated patterns "
                        "(e.g. 'stages.3.*' or '*layer4*'); 'none' for no alpha.png (default: all of them)")
    p.add_argument("--num-frames", type=positive_int, default=None, help="frames per clip (default: the model's)")
    p.add_argument("--test-size", type=positive_int, default=None, help="crop size (default: the cfg's test crop)")
    p.add_argument("--gif-fps", type=positive_float, default=4.0, help="frames per second of gradcam.gif")
    p.add_argument("--model-kwargs", type=json_object, default={},
                   help='extra model arguments as JSON, e.g. \'{"layers": [1, 1, 1, 1]}\'')
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    if not Path(args.video).is_file():
        raise FileNotFoundError(f"VIDEO {args.video}: no such file")
    if args.pretrained and args.checkpoint:
        raise ValueError("give --pretrained or --checkpoint, not both")
    check_writable(args.output, "--output")
    run = resolve_run(args.checkpoint, args.model, [args.num_classes] if args.num_classes else None,
                      args.model_kwargs)
    names = read_class_names(args.class_names) if args.class_names else run["class_names"]
    kwargs = dict(run["model_kwargs"])
    if args.num_frames:
        kwargs["num_frames"] = args.num_frames
    heads = run["num_classes"]
    model = create_video_model(run["model"], sum(heads) if heads else None, pretrained=resolve_pretrained(args, run["model"]),
                               checkpoint=args.checkpoint, head="strict", **kwargs)
    if names is not None and len(names) != model.num_classes:
        raise ValueError(f"--class-names {args.class_names} has {len(names)} names for {model.num_classes} classes")
    if not (args.pretrained or args.checkpoint):
        print("note: no --checkpoint or --pretrained: the pictures show a model with random weights")
    model.to(init_distributed(args.device))  # one process: just the device
    protocol = run_protocol(model, run, test_crop=args.test_size)  # the run's stored data flags, then the flag
    try:
        s = visualize_video(model, args.video, args.output, protocol, args.class_index, args.layer,
                            args.alpha_layers, names, args.gif_fps)
    except ImportError as e:  # matplotlib / Pillow missing: one line saying how to install them
        raise RuntimeError(str(e)) from None
    name = f" ({s['class_name']})" if s["class_name"] else ""
    print(f"class {s['class_index']}{name}, p={s['prob']:.3f}; Grad-CAM on {s['layer']}"
          f"{', alpha_t of ' + str(len(s['alpha_layers'])) + ' TAdaConv layers' if s['alpha_layers'] else ''}")
    print(f"wrote {', '.join(s['files'])} to {args.output}")
