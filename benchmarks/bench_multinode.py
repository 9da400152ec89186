"""Overhead of a two-node launch: the same small training run (2 processes, gloo on CPU) as one node
(``torchrun --standalone --nproc-per-node 2``) and as two nodes on this machine (two ``torchrun
--nnodes 2 --nproc-per-node 1`` launches, c10d rendezvous on 127.0.0.1).

Both run the same processes doing the same steps, so the ratio is what the multi-node launch costs
(rendezvous, the agents' store and heartbeats, TCP between the nodes), not a speed-up: on one box
two "nodes" share its cores. Prints the median wall time of each, their paired ratio, and the
training time the runs report (the sum of ``metrics.jsonl``'s epoch times, launch excluded).

    python benchmarks/bench_multinode.py [--epochs 2 --videos 16 --size 64 --repeats 3]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's tada_zoo
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, paired_ratio, time_runs  # noqa: E402

TINY = dict(layers=[1, 1, 1, 1], widths=[8, 16, 32, 64], stem_width=8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(data: Path, out: Path, a) -> list:
    return ["-m", "tada_zoo.cli", "train", "--model", "tada2d_r50_8f", "--data-root", str(data),
            "--train-list", str(data / "train.txt"), "--num-classes", "2", "--output", str(out),
            "--model-kwargs", json.dumps(TINY), "--num-frames", "4", "--frame-interval", "2",
            "--input-size", str(a.size), "--epochs", str(a.epochs), "--batch-size", "2", "--lr", "0.05",
            "--warmup-epochs", "1", "--workers", "0", "--device", "cpu", "--quiet", "--resume", "none"]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _check(procs, out: Path, train_times: list) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"a run failed ({p.returncode}): {err.decode()[-2000:]}")
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    train_times.append(sum(r["time"] for r in rows if r.get("type") == "epoch"))


def _one_node(data: Path, tmp: Path, a, times: list):
    def run():
        out = tmp / "one_node"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        _check([subprocess.Popen(cmd + _train_args(data, out, a), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)], out, times)
    return run


def _two_nodes(data: Path, tmp: Path, a, times: list):
    def run():
        out, port = tmp / "two_nodes", _free_port()
        procs = [subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--node-rank", str(r), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
             "--rdzv-id", f"bench{port}", "--rdzv-conf", f"is_host={int(r == 0)}"] + _train_args(data, out, a),
            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for r in range(2)]
        _check(procs, out, times)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--videos", type=int, default=16, help="training videos (8 steps an epoch at 16)")
    p.add_argument("--size", type=int, default=64, help="crop size")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    from tada_zoo.data.synthetic import make_moving_shapes

    with tempfile.TemporaryDirectory(prefix="bench-multinode-") as tmp:
        tmp = Path(tmp)
        make_moving_shapes(tmp / "data", num_train=a.videos, num_val=2, num_frames=8, size=a.size, num_classes=2)
        times = {"one node x 2": [], "two nodes x 1": []}
        runs = time_runs({"one node x 2": _one_node(tmp / "data", tmp, a, times["one node x 2"]),
                          "two nodes x 1": _two_nodes(tmp / "data", tmp, a, times["two nodes x 1"])},
                         repeats=a.repeats, warmup=1)
    print(f"train, {a.epochs} epochs x {a.videos // 4} steps (2 processes, batch 2 each, {a.size} px), "
          f"{a.repeats} turns on {os.cpu_count()} cores:")
    for name in runs:
        train = statistics.median(times[name][1:])  # the warm-up run left out
        print(f"  {name:<14} wall {median_time(runs, name):6.2f} s   training (epochs only) {train:6.2f} s")
    ratio = paired_ratio(runs, "two nodes x 1", "one node x 2")
    extra = median_time(runs, "two nodes x 1") - median_time(runs, "one node x 2")
    print(f"two nodes / one node wall time: {ratio:.3f} (paired median; {extra:+.2f} s per run)")


if __name__ == "__main__":
    main()
