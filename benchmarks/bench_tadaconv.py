"""TAdaConv2d fast path vs the literal per-frame-weight path vs a plain convolution.

    python benchmarks/bench_tadaconv.py [--threads 2]

Shapes are ResNet-50 3x3 convs of res2..res5 at 8x224x224 (the paper's Table 2 example is
the first: C=64, 56x56, T=8). Inference and forward+backward, ratios against nn.Conv2d
on the same B*T frames.
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, time_runs  # noqa: E402

from tada_zoo.layers import TAdaConv2d  # noqa: E402

SHAPES = ((64, 56), (128, 28), (256, 14), (512, 7))  # (channels, resolution)


def calls(batch: int, frames: int, channels: int, size: int, train: bool):
    tada = TAdaConv2d(channels, channels, 3, 1, 1)
    plain = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
    plain.weight = tada.weight
    x = torch.randn(batch, channels, frames, size, size, requires_grad=train)
    alpha = torch.rand(batch, channels, frames, 1, 1, requires_grad=train)
    frames_x = x.detach().transpose(1, 2).flatten(0, 1).contiguous().requires_grad_(train)
    # what the models call: the frame-major layout (B, T, C, H, W), no transposes
    x_btc = frames_x.detach().unflatten(0, (batch, frames)).requires_grad_(train)
    alpha_btc = alpha.detach().transpose(1, 2).contiguous().requires_grad_(train)

    def run(fn):
        def call():
            if train:
                fn().sum().backward()
            else:
                with torch.inference_mode():
                    fn()
        return call
    return {
        "plain": run(lambda: plain(frames_x)),
        "fast": run(lambda: tada(x, alpha)),
        "frames": run(lambda: tada.forward_frames(x_btc, alpha_btc)),
        "reference": run(lambda: tada.forward_reference(x, alpha)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, {args.frames} frames")
    print("fast = public (B, C, T, H, W) call; frames = forward_frames on (B, T, C, H, W), as in the models")
    print("| C | HxW | mode | plain ms | frames ms | fast ms | reference ms | frames/plain | fast/plain | reference/plain |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for channels, size in SHAPES:
        for train in (False, True):
            runs = time_runs(calls(args.batch, args.frames, channels, size, train), repeats=args.repeats)
            t = {n: median_time(runs, n) for n in runs}
            r = {n: paired_ratio(runs, n, "plain") for n in runs}
            print(f"| {channels} | {size}x{size} | {'fwd+bwd' if train else 'inference'} | "
                  f"{1e3 * t['plain']:.1f} | {1e3 * t['frames']:.1f} | {1e3 * t['fast']:.1f} | "
                  f"{1e3 * t['reference']:.1f} | {r['frames']:.2f} | {r['fast']:.2f} | "
                  f"{r['reference']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
