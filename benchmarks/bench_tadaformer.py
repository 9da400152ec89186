"""TAdaFormer-B/16 vs timm's CLIP ViT-B/16 run on the same frames: inference time ratio.

TAdaFormer-B/16 on a 16-frame clip sees 8 token frames (stride-2 tubelet), so the
baseline is ``vit_base_patch16_clip_224`` on those 8 frames as a batch. Both run in
this process, interleaved, batch 1, 224x224, float32, eval, no_grad; the best of
``--repeats`` runs is reported (wall clock and process CPU time: the CPU time is less
sensitive to other jobs on a shared machine). Goal (issue 5): ratio <= 1.15.

    python benchmarks/bench_tadaformer.py [--threads 2] [--repeats 5] [--device cpu]
"""
import argparse
import time

import timm
import torch

import tada_zoo  # noqa: F401  registers the models


def _best(fn, repeats: int, sync) -> tuple:
    wall, cpu = [], []
    for _ in range(repeats):
        sync()
        w, c = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--frames", type=int, default=16, help="input frames (token frames: half)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    tada = timm.create_model("tadaformer_b16_16f", num_frames=args.frames).eval().to(dev)
    vit = timm.create_model("vit_base_patch16_clip_224").eval().to(dev)
    clip = torch.randn(1, 3, args.frames, args.size, args.size, device=dev)
    frames = clip[:, :, ::2].transpose(1, 2).flatten(0, 1).contiguous()  # (T/2, 3, H, W)

    with torch.no_grad():
        tada(clip), vit(frames)  # warm-up
        runs = {"vit": [], "tada": []}
        for _ in range(2):  # interleave, so both see the same machine load
            runs["vit"].append(_best(lambda: vit(frames), args.repeats, sync))
            runs["tada"].append(_best(lambda: tada(clip), args.repeats, sync))
    vit_w, vit_c = min(r[0] for r in runs["vit"]), min(r[1] for r in runs["vit"])
    tada_w, tada_c = min(r[0] for r in runs["tada"]), min(r[1] for r in runs["tada"])
    print(f"device {dev}, {args.threads} threads, clip 1x3x{args.frames}x{args.size}x{args.size} "
          f"({frames.shape[0]} frames for the ViT)")
    print(f"vit_base_patch16_clip_224 x{frames.shape[0]} frames: {vit_w * 1e3:8.1f} ms wall {vit_c * 1e3:8.1f} ms cpu")
    print(f"tadaformer_b16_16f:                   {tada_w * 1e3:8.1f} ms wall {tada_c * 1e3:8.1f} ms cpu")
    print(f"ratio (TAdaFormer / ViT): wall {tada_w / vit_w:.3f}  cpu {tada_c / vit_c:.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
