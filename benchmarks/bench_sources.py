"""Clips/s per loader worker for the same videos as files vs WebDataset shards vs re-encoded (issue 24, item 5).

Encodes N 10 s 640x360 H.264 videos with a 250-frame GOP (x264 defaults, like web video: the baseline),
re-encodes them with PyAV to a short side of 256 with a keyframe every 16 frames, packs both sets into
shards (``data.shards.write_shards``), then reads each set through a model's training and test pipelines
(``DataProtocol.dataset``, as train / evaluate do) in one process with one thread = one loader worker
(``data.bench.bench_loading``, what ``tada-zoo bench-data`` runs). The candidates take turns; each ratio is
the median over turns of candidate / baseline clips/s in the same turn.
Usage: python benchmarks/bench_sources.py [--videos 4] [--seconds 4] [--turns 3] [--model tada2d_r50_8f.k400]
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import av

from tada_zoo.data.bench import bench_loading
from tada_zoo.data.protocol import protocol_from_cfg
from tada_zoo.data.shards import write_shards
from tada_zoo.models import create_video_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import make_video  # noqa: E402


def reencode(src: str, dst: str, short_side: int = 256, gop: int = 16) -> None:
    """``src`` scaled to ``short_side`` (even width) with a keyframe every ``gop`` frames."""
    with av.open(src) as inp, av.open(dst, "w") as out:
        vin = inp.streams.video[0]
        scale = short_side / min(vin.width, vin.height)
        w, h = (round(vin.width * scale / 2) * 2, round(vin.height * scale / 2) * 2)
        s = out.add_stream("libx264", rate=vin.average_rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
        for frame in inp.decode(vin):
            for p in s.encode(frame.reformat(width=w, height=h, format="yuv420p")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def sources(tmp: Path, n: int) -> dict:
    """{name: dict(data_root, list) or dict(shards)} for the four candidates."""
    out = {}
    for name in ("360p_gop250", "256_gop16"):
        (tmp / name).mkdir()
    for i in range(n):
        make_video(str(tmp / "360p_gop250" / f"v{i}.mp4"), seconds=10, gop=250)
        reencode(str(tmp / "360p_gop250" / f"v{i}.mp4"), str(tmp / "256_gop16" / f"v{i}.mp4"))
    samples = [(f"v{i}.mp4", 0) for i in range(n)]
    for name in ("360p_gop250", "256_gop16"):
        lst = tmp / f"{name}.txt"
        lst.write_text("".join(f"{p} {label}\n" for p, label in samples))
        out[f"files {name}"] = dict(data_root=tmp / name, list_file=lst)
        r = write_shards(samples, tmp / name, tmp / f"shards_{name}", max_size=1 << 30)
        last = len(r["index"]["shards"]) - 1
        out[f"shards {name}"] = dict(shards=str(tmp / f"shards_{name}" / f"shard-{{000000..{last:06d}}}.tar"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--model", default="tada2d_r50_8f.k400")
    args = ap.parse_args()
    protocol = protocol_from_cfg(create_video_model(args.model, 400, pretrained=False).pretrained_cfg)
    with tempfile.TemporaryDirectory() as tmp:
        cands = sources(Path(tmp), args.videos)
        base = "files 360p_gop250"
        for mode in ("train", "test"):
            train = mode == "train"
            sets = {k: protocol.dataset(train=train, **v) for k, v in cands.items()}
            sets = {k: (d.per_video() if not train and hasattr(d, "per_video") else d) for k, d in sets.items()}
            runs = {k: [] for k in sets}
            for _ in range(args.turns):
                for k, d in sets.items():
                    runs[k].append(bench_loading(d, args.seconds, 1 if train else protocol.clips)["clips_per_s"])
            print(f"{mode}: {protocol.describe(train=train)}")
            for k in sets:
                ratio = statistics.median(a / b for a, b in zip(runs[k], runs[base]))
                print(f"  {k:<20} {statistics.median(runs[k]):6.3g} clips/s per worker   x{ratio:.2f} vs {base}")


if __name__ == "__main__":
    main()
