"""Class-folder datasets (videos/<class>/<video>): scan, seeded stratified split, make-list, and
train / evaluate straight from the folder with the class names travelling in the checkpoints."""
import json
import os
from collections import Counter

import numpy as np
import pytest

from _engine_utils import TINY, one_thread  # noqa: F401
from tada_zoo.cli import main
from tada_zoo.data.adapters import class_folders_to_lists, scan_class_folders, split_class_folders

CLASSES = ("left", "right")  # moving_shape_clip labels 0 and 1: a shape moving left / right


def _touch(root, *names):
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """videos/<class>/ with 5 tiny moving-shape videos per class (one in a sub-folder), plus noise."""
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    root = tmp_path_factory.mktemp("classes") / "videos"
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        for i in range(5):
            rel = f"{name}/{'takes/' if i == 4 else ''}clip{i}.{'MP4' if i == 3 else 'mp4'}"
            write_video(root / rel, moving_shape_clip(label, 8, 32, rng))
    _touch(root, "left/notes.txt", "left/.hidden.mp4", ".cache/x.mp4", "loose.mp4")
    return root


def test_scan_sorts_classes_finds_videos_recursively_and_skips_the_rest(folder):
    classes, samples = scan_class_folders(folder)
    assert classes == sorted(CLASSES)
    paths = [p for p, _ in samples]
    assert "left/takes/clip4.mp4" in paths and "right/clip3.MP4" in paths  # sub-folders, any case
    assert not any(p.endswith((".txt", ".hidden.mp4")) or p.startswith(".cache") or p == "loose.mp4" for p in paths)
    assert Counter(label for _, label in samples) == {0: 5, 1: 5}
    assert all(p.split("/")[0] == classes[label] for p, label in samples)


def test_split_is_stratified_seeded_and_disjoint(folder):
    classes, train, val = split_class_folders(folder, val_fraction=0.4, seed=3)
    assert Counter(l for _, l in val) == {0: 2, 1: 2} and Counter(l for _, l in train) == {0: 3, 1: 3}
    assert not set(train) & set(val) and len(train) + len(val) == 10
    assert split_class_folders(folder, 0.4, seed=3) == (classes, train, val)  # same seed, same split
    others = {tuple(split_class_folders(folder, 0.4, seed=s)[2]) for s in range(6)}
    assert len(others) > 1  # the seed does pick the videos


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.2"])
def test_val_fraction_must_be_inside_0_1(folder, fraction):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_class_folders(folder, fraction)


def test_empty_class_folder_and_no_class_folders_are_clear_errors(tmp_path):
    _touch(tmp_path, "a/x.mp4", "b/readme.txt")
    with pytest.raises(ValueError, match=r"hold no videos .*: b;"):
        scan_class_folders(tmp_path)
    (tmp_path / "flat").mkdir()
    _touch(tmp_path / "flat", "x.mp4")
    with pytest.raises(ValueError, match="no class folders"):
        scan_class_folders(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="not a folder of class folders"):
        scan_class_folders(tmp_path / "missing")


def test_make_list_folder_writes_train_val_and_classes(folder, tmp_path, capsys):
    out = tmp_path / "lists"
    assert main(["make-list", "--format", "folder", "--root", str(folder), "--output-dir", str(out),
                 "--val-fraction", "0.4", "--seed", "3"]) == 0
    classes, train, val = split_class_folders(folder, 0.4, 3)
    assert (out / "classes.txt").read_text().splitlines() == classes
    assert (out / "train.txt").read_text() == "".join(f"{p} {l}\n" for p, l in train)
    assert (out / "val.txt").read_text() == "".join(f"{p} {l}\n" for p, l in val)
    assert "6 training / 4 validation videos, 2 classes" in capsys.readouterr().out
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_make_list_folder_flag_errors(folder, tmp_path, capsys):
    assert main(["make-list", "--format", "folder", "--root", str(folder)]) == 1
    assert "--output-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["make-list", "--format", "folder", "--root", str(folder), "--output-dir", str(tmp_path),
              "--val-fraction", "1"])
    assert "argument --val-fraction: must be < 1" in capsys.readouterr().err


def _train(folder, out, *extra):
    return main(["train", "--model", "tada2d_r50_8f", "--data-root", str(folder), "--output", str(out),
                 "--val-fraction", "0.4", "--num-frames", "4", "--epochs", "1", "--batch-size", "2", "--workers", "0",
                 "--quiet", "--input-size", "32", "--model-kwargs", json.dumps(TINY), *extra])


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert _train(folder, out) == 0
    return out


def test_train_from_class_folders_writes_the_split_and_stores_the_run(folder, run):
    from tada_zoo.engine.checkpoint import checkpoint_info

    classes, train, val = split_class_folders(folder, 0.4, 0)
    assert (run / "classes.txt").read_text().splitlines() == classes
    assert (run / "val.txt").read_text() == "".join(f"{p} {l}\n" for p, l in val)
    for name in ("best.safetensors", "last.safetensors", "last.pt"):
        info = checkpoint_info(run / name)
        assert info["model"] == "tada2d_r50_8f" and info["trained"]
        assert info["class_names"] == classes and info["num_classes"] == [2]
        assert info["model_kwargs"] == dict(json.loads(json.dumps(TINY)), num_frames=4)
        assert info["protocol"] == dict(train_crop=32)


