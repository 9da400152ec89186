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


def test_metrics_of_an_epoch_survive_a_kill_after_its_checkpoint(tmp_path, monkeypatch):
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
    assert [r["epoch"] for r in rows] == [0, 1]
    monkeypatch.setattr(trainer_module, "_save_epoch", save)
    fit(tiny_model(), ClipDataset(8), None, _cfg(tmp_path, epochs=3, resume="auto"))
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]


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
