"""``make demo``: the whole pipeline on real video files, in a few CPU minutes.

1. writes a small synthetic dataset of .mp4 files: a shape moving left->right,
   right->left, top->bottom or bottom->top (the class is the direction, so the order of
   the frames is the only cue: averaging frames, as TSN does, cannot tell 0 from 1 or 2
   from 3, and tops out at 50%);
2. fine-tunes a small TAda2D and the same-size TSN with ``tada-zoo train``;
3. evaluates both with ``tada-zoo evaluate`` (2 clips x 3 crops);
4. extracts TAda2D features with ``tada-zoo extract`` (sliding windows, one file per video);
5. prints the comparison and where everything is (``--workdir``, kept for a look afterwards).
"""
import argparse
import json
import shutil
import time
from pathlib import Path

TINY = dict(layers=[1, 1, 1, 1], widths=[8, 16, 32, 64], stem_width=8)
MARKER = ".tada-zoo-demo"  # a folder the demo wrote: the next demo may replace it
DATA = dict(num_frames=8, frame_interval=2)  # 8 of the 16 frames, every other one


def _print_report(results: dict, feats: Path, seconds: float) -> None:
    """The comparison table, per-class accuracies and what one feature file holds."""
    from safetensors import safe_open

    from tada_zoo.data.synthetic import CLASS_NAMES

    first = sorted(feats.glob("*.safetensors"))[0]
    with safe_open(str(first), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        ts = f.get_tensor("timestamps")
    print("\n=== moving shapes: 4 directions, chance 25%, order-blind ceiling 50% ===")
    print(f"{'model':<16}{'top-1':>8}{'mean class':>12}{'train s':>9}")
    for name, r in results.items():
        m = r["metrics"]
        print(f"{name:<16}{m['top1']:>7.1f}%{m['mean_class_acc']:>11.1f}%{r['train_s']:>9.0f}")
    for name, r in results.items():
        per = r["metrics"]["per_class"]
        print(f"  {name} per class: " + ", ".join(f"{CLASS_NAMES[int(c)]} {a:.0f}%" for c, a in sorted(per.items())))
    print(f"features: {len(list(feats.glob('*.safetensors')))} files, e.g. {first.name}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(shapes.items()))
          + f"; windows start at {[round(float(t), 2) for t in ts[:, 0]]} s")
    gap = results["tada2d_r50_8f"]["metrics"]["top1"] - results["tsn_r50_8f"]["metrics"]["top1"]
    print(f"TAda2D - TSN: {gap:+.1f} points top-1 (total {seconds:.0f}s)")


def main(argv=None) -> int:
    import torch

    from tada_zoo.cli import main as cli
    from tada_zoo.data.synthetic import CLASS_NAMES, make_moving_shapes

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="tada-zoo-demo",
                   help="where the videos, runs, evaluations and features go, kept afterwards (a folder an "
                        "earlier demo wrote is replaced; any other non-empty folder is refused)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--train-videos", type=int, default=128)
    p.add_argument("--val-videos", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (these tiny models gain nothing from more; loader workers decode alongside)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    work = _fresh_workdir(Path(args.workdir))
    data = work / "moving_shapes"
    print(f"[1/4] writing {args.train_videos} + {args.val_videos} synthetic videos to {data}")
    train_list, val_list = make_moving_shapes(data, args.train_videos, args.val_videos, num_frames=16, size=40)
    common = ["--data-root", str(data), "--num-classes", str(len(CLASS_NAMES)),
              "--model-kwargs", json.dumps(TINY), "--num-frames", str(DATA["num_frames"]),
              "--frame-interval", str(DATA["frame_interval"]), "--workers", str(args.workers)]
    results = {}
    for name in ("tada2d_r50_8f", "tsn_r50_8f"):
        out = work / "runs" / name
        print(f"[2/4] fine-tuning {name} (tiny widths) for {args.epochs} epochs -> {out}")
        t0 = time.time()
        rc = cli(["train", "--model", name, "--train-list", str(train_list), "--val-list", str(val_list),
                  "--output", str(out), "--input-size", "32", "--test-size", "32", "--no-hflip", "--epochs", str(args.epochs),
                  "--batch-size", "8", "--lr", "0.05", "--warmup-epochs", "1", "--drop-rate", "0",
                  "--quiet", *common])
        if rc:
            return rc
        results[name] = dict(train_s=time.time() - t0, checkpoint=out / "best.safetensors")
    print("[3/4] evaluating: 2 clips x 3 crops per video, scores averaged after softmax")
    for name in results:
        out = work / "eval" / name
        rc = cli(["evaluate", "--model", name, "--checkpoint", str(results[name]["checkpoint"]),
                  "--val-list", str(val_list), "--clips", "2", "--crops", "3", "--test-size", "32",
                  "--output", str(out), "--quiet", *common])
        if rc:
            return rc
        results[name]["metrics"] = json.loads((out / "metrics.json").read_text())[name]
    print("[4/4] extracting TAda2D clip features (4-frame windows every 4 frames) from the validation videos")
    feats = work / "features"
    rc = cli(["extract", "--model", "tada2d_r50_8f", "--checkpoint", str(results["tada2d_r50_8f"]["checkpoint"]),
              "--input", str(data / "videos" / "val"), "--output", str(feats), "--clip-len", "4",
              "--frame-interval", "2", "--clip-stride", "4", "--size", "32", "--model-kwargs", json.dumps(TINY),
              "--workers", str(args.workers), "--quiet"])
    if rc:
        return rc
    _print_report(results, feats, time.time() - t_start)
    print(f"everything is in {work}/: moving_shapes/ (the videos and lists), runs/<model>/ (checkpoints, "
          f"metrics.jsonl, curves.png), eval/<model>/ (metrics.json, predictions.csv), features/ (one file per "
          f"video, index.jsonl)")
    return 0


def _fresh_workdir(work: Path) -> Path:
    """``work``, empty: a folder an earlier demo wrote (its marker file) is replaced, any other non-empty
    folder refused, so a rerun never resumes the last demo's finished runs."""
    if work.exists() and any(work.iterdir()):
        if not (work / MARKER).is_file():
            raise SystemExit(f"demo: --workdir {work} is not empty and not an earlier demo's folder; choose another")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("written by `make demo` (python -m tada_zoo.cli.demo); safe to delete\n")
    return work


if __name__ == "__main__":
    raise SystemExit(main())
