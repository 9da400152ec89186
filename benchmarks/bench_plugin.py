"""Plug-in cost of TAdaConv (paper Table 3): each TAda model against its baseline, same run.

    python benchmarks/bench_plugin.py [--pairs slowfast_r50_8x8 r3d_r50_8f ...] [--size 112 --batch 1
                                       --threads 2 --repeats 3 --device cpu]

For every pair it times inference (eval, no grad) and one training step (forward,
backward, SGD step) of the full-size models, baseline and TAda alternating so that load
changes hit both alike, and prints median times and the TAda / baseline ratio (median of
the per-turn ratios; goal:
<= 1.10; the FLOPs differ by < 0.05 %).
"""
import argparse
import sys
from functools import partial
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, time_runs  # noqa: E402

import tada_zoo  # noqa: E402,F401

PAIRS = {
    "slowonly_r50_8x8": "slowonly_r50_8x8_tada",
    "slowfast_r50_4x16": "slowfast_r50_4x16_tada",
    "slowfast_r50_8x8": "slowfast_r50_8x8_tada",
    "r2plus1d_r50_8f": "r2plus1d_r50_8f_tada2d",
    "r2plus1d_r50_8f ": "r2plus1d_r50_8f_tada2d1d",  # same baseline, second TAda version
    "r3d_r50_8f": "r3d_r50_8f_tada3d",
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_pair(base_name: str, tada_name: str, args) -> dict:
    models, optims = {}, {}
    for name in (base_name, tada_name):
        models[name] = timm.create_model(name, drop_rate=0.).to(args.device)
        optims[name] = torch.optim.SGD(models[name].parameters(), lr=1e-4)
    frames = models[base_name].num_frames
    x = torch.randn(args.batch, 3, frames, args.size, args.size, device=args.device)
    target = torch.randint(0, 400, (args.batch,), device=args.device)

    def infer(name):
        models[name].eval()
        with torch.no_grad():
            models[name](x)

    def train(name):
        models[name].train()
        optims[name].zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(models[name](x), target).backward()
        optims[name].step()

    out = {}
    for kind, fn in (("infer", infer), ("train", train)):
        def call(name, fn=fn):
            fn(name)
            _sync(args.device)
        runs = time_runs({name: partial(call, name) for name in (base_name, tada_name)}, args.repeats)
        out[kind] = (median_time(runs, base_name), median_time(runs, tada_name),
                     paired_ratio(runs, tada_name, base_name))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="*", default=None, help="baseline names (default: all)")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {args.batch}, {args.size}x{args.size}, {args.threads} threads, {args.device}, "
          f"median of {args.repeats}", flush=True)
    print(f"{'baseline':20s} {'TAda':26s} {'infer base/TAda (s)':>20s} {'ratio':>6s} "
          f"{'train base/TAda (s)':>20s} {'ratio':>6s}")
    for base, tada in PAIRS.items():
        base = base.strip()
        if args.pairs and base not in args.pairs and tada not in args.pairs:
            continue
        r = bench_pair(base, tada, args)
        (bi, ti, ri), (bt, tt, rt) = r["infer"], r["train"]
        print(f"{base:20s} {tada:26s} {bi:9.3f} /{ti:9.3f} {ri:6.2f} {bt:9.3f} /{tt:9.3f} {rt:6.2f}", flush=True)


if __name__ == "__main__":
    main()
