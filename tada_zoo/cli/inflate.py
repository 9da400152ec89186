"""``tada-zoo inflate``: 2D ImageNet / CLIP weights -> a video model's weights folder (paper init)."""
import argparse
from pathlib import Path

from tada_zoo._files import check_writable
from tada_zoo.weights.inflate import inflate_to_folder

from ._args import json_object, positive_int

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inflate", help="2D ImageNet / CLIP weights -> video model weights (e.g. the .in1k_inflated tags)",
        description="Inflates 2D weights into a video model by its family's rule (stem on the centre temporal tap, "
                    "calibration at identity) and writes model.safetensors, config.json and a model card. "
                    "For a tag (e.g. tadaconvnext_t_16f.in1k_inflated) the default --source is its timm 2D model "
                    "and the default --output its place in $TADA_ZOO_HOME, where --pretrained finds it.")
    p.add_argument("--model", required=True, help="arch.tag (e.g. tadaconvnext_t_16f.in1k_inflated) or an architecture")
    p.add_argument("--source", default=None,
                   help="2D weights: a file (.safetensors / .pth / .bin) or a timm name (convnext_tiny.fb_in1k, "
                        "resnet50.tv_in1k, vit_base_patch16_clip_quickgelu_224.openai; fetched from the Hub); "
                        "default: the tag's")
    p.add_argument("--output", default=None, help="new (or empty) folder; default for a tag: $TADA_ZOO_HOME/ARCH.TAG")
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="classifier size (default: the tag's, else the 2D classifier's when it fits)")
    p.add_argument("--model-kwargs", type=json_object, default={}, help="extra model arguments as a JSON object")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    if args.output:
        check_writable(Path(args.output).resolve().parent, "--output's folder")
    out = inflate_to_folder(args.model, args.source, args.output, num_classes=args.num_classes,
                            model_kwargs=args.model_kwargs)
    print(f"wrote {out}/model.safetensors, config.json, README.md")
