"""Record what the ORIGINAL TAdaConv code picks and crops, for tests/fixtures/original_pipeline_cases.json.gz.

Maintainer script. It runs the original functions unchanged from a checkout of
``alibaba-mmai-research/TAdaConv`` (nothing of it is copied into this project):
``BaseVideoDataset._interval_based_sampling`` / ``_segment_based_sampling``
(``tadaconv/datasets/base/base_dataset.py``, taken out of the class with ``ast`` because the
module imports decord and OSS clients) and ``KineticsResizedCrop._get_controlled_crop``
(``tadaconv/datasets/utils/transformations.py``, imported as it is), and the data settings of
every released config after the original ``Config`` class (``tadaconv/utils/config.py``, taken
out with ``ast`` and given a no-op checkpoint-directory maker) has merged its ``_BASE`` chain
with ``configs/pool/base.yaml``, as ``runs/run.py --cfg FILE`` does. The cases cover more
lengths, frame rates, clip counts, protocols and frame sizes than the four reference videos
of ``../shared/reference/pipeline``, so that the tests check the original's semantics, not a
fit to a few videos.

    python conversion/record_original_pipeline.py --original /path/to/TAdaConv
"""
import argparse
import ast
import gzip
import hashlib
import importlib.util
import json
import os
import random
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "original_pipeline_cases.json.gz"

LENGTHS = [1, 7, 64, 150, 311, 1000]
FPS = [12.0, float(Fraction(24000, 1001)), 25.0, float(Fraction(30000, 1001)), 30.0, 50.0, 60.0]
INTERVAL_PROTOCOLS = [(8, 8), (16, 5), (32, 2), (16, 4), (4, 16)]  # frames x rate
SEGMENT_LENGTHS = [1, 2, 3, 7, 8, 15, 16, 17, 31, 50, 64, 100, 150, 311]
SEGMENT_FRAMES = [8, 16, 32]
CLIPS = [1, 2, 3, 4, 10]
SUBSAMPLE = 24  # stored view pixels: every 24th row and column (not a divisor of any crop size)
# (height, width) of decoded frames; (test short side, crop size); crops
FRAME_SIZES = [(256, 340), (240, 320), (256, 456), (426, 240), (360, 640), (181, 322), (480, 480),
               (300, 300), (224, 224), (720, 1280), (257, 257)]
SCALES = [(256, 256), (224, 224), (256, 224)]
# tada-zoo tag -> the original config its weights were trained with (every released config whose
# weights were released; tadaconvnextv2_base_ssv2_16f.yaml has none)
CONFIGS = {
    "tada2d_r50_8f.k400": "configs/projects/tada/k400/tada2d_8x8.yaml",
    "tada2d_r50_16f.k400": "configs/projects/tada/k400/tada2d_16x5.yaml",
    "tada2d_r50_8f.ssv2": "configs/projects/tada/ssv2/tada2d_8f.yaml",
    "tada2d_r50_16f.ssv2": "configs/projects/tada/ssv2/tada2d_16f.yaml",
    **{f"tadaconvnextv2_{s[0]}_16f.{d}": f"configs/projects/tadaconvnextv2/tadaconvnextv2_{s}_{d}_16f.yaml"
       for s in ("tiny", "small", "base") for d in ("k400", "ssv2") if (s, d) != ("base", "ssv2")},
    **{f"tadaformer_{a}_16f.{d}": f"configs/projects/tadaformer/tadaformer_{a}_{d}_16f.yaml"
       for a in ("b16", "l14") for d in ("k400", "ssv2")},
}


def pattern_clip(t: int, h: int, w: int) -> torch.Tensor:
    """Deterministic uint8 frames (T, H, W, 3) with detail at every pixel (no RNG involved)."""
    y = torch.arange(h).view(1, h, 1, 1)
    x = torch.arange(w).view(1, 1, w, 1)
    c = torch.arange(3).view(1, 1, 1, 3)
    f = torch.arange(t).view(t, 1, 1, 1)
    return ((y * y * 3 + x * 5 + x * y + c * 50 + f * 17) % 256).to(torch.uint8)


