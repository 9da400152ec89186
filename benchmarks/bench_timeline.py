"""Long-video timeline memory: peak RSS of `predict --timeline` on a generated 10-minute video against a
1-minute one, each in a fresh process (ru_maxrss), with the same model and settings.

Goal: the 10-minute peak within 10 % of the 1-minute one (frames are streamed; only the per-window
scores grow, a few KB per minute). Prints both peaks, their ratio and the seconds each took.

    python benchmarks/bench_timeline.py [--size 128 --minutes 1 10]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's tada_zoo

import numpy as np

TINY = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=8, num_frames=8)

_CHILD = """
import resource, sys, time
import tada_zoo
from tada_zoo.inference.predict import load_classifier
clf = load_classifier(checkpoint=sys.argv[1])
t = time.time()
result = clf.timeline(sys.argv[2], stride_seconds=1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(result["windows"]), time.time() - t)
"""


def _video(path: Path, minutes: float, size: int) -> None:
    """A moving-shape video of ``minutes`` at 30 fps, written in one-second pieces (constant memory)."""
    import av

    from tada_zoo.data.synthetic import moving_shape_clip

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for second in range(int(minutes * 60)):
            for img in moving_shape_clip(second % 4, 30, size, rng):
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128, help="frame side in pixels")
    p.add_argument("--minutes", type=float, nargs=2, default=(1, 10), help="the short and the long video")
    args = p.parse_args()

    import torch

    from tada_zoo.engine.checkpoint import run_metadata, save_safetensors
    from tada_zoo.models import create_video_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = create_video_model("tada2d_r50_8f", 4, **TINY)
        save_safetensors(model.state_dict(), tmp / "m.safetensors",
                         metadata=run_metadata("tada2d_r50_8f", TINY, [4], ["a", "b", "c", "d"], {}))
        peaks = []
        for minutes in args.minutes:
            video = tmp / f"{minutes:g}min.mp4"
            t = time.time()
            _video(video, minutes, args.size)
            made = time.time() - t
            env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
            out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp / "m.safetensors"), str(video)],
                                 capture_output=True, text=True, env=env, check=True).stdout.split()
            rss_kb, windows, secs = int(out[-3]), int(out[-2]), float(out[-1])
            peaks.append(rss_kb)
            print(f"{minutes:g} min, {args.size}px ({video.stat().st_size / 1e6:.1f} MB, made in {made:.0f} s): "
                  f"{windows} windows in {secs:.1f} s, peak RSS {rss_kb / 1024:.0f} MiB")
        print(json.dumps(dict(peak_rss_ratio=round(peaks[1] / peaks[0], 3), goal="<= 1.10")))


if __name__ == "__main__":
    main()
