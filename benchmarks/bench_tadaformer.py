"""TAdaFormer-B/16 vs timm's CLIP ViT-B/16 run on the same frames: inference time ratio.

TAdaFormer-B/16 on a 16-frame clip sees 8 token frames (stride-2 tubelet), so the
baselines run on those 8 frames as a batch: ``vit_base_patch16_clip_224`` (the issue's
baseline, GELU) and ``vit_base_patch16_clip_quickgelu_224`` (OpenAI's CLIP, the network
TAdaFormer is built from and inflated from). All run in this process, batch 1, float32,
eval, no_grad, taking ``--repeats`` turns of ``--calls`` consecutive calls (steady state,
see ``common.time_runs``); the ratio is the median of the per-turn ratios (wall clock and
process CPU time).
Goal (issue 5): ratio <= 1.15.

    python benchmarks/bench_tadaformer.py [--threads 2] [--repeats 7] [--calls 3] [--device cpu]
"""
import argparse
import sys
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, time_runs  # noqa: E402

import tada_zoo  # noqa: E402,F401  registers the models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--frames", type=int, default=16, help="input frames (token frames: half)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="cpu")
    p.add_argument("--calls", type=int, default=3, help="consecutive calls timed per turn (steady state)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    clip = torch.randn(1, 3, args.frames, args.size, args.size, device=dev)
    frames = clip[:, :, ::2].transpose(1, 2).flatten(0, 1).contiguous()  # (T/2, 3, H, W)
    runs = {
        "tadaformer_b16_16f": (timm.create_model("tadaformer_b16_16f", num_frames=args.frames), clip),
        f"vit_base_patch16_clip_224 x{len(frames)}": (timm.create_model("vit_base_patch16_clip_224"), frames),
        f"vit_base_patch16_clip_quickgelu_224 x{len(frames)}": (
            timm.create_model("vit_base_patch16_clip_quickgelu_224"), frames),
    }

    def call(model, x):
        def fn():
            model(x)
            sync()
        return fn

    with torch.no_grad():
        t = time_runs({k: call(m.eval().to(dev), x) for k, (m, x) in runs.items()}, args.repeats, calls=args.calls)
    tada = "tadaformer_b16_16f"
    print(f"device {dev}, {args.threads} threads, clip 1x3x{args.frames}x{args.size}x{args.size}, "
          f"median of {args.repeats} turns; {tada} {median_time(t, tada) * 1e3:.1f} ms wall "
          f"{median_time(t, tada, cpu=True) * 1e3:.1f} ms cpu")
    print(f"{'baseline':40s} {'wall ms':>9s} {'cpu ms':>9s}  TAdaFormer / baseline (median per-turn ratio): "
          f"wall  cpu  (goal <= 1.15)")
    for name in list(t)[1:]:
        print(f"{name:40s} {median_time(t, name) * 1e3:9.1f} {median_time(t, name, cpu=True) * 1e3:9.1f}  "
              f"{paired_ratio(t, tada, name):50.3f} {paired_ratio(t, tada, name, cpu=True):5.3f}")

if __name__ == "__main__":
    main()