def _sampling_functions(original: Path):
    """The two sampling methods of BaseVideoDataset, compiled from the original source."""
    src = (original / "tadaconv/datasets/base/base_dataset.py").read_text()
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "BaseVideoDataset")
    wanted = [n for n in cls.body if isinstance(n, ast.FunctionDef)
              and n.name in ("_interval_based_sampling", "_segment_based_sampling")]
    namespace = dict(torch=torch, random=random)
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "base_dataset.py", "exec"), namespace)
    return namespace["_interval_based_sampling"], namespace["_segment_based_sampling"]


def original_config(original: Path, cfg_file: str):
    """The original ``Config`` object of ``cfg_file``, merged as run.py does (run from the checkout)."""
    src = (original / "tadaconv/utils/config.py").read_text()
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "Config")
    import argparse as _argparse
    import copy as _copy
    import yaml

    namespace = dict(os=os, yaml=yaml, json=json, copy=_copy, argparse=_argparse,
                     ckp=SimpleNamespace(make_checkpoint_dir=lambda path: None),
                     logger=SimpleNamespace(info=print, warning=print))
    exec(compile(ast.Module(body=[cls], type_ignores=[]), "config.py", "exec"), namespace)
    cwd, argv = os.getcwd(), sys.argv
    try:
        os.chdir(original)
        sys.argv = ["run.py", "--cfg", cfg_file]
        return namespace["Config"](load=True)
    finally:
        os.chdir(cwd)
        sys.argv = argv


def _merged_config(original: Path, cfg_file: str) -> dict:
    """The original Config's merge of ``cfg_file`` as a dict (what checkpoints store)."""
    return original_config(original, cfg_file).cfg_dict


def _data_facts(cfg: dict) -> dict:
    """What the data pipeline reads from a merged config."""
    data, aug = cfg["DATA"], cfg["AUGMENTATION"]
    return dict(
        train_dataset=cfg["TRAIN"]["DATASET"], sampling_mode=data["SAMPLING_MODE"],
        num_input_frames=data["NUM_INPUT_FRAMES"], sampling_rate=data["SAMPLING_RATE"],
        target_fps=data["TARGET_FPS"], minus_interval=data.get("MINUS_INTERVAL", False),
        train_jitter_scales=data["TRAIN_JITTER_SCALES"], train_crop_size=data["TRAIN_CROP_SIZE"],
        test_scale=data["TEST_SCALE"], test_crop_size=data["TEST_CROP_SIZE"], mean=data["MEAN"], std=data["STD"],
        ratio=aug["RATIO"], color_aug=aug["COLOR_AUG"],
        color_p=aug.get("COLOR_P", 0.0), grayscale=aug["GRAYSCALE"], gray_first=aug["GRAY_FIRST"],
        autoaugment=aug.get("AUTOAUGMENT", {}).get("TYPE") if aug.get("AUTOAUGMENT", {}).get("ENABLE") else None,
        random_erasing=aug["RANDOM_ERASING"]["PROB"] if aug["RANDOM_ERASING"]["ENABLE"] else 0.0,
        mixup=aug["MIXUP"]["ENABLE"], cutmix=aug["CUTMIX"]["ENABLE"], ssv2_flip=aug["SSV2_FLIP"],
        use_gpu=aug["USE_GPU"])


