"""TAdaConvNeXt-T inference speed against timm's ConvNeXt-T run frame by frame (same process).

The tubelet stem (temporal stride 2) leaves T/2 frame positions for the network, so the
like-for-like baseline is ``convnext_tiny`` on B*T/2 frames (the same multiply-accumulates
but for the calibration); ``convnext_tiny`` on all B*T input frames (the issue's
baseline) is printed too. The models take ``--reps`` turns of ``--calls`` consecutive
calls (steady state, see ``common.time_runs``); a ratio is the median of the per-turn
ratios, so background load hits both models alike. The process CPU time is printed next
to the wall time, as it is the steadier figure on a shared machine.

    python benchmarks/bench_convnext.py [--frames 8 --size 224 --reps 11 --calls 3 --threads 2 --v2]
"""
import argparse
import sys
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, time_runs  # noqa: E402

import tada_zoo  # noqa: E402,F401  (registers the models)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--v2", action="store_true", help="also time TAdaConvNeXtV2-T")
    p.add_argument("--calls", type=int, default=3, help="consecutive calls timed per turn (steady state)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    B, T, S = args.batch, args.frames, args.size
    clip = torch.randn(B, 3, T, S, S)
    models = {
        "tadaconvnext_t": (timm.create_model("tadaconvnext_t", num_classes=400).eval(), clip),
        "convnext_tiny x B*T/2": (timm.create_model("convnext_tiny", num_classes=400).eval(),
                                  torch.randn(B * ((T + 1) // 2), 3, S, S)),
        "convnext_tiny x B*T": (timm.create_model("convnext_tiny", num_classes=400).eval(),
                                torch.randn(B * T, 3, S, S)),
    }
    if args.v2:
        models["tadaconvnextv2_t"] = (timm.create_model("tadaconvnextv2_t_16f").eval(), clip)
    with torch.inference_mode():
        calls = {name: (lambda m=m, x=x: m(x)) for name, (m, x) in models.items()}
        runs = time_runs(calls, args.reps, calls=args.calls)

    base = "convnext_tiny x B*T/2"
    print(f"input {B}x3x{T}x{S}x{S}, {args.threads} threads, median of {args.reps} turns; "
          f"ratios (median of per-turn ratios) against {base}")
    print(f"{'model':24s} {'wall ms':>9s} {'ratio':>6s} {'cpu ms':>9s} {'ratio':>6s}")
    for name in runs:
        print(f"{name:24s} {median_time(runs, name) * 1e3:9.1f} {paired_ratio(runs, name, base):6.3f} "
              f"{median_time(runs, name, cpu=True) * 1e3:9.1f} {paired_ratio(runs, name, base, cpu=True):6.3f}")


if __name__ == "__main__":
    main()
