"""Bad input never loses data or gives a silent wrong answer: one clear line per error, nothing half-done."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from _engine_utils import TINY, tiny_model
from tada_zoo.cli import main


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from tada_zoo.data.synthetic import make_moving_shapes

    root = tmp_path_factory.mktemp("shapes")
    make_moving_shapes(root, num_train=4, num_val=4, num_frames=8, size=32, num_classes=2)
    return root


def _evaluate(shapes, *extra):
    return ["evaluate", "--model", "tada2d_r50_8f", "--data-root", str(shapes), "--val-list",
            str(shapes / "val.txt"), "--num-classes", "2", "--clips", "1", "--crops", "1", "--test-size", "32",
            "--num-frames", "4", "--workers", "0", "--quiet", "--model-kwargs", json.dumps(TINY), *extra]


def _last_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_nan_checkpoint_is_an_error_not_a_score(shapes, tmp_path, capsys):
    sd = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
          for k, v in tiny_model(num_classes=2).state_dict().items()}
    save_file(sd, tmp_path / "nan.safetensors")
    assert main(_evaluate(shapes, "--checkpoint", str(tmp_path / "nan.safetensors"))) == 1
    assert "non-finite scores" in _last_line(capsys)


def test_flipped_byte_in_a_checkpoint_is_refused(tmp_path):
    from tada_zoo.models import read_checkpoint

    weights = torch.arange(4096, dtype=torch.float32)
    path = tmp_path / "c.pyth"
    torch.save({"model_state": {"w": weights}}, path)
    data = bytearray(path.read_bytes())
    at = bytes(data).find(weights.numpy().tobytes()[:256])
    assert at > 0
    data[at + 1000] ^= 0x10  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"c.pyth is corrupt: the checksum"):
        read_checkpoint(path)


def test_unknown_model_argument_and_misspelt_model(shapes, capsys):
    assert main(_evaluate(shapes)[:-1] + [json.dumps(dict(TINY, widht=3))]) == 1
    assert "takes no argument 'widht'" in _last_line(capsys)
    args = _evaluate(shapes)
    args[args.index("tada2d_r50_8f")] = "tada2d_r50_8ff"
    assert main(args) == 1
    assert "did you mean tada2d_r50_8f" in _last_line(capsys)


@pytest.mark.parametrize("flag", ["--epochs=0", "--lr=-1", "--lr=nan", "--drop-rate=1.5", "--batch-size=0",
                                  "--workers=-1", "--max-steps-per-epoch=0", "--clip-grad=0"])
def test_train_numbers_are_checked_where_parsed(flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "tada2d_r50_8f", "--data-root", ".", "--train-list", "x", "--num-classes", "2",
              "--output", "out", flag])
    assert e.value.code == 2
    assert f"argument {flag.split('=')[0]}" in capsys.readouterr().err.strip().splitlines()[-1]


def test_ctrl_c_is_one_line_and_says_how_to_resume(monkeypatch, capsys):
    import tada_zoo.cli.profile as profile_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(profile_cli, "profile_model", interrupted)
    assert main(["profile", "--model", "tsn_r50_8f"]) == 130
    assert "interrupted" in _last_line(capsys)


def test_errors_from_loader_workers_show_the_workers_message():
    from tada_zoo.cli import _one_line

    worker = RuntimeError("Caught VideoDecodeError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                          "call last):\n  File \"x.py\", line 1, in f\n    raise\n"
                          "tada_zoo.data.decode.VideoDecodeError: v.mp4: truncated")
    assert _one_line(worker) == "tada_zoo.data.decode.VideoDecodeError: v.mp4: truncated"


def test_resume_tolerates_a_cut_metrics_line(tmp_path):
    from tada_zoo.engine.trainer import _MetricsLog

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"type": "epoch", "epoch": 1, "train_loss": 1.0}\n{"type": "epoch", "epoch": 2, "train_lo')
    _MetricsLog(log, start_epoch=1)  # the 0-based epoch to go on from: the line of epoch 1 stays
    assert log.read_text() == '{"type": "epoch", "epoch": 1, "train_loss": 1.0}\n'


def test_resume_from_a_code_pickle_is_refused(tmp_path):
    from tada_zoo.engine.trainer import TrainConfig, fit

    class Code:
        def __reduce__(self):
            return (os.getcwd, ())

    bad = tmp_path / "last.pt"
    torch.save({"model": {}, "x": Code()}, bad)
    from _engine_utils import ClipDataset
    with pytest.raises(ValueError, match="need code to be unpickled"):
        fit(tiny_model(num_classes=2), ClipDataset(4), None,
            TrainConfig(model="tada2d_r50_8f", num_classes=[2], epochs=1, batch_size=2, workers=0, resume=str(bad),
                        progress=False))


def test_run_files_get_the_users_permissions(tmp_path):
    from tada_zoo.engine.checkpoint import atomic_save, save_safetensors

    old = os.umask(0o022)
    try:
        atomic_save({"a": torch.zeros(1)}, tmp_path / "last.pt")
        save_safetensors({"a": torch.zeros(1)}, tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    assert oct((tmp_path / "last.pt").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "w.safetensors").stat().st_mode & 0o777) == oct(0o644)


def test_labels_are_checked_against_num_classes_up_front(shapes, tmp_path, capsys):
    bad = tmp_path / "val.txt"
    lines = (shapes / "val.txt").read_text().splitlines()
    bad.write_text("\n".join(lines[:2] + [lines[2].rsplit(" ", 1)[0] + " 5"] + lines[3:]) + "\n")
    args = _evaluate(shapes)
    args[args.index("--val-list") + 1] = str(bad)
    assert main(args) == 1
    line = _last_line(capsys)
    assert "val.txt:3" in line and "5" in line


def test_broken_validation_video_stops_training_before_the_first_epoch(shapes, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    victim = (data / "val.txt").read_text().split()[0]
    (data / victim).write_bytes((data / victim).read_bytes()[:300])  # cut short: not decodable
    rc = main(["train", "--model", "tada2d_r50_8f", "--data-root", str(data), "--train-list", str(data / "train.txt"),
               "--val-list", str(data / "val.txt"), "--num-classes", "2", "--output", str(tmp_path / "run"),
               "--num-frames", "4", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--quiet",
               "--input-size", "32", "--model-kwargs", json.dumps(TINY)])
    assert rc == 1
    line = _last_line(capsys)
    assert "--val-list" in line and victim in line and "cannot be read" in line
    assert not (tmp_path / "run" / "last.pt").exists()


def test_corrupt_videos_are_counted_as_files_not_skip_events(shapes, tmp_path, monkeypatch):
    import random

    from tada_zoo.data import datasets, protocol_from_cfg
    from tada_zoo.engine.trainer import TrainConfig, fit

    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)
    lines = [f"{shapes}/{line}" for line in (shapes / "train.txt").read_text().splitlines()]
    (tmp_path / "list.txt").write_text("\n".join(lines + ["broken.mp4 0"]) + "\n")
    ds = protocol_from_cfg(None, num_frames=4, train_crop=32).dataset(tmp_path, tmp_path / "list.txt", train=True)
    picks = iter([len(lines)] * 2)  # the first two replacements draw the broken video again: 3 skips, 1 file
    monkeypatch.setattr(datasets.random, "randrange", lambda n: next(picks, None) or random.Random(0).randrange(n))
    with pytest.warns(RuntimeWarning, match="broken.mp4"):
        fit(tiny_model(num_classes=2), ds, None, TrainConfig(model="tada2d_r50_8f", num_classes=[2], epochs=1,
                                                             batch_size=5, workers=0, progress=False,
                                                             output=str(tmp_path / "run")))
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert ds.num_corrupt >= 3 and row["corrupt_skipped"] == 1
