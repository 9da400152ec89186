"""``tada-zoo profile``: parameters and GFLOPs (multiply-accumulates) as in the papers' tables."""
import argparse

from tada_zoo.deploy.profile import profile_model

from ._args import positive_int

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser("profile", help="parameters and GFLOPs (multiply-accumulates) as in the papers")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--frames", type=positive_int, default=None, help="clip length (default: the model's)")
    p.add_argument("--size", type=positive_int, default=224, help="input height and width (default 224)")
    p.add_argument("--num-classes", type=positive_int, default=None, help="classifier size (default: the model's)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    r = profile_model(args.model, args.frames, args.size, args.num_classes)
    print(f"model:  {r['model']}")
    print(f"input:  {'x'.join(map(str, r['input']))}")
    print(f"params: {r['params'] / 1e6:.2f}M ({r['params']:,})")
    print(f"GFLOPs: {r['gflops']:.2f} (multiply-accumulates)")
