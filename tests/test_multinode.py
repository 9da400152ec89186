"""Two torchrun "nodes" on 127.0.0.1 (``--nnodes 2 --nproc-per-node 1``, c10d rendezvous, gloo):
train, evaluate and extract give what one node gives, every video once, and extract resumes after
one node is killed. Each node is its own process tree; a test kills the other node when one fails,
so a dead node never leaves a test waiting."""
import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _engine_utils import HANG_GUARD, TINY, free_port, tiny_model, one_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
TINY_JSON = json.dumps(TINY)


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))



def _tree(pid: int) -> list:
    """``pid`` and its descendants (torchrun starts its workers in their own process groups)."""
    out = [pid]
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            children = Path(path).read_text().split()
        except OSError:
            continue
        for child in children:
            out += _tree(int(child))
    return out


def _kill_node(p: subprocess.Popen) -> None:
    """SIGKILL a node's agent and its workers: the node is gone, as in a power cut."""
    for pid in _tree(p.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()


class Nodes:
    """Two torchrun launches of one job; node 0 hosts the rendezvous store (``is_host``)."""

    def __init__(self, cli_args, logs: Path, cwds=(ROOT, ROOT)):
        port, self.logs = free_port(), logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs = []
        for rank, cwd in enumerate(cwds):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                   "--node-rank", str(rank), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                   "--rdzv-id", f"test{port}", "--rdzv-conf", f"is_host={int(rank == 0)}",
                   "-m", "tada_zoo.cli", *map(str, cli_args)]
            with open(logs / f"node{rank}.log", "w") as log:
                self.procs.append(subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    def log(self, rank: int) -> str:
        return (self.logs / f"node{rank}.log").read_text()

    def wait(self) -> list:
        """Return codes; once one node fails the other is killed (it could wait for it for minutes)."""
        deadline = time.monotonic() + HANG_GUARD
        while any(p.poll() is None for p in self.procs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in self.procs):
                for p in self.procs:
                    if p.poll() is None:
                        _kill_node(p)
            time.sleep(0.1)
        return [p.returncode for p in self.procs]

    def check(self) -> None:
        rcs = self.wait()
        assert rcs == [0, 0], f"return codes {rcs}\n" + "\n".join(self.log(r)[-3000:] for r in range(2))


def _single_node(procs: int, cli_args) -> subprocess.CompletedProcess:
    """One node: ``procs`` processes under torchrun --standalone, or 0 for plain ``python -m tada_zoo.cli``."""
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)] if procs else []
    p = subprocess.run([sys.executable, *launch, "-m", "tada_zoo.cli", *map(str, cli_args)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=HANG_GUARD)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _train_args(data: Path, out, batch: int) -> list:
    return ["train", "--model", "tada2d_r50_8f", "--data-root", data, "--train-list", data / "train.txt",
            "--val-list", data / "val.txt", "--num-classes", "2", "--output", out, "--model-kwargs", TINY_JSON,
            "--num-frames", "4", "--frame-interval", "2", "--input-size", "32", "--test-size", "32", "--epochs", "1",
            "--batch-size", batch, "--lr", "0.05", "--warmup-epochs", "1", "--workers", "0", "--device", "cpu",
            "--quiet"]


def test_two_nodes_train_like_one_node_with_two_processes(tmp_path):
    """2 nodes x 1 process == 1 node x 2 processes, bit for bit: the same global ranks, sampler shards,
    per-rank augmentation seeds and averaged gradients. (1 process with the global batch differs by
    design: BN normalises each process's own batch and each rank draws its own augmentations; the
    sampler's part of that equality is test_shards_of_a_step_are_the_one_process_batch.)"""
    from safetensors.torch import load_file

    from tada_zoo.data.synthetic import make_moving_shapes

    data = tmp_path / "data"
    make_moving_shapes(data, num_train=8, num_val=5, num_frames=8, size=32, num_classes=2)
    nodes = Nodes(_train_args(data, tmp_path / "nodes", 2), tmp_path / "logs")
    nodes.check()
    _single_node(2, _train_args(data, tmp_path / "procs", 2))
    a, b = load_file(tmp_path / "nodes" / "last.safetensors"), load_file(tmp_path / "procs" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)
    init = tiny_model(num_classes=2).state_dict()
    assert any(not torch.equal(a[k], init[k]) for k in a)  # training moved the weights
    sa, sb = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("nodes", "procs"))
    assert sa["world_size"] == 2 and sa["ranks_in_sync"] and sa["rank_state_hashes"] == sb["rank_state_hashes"]
    assert sa["last_val"] == sb["last_val"]
    pa, pb = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("nodes", "procs"))
    assert len(pa["rng"]) == len(pb["rng"]) == 2  # both ranks' RNG states, for an exact resume
    torch.testing.assert_close(pa["optimizer"]["state"], pb["optimizer"]["state"], rtol=1e-6, atol=1e-7)
    assert "epoch 1/1" in nodes.log(0) + nodes.log(1) and (nodes.log(0) + nodes.log(1)).count("epoch 1/1") == 1


