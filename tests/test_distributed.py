"""torchrun with 2 CPU processes (gloo): the ranks train in lockstep and end with identical weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tada_zoo.engine.distributed import state_hash

from _engine_utils import HANG_GUARD, TINY, tiny_model, one_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def test_torchrun_two_processes_stay_in_sync(tmp_path):
    from tada_zoo.data.synthetic import make_moving_shapes

    data = tmp_path / "data"
    make_moving_shapes(data, num_train=8, num_val=4, num_frames=8, size=32, num_classes=2)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tada_zoo.cli", "train", "--model", "tada2d_r50_8f", "--data-root", str(data),
           "--train-list", str(data / "train.txt"), "--val-list", str(data / "val.txt"), "--num-classes", "2",
           "--output", str(out), "--model-kwargs", json.dumps(TINY), "--num-frames", "4", "--frame-interval", "2",
           "--input-size", "32", "--test-size", "32", "--epochs", "2", "--batch-size", "2", "--lr", "0.05",
           "--warmup-epochs", "1", "--workers", "0", "--device", "cpu", "--quiet", "--debug"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    h0, h1 = summary["rank_state_hashes"]
    assert h0 == h1 and summary["ranks_in_sync"]
    # rank 0's checkpoint is that state, and training moved it away from the initial weights
    state = torch.load(out / "last.pt", weights_only=True)
    model = tiny_model(num_classes=2)
    init_hash = state_hash(model)
    model.load_state_dict(state["model"])
    assert state_hash(model) == h0 != init_hash
    assert state["epoch"] == 1 and len(state["rng"]) == 2
    # 8 videos / (2 ranks x batch 2) = 2 steps per epoch, one line per epoch
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]


def test_torchrun_extraction_deals_videos_out_and_merges_the_index(tmp_path):
    """2 ranks extract a folder exactly like 1 process: same files, one index line per video."""
    import numpy as np
    from safetensors.torch import load_file, save_file

    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    videos = tmp_path / "videos"
    rng = np.random.default_rng(0)
    for i, n in enumerate((9, 5, 8, 6, 7)):
        write_video(videos / f"v{i}.mp4", moving_shape_clip(i % 4, n, 32, rng), fps=4)
    (videos / "broken.mp4").write_bytes(b"not a video")
    weights = tmp_path / "w.safetensors"
    save_file(tiny_model().state_dict(), weights)  # every process loads the same weights

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    outs = {}
    for procs in (1, 2):
        outs[procs] = out = tmp_path / f"out{procs}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
               "-m", "tada_zoo.cli", "extract", "--model", "tada2d_r50_8f", "--checkpoint", str(weights),
               "--model-kwargs", json.dumps(TINY), "--input", str(videos), "--output", str(out),
               "--clip-len", "4", "--frame-interval", "1", "--size", "32", "--workers", "0", "--device", "cpu",
               "--quiet"]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert p.stdout.count("videos extracted") == 1  # one summary, from rank 0
        assert "5 videos extracted" in p.stdout and "1 failed" in p.stdout
    assert not list(outs[2].glob("index.rank*.jsonl"))
    index = [json.loads(line) for line in (outs[2] / "index.jsonl").read_text().splitlines()]
    assert sorted(e["video"] for e in index) == ["broken.mp4"] + [f"v{i}.mp4" for i in range(5)]
    for i in range(5):
        a, b = load_file(outs[1] / f"v{i}.mp4.safetensors"), load_file(outs[2] / f"v{i}.mp4.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k])
