"""``tada-zoo serve``: a web page to try a model on your own videos (Gradio, the ``serve`` extra)."""
import argparse
import signal
import sys
import time
from pathlib import Path

from tada_zoo.deploy.app import MAX_SECONDS, MAX_UPLOAD_MB, find_examples, is_local_host, require_gradio, running_app
from tada_zoo.inference.predict import VideoClassifier

from ._args import HelpFormatter, _number, positive_float

__all__ = ["register"]

port_number = _number(int, 1, inclusive=True, maximum=65535)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="a web page to try a model: upload a video, see its top-5, Grad-CAM and alpha_t",
        formatter_class=HelpFormatter,
        description="Serve a page at http://HOST:PORT/ where a visitor uploads a video (or picks one of "
                    "--examples) and sees the model's top-5 classes with scores, the Grad-CAM animation of the top "
                    "class and TAdaConv's calibration weights alpha_t. Only uploads and the examples are read; an "
                    "upload is deleted once answered. Needs gradio: pip install 'tada-zoo[serve]'.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", default=None, metavar="RUN_OR_WEIGHTS",
                        help="a train --output folder or its weights file (they name the model and classes)")
    source.add_argument("--model", default=None, metavar="NAME.TAG|hf-hub:USER/NAME|local-dir:DIR",
                        help="registered weights, a repo of tada-zoo push, or its folder")
    p.add_argument("--labels", default=None, help="class names file, line i = class i (default: the model's)")
    p.add_argument("--examples", default=None, metavar="DIR",
                   help="a folder of videos offered on the page by name (default: none)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but 127.0.0.1 / localhost / ::1 makes the page reachable "
                        "from other machines")
    p.add_argument("--port", type=port_number, default=7860, help="port to listen on")
    p.add_argument("--max-upload-mb", type=positive_float, default=MAX_UPLOAD_MB, help="largest upload, in MB")
    p.add_argument("--max-seconds", type=positive_float, default=MAX_SECONDS, help="longest video, in seconds")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _wait() -> None:
    """Until Ctrl+C or SIGTERM (both end the ``running_app`` block, which cleans up)."""
    def stop(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(3600)


def _main(args: argparse.Namespace) -> None:
    try:
        require_gradio()  # before the model loads
    except ImportError as e:
        raise RuntimeError(str(e)) from None
    find_examples(args.examples)  # a bad --examples fails before the model loads
    source = args.checkpoint if args.checkpoint is not None else args.model
    clf = VideoClassifier.from_pretrained(source, labels=args.labels)
    clf.model.to(args.device)
    blocked = [args.checkpoint] if args.checkpoint and Path(args.checkpoint).exists() else []
    if not is_local_host(args.host):
        print(f"warning: --host {args.host}: the page is reachable from other machines; anyone who reaches it can "
              "run the model on their uploads", file=sys.stderr)
    with running_app(clf, args.host, args.port, args.examples, args.max_upload_mb, args.max_seconds,
                     args.device, blocked) as url:
        print(f"{clf.name}: serving {url} (Ctrl+C to stop)", flush=True)
        if clf.note:
            print(f"note: {clf.note}", file=sys.stderr)
        try:
            _wait()
        except KeyboardInterrupt:
            print("stopped", flush=True)
