"""``tada-zoo push``: publish a fine-tuned run on the Hugging Face Hub (or write what would be uploaded)."""
import argparse
from pathlib import Path

from tada_zoo._files import check_writable
from tada_zoo.weights.publish import push_run

from ._args import HelpFormatter

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "push", help="publish a fine-tuned run on the Hugging Face Hub", formatter_class=HelpFormatter,
        description="Write the Hub folder of a run of tada-zoo train (model.safetensors, a config.json that timm "
                    "loads with hf-hub: / local-dir:, and a video model card whose every statement is the run's: "
                    "architecture, classes, data protocol, the weights it started from, your dataset, and the "
                    "figures of a tada-zoo evaluate --output of these weights), check that it loads back with the "
                    "run's logits, and upload it with huggingface_hub (token: HF_TOKEN or `hf auth login`).")
    p.add_argument("source", metavar="RUN_OR_CHECKPOINT",
                   help="a train --output folder (its best.safetensors, else last.safetensors) or a weights file")
    p.add_argument("--repo", required=True, help="Hub repo id, user/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--dry-run", metavar="DIR", default=None,
                   help="write the folder that would be uploaded to DIR (new or empty) and upload nothing")
    p.add_argument("--dataset", default=None,
                   help="your dataset's name for the card (default: the name of train's --data-root folder)")
    p.add_argument("--eval", dest="evaluation", default=None, metavar="METRICS_JSON",
                   help="metrics.json (or its folder) of tada-zoo evaluate --output for these weights (default: one "
                        "found in the run folder with their sha256, else no accuracy is claimed)")
    p.add_argument("--with-app", action="store_true",
                   help="also write app.py and requirements.txt: the tada-zoo serve page for this model, ready to "
                        "run as a Hugging Face Space (pip install 'tada-zoo[serve]' to try it locally)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    if args.dry_run:
        check_writable(Path(args.dry_run).resolve().parent, "--dry-run's folder")
    folder, repo = push_run(args.source, args.repo, private=args.private, dry_run=args.dry_run,
                            dataset=args.dataset, evaluation=args.evaluation, with_app=args.with_app)
    if repo is None:
        files = ", ".join(p.name for p in sorted(Path(folder).iterdir()))
        print(f"wrote {folder} ({files}): what `tada-zoo push {args.source} --repo {args.repo}` uploads; "
              f"it loads with timm.create_model(\"local-dir:{folder}\", pretrained=True)")
    else:
        print(f"uploaded to https://huggingface.co/{repo}: timm.create_model(\"hf-hub:{repo}\", pretrained=True)")
