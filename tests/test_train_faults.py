"""Training faults of issue 22: resume honours or refuses changed flags, a finished epoch's metrics survive a
kill, the last incomplete batch is explicit, a diverging run says so."""
import json

import pytest
import torch

from tada_zoo.engine import TrainConfig, fit
from tada_zoo.engine import trainer as trainer_module

from _engine_utils import ClipDataset, tiny_model, one_thread  # noqa: F401


def _cfg(out, **kw):
    base = dict(model="tada2d_r50_8f", num_classes=[2], epochs=1, batch_size=4, lr=0.05, warmup_epochs=1,
                workers=0, output=str(out), progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _recorded_steps(monkeypatch) -> list:
    """(update, lr, weight decay) of every optimizer step of the next runs."""
    seen, step = [], trainer_module._step

    def record(run, loss, update):
        group = run.optimizer.param_groups[0]
        seen.append((update, group["lr"], group["weight_decay"]))
        step(run, loss, update)
    monkeypatch.setattr(trainer_module, "_step", record)
    return seen


def test_resume_follows_the_new_flags_from_the_resumed_epoch(tmp_path, monkeypatch, capsys):
    """1 epoch at batch 4, then resumed for 3 with another lr, batch size and weight decay: every later
    step has the lr and weight decay a fresh run with the new flags has at that step."""
    fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path / "a"))
    new = dict(epochs=3, batch_size=2, lr=0.2, weight_decay=0.01)
    seen = _recorded_steps(monkeypatch)
    fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path / "a", resume="auto", **new))
    resumed = list(seen)
    assert "--epochs 3 (was 1)" in capsys.readouterr().out
    seen.clear()
    fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path / "fresh", **new))
    fresh = [s for s in seen if s[0] > 4]  # epoch 2 on (4 steps of batch 2 per epoch)
    assert len(resumed) == len(fresh) == 8
    assert [(u, pytest.approx(lr), wd) for u, lr, wd in resumed] == fresh


@pytest.mark.parametrize("change, message", [
    (dict(opt="adamw"), r"--opt adamw differs from the run in .*last.pt \(sgd\)"),
    (dict(num_classes=[3]), r"--num-classes 3 differs from the run in .*last.pt \(2\)"),
])
def test_resume_refuses_flags_that_change_the_state(tmp_path, change, message):
    fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path))
    model = tiny_model(num_classes=change.get("num_classes", [2])[0])
    with pytest.raises(ValueError, match=message):
        fit(model, ClipDataset(8), None, _cfg(tmp_path, resume="auto", epochs=2, **change))


def test_resume_with_another_network_says_which_file_and_how_out(tmp_path):
    fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path))
    with pytest.raises(ValueError) as e:
        fit(tiny_model("tsn_r50_8f"), ClipDataset(8), None, _cfg(tmp_path, resume="auto", epochs=2))
    text = str(e.value)
    assert "last.pt holds the weights of another network than --model tada2d_r50_8f" in text
    assert "--resume none" in text and "\n" not in text and len(text) < 400


def test_metrics_of_an_epoch_survive_a_kill_after_its_checkpoint(tmp_path, monkeypatch, capsys):
    """The process dies right after last.pt of epoch 2 is written: epoch 2's metrics line is there."""
    save = trainer_module._save_epoch

    def save_then_die(run, out, epoch, *args):
        save(run, out, epoch, *args)
        if epoch == 1:
            raise SystemExit("killed")
    monkeypatch.setattr(trainer_module, "_save_epoch", save_then_die)
    with pytest.raises(SystemExit):
        fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path, epochs=3))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    monkeypatch.setattr(trainer_module, "_save_epoch", save)
    fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path, epochs=3, resume="auto"))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # the files count epochs as the console does
    assert f"epoch 3/3: loss {rows[2]['train_loss']:.4f}" in capsys.readouterr().out
    from safetensors import safe_open
    with safe_open(str(tmp_path / "last.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == "3"


def test_the_last_incomplete_batch_is_explicit(tmp_path, capsys, monkeypatch):
    seen = _recorded_steps(monkeypatch)
    fit(tiny_model(), ClipDataset(15), None, _cfg(tmp_path / "a", batch_size=8))
    assert "each epoch leaves out 7 of 15 training videos" in capsys.readouterr().out and len(seen) == 1
    seen.clear()
    fit(tiny_model(), ClipDataset(15), None, _cfg(tmp_path / "b", batch_size=8, drop_last=False))
    assert "leaves out" not in capsys.readouterr().out and len(seen) == 2
    assert json.loads((tmp_path / "b" / "recipe.json").read_text())["steps_per_epoch"] == 2
    with pytest.raises(ValueError, match="--no-drop-last with mixup / cutmix: the last batch of each epoch would "
                                         "hold 7 clips"):
        fit(tiny_model(), ClipDataset(15), None, _cfg(tmp_path / "c", batch_size=8, drop_last=False, mixup=0.8))


def test_a_diverging_run_says_where_and_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer_module, "DIVERGING_LOGITS", 1e-3)  # any logit counts as exploding
    fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path / "a", epochs=2))
    out = capsys.readouterr().out
    assert out.count("warning: logits reach") == 1  # once a run
    assert "at epoch 1 step 1 (lr " in out and "lower --lr (this run: 0.05) or set --clip-grad" in out
    with pytest.raises(RuntimeError, match=r"the loss is (nan|inf) at epoch 1 step \d+ \(lr .*\): training "
                                           r"diverged; lower --lr \(this run: 1e\+30\)"):
        fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path / "b", lr=1e30, warmup_epochs=0))