def test_two_nodes_train_what_one_process_trains_with_the_same_global_batch(tmp_path):
    """2 nodes x batch 2 == 1 process x batch 4, to float tolerance, for a network without BatchNorm
    (TAdaConvNeXtV2: LayerNorm) and without dropout or mixup: the sampler's two shards of a step are the
    one process's batch, each clip's augmentation comes from (seed, epoch, item) whichever rank draws it
    (RandAugment, random-resized crop, flips, start frames), and DDP averages the two halves' gradients."""
    from safetensors.torch import load_file

    from tada_zoo.data.synthetic import make_moving_shapes

    data = tmp_path / "data"
    make_moving_shapes(data, num_train=8, num_val=4, num_frames=8, size=32, num_classes=2)
    kwargs = json.dumps(dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), head_dim=8))

    def args(out, batch):
        return ["train", "--model", "tadaconvnextv2_t_16f", "--data-root", data, "--train-list", data / "train.txt",
                "--num-classes", "2", "--output", out, "--model-kwargs", kwargs, "--num-frames", "4", "--input-size",
                "32", "--epochs", "2", "--batch-size", batch, "--lr", "0.01", "--drop-rate", "0", "--drop-path-rate",
                "0", "--mixup", "0", "--cutmix", "0", "--workers", "0", "--device", "cpu", "--quiet"]

    Nodes(args(tmp_path / "nodes", 2), tmp_path / "logs").check()
    _single_node(0, args(tmp_path / "one", 4))
    a, b = load_file(tmp_path / "nodes" / "last.safetensors"), load_file(tmp_path / "one" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
    one, two = ([json.loads(l)["train_loss"] for l in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
                for d in ("one", "nodes"))
    assert one == pytest.approx(two, rel=1e-4) and len(one) == 2
    from tada_zoo.engine.trainer import seed_everything
    from tada_zoo.models import create_video_model

    seed_everything(0)  # train's initial weights
    init = create_video_model("tadaconvnextv2_t_16f", 2, num_frames=4, **json.loads(kwargs)).state_dict()
    assert init.keys() == a.keys() and any(not torch.allclose(a[k], init[k]) for k in a)  # training moved them


def test_shards_of_a_step_are_the_one_process_batch():
    """What ties a 2-process step to a 1-process step of the same global batch: the union of the two
    ranks' k-th batches is the one process's k-th batch (DistributedSampler deals a shuffled order
    out round-robin), so only the per-process BN statistics and augmentation draws differ."""
    from torch.utils.data import DistributedSampler

    items = list(range(22))

    def batches(world, rank, batch):  # the sampler as engine.trainer._loader makes it for training
        s = DistributedSampler(items, num_replicas=world, rank=rank, shuffle=True, seed=7, drop_last=True)
        s.set_epoch(3)
        order = list(s)
        return [order[i:i + batch] for i in range(0, len(order) - len(order) % batch, batch)]

    one = batches(1, 0, 4)
    two = [batches(2, r, 2) for r in range(2)]
    assert len(one) == len(two[0]) == len(two[1]) == 5
    for k in range(5):
        assert sorted(two[0][k] + two[1][k]) == sorted(one[k])


def _predictions(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_nodes_evaluate_like_one_process_each_video_once(tmp_path):
    """5 videos on 2 ranks (an odd count: a padding sampler would score one twice): the same metrics
    and per-video predictions as one process, and every video has exactly clips x crops views."""
    from safetensors.torch import save_file

    from tada_zoo.data.synthetic import make_moving_shapes

    data = tmp_path / "data"
    make_moving_shapes(data, num_train=2, num_val=5, num_frames=12, size=32, num_classes=2)
    weights = tmp_path / "w.safetensors"
    save_file(tiny_model().state_dict(), weights)

    def args(out):
        return ["evaluate", "--model", "tada2d_r50_8f", "--checkpoint", weights, "--model-kwargs", TINY_JSON,
                "--data-root", data, "--val-list", data / "val.txt", "--num-classes", "2", "--num-frames", "4",
                "--frame-interval", "2", "--test-size", "32", "--clips", "2", "--crops", "1", "--workers", "0",
                "--device", "cpu", "--quiet", "--output", out]

    nodes = Nodes(args(tmp_path / "nodes"), tmp_path / "logs")
    nodes.check()
    _single_node(0, args(tmp_path / "one"))
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "nodes" / "metrics.json").read_text())
    assert two == one
    p1, p2 = _predictions(tmp_path / "one" / "predictions.csv"), _predictions(tmp_path / "nodes" / "predictions.csv")
    assert [r["video"] for r in p2] == [f"videos/val/{i:05d}.mp4" for i in range(5)]
    assert [r["views"] for r in p1] == [r["views"] for r in p2] == ["2"] * 5  # 2 clips x 1 crop, once each
    for r1, r2 in zip(p1, p2):
        assert (r1["pred"], r1["top5"]) == (r2["pred"], r2["top5"])
        assert abs(float(r1["score"]) - float(r2["score"])) <= 2e-6
    assert (nodes.log(0) + nodes.log(1)).count("top-1") == 1  # one report, from rank 0


def _videos(folder: Path, n: int, frames: int) -> None:
    import numpy as np

    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    rng = np.random.default_rng(0)
    for i in range(n):
        write_video(folder / f"v{i:02d}.mp4", moving_shape_clip(i % 4, frames, 32, rng), fps=4)


def _extract_args(videos: Path, weights: Path, out) -> list:
    return ["extract", "--model", "tada2d_r50_8f", "--checkpoint", weights, "--model-kwargs", TINY_JSON,
            "--input", videos, "--output", out, "--clip-len", "4", "--frame-interval", "1", "--size", "32",
            "--workers", "0", "--device", "cpu", "--quiet", "--batch-size", "1"]


def _logged(out: Path) -> int:
    return sum(len(Path(f).read_text().splitlines()) for f in glob.glob(str(out / "index.rank*.jsonl")))


def test_two_nodes_extract_resumes_after_a_node_is_killed(tmp_path):
    """Node 1 killed mid-run (agent and worker, SIGKILL): node 0 stops with one line saying to rerun;
    the rerun of both launches finishes with one index, one line and one file per video, no temp
    file or rank log left, and features equal to a one-process extraction."""
    from safetensors.torch import load_file, save_file

    videos, n = tmp_path / "videos", 16
    _videos(videos, n, 96)  # 24 windows a video: node 1 is killed well before the end
    weights = tmp_path / "w.safetensors"
    save_file(tiny_model().state_dict(), weights)
    out = tmp_path / "out"
    nodes = Nodes(_extract_args(videos, weights, out), tmp_path / "logs1")
    deadline = time.monotonic() + HANG_GUARD
    while _logged(out) < 2 and all(p.poll() is None for p in nodes.procs) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(p.poll() is None for p in nodes.procs), nodes.log(0)[-2000:] + nodes.log(1)[-2000:]
    _kill_node(nodes.procs[1])
    try:
        rc = nodes.procs[0].wait(timeout=HANG_GUARD)  # node 0 is left to notice by itself
    finally:
        _kill_node(nodes.procs[0])
    assert rc != 0
    errors = [l for l in nodes.log(0).splitlines() if l.startswith("tada-zoo extract: error:")]
    assert len(errors) == 1 and "start the same command on every node again" in errors[0], nodes.log(0)[-3000:]
    assert not (out / "index.jsonl").exists() and 2 <= _logged(out) < n  # cut short, the rank logs kept

    rerun = Nodes(_extract_args(videos, weights, out), tmp_path / "logs2")
    rerun.check()
    summary = rerun.log(0) + rerun.log(1)
    assert summary.count("videos extracted") == 1
    done = int(summary.split(" videos extracted")[0].split()[-1])
    already = int(summary.split(" already done")[0].split()[-1])
    assert done + already == n and already >= 2 and "0 failed" in summary
    index = [json.loads(l) for l in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(e["video"] for e in index) == [f"v{i:02d}.mp4" for i in range(n)]
    assert all(e["status"] == "ok" for e in index)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.jsonl", "settings.json"] + [f"v{i:02d}.mp4.safetensors" for i in range(n)])  # no temp, no rank log

    _single_node(0, _extract_args(videos, weights, tmp_path / "one"))
    for i in range(n):
        a, b = load_file(out / f"v{i:02d}.mp4.safetensors"), load_file(tmp_path / "one" / f"v{i:02d}.mp4.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k])


def test_an_output_folder_that_differs_per_node_is_one_line(tmp_path):
    """--output run, relative, from two working directories: two folders, as on nodes without a shared
    file system. Refused in one line naming the flag before any training, not a run split in two."""
    from tada_zoo.data.synthetic import make_moving_shapes

    data = tmp_path / "data"
    make_moving_shapes(data, num_train=4, num_val=2, num_frames=8, size=32, num_classes=2)
    cwds = (tmp_path / "node0", tmp_path / "node1")
    for c in cwds:
        c.mkdir()
    nodes = Nodes(_train_args(data, "run", 2), tmp_path / "logs", cwds=cwds)
    assert nodes.wait() != [0, 0]
    errors = [l for r in range(2) for l in nodes.log(r).splitlines() if l.startswith("tada-zoo train: error:")]
    assert errors and all("--output run is not one folder for all 2 processes" in e for e in errors), \
        nodes.log(0)[-3000:] + nodes.log(1)[-3000:]
    assert not any((c / "run" / "last.pt").exists() for c in cwds)


def test_shard_sampler_deals_every_item_once():
    from tada_zoo.engine.distributed import ShardSampler

    shards = [list(ShardSampler(5, rank=r, world=2)) for r in range(2)]
    assert shards == [[0, 2, 4], [1, 3]] and [len(ShardSampler(5, rank=r, world=2)) for r in range(2)] == [3, 2]
    assert list(ShardSampler(1, rank=1, world=2)) == []  # more ranks than videos: an idle rank, no repeat


def test_a_dead_peer_is_one_line_saying_how_to_resume(monkeypatch):
    from tada_zoo.engine.distributed import peer_failure

    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed "
                        "by peer [127.0.0.1]:7091. This is typically caused by a remote worker crashing. GLHF!")
    monkeypatch.setenv("WORLD_SIZE", "4")
    msg = peer_failure(gloo)
    assert msg.startswith("another process of this 4-process run stopped or cannot be reached (Connection closed "
                          "by peer [127.0.0.1]:7091)") and "\n" not in msg and "pair.cc" not in msg
    assert peer_failure(RuntimeError("the loss is nan at epoch 1")) is None  # other errors keep their message
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert peer_failure(gloo) is None  # one process: no peer to blame
