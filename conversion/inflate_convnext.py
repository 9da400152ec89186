"""Thin wrapper kept for old instructions: use ``tada-zoo inflate`` (in the package) instead.

    tada-zoo inflate --model tadaconvnext_t_16f.in1k_inflated              # timm's convnext_tiny.fb_in1k
    tada-zoo inflate --model tadaconvnext_t_16f.in1k_inflated --source convnext_tiny.fb_in1k.safetensors

    python conversion/inflate_convnext.py --source SRC --model tadaconvnext_t_16f --output DIR [--model-args JSON]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tada_zoo.weights.inflate import inflate_to_folder  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="2D ConvNeXt -> TAdaConvNeXt weights (same as tada-zoo inflate)")
    p.add_argument("--source", required=True, help="2D ConvNeXt weights file or timm name")
    p.add_argument("--model", default="tadaconvnext_t_16f", help="video architecture (or arch.tag) to inflate into")
    p.add_argument("--output", default=None, help="new folder (default for a tag: its place in $TADA_ZOO_HOME)")
    p.add_argument("--model-args", default="{}", help="JSON dict of extra model arguments (e.g. depths/dims)")
    args = p.parse_args(argv)
    out = inflate_to_folder(args.model, args.source, args.output, model_kwargs=json.loads(args.model_args))
    print(f"wrote {out}/model.safetensors")


if __name__ == "__main__":
    main()