def test_evaluation_of_a_diverged_model_warns():
    from tada_zoo.engine.metrics import collect_scores

    model = tiny_model()
    with torch.no_grad():
        model.fc.weight.mul_(1e9)
    loader = torch.utils.data.DataLoader(ClipDataset(4), batch_size=2)
    with pytest.warns(RuntimeWarning, match="logits reach .*diverged run"):
        collect_scores(model, loader, 4, [2], torch.device("cpu"))


def _videos_with_a_crashing_one(root):
    """Four small videos and a list; decoding 'crash.mp4' kills its process with SIGSEGV, as a broken
    FFmpeg decoder would (the patched open_video is inherited by forked loader workers)."""
    import numpy as np

    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    rng = np.random.default_rng(0)
    names = ["a.mp4", "b.mp4", "crash.mp4", "d.mp4"]
    for i, name in enumerate(names):
        write_video(root / name, moving_shape_clip(i % 2, 8, 32, rng))
    (root / "list.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))


def _crashing_open_video(monkeypatch):
    import os
    import signal

    from tada_zoo.data import datasets

    real = datasets.open_video

    def open_video(path, **kw):
        if str(path).endswith("crash.mp4"):
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(path, **kw)
    monkeypatch.setattr(datasets, "open_video", open_video)


def _video_set(root):
    from tada_zoo.data import TrainTransform, VideoDataset

    return VideoDataset(root, root / "list.txt", 4, frame_interval=1,
                        transform=TrainTransform(32, (32, 40), hflip=False))


def test_a_video_that_crashes_a_loader_worker_is_named_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    _videos_with_a_crashing_one(tmp_path)
    _crashing_open_video(monkeypatch)
    summary = fit(tiny_model(), _video_set(tmp_path), None,
                  _cfg(tmp_path / "run", batch_size=2, epochs=2, workers=1))
    assert "warning: decoding crash.mp4 crashed a loader worker; it is skipped as unreadable" in capsys.readouterr().out
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["corrupt_skipped"] + rows[1]["corrupt_skipped"] >= 1
    assert summary["epochs"] == 2


def test_a_crash_without_workers_is_named_by_the_next_run(tmp_path, monkeypatch, capsys):
    """--workers 0: the decoder takes the run down (here: in a child process); the same command again
    names the video and skips it."""
    import multiprocessing

    _videos_with_a_crashing_one(tmp_path)
    _crashing_open_video(monkeypatch)
    cfg = _cfg(tmp_path / "run", batch_size=2, epochs=1, workers=0)
    child = multiprocessing.get_context("fork").Process(
        target=fit, args=(tiny_model(), _video_set(tmp_path), None, cfg))
    child.start()
    child.join()
    assert child.exitcode == -11  # SIGSEGV
    fit(tiny_model(), _video_set(tmp_path), None, cfg)
    assert "the previous run crashed while decoding crash.mp4: it is skipped as unreadable" in capsys.readouterr().out
    assert not list((tmp_path / "run" / ".decoding").iterdir())


def test_a_video_that_crashes_an_evaluation_worker_is_named(tmp_path, monkeypatch):
    from tada_zoo.data import EvalTransform, VideoDataset, VideoDecodeError
    from tada_zoo.engine.evaluate import evaluate_model

    _videos_with_a_crashing_one(tmp_path)
    _crashing_open_video(monkeypatch)
    ds = VideoDataset(tmp_path, tmp_path / "list.txt", 4, frame_interval=1, train=False,
                      transform=EvalTransform(32, 32))
    with pytest.raises(VideoDecodeError, match=r"cannot decode video crash.mp4: decoding it crashed a loader "
                                               r"worker \(DataLoader worker \(pid"):
        evaluate_model(tiny_model(), ds, [2], batch_size=2, workers=1, progress=False)


def test_export_of_a_diverged_model_warns(tmp_path, capsys):
    from safetensors.torch import save_file

    from tada_zoo.cli import main
    from _engine_utils import TINY

    model = tiny_model()
    with torch.no_grad():
        model.fc.weight.mul_(1e9)
    save_file(model.state_dict(), tmp_path / "diverged.safetensors")
    rc = main(["export", "--model", "tada2d_r50_8f", "--model-kwargs", json.dumps(TINY), "--num-classes", "2",
               "--checkpoint", str(tmp_path / "diverged.safetensors"), "--format", "torchscript",
               "--output", str(tmp_path / "m.pt"), "--frames", "4", "--size", "32", "--static-batch", "--batch", "1"])
    err = capsys.readouterr().err
    assert rc == 0 and "diverged.safetensors: the logits reach" in err and "diverged run" in err


def test_a_worker_death_is_raised_where_the_loop_can_take_it():
    """Inside worker_crashes_at_next, torch's SIGCHLD handler (which raises a dead worker's error at any
    line of the main process, e.g. mid training step) is not installed, and is restored after."""
    import signal

    from tada_zoo.data.datasets import worker_crashes_at_next

    before = signal.getsignal(signal.SIGCHLD)
    with worker_crashes_at_next():
        list(torch.utils.data.DataLoader(list(range(4)), num_workers=1))  # a loader with workers inside
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGCHLD) == before
