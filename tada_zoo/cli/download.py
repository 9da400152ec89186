"""``tada-zoo download``: a release's original checkpoint from its published URL into the weights folder."""
import argparse

from tada_zoo.weights.download import download_original
from tada_zoo.models._weights import weights_home

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "download", help="download a release's original checkpoint into $TADA_ZOO_HOME and convert it",
        description="Downloads the original checkpoint of NAME.TAG from its published URL (Google Drive; needs "
                    "pip install 'tada-zoo[download]') into $TADA_ZOO_HOME (default ~/.cache/tada_zoo) and converts "
                    "it there, so that --pretrained TAG and timm.create_model(NAME.TAG, pretrained=True) load it.")
    p.add_argument("name", metavar="NAME.TAG",
                   help="a release, e.g. tada2d_r50_8f.k400 (timm.list_pretrained('tada*'))")
    p.add_argument("--url", default=None, help="download from this URL instead of the published one (a mirror)")
    p.add_argument("--no-convert", dest="convert", action="store_false",
                   help="only download (it is converted on first use)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    if "." not in args.name:
        raise ValueError(f"{args.name}: give NAME.TAG, e.g. {args.name}.k400 (the tag names the checkpoint)")
    path = download_original(args.name, url=args.url, convert=args.convert, quiet=args.quiet)
    print(f"{args.name}: {path} (weights folder {weights_home()})")
