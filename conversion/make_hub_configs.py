"""Regenerate hub_configs/<arch>.<tag>/{config.json, README.md} and conversion/releases.json
from the model registry.

    python conversion/make_hub_configs.py [--out hub_configs] [--only NAME ...]

One folder per registered model with a tada-zoo Hub repo (``tada_zoo.models.hub_models()``:
the conversions of released original checkpoints and the inflated ``.in1k_inflated``
weights); ``releases.json`` lists the released original checkpoints, written from their
pretrained cfgs (the registry is the single source). tests/test_hub.py fails when either drifts.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tada_zoo  # noqa: E402,F401  (registers the models)
from tada_zoo._files import write_text  # noqa: E402
from tada_zoo.models import family, hub_models, registered_cfg, released_models, repo_id  # noqa: E402
from tada_zoo.weights.hub import write_hub_files  # noqa: E402

RELEASES = ROOT / "conversion" / "releases.json"


def release_manifest() -> dict:
    """conversion/releases.json: every released original checkpoint and the Hub repo it becomes."""
    entries = []
    for name in released_models():
        cfg = registered_cfg(name)
        entries.append(dict(
            model=name, family=family(name).display_name(name), dataset=cfg.dataset, frames=cfg.num_frames,
            sampling_rate=cfg.frame_interval, init=cfg.init, original_file=cfg.original_file,
            original_url=cfg.original_url, repo_id=repo_id(name)))
    return {
        "about": "Written by conversion/make_hub_configs.py from the pretrained cfgs of the model registry "
                 "(edit those, not this file). Every released original TAdaConv checkpoint and the Hub repo it "
                 "becomes; original_file is the name conversion/publish.py looks for in the folder of downloads "
                 "(Google Drive names are not stable: rename the download).",
        "source": "https://github.com/alibaba-mmai-research/TAdaConv/blob/main/MODEL_ZOO.md",
        "checkpoints": entries,
    }


def manifest_text() -> str:
    return json.dumps(release_manifest(), indent=2) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "hub_configs")
    p.add_argument("--only", nargs="*", help="these models only (default: all, and stale folders are removed)")
    args = p.parse_args(argv)
    names = args.only or hub_models()
    for name in names:
        write_hub_files(name, args.out / name)
        print(f"wrote {args.out / name}")
    if not args.only:
        for stale in sorted(d for d in args.out.iterdir() if d.is_dir() and d.name not in names):
            shutil.rmtree(stale)
            print(f"removed stale {stale}")
        write_text(RELEASES, manifest_text())
        print(f"wrote {RELEASES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
