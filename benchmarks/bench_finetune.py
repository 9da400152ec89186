"""Which schedule to fine-tune a tag's weights with on a small dataset of one's own?

The released recipes train for 64-100 epochs with 4-8 warm-up epochs on hundreds of
thousands of clips; a user fine-tunes a tag's weights on a few hundred videos. This compares,
on the demo's synthetic videos (``make demo``: the class is the direction of motion),
candidate fine-tuning schedules derived from the family's recipe:

1. "pretrains" a small TAda2D (the demo's widths) on the demo's 4-direction dataset (the tag);
2. fine-tunes it with ``tada-zoo train --checkpoint-init`` on a new dataset (3 classes,
   other frame size and seed, few videos: a new head) with each candidate: the full recipe
   (``--recipe``: its epochs and warm-up) and shorter schedules at the recipe's (batch-scaled)
   learning rate x {1, 0.1};
3. prints validation top-1 (mean over seeds) and training time per candidate.

The numbers choose ``tada_zoo.engine.recipes.FINETUNE`` (docs/training.md).
Usage: python benchmarks/bench_finetune.py [--seeds 2] [--workdir DIR]
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

TINY = dict(layers=[1, 1, 1, 1], widths=[8, 16, 32, 64], stem_width=8)
COMMON = ["--num-frames", "8", "--frame-interval", "2", "--input-size", "32", "--test-size", "32", "--no-hflip",
          "--batch-size", "8", "--workers", "1", "--quiet", "--model-kwargs", json.dumps(TINY)]
# (name, flags): the full recipe, and shorter schedules at lr x {1, 0.1}
CANDIDATES = [
    ("recipe tada2d_8x8_k400 (100 epochs, 8 warm-up)", ["--recipe", "tada2d_8x8_k400"]),
    ("30 epochs, 2 warm-up, lr x1", ["--epochs", "30", "--warmup-epochs", "2"]),
    ("30 epochs, 2 warm-up, lr x0.1", ["--epochs", "30", "--warmup-epochs", "2", "--lr-mult", "0.1"]),
    ("15 epochs, 1 warm-up, lr x1", ["--epochs", "15", "--warmup-epochs", "1"]),
    ("15 epochs, 1 warm-up, lr x0.1", ["--epochs", "15", "--warmup-epochs", "1", "--lr-mult", "0.1"]),
    ("5 epochs, 1 warm-up, lr x1", ["--epochs", "5", "--warmup-epochs", "1"]),
]


def _lr_flags(flags, base_lr: float):
    """``--lr-mult K`` -> ``--lr`` (K x the recipe's batch-scaled learning rate)."""
    if "--lr-mult" not in flags:
        return flags
    i = flags.index("--lr-mult")
    return flags[:i] + ["--lr", f"{base_lr * float(flags[i + 1]):g}"] + flags[i + 2:]


def main(argv=None) -> int:
    import torch

    from tada_zoo.cli import main as cli
    from tada_zoo.data.synthetic import make_moving_shapes
    from tada_zoo.engine.trainer import TrainConfig, resolve_config

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--train-videos", type=int, default=24)
    p.add_argument("--only", type=int, nargs="*", default=None, help="candidate indices to run")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    base_lr = resolve_config(TrainConfig(model="tada2d_r50_8f", batch_size=8)).lr
    with tempfile.TemporaryDirectory(prefix="tada-zoo-finetune-") as tmp:
        work = Path(args.workdir or tmp)
        a_train, a_val = make_moving_shapes(work / "a", 128, 64, num_frames=16, size=40)
        tag = work / "runs" / "pretrained"
        if not (tag / "best.safetensors").exists():
            print("pretraining on the demo dataset (4 directions) ...", flush=True)
            rc = cli(["train", "--model", "tada2d_r50_8f", "--data-root", str(work / "a"), "--train-list", str(a_train),
                      "--val-list", str(a_val), "--num-classes", "4", "--output", str(tag), "--epochs", "20",
                      "--lr", "0.05", "--warmup-epochs", "1", "--drop-rate", "0", *COMMON])
            if rc:
                return rc
        # the new dataset: larger frames (the shape moves less per sampled pixel), consecutive frames
        # (half the motion in a clip), 3 classes (a new head), few videos
        b_train, b_val = make_moving_shapes(work / f"b{args.train_videos}", args.train_videos, 60, num_frames=16, size=64,
                                            num_classes=3, seed=1)
        rows = []
        for i, (name, flags) in enumerate(CANDIDATES):
            if args.only is not None and i not in args.only:
                continue
            scores, times = [], []
            for seed in range(args.seeds):
                out = work / "runs" / f"{len(rows)}_{seed}"
                t0 = time.time()
                rc = cli(["train", "--model", "tada2d_r50_8f", "--data-root", str(b_train.parent),
                          "--train-list", str(b_train), "--val-list", str(b_val), "--num-classes", "3",
                          "--checkpoint-init", str(tag / "best.safetensors"), "--output", str(out),
                          "--seed", str(seed), "--eval-every", "1000", "--resume", "none",
                          *_lr_flags(flags, base_lr), *COMMON, "--frame-interval", "1"])
                if rc:
                    return rc
                times.append(time.time() - t0)
                summary = json.loads((out / "summary.json").read_text())
                scores.append(summary["last_val"]["top1"])
            rows.append((name, statistics.mean(scores), scores, statistics.mean(times)))
            print(f"{name:<48} top-1 {rows[-1][1]:5.1f}% {scores} ({rows[-1][3]:.0f} s)", flush=True)
    print(f"\nfine-tuning a 4-direction TAda2D on {args.train_videos} videos of 3 classes (batch 8, recipe lr "
          f"{base_lr:.3g} = tada2d_8x8_k400 scaled to batch 8), {args.seeds} seeds; validation top-1 after the "
          "last epoch:")
    for name, mean, scores, secs in rows:
        print(f"  {name:<48} {mean:5.1f}%   {secs:5.0f} s per run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
