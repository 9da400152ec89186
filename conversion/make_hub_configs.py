"""Regenerate hub_configs/<arch>.<tag>/{config.json, README.md} from the model registry.

    python conversion/make_hub_configs.py [--out hub_configs] [--only NAME ...]

One folder per registered model converted from a released original checkpoint (its
pretrained cfg names an ``original_file``); tests/test_hub.py fails when they drift.
"""
import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tada_zoo  # noqa: E402,F401  (registers the models)
from tada_zoo.hub import released_models, write_hub_files  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "hub_configs")
    p.add_argument("--only", nargs="*", help="these models only (default: all, and stale folders are removed)")
    args = p.parse_args(argv)
    names = args.only or released_models()
    for name in names:
        write_hub_files(name, args.out / name)
        print(f"wrote {args.out / name}")
    if not args.only:
        for stale in sorted(d for d in args.out.iterdir() if d.is_dir() and d.name not in names):
            shutil.rmtree(stale)
            print(f"removed stale {stale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
