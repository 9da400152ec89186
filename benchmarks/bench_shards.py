"""Test views per second from files vs from WebDataset shards, one process, no loader workers.

Writes ``--videos`` synthetic clips (``--size`` px, ``--frames`` frames, H.264), packs them with
``write_shards``, then reads every video's test views (``--clips`` x 3 crops) through
``DataProtocol.dataset`` from the files and from the shards, alternating rounds, and prints
clips/s of each and the ratio. On a local disk the two should be close (the shard path skips
one ``open`` per video and adds a tar parse and a copy of the bytes); shards pay off where
opening many small files is slow (network file systems, object stores), which this does not measure.
Usage: python benchmarks/bench_shards.py [--videos 64] [--rounds 3]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tada_zoo.data import protocol_from_cfg, read_annotations, write_annotations
from tada_zoo.data.shards import write_shards
from tada_zoo.data.synthetic import moving_shape_clip, write_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, rng = Path(tmp), np.random.default_rng(0)
        samples = []
        for i in range(args.videos):
            write_video(root / f"{i:05d}.mp4", moving_shape_clip(i % 4, args.frames, args.size, rng))
            samples.append((f"{i:05d}.mp4", i % 4))
        write_annotations(samples, root / "list.txt")
        r = write_shards(read_annotations(root / "list.txt"), root, root / "shards", 8 * 2 ** 20, prefix="s")
        n = len(r["index"]["shards"])
        p = protocol_from_cfg(None, num_frames=8, frame_interval=4, clips=args.clips, crops=3, test_crop=112,
                              test_short_side=112)
        files = p.dataset(root, root / "list.txt", train=False)
        shards = p.dataset(shards=str(root / "shards" / f"s-{{000000..{n - 1:06d}}}.tar"), train=False)
        times = {"files": [], "shards": []}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for i in range(len(files.samples)):
                files.load_views(i)
            times["files"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in shards:
                pass
            times["shards"].append(time.perf_counter() - t0)
        clips = args.videos * args.clips
        rate = {k: clips / min(v) for k, v in times.items()}
        print(f"{args.videos} videos ({args.size} px, {args.frames} frames) in {n} shards, {args.clips} clips x 3 "
              f"crops each: files {rate['files']:.1f} clips/s, shards {rate['shards']:.1f} clips/s, "
              f"shards / files = {rate['shards'] / rate['files']:.2f}")


if __name__ == "__main__":
    main()
