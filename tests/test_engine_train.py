"""Trainer: it learns, a stopped run resumes bit-identically, recipes, fine-tuning starts."""
import json

import pytest
import torch
from safetensors.torch import load_file

from tada_zoo.engine import TrainConfig, create_video_model, fit
from tada_zoo.engine.distributed import state_hash
from tada_zoo.engine.trainer import resolve_config

from _engine_utils import HANG_GUARD, ClipDataset, tiny_model, one_thread  # noqa: F401


def _cfg(out, **kw):
    base = dict(model="tada2d_r50_8f", num_classes=[2], epochs=3, batch_size=4, lr=0.05, warmup_epochs=1,
                workers=0, output=str(out), progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_short_training_run_learns(tmp_path):
    train = ClipDataset(16)
    model = tiny_model(drop_rate=0.0)
    summary = fit(model, train, ClipDataset(8, seed=1), _cfg(tmp_path, epochs=6, lr=0.1))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 7))  # counted from 1, as the console says
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"], rows
    # the saved weights are the trained model's and classify the training clips
    model.load_state_dict(load_file(tmp_path / "last.safetensors"))
    model.train()  # batch statistics: 24 steps are too few for converged BN running averages
    with torch.no_grad():
        pred = model(torch.stack(train.clips)).argmax(1)
    assert (pred == torch.tensor(train.labels)).float().mean() >= 0.75
    assert summary["ranks_in_sync"] and 1 <= summary["best"]["epoch"] <= 6
    assert {"last.pt", "last.safetensors", "best.safetensors", "summary.json"} <= {p.name for p in tmp_path.iterdir()}
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    # last.pt is plain tensors and values: loadable without unpickling code
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 5 and "optimizer" in state and "scheduler" in state


def test_stop_and_resume_continues_identically(tmp_path):
    """2 epochs straight == 1 epoch, process 'killed', resumed from last.pt for 1 more
    (EMA, drop path, dropout and a loader worker all draw random numbers)."""
    kw = dict(epochs=2, ema=True, ema_decay=0.9, workers=1)
    straight = tiny_model(drop_path_rate=0.2)
    fit(straight, ClipDataset(12), ClipDataset(4, seed=1), _cfg(tmp_path / "a", **kw))

    first = tiny_model(drop_path_rate=0.2)
    fit(first, ClipDataset(12), ClipDataset(4, seed=1), _cfg(tmp_path / "b", stop_after_epoch=0, **kw))
    assert json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    torch.manual_seed(1234)  # a new process: different global RNG state, fresh model
    resumed = tiny_model(drop_path_rate=0.2)
    fit(resumed, ClipDataset(12), ClipDataset(4, seed=1), _cfg(tmp_path / "b", resume="auto", **kw))
    assert state_hash(resumed) == state_hash(straight)
    a, b = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the EMA weights too
    assert not torch.equal(a["fc.weight"], tiny_model().state_dict()["fc.weight"])  # training did move them
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 2


def test_two_heads_train(tmp_path):
    summary = fit(tiny_model(num_classes=4 + 2), ClipDataset(8, num_classes=4, heads=2),
                  ClipDataset(4, num_classes=4, heads=2, seed=1), _cfg(tmp_path, num_classes=[4, 2], epochs=1))
    assert set(summary["last_val"]) >= {"head0", "head1", "action_top1"}


def test_recipes_scale_lr_with_batch():
    """The recipe's lr is for its own global batch (tada2d_8x8_k400: 0.24 at 128); the warm-up start follows."""
    cfg = resolve_config(TrainConfig(model="tada2d_r50_8f", batch_size=32))
    assert cfg.opt == "sgd" and cfg.epochs == 100 and cfg.warmup_epochs == 8
    assert cfg.lr == pytest.approx(0.24 * 32 / 128) and cfg.warmup_lr == pytest.approx(0.01 * 32 / 128)
    assert resolve_config(TrainConfig(model="tada2d_r50_8f", batch_size=128)).warmup_lr == 0.01  # the original
    assert resolve_config(TrainConfig(model="tada2d_r50_8f", lr=0.5, epochs=3)).lr == 0.5


@pytest.mark.parametrize("recipe, flip_labels", [("tada2d_8x8_k400", "none"), ("tada2d_8f_ssv2", "ssv2"),
                                                 ("tadaconvnextv2_tiny_ssv2_16f", "ssv2"), ("tada2d_ek100", "none")])
def test_ssv2_recipes_swap_direction_labels_on_flips(recipe, flip_labels):
    """The original's SSV2 configs set SSV2_FLIP; the flag still wins."""
    assert resolve_config(TrainConfig(model="tada2d_r50_8f", recipe=recipe)).flip_labels == flip_labels
    assert resolve_config(TrainConfig(model="tada2d_r50_8f", recipe=recipe, flip_labels="none")).flip_labels == "none"


def test_finetune_from_checkpoint_replaces_head(tmp_path):
    from safetensors.torch import save_file

    src = tiny_model(num_classes=2)
    save_file(src.state_dict(), tmp_path / "w.safetensors")
    from _engine_utils import TINY
    model = create_video_model("tada2d_r50_8f", 5, checkpoint=tmp_path / "w.safetensors", **TINY)
    assert model.fc.out_features == 5
    assert torch.equal(model.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    with pytest.raises(ValueError, match="at most one"):
        create_video_model("tada2d_r50_8f", 5, pretrained=True, checkpoint="x")
    with pytest.raises(ValueError, match="does not fit"):  # TSN weights into TAda2D: calibration missing
        save_file(tiny_model("tsn_r50_8f").state_dict(), tmp_path / "tsn.safetensors")
        create_video_model("tada2d_r50_8f", 2, checkpoint=tmp_path / "tsn.safetensors", **TINY)


def test_cli_killed_mid_run_resumes_identically(tmp_path):
    """A real SIGKILL of ``tada-zoo train`` during epoch 2, then the same command again:
    the final weights equal those of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tada_zoo.data.synthetic import make_moving_shapes
    from _engine_utils import TINY

    data = tmp_path / "data"
    make_moving_shapes(data, num_train=8, num_val=4, num_frames=8, size=32, num_classes=2)
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def cmd(out):
        return [sys.executable, "-m", "tada_zoo.cli", "train", "--model", "tada2d_r50_8f", "--data-root", str(data),
                "--train-list", str(data / "train.txt"), "--val-list", str(data / "val.txt"), "--num-classes", "2",
                "--output", str(out), "--model-kwargs", json.dumps(TINY), "--num-frames", "4", "--frame-interval", "2",
                "--input-size", "32", "--test-size", "32", "--epochs", "4", "--batch-size", "2", "--lr", "0.05",
                "--warmup-epochs", "1", "--workers", "1", "--ema", "--device", "cpu", "--quiet"]

    subprocess.run(cmd(tmp_path / "a"), cwd=root, env=env, check=True, capture_output=True, timeout=HANG_GUARD)
    proc = subprocess.Popen(cmd(tmp_path / "b"), cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + HANG_GUARD
    while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(metrics.read_text().splitlines())
    assert done < 4
    subprocess.run(cmd(tmp_path / "b"), cwd=root, env=env, check=True, capture_output=True, timeout=HANG_GUARD)
    a, b = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [json.loads(l)["epoch"] for l in metrics.read_text().splitlines()] == [1, 2, 3, 4]
