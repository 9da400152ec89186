"""Data loading speed per worker: decode + sample + augment of 8x224 training clips.

Generates a 360p H.264 file (x264 defaults: B-frames, GOP of up to 250 frames, like most
web video), then times, in one process with one thread (= one DataLoader worker):

- ours: VideoReader seeks once per clip and decodes forward (tada_zoo.data),
- baseline: the same frames fetched with one seek per frame (each decodes from the
  previous keyframe), the common naive approach,

and prints clips/s and the ratio. Then the 10x3 test protocol of tada2d_r50_8f.k400 on the
same 10 s video: per-video items (``VideoDataset.per_video``: the union of the 10 clips'
frames decoded once, as ``evaluate`` reads) against per-clip items (each clip opens, seeks
and decodes on its own), interleaved, with the paired ratio of wall and CPU time.
Usage: python benchmarks/bench_data.py [--clips 40] [--videos 2]
"""
import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from tada_zoo.data import TrainTransform, VideoReader, interval_indices

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, time_runs  # noqa: E402


def make_video(path: str, seconds: float = 10, fps: int = 30, width: int = 640, height: int = 360,
               gop: int = 250) -> None:
    """Moving smooth pattern + mild noise: compresses like camera footage, not like noise.
    x264 defaults otherwise (B-frames where it finds them useful); ``gop``: keyframe interval."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(path, "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
        for t in range(int(seconds * fps)):
            phase = t / fps
            r = 127 + 100 * np.sin(xx / 40 + 2 * phase)
            g = 127 + 100 * np.sin(yy / 30 - 3 * phase)
            b = 127 + 100 * np.sin((xx + yy) / 50 + phase)
            img = np.stack([r, g, b], -1) + rng.normal(0, 6, (height, width, 1))
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def per_frame_seek(path: str, indices) -> np.ndarray:
    """Baseline: one seek (to the keyframe before it) and a decode per requested frame."""
    with VideoReader(path) as r:
        return np.concatenate([r.frames_at([i]) for i in indices])


def seek_once(path: str, indices) -> np.ndarray:
    with VideoReader(path) as r:
        return r.frames_at(indices)


def bench(fn, path, num_clips, transform, num_video_frames, seed=0) -> float:
    rng = np.random.default_rng(seed)
    random.seed(seed)
    t0 = time.perf_counter()
    for _ in range(num_clips):
        idx = interval_indices(num_video_frames, 8, 8, rng=rng)
        clip = transform(fn(path, idx)) if transform else fn(path, idx)
    assert clip is not None
    return num_clips / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=40, help="clips per measurement")
    ap.add_argument("--video", default=None, help="use this file instead of a generated one")
    ap.add_argument("--videos", type=int, default=2, help="videos per 10x3 measurement")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved turns of the 10x3 comparison")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.video or os.path.join(tmp, "bench_360p.mp4")
        if args.video is None:
            make_video(path)
        with VideoReader(path) as r:
            n = len(r)
            print(f"video: {path}, {n} frames at {r.fps:.1f} fps, {r.frames_at([0]).shape[1:]} (H, W, C), "
                  f"{len(r._key_index)} keyframes")
        transform = TrainTransform(224, (256, 320))
        results = {}
        for name, fn in (("seek once + decode forward", seek_once), ("seek per frame", per_frame_seek)):
            for aug in (False, True):
                bench(fn, path, 2, transform if aug else None, n)  # warm-up
                results[name, aug] = bench(fn, path, args.clips, transform if aug else None, n)
        for aug in (False, True):
            what = "decode + sample + augment" if aug else "decode + sample"
            ours, base = results["seek once + decode forward", aug], results["seek per frame", aug]
            print(f"{what:28s} 8x224 clips/s per worker: seek once {ours:6.2f} | per-frame seek {base:6.2f} "
                  f"| ratio {ours / base:.2f}x")
        bench_views(path, tmp, args.videos, args.repeats)


def bench_views(path: str, tmp: str, num_videos: int, repeats: int) -> None:
    """10 clips x 3 crops per video: per-video items vs per-clip items, one worker."""
    import tada_zoo  # noqa: F401  (registers the tags)
    from timm.models import get_pretrained_cfg

    from tada_zoo.data import protocol_from_cfg

    protocol = protocol_from_cfg(get_pretrained_cfg("tada2d_r50_8f.k400"))
    lst = os.path.join(tmp, "views.txt")
    with open(lst, "w") as f:
        f.write("".join(f"{os.path.abspath(path)} 0\n" for _ in range(num_videos)))
    ds = protocol.dataset("/", lst, train=False)
    views = ds.per_video()
    print(f"10x3 test views ({protocol.describe()}), {num_videos} videos per call, one worker:")
    for what, transform in (("decode + cut", None), ("decode + cut + 3-crop transform", ds.transform)):
        ds.transform = transform
        runs = time_runs({"per-video": lambda: [views[i]["video"] for i in range(len(views))],
                          "per-clip": lambda: [ds[i]["video"] for i in range(len(ds))]}, repeats=repeats)
        new, old = median_time(runs, "per-video"), median_time(runs, "per-clip")
        print(f"  {what:32s} videos/s: per-video {num_videos / new:6.2f} | per-clip {num_videos / old:6.2f} "
              f"| speed-up {1 / paired_ratio(runs, 'per-video', 'per-clip'):.2f}x wall, "
              f"{1 / paired_ratio(runs, 'per-video', 'per-clip', cpu=True):.2f}x CPU")


if __name__ == "__main__":
    main()