def _original_module(original: Path, rel: str, name: str):
    spec = importlib.util.spec_from_file_location(name, original / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clip_digest(clip: torch.Tensor) -> str:
    """sha256 of a float clip in [0, 1] that holds uint8 levels (k / 255)."""
    return hashlib.sha256((clip * 255).round().to(torch.uint8).contiguous().numpy().tobytes()).hexdigest()


def _transformations(original: Path):
    return _original_module(original, "tadaconv/datasets/utils/transformations.py", "original_transformations")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", required=True, type=Path, help="checkout of alibaba-mmai-research/TAdaConv")
    p.add_argument("--commit", default=None, help="the checkout's commit, when it is not a git work tree")
    p.add_argument("--output", type=Path, default=OUT)
    args = p.parse_args(argv)
    interval, segment = _sampling_functions(args.original)
    this = SimpleNamespace(cfg=SimpleNamespace(DATA=SimpleNamespace(TARGET_FPS=30, MINUS_INTERVAL=False)))

    interval_cases = []
    for n in LENGTHS:
        for fps in FPS:
            for frames, rate in INTERVAL_PROTOCOLS:
                for clips in CLIPS:
                    got = [interval(this, n, fps, k, clips, frames, rate).tolist() for k in range(clips)]
                    interval_cases.append(dict(length=n, fps=fps, frames=frames, rate=rate, clips=clips, indices=got))
    segment_cases = []
    for n in SEGMENT_LENGTHS:
        for frames in SEGMENT_FRAMES:
            for clips in CLIPS:
                got = [segment(this, n, k, clips, frames, False).tolist() for k in range(clips)]
                segment_cases.append(dict(length=n, frames=frames, clips=clips, indices=got))

    tr = _transformations(args.original)
    crop_cases = []
    for h, w in FRAME_SIZES:
        clip = pattern_clip(1, h, w).permute(3, 0, 1, 2).float() / 255  # ToTensorVideo: (C, T, H, W)
        for scale, size in SCALES:
            for crops in (1, 3):
                views = []
                for k in range(crops):
                    op = tr.KineticsResizedCrop([scale, scale], size, num_spatial_crops=crops)
                    op.set_spatial_index(k)
                    views.append([round(v, 5) for v in op(clip)[:, :, ::SUBSAMPLE, ::SUBSAMPLE].flatten().tolist()])
                crop_cases.append(dict(height=h, width=w, short_side=scale, crop=size, crops=crops,
                                       subsample=SUBSAMPLE, views=views))

    # the original's video RandAugment (creat_auto_augmentation) of every V2 / TAdaFormer config, seeded
    aa = _original_module(args.original, "tadaconv/datasets/utils/auto_augment.py", "original_auto_augment")
    ra_clip = pattern_clip(3, 48, 64).permute(3, 0, 1, 2).float() / 255  # (C, T, H, W)
    randaugment = dict(config="rand-m9-n4-mstd0.5-inc1", crop=224, mean=[0.45, 0.45, 0.45], clip=[3, 48, 64],
                       cases=[])
    op = aa.creat_auto_augmentation(randaugment["config"], randaugment["crop"], randaugment["mean"])
    for seed in range(48):
        random.seed(seed)
        np.random.seed(seed)
        try:
            digest = clip_digest(op(ra_clip.clone()))
        except ValueError as e:  # posterize to 0 bits: modern Pillow refuses what the original asks for
            digest = f"raises: {e}"
        randaugment["cases"].append(dict(seed=seed, sha256=digest))

    configs = {tag: dict(config=path, **_data_facts(_merged_config(args.original, path)))
               for tag, path in CONFIGS.items()}

    commit = args.commit or os.popen(f"git -C {args.original} rev-parse HEAD 2>/dev/null").read().strip() or "unknown"
    out = dict(
        about=("Recorded by conversion/record_original_pipeline.py from the original TAdaConv code "
               f"(commit {commit}): interval/segment test-clip indices (TARGET_FPS 30, MINUS_INTERVAL false) "
               "and KineticsResizedCrop controlled crops of pattern_clip frames after ToTensorVideo "
               f"(every {SUBSAMPLE}th row and column of each (C, T, crop, crop) view, flattened, 5 decimals); "
               "the data settings of the released configs, merged by the original Config class; sha256 of the "
               "original video RandAugment's output on pattern_clip frames per seed (random and np.random seeded)."),
        torch=torch.__version__, interval=interval_cases, segment=segment_cases, crops=crop_cases,
        configs=configs, randaugment=randaugment)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=9) as f:
        json.dump(out, f, separators=(",", ":"))
    os.replace(tmp, args.output)
    print(f"wrote {args.output}: {len(interval_cases)} interval, {len(segment_cases)} segment, "
          f"{len(crop_cases)} crop cases, {len(configs)} configs ({args.output.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    sys.exit(main())
