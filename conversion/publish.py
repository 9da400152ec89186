"""Convert a folder of downloaded original checkpoints and publish each as a Hub repo.

    python conversion/publish.py --originals DOWNLOADS/ --dry-run OUT/     # write the repos locally
    HF_TOKEN=... python conversion/publish.py --originals DOWNLOADS/       # push to the Hub

``conversion/releases.json`` lists every released checkpoint: its ``original_file`` is
looked up in ``--originals``; missing files and models not registered yet are reported
and skipped. Each repo is converted (``tada_zoo.weights.convert``), checked to load through timm,
then uploaded as written (``tada_zoo.weights.hub.push_folder``), or left in
``OUT/<org>/<repo>/`` with ``--dry-run`` (a rerun skips the repos already there). After a
real push, set ``published=True`` in the model's pretrained cfg.
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import timm  # noqa: E402

import tada_zoo  # noqa: E402,F401
from tada_zoo.weights.convert import convert_checkpoint  # noqa: E402
from tada_zoo.weights.hub import WEIGHTS_NAME, push_folder  # noqa: E402

RELEASES = ROOT / "conversion" / "releases.json"


def load_releases(path: Path = RELEASES) -> List[dict]:
    return json.loads(Path(path).read_text())["checkpoints"]


def _check_loads(name: str, folder: Path) -> None:
    """The written weights load strictly through timm (what users will do)."""
    timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / WEIGHTS_NAME)))


def publish(originals: Path, dry_run: Optional[Path] = None, only: Optional[List[str]] = None,
            token: Optional[str] = None, releases: Path = RELEASES) -> dict:
    """Returns ``{"done": [repo ids], "skipped": {model: reason}}``."""
    if dry_run is None and not (token or os.environ.get("HF_TOKEN")):
        raise SystemExit("set HF_TOKEN (a write token of the Hub organisation) or use --dry-run DIR")
    done, skipped = [], {}
    for entry in load_releases(releases):
        name = entry["model"]
        if only and name not in only:
            continue
        source = Path(originals) / entry["original_file"]
        if not timm.is_model(name.split(".")[0]):
            skipped[name] = "model not registered in tada_zoo yet"
        elif not source.is_file():
            skipped[name] = f"{source} not found (download {entry['original_url']})"
        if name in skipped:
            print(f"skip {name}: {skipped[name]}")
            continue
        if dry_run is not None:
            folder = Path(dry_run) / entry["repo_id"]
            if (folder / WEIGHTS_NAME).exists():  # written by an earlier run: resume after it
                skipped[name] = f"{folder} already written"
                print(f"skip {name}: {skipped[name]}")
                continue
            convert_checkpoint(name, source, folder)
            _check_loads(name, folder)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "repo"
                convert_checkpoint(name, source, folder)
                _check_loads(name, folder)
                push_folder(folder, entry["repo_id"], token=token)
        print(f"{'wrote' if dry_run else 'pushed'} {entry['repo_id']}")
        done.append(entry["repo_id"])
    return dict(done=done, skipped=skipped)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--originals", type=Path, required=True, help="folder with the downloaded .pyth files")
    p.add_argument("--dry-run", type=Path, default=None, metavar="DIR", help="write the repos under DIR, push nothing")
    p.add_argument("--only", nargs="*", help="these models only")
    p.add_argument("--releases", type=Path, default=RELEASES)
    args = p.parse_args(argv)
    publish(args.originals, args.dry_run, args.only, releases=args.releases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
