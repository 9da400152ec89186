"""``tada-zoo convert``: an original TAdaConv .pyth -> safetensors + config.json + model card."""
import argparse
from pathlib import Path

from tada_zoo._files import check_writable
from tada_zoo.weights.convert import convert_checkpoint, stage_printer

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="original TAdaConv .pyth checkpoint -> safetensors + config.json + model card")
    p.add_argument("--model", default=None,
                   help="arch.tag of a released checkpoint (e.g. tada2d_r50_8f.k400), or an architecture (weights "
                        "of tada-zoo train say theirs: then optional, and must agree)")
    p.add_argument("--checkpoint", required=True,
                   help="original .pyth file, or weights of tada-zoo train (written as tada-zoo push --dry-run does)")
    p.add_argument("--output", required=True,
                   help="new (or empty) directory to write; $TADA_ZOO_HOME/ARCH.TAG (default "
                        "~/.cache/tada_zoo/ARCH.TAG) makes --pretrained TAG / pretrained=True find it")
    p.add_argument("--ema", action="store_true", help="convert 'model_ema_state' instead of 'model_state'")
    p.add_argument("--no-cfg-check", dest="cfg_check", action="store_false",
                   help="do not compare the tag's dataset / frames with the checkpoint's stored config")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    check_writable(Path(args.output).resolve().parent, "--output's folder")
    out = convert_checkpoint(args.model, args.checkpoint, args.output, ema=args.ema, cfg_check=args.cfg_check,
                             step=None if args.quiet else stage_printer())
    print(f"wrote {out}/model.safetensors, config.json, README.md")