def test_resuming_on_another_split_is_refused(folder, run, tmp_path, capsys):
    import shutil

    other = tmp_path / "run"
    shutil.copytree(run, other)
    assert _train(folder, other, "--split-seed", "7", "--epochs", "2") == 1
    err = capsys.readouterr().err
    assert "another split" in err and "val.txt" in err


def test_train_flags_that_contradict_the_folder(folder, tmp_path, capsys):
    assert _train(folder, tmp_path / "a", "--num-classes", "3") == 1
    assert "--num-classes 3 disagrees with the 2 classes" in capsys.readouterr().err
    assert _train(folder, tmp_path / "b", "--val-list", "x.txt") == 1
    assert "--val-list needs --train-list" in capsys.readouterr().err


def test_evaluate_a_class_folder_with_the_checkpoint_alone(folder, run, tmp_path, capsys):
    """No --model, --num-classes or --model-kwargs: the checkpoint says them; folders map by name."""
    import shutil

    part = tmp_path / "test"
    shutil.copytree(folder / "right", part / "right")  # one class only: labelled by name, not folder order
    rc = main(["evaluate", "--checkpoint", str(run / "best.safetensors"), "--data-root", str(part), "--clips", "1",
               "--crops", "1", "--workers", "0", "--quiet", "--output", str(tmp_path / "eval")])
    assert rc == 0, capsys.readouterr().err
    rows = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 5 and all(r.split(",")[2] == "1" for r in rows)  # label of 'right' in classes.txt
    # the run's --input-size 32 (test crop scaled with it) came back from the checkpoint
    from tada_zoo.data import protocol_from_cfg
    from tada_zoo.models import registered_cfg

    as_trained = protocol_from_cfg(registered_cfg("tada2d_r50_8f"), num_frames=4, train_crop=32)
    assert as_trained.test_crop != 224 and as_trained.describe(clips=1, crops=1) in capsys.readouterr().out


def test_evaluate_flags_must_agree_with_the_checkpoint(folder, run, capsys):
    base = ["evaluate", "--checkpoint", str(run / "best.safetensors"), "--data-root", str(folder),
            "--workers", "0", "--quiet"]
    assert main(base + ["--num-classes", "5"]) == 1
    assert "--num-classes 5 disagrees with" in capsys.readouterr().err
    assert main(base + ["--model", "tada2d_r50_16f"]) == 1
    assert "--model tada2d_r50_16f disagrees with" in capsys.readouterr().err
    assert main(base + ["--model-kwargs", '{"stem_width": 16}']) == 1
    assert "stem_width=16 disagrees" in capsys.readouterr().err


def test_every_flag_of_every_command_has_help(capsys):
    import argparse

    from tada_zoo.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, p in sub.choices.items()
               if name in ("train", "evaluate", "extract", "predict", "make-list")
               for a in p._actions if not (a.help and a.help.strip())]
    assert not missing
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE clips per batch per process (default: 16)" in text


def test_version_is_the_installed_distributions(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"tada-zoo {version('tada-zoo')}"


def test_extract_needs_no_model_flags_with_a_run_checkpoint(folder, run, tmp_path, capsys):
    """No --size: the crop is the one the run was trained and tested at (32), not the tag's 256."""
    rc = main(["extract", "--checkpoint", str(run / "best.safetensors"), "--input", str(folder / "left"),
               "--output", str(tmp_path / "feats"), "--workers", "0", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    settings = json.loads((tmp_path / "feats" / "settings.json").read_text())
    assert settings["model_name"] == "tada2d_r50_8f" and settings["model_kwargs"]["stem_width"] == TINY["stem_width"]
    assert settings["transform"]["crop_size"] == _run_test_crop(run) < 64  # not the tag's 256


def _run_test_crop(run) -> int:
    """The test crop of the run's stored data flags (--input-size 32 at training: 37, the original's ratio)."""
    from tada_zoo.data import protocol_from_cfg
    from tada_zoo.engine.checkpoint import checkpoint_info
    from tada_zoo.models import registered_cfg

    return protocol_from_cfg(registered_cfg("tada2d_r50_8f"), **checkpoint_info(run / "best.safetensors")["protocol"]).test_crop


def test_export_of_a_run_takes_its_input_size(run, tmp_path, capsys):
    rc = main(["export", "--checkpoint", str(run / "best.safetensors"), "--format", "torchscript",
               "--output", str(tmp_path / "m.pt"), "--static-batch", "--batch", "1"])
    assert rc == 0, capsys.readouterr().err
    crop = _run_test_crop(run)
    assert f"input 3x4x{crop}x{crop}" in capsys.readouterr().out


def test_class_folder_with_a_symlink_loop_is_scanned_once(tmp_path):
    """The one walker (data.folders): a linked folder is followed, a loop back up is not (os.walk with
    followlinks=True would recurse until the path is too long)."""
    _touch(tmp_path, "a/x.mp4", "a/sub/y.mp4", "b/z.mp4")
    os.symlink("..", tmp_path / "a" / "sub" / "up")
    os.symlink(tmp_path / "b", tmp_path / "a" / "linked")
    classes, samples = scan_class_folders(tmp_path)
    assert classes == ["a", "b"]
    assert [p for p, _ in samples] == ["a/linked/z.mp4", "a/sub/y.mp4", "a/x.mp4", "b/z.mp4"]
