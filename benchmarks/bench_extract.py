"""Feature extraction throughput: end to end (decode + transform in loader workers, model in
the main process) vs the model alone on the same clips already in memory.

Goal: end to end >= 0.8 x model-only with 2 decoding workers, i.e. decoding hides behind
the model. Prints clips/s of both and their ratio, for 0 and N workers.

    python benchmarks/bench_extract.py [--model tada2d_r50_8f --size 112 --videos 8 --workers 2]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tada_zoo

import numpy as np
import torch

import tada_zoo  # noqa: F401
from tada_zoo.data import EvalTransform, open_video, sliding_windows
from tada_zoo.data.synthetic import moving_shape_clip, write_video
from tada_zoo.inference.features import FeatureExtractor, extract_videos, list_videos


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tada2d_r50_8f")
    p.add_argument("--model-kwargs", type=json.loads, default={})
    p.add_argument("--size", type=int, default=112, help="crop size")
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--video-frames", type=int, default=64)
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--frame-interval", type=int, default=2)
    p.add_argument("--clip-stride", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="best of N runs each (a shared machine is noisy)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        for i in range(args.videos):
            write_video(tmp / "videos" / f"{i:03d}.mp4",
                        moving_shape_clip(i % 4, args.video_frames, round(args.size * 8 / 7), rng), fps=25)
        videos = list_videos(tmp / "videos")
        ex = FeatureExtractor.from_name(args.model, model_kwargs=args.model_kwargs, batch_size=args.batch_size)
        tf = EvalTransform(crop_size=args.size, short_side=args.size, num_crops=1)

        # model only: the same windows, decoded and transformed beforehand
        clips = []
        for v in videos:
            with open_video(v) as r:
                for _, idx in sliding_windows(len(r), args.clip_len, args.frame_interval, args.clip_stride):
                    clips.append(tf(r.frames_at(idx.tolist()))[0])
        clips = torch.stack(clips)
        ex(clips[:args.batch_size])  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            ex(clips)
            best = min(best, time.perf_counter() - t)
        model_only = len(clips) / best
        print(f"{args.model} at {args.size}px, {len(videos)} videos, {len(clips)} clips of {args.clip_len} frames, "
              f"batch {args.batch_size}, {torch.get_num_threads()} torch threads")
        print(f"model only:            {model_only:7.2f} clips/s")
        for workers in sorted({0, args.workers}):
            best = float("inf")
            for rep in range(args.repeats):
                t = time.perf_counter()
                r = extract_videos(ex, videos, tmp / f"out{workers}_{rep}", args.clip_len, args.frame_interval,
                                   args.clip_stride, tf, workers=workers, progress=False)
                best = min(best, time.perf_counter() - t)
            e2e = r["clips"] / best
            assert r["done"] == len(videos) and r["clips"] == len(clips)
            print(f"end to end, {workers} workers: {e2e:7.2f} clips/s  ratio {e2e / model_only:.2f} x model-only")


if __name__ == "__main__":
    main()
