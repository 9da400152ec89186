"""Pack ../shared/reference into tests/fixtures/reference, so the test suite passes on a plain clone.

Maintainer script. The reference facts of the original TAdaConv code (see its README) are
copied as they are, except ``pipeline/`` (what the original test pipeline feeds its model for
four real video files): its two full-resolution views per video keep every 4th row and column
(``full_first_s4`` / ``full_last_s4``), exact pixels on a grid that still catches a one-pixel
shift or a wrong resize. With ``../shared`` beside the project the tests also compare the
full-resolution views.

    python conversion/pack_reference_fixtures.py [--reference ../shared/reference]
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "reference"
STRIDE = 4
META_KEYS = ("entry", "video", "decord_len", "decord_fps", "clips", "crops", "view_order", "view_shape",
             "thumbs_pool", "full_views", "decoder_floor", "config", "versions")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    p.add_argument("--output", type=Path, default=OUT)
    args = p.parse_args(argv)
    top = args.output.with_name(args.output.name + ".tmp")
    shutil.rmtree(top, ignore_errors=True)
    shutil.copytree(args.reference, top, ignore=shutil.ignore_patterns("pipeline"))
    pack_pipeline(args.reference / "pipeline", top / "pipeline")
    shutil.rmtree(args.output, ignore_errors=True)
    os.replace(top, args.output)
    size = sum(f.stat().st_size for f in args.output.rglob("*") if f.is_file())
    print(f"wrote {args.output} ({size / 1e6:.1f} MB)")


def pack_pipeline(reference: Path, tmp: Path) -> None:
    entries = json.loads((reference / "entries.json").read_text())
    shutil.copytree(reference / "videos", tmp / "videos")
    shutil.copy(reference / "entries.json", tmp / "entries.json")
    for entry in entries:
        for f in sorted((reference / entry).glob("*.safetensors")):
            t = load_file(f)
            meta = json.loads(f.with_suffix(".json").read_text())
            packed = dict(indices=t["indices"], thumbs=t["thumbs"],
                          full_first_s4=t["full_first"][..., ::STRIDE, ::STRIDE].contiguous(),
                          full_last_s4=t["full_last"][..., ::STRIDE, ::STRIDE].contiguous())
            (tmp / entry).mkdir(exist_ok=True)
            save_file(packed, str(tmp / entry / f.name))
            keep = {k: meta[k] for k in META_KEYS if k in meta}
            (tmp / entry / f.with_suffix(".json").name).write_text(json.dumps(keep, indent=1))
    (tmp / "README.md").write_text(
        "# The original test pipeline's outputs, packed\n\n"
        "Made by `conversion/pack_reference_fixtures.py` from `shared/reference/pipeline` (read its README "
        "for how the original TAdaConv code was run). Same files and tensors, except that the full-resolution "
        f"views keep every {STRIDE}th row and column (`full_first_s4`, `full_last_s4`).\n")


if __name__ == "__main__":
    sys.exit(main())
