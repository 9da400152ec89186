"""TAda2D-R50 vs TSN-R50 vs timm resnet50 on the B*T frames: time and peak memory ratios.

    python benchmarks/bench_models.py [--threads 2] [--batches 1 4] [--frames 8] [--size 224]

Goals (issue #2): inference TAda2D/TSN <= 1.05, training step <= 1.20, peak memory <= 1.20.
"""
import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, peak_memory_mb, time_runs  # noqa: E402

MODELS = ("tada2d_r50_8f", "tsn_r50_8f", "resnet50")


def build(name: str, batch: int, frames: int, size: int, train: bool):
    """The call to measure: one inference or one training step of ``name``."""
    import timm

    import tada_zoo  # noqa: F401

    model = timm.create_model(name, num_classes=400)
    x = torch.randn(batch, 3, frames, size, size)
    if name == "resnet50":  # the 2D net on the B*T frames, scores averaged over time
        frames_x = x.transpose(1, 2).flatten(0, 1).contiguous()
        forward = lambda: model(frames_x).view(batch, frames, -1).mean(1)  # noqa: E731
    else:
        forward = lambda: model(x)  # noqa: E731
    if not train:
        model.eval()

        def step():
            with torch.inference_mode():
                forward()
        return step
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    target = torch.randint(400, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(forward(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-memory", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.frames}x{args.size}x{args.size}")
    print("| batch | mode | tada2d s | tsn s | resnet50 s | TAda2D/TSN time | TSN/resnet50 time "
          "| TAda2D/TSN peak mem | TAda2D MB | TSN MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for batch in args.batches:
        for train in (False, True):
            calls = {n: build(n, batch, args.frames, args.size, train) for n in MODELS}
            runs = time_runs(calls, repeats=args.repeats)
            t = {n: median_time(runs, n) for n in runs}
            del calls
            mem = {}
            if not args.no_memory:
                for n in ("tada2d_r50_8f", "tsn_r50_8f"):
                    mem[n] = peak_memory_mb(
                        functools.partial(build, n, batch, args.frames, args.size, train), args.threads)
            mode = "train step" if train else "inference"
            mem_cols = (f"{mem['tada2d_r50_8f'] / mem['tsn_r50_8f']:.3f} | {mem['tada2d_r50_8f']:.0f} | "
                        f"{mem['tsn_r50_8f']:.0f}") if mem else "- | - | -"
            print(f"| {batch} | {mode} | {t['tada2d_r50_8f']:.3f} | {t['tsn_r50_8f']:.3f} | {t['resnet50']:.3f} | "
                  f"{paired_ratio(runs, 'tada2d_r50_8f', 'tsn_r50_8f'):.3f} | "
                  f"{paired_ratio(runs, 'tsn_r50_8f', 'resnet50'):.3f} | {mem_cols} |",
                  flush=True)


if __name__ == "__main__":
    main()
