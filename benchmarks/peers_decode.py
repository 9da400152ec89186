"""Decoding speed: our PyAV reader against decord and torchcodec, one thread each (= one DataLoader worker).

On a generated 10 s, 30 fps, 360p H.264 file with a 250-frame GOP (x264 defaults otherwise, like
most web video), each reader opens the file and fetches, as a dataset item does:

- tsn8: TSN-style 8 frames, one random frame per segment over the whole video (4 draws per call),
- dense16x4: a dense clip of 16 frames every 4 at a random start (4 draws per call),
- 10clip: the 10-clip test protocol of an 8x8 model (10 windows of 8 frames every 8, spread over
  the video), the union of their frames in one call per reader.

The readers take turns (benchmarks/common.py), and the ratio of our time to the fastest peer's
is the median of per-turn ratios, for wall and process CPU time (steadier on a busy machine);
the goal is <= 1.10. Frames are checked against ours first. decord and torchcodec are optional
(``pip install decord torchcodec``; torchcodec also needs FFmpeg's shared libraries): a reader
that cannot be imported or cannot decode the file is skipped with its error.

``--decoders``: the same workloads through ``open_video`` with ``--decoder``'s two backends (PyAV and
``TorchCodecReader``, which adds PyAV's index pass and a timestamp check to torchcodec's decoding), on
generated 256p and 360p files, as clips/s and torchcodec / PyAV speed ratios.

Usage: python benchmarks/peers_decode.py [--repeats 5] [--video FILE] [--decoders]; from another benchmark:
``peers_decode.run(peers_decode.parser().parse_args([]))``.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import make_video  # noqa: E402
from common import median_time, paired_ratio, time_runs  # noqa: E402

from tada_zoo.data import interval_indices, open_video, segment_indices  # noqa: E402

Reader = Callable[[str, List[int]], np.ndarray]  # (path, frame indices) -> uint8 (T, H, W, C)


def read_ours(path: str, idx: List[int]) -> np.ndarray:
    with open_video(path, num_threads=1) as r:
        return r.frames_at(idx)


def peer_readers() -> Tuple[Dict[str, Reader], Dict[str, str]]:
    """``({name: reader}, {name: why skipped})`` for the peers that import."""
    readers, skipped = {}, {}
    try:
        import decord

        def read_decord(path, idx):
            return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1).get_batch(idx).asnumpy()

        readers["decord"] = read_decord
    except Exception as e:  # noqa: BLE001  any failure to load a peer is a skip
        skipped["decord"] = _why(e)
    try:
        from torchcodec.decoders import VideoDecoder

        def read_torchcodec(path, idx):
            d = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC")
            return d.get_frames_at(idx).data.numpy()

        readers["torchcodec"] = read_torchcodec
    except Exception as e:  # noqa: BLE001
        skipped["torchcodec"] = _why(e)
    return readers, skipped


def _why(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}".strip()


def workloads(n: int, seed: int = 0) -> Dict[str, List[List[int]]]:
    """Frame index lists per workload on an ``n``-frame video; one call reads each list once."""
    rng = np.random.default_rng(seed)
    tsn = [segment_indices(n, 8, random=True, rng=rng).tolist() for _ in range(4)]
    dense = [interval_indices(n, 16, 4, rng=rng).tolist() for _ in range(4)]
    ten = np.unique(np.concatenate([interval_indices(n, 8, 8, clip_index=c, num_clips=10) for c in range(10)]))
    return {"tsn8": tsn, "dense16x4": dense, "10clip": [ten.tolist()]}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved turns per workload")
    ap.add_argument("--video", default=None, help="use this file instead of a generated one")
    ap.add_argument("--decoders", action="store_true",
                    help="instead: tada-zoo's --decoder torchcodec against --decoder pyav at 256p and 360p")
    return ap


def run(args: Optional[argparse.Namespace] = None) -> Dict[str, dict]:
    """Print and return ``{workload: dict(ms, cpu_ms, ratio_wall, ratio_cpu, fastest_wall, fastest_cpu)}``:
    median ms per call per reader, and our time / the fastest peer's (None without a peer)."""
    args = args if args is not None else parser().parse_args([])
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.video or os.path.join(tmp, "peers_360p_gop250.mp4")
        if args.video is None:
            make_video(path, seconds=10, fps=30, width=640, height=360, gop=250)
        with open_video(path) as r:
            n = len(r)
            keys = len(getattr(r, "_key_index", [])) or "?"
            print(f"video: {n} frames at {r.fps:.1f} fps, {r.frames_at([0]).shape[1:3]} (H, W), {keys} keyframes")
        peers, skipped = peer_readers()
        for name, why in skipped.items():
            print(f"{name}: skipped ({why})")
        readers: Dict[str, Reader] = {"ours": read_ours}
        probe = [0, n // 2, n - 1]
        ref = read_ours(path, probe)
        for name, fn in peers.items():
            try:
                got = fn(path, probe)
            except Exception as e:  # noqa: BLE001  e.g. torchcodec without FFmpeg libraries
                print(f"{name}: skipped ({_why(e)})")
                continue
            diff = int(np.abs(got.astype(np.int16) - ref).max()) if got.shape == ref.shape else None
            same = "identical frames" if diff == 0 else (f"max |pixel diff| {diff} (colour conversion)"
                                                         if diff is not None else f"shape {got.shape} != {ref.shape}")
            print(f"{name}: {same} vs ours")
            readers[name] = fn
        results = {}
        for work, index_lists in workloads(n).items():
            fns = {name: (lambda fn=fn: [fn(path, idx) for idx in index_lists]) for name, fn in readers.items()}
            runs = time_runs(fns, repeats=args.repeats)
            ms = {name: median_time(runs, name) * 1000 for name in readers}
            cpu_ms = {name: median_time(runs, name, cpu=True) * 1000 for name in readers}
            res = dict(ms=ms, cpu_ms=cpu_ms, ratio_wall=None, ratio_cpu=None, fastest_wall=None, fastest_cpu=None)
            line = " | ".join(f"{name} {ms[name]:7.1f} ms ({cpu_ms[name]:6.1f} CPU)" for name in readers)
            peers_here = [name for name in readers if name != "ours"]
            if peers_here:
                for kind, cpu in (("wall", False), ("cpu", True)):
                    # against the fastest peer = the largest of our per-peer time ratios
                    ratio, peer = max((paired_ratio(runs, "ours", name, cpu=cpu), name) for name in peers_here)
                    res[f"ratio_{kind}"], res[f"fastest_{kind}"] = ratio, peer
                line += (f"\n{'':10s} ours / fastest peer: {res['ratio_wall']:.2f}x wall ({res['fastest_wall']}), "
                         f"{res['ratio_cpu']:.2f}x CPU ({res['fastest_cpu']}); goal <= 1.10")
            print(f"{work:10s} ({len(index_lists)} x {len(index_lists[0])} frames per call): {line}")
            results[work] = res
    return results


def _read_with(backend: str) -> Reader:
    def read(path, idx):
        with open_video(path, backend=backend, num_threads=1) as r:
            return r.frames_at(idx)
    return read


def run_decoders(args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    """``--decoder torchcodec`` against PyAV (``open_video`` both, one thread): clips/s per workload on
    generated 256p and 360p files (GOP 250), as ratios against PyAV timed in the same turns; frames are
    checked identical first. Returns ``{"360p tsn8": {"pyav": clips/s, "torchcodec": ..., "ratio": ...}}``."""
    torch.set_num_threads(1)
    readers = {"pyav": _read_with("pyav"), "torchcodec": _read_with("torchcodec")}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for height, width in ((256, 456), (360, 640)):
            path = os.path.join(tmp, f"{height}p.mp4")
            make_video(path, seconds=10, fps=30, width=width, height=height, gop=250)
            with open_video(path) as r:
                n = len(r)
            for work, index_lists in workloads(n).items():
                for idx in index_lists[:1]:
                    assert np.array_equal(readers["pyav"](path, idx), readers["torchcodec"](path, idx)), work
                fns = {name: (lambda fn=fn: [fn(path, idx) for idx in index_lists]) for name, fn in readers.items()}
                runs = time_runs(fns, repeats=args.repeats)
                rate = {name: len(index_lists) / median_time(runs, name) for name in readers}
                ratio = paired_ratio(runs, "pyav", "torchcodec")  # torchcodec's speed / PyAV's
                cpu = paired_ratio(runs, "pyav", "torchcodec", cpu=True)
                results[f"{height}p {work}"] = dict(rate, ratio=ratio, ratio_cpu=cpu)
                print(f"{height}p {work:10s} pyav {rate['pyav']:6.1f} clips/s | torchcodec {rate['torchcodec']:6.1f} "
                      f"clips/s | torchcodec / pyav speed {ratio:.2f}x wall, {cpu:.2f}x CPU (identical frames)")
    return results


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    run_decoders(args) if args.decoders else run(args)


if __name__ == "__main__":
    main()
