"""WebDataset shards: `tada-zoo shard` packs videos byte for byte (resumable, indexed, size-limited), and
evaluate / extract / train read the same clips from them as from the files, every video once."""
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tada_zoo.cli import main
from tada_zoo.data import protocol_from_cfg, read_annotations
from tada_zoo.data import shards as shards_mod
from tada_zoo.data.shards import parse_size, write_shards
from tada_zoo.data.synthetic import make_moving_shapes, moving_shape_clip, write_video
from tada_zoo.engine.evaluate import evaluate_model

from _engine_utils import HANG_GUARD, TINY, tiny_model

ROOT = Path(__file__).resolve().parents[1]
SMALL = 20480  # two tar records: two of the test videos per shard


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 training and 6 validation videos (32 px, 8 frames, 2 classes) and their lists."""
    root = tmp_path_factory.mktemp("shards_data")
    make_moving_shapes(root, num_train=6, num_val=6, num_frames=8, size=32, num_classes=2)
    return root


@pytest.fixture(scope="module")
def packed(data, tmp_path_factory):
    """The validation list in 3 shards of 2 videos."""
    out = tmp_path_factory.mktemp("shards") / "val"
    write_shards(read_annotations(data / "val.txt"), data, out, SMALL, prefix="val")
    return out


def _members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _protocol(sampling="interval", **kw):
    return protocol_from_cfg(None, num_frames=4, frame_interval=2, sampling=sampling, test_crop=32, test_short_side=32,
                             train_crop=32, **kw)


def test_parse_size():
    assert parse_size("1GB") == 10 ** 9 and parse_size("2GiB") == 2 * 1024 ** 3 and parse_size("500mb") == 5 * 10 ** 8
    assert parse_size("20480") == 20480
    for bad in ("1XB", "", "-1GB", "100"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_round_trip_index_and_size_limit(data, packed):
    samples = read_annotations(data / "val.txt")
    index = json.loads((packed / "index.json").read_text())
    assert [s["name"] for s in index["shards"]] == ["val-000000.tar", "val-000001.tar", "val-000002.tar"]
    assert [s["count"] for s in index["shards"]] == [2, 2, 2] and index["num_samples"] == 6
    seen = 0
    for shard in index["shards"]:
        tar = packed / shard["name"]
        assert tar.stat().st_size == shard["size"] <= SMALL
        members = _members(tar)
        for name, blob in members.items():
            if not name.endswith(".json"):
                continue
            meta = json.loads(blob)
            source = (data / samples[meta["index"]][0]).read_bytes()
            key = name[:-len(".json")]
            assert members[f"{key}.mp4"] == source  # the original bytes, untouched
            assert meta["sha256"] == hashlib.sha256(source).hexdigest()
            assert (meta["path"], meta["label"]) == samples[meta["index"]]
            assert int(members[f"{key}.cls"]) == meta["label"]
            assert index["samples"][meta["index"]]["shard"] == shard["name"]
            seen += 1
    assert seen == 6


def test_a_video_larger_than_the_size_gets_its_own_shard(data, tmp_path):
    rng = np.random.default_rng(0)
    big = tmp_path / "big.mp4"
    write_video(big, moving_shape_clip(0, 48, 64, rng))
    assert os.path.getsize(big) > SMALL
    samples = [("big.mp4", 0)] + [(str(data / p), lb) for p, lb in read_annotations(data / "val.txt")[:4]]
    r = write_shards(samples, tmp_path, tmp_path / "out", SMALL, prefix="x")
    shards = r["index"]["shards"]
    assert shards[0]["count"] == 1 and shards[0]["size"] > SMALL
    assert all(s["size"] <= SMALL for s in shards[1:]) and sum(s["count"] for s in shards) == 5


def test_resume_after_a_kill_keeps_complete_shards(data, tmp_path, monkeypatch):
    samples = read_annotations(data / "val.txt")
    out = tmp_path / "out"
    real, calls = shards_mod._write_tar, []

    def dying(tmp, members):
        calls.append(tmp)
        if len(calls) == 2:
            real(tmp, members[:1])  # half a shard written, then the process dies
            raise KeyboardInterrupt
        real(tmp, members)

    monkeypatch.setattr(shards_mod, "_write_tar", dying)
    with pytest.raises(KeyboardInterrupt):
        write_shards(samples, data, out, SMALL, prefix="val")
    assert sorted(os.listdir(out)) == ["index.json", "val-000000.tar"]  # no half shard, no temp file
    first = (out / "val-000000.tar").stat()
    (out / ".val-000001.tar.x1y2.tmp").write_bytes(b"left by a SIGKILL")
    monkeypatch.setattr(shards_mod, "_write_tar", real)
    r = write_shards(samples, data, out, SMALL, prefix="val")
    assert (r["written"], r["kept"]) == (2, 1)
    again = (out / "val-000000.tar").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not rewritten
    assert sorted(os.listdir(out)) == ["index.json", "val-000000.tar", "val-000001.tar", "val-000002.tar"]
    clean = tmp_path / "clean"
    write_shards(samples, data, clean, SMALL, prefix="val")
    for name in ("val-000000.tar", "val-000001.tar", "val-000002.tar"):
        assert _members(out / name) == _members(clean / name)
    assert (out / "index.json").read_text() == (clean / "index.json").read_text()


def _cli_error(capsys, argv):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_shard_errors_are_one_line(data, tmp_path, capsys):
    base = ["shard", "--data-root", str(data), "--max-size", "1MB"]
    lst = tmp_path / "missing.txt"
    lst.write_text("videos/val/00000.mp4 0\nvideos/val/nope.mp4 1\n")
    assert "videos/val/nope.mp4" in _cli_error(capsys, base + ["--list", str(lst), "--output", str(tmp_path / "a")])
    assert "is a directory" in _cli_error(capsys, base + ["--list", str(data), "--output", str(tmp_path / "b")])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "--output" in _cli_error(capsys, base + ["--list", str(data / "val.txt"), "--output", str(blocker)])
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    err = _cli_error(capsys, base + ["--list", str(data / "val.txt"), "--output", str(other)])
    assert "notes.txt" in err and "--output" in err
    with pytest.raises(SystemExit):
        main(base + ["--list", str(data / "val.txt"), "--output", str(tmp_path / "c"), "--max-size", "1XB"])
    assert "--max-size" in capsys.readouterr().err


def test_class_folders_are_packed_with_their_names(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for cls, label in (("left", 0), ("right", 1)):
        for i in range(2):
            write_video(tmp_path / "videos" / cls / f"{i}.mp4", moving_shape_clip(label, 8, 32, rng))
    assert main(["shard", "--data-root", str(tmp_path / "videos"), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    assert "4 videos in 1 shards" in capsys.readouterr().out
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["class_names"] == ["left", "right"]
    assert [(s["path"], s["label"]) for s in index["samples"]] == [
        ("left/0.mp4", 0), ("left/1.mp4", 0), ("right/0.mp4", 1), ("right/1.mp4", 1)]
    metas = [json.loads(v) for k, v in _members(tmp_path / "out" / "shard-000000.tar").items() if k.endswith(".json")]
    assert sorted(m["class_name"] for m in metas) == ["left", "left", "right", "right"]


def test_without_webdataset_one_line_says_what_to_install(packed, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "webdataset", None)
    err = _cli_error(capsys, ["evaluate", "--model", "tada2d_r50_8f", "--num-classes", "2",
                              "--shards", str(packed / "val-000000.tar"), "--device", "cpu"])
    assert "pip install 'tada-zoo[shards]'" in err


@pytest.mark.parametrize("sampling", ["interval", "segment"])
def test_views_and_training_clips_equal_the_files(data, packed, sampling):
    """Every test view (2 clips x 3 crops) and training clip read from a shard is the file's, pixel for pixel."""
    p = _protocol(sampling, clips=2, crops=3)
    files = p.dataset(data, data / "val.txt", train=False)
    pattern = str(packed / "val-{000000..000002}.tar")
    items = list(p.dataset(shards=pattern, train=False))
    assert sorted(i["index"] for i in items) == list(range(6))
    for item in items:
        assert item["video"].shape == (2, 3, 3, 4, 32, 32)
        assert torch.equal(item["video"], files.load_views(item["index"]))
        assert item["label"] == files.samples[item["index"]][1]
    train_files = p.dataset(data, data / "val.txt", train=True)
    train_shards = p.dataset(shards=pattern, train=True)
    for meta, blob, _ in shards_mod.iter_shard_samples(train_shards.shards.urls):
        row = train_shards.shards.rows[meta["index"]]
        torch.manual_seed(row), random.seed(row), np.random.seed(row)
        from_shard = train_shards.base.load_clip(row, None, blob)
        torch.manual_seed(row), random.seed(row), np.random.seed(row)
        assert torch.equal(from_shard, train_files.load_clip(row, None))


def test_evaluation_scores_equal_the_files_and_every_video_counts_once(data, packed, monkeypatch):
    torch.manual_seed(0)
    model = tiny_model().eval()
    p = _protocol(clips=2, crops=3)
    files = evaluate_model(model, p.dataset(data, data / "val.txt", train=False), [2], 4, 0, progress=False)
    shard_set = p.dataset(shards=str(packed / "val-{000000..000002}.tar"), train=False)
    for workers in (0, 2):  # 2 workers over 3 shards: one reads two, the other one
        res = evaluate_model(model, shard_set, [2], 4, workers, progress=False)
        for a, b in zip(files["scores"], res["scores"]):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert torch.equal(files["labels"], res["labels"]) and (res["views"] == 6).all()
    shard_set.shards.urls.append(shard_set.shards.urls[0])  # a shard read twice: loud, not averaged away
    with pytest.raises(RuntimeError, match=r"expected each of the 6 videos exactly once .* 6 were seen, 2 of them"):
        evaluate_model(model, shard_set, [2], 4, 0, progress=False)
    del shard_set.shards.urls[-2:]  # a shard never read
    with pytest.raises(RuntimeError, match="4 were seen"):
        evaluate_model(model, shard_set, [2], 4, 0, progress=False)


def test_evaluate_cli_over_shards_writes_the_files_results(data, packed, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(tiny_model().state_dict(), tmp_path / "w.safetensors")
    common = ["evaluate", "--model", "tada2d_r50_8f", "--checkpoint", str(tmp_path / "w.safetensors"),
              "--model-kwargs", json.dumps(TINY), "--num-classes", "2", "--num-frames", "4", "--frame-interval", "2",
              "--test-size", "32", "--clips", "2", "--crops", "1", "--workers", "0", "--device", "cpu", "--quiet"]
    assert main(common + ["--data-root", str(data), "--val-list", str(data / "val.txt"),
                          "--output", str(tmp_path / "files")]) == 0
    assert main(common + ["--shards", f"pipe:cat {packed}/val-{{000000..000002}}.tar",
                          "--output", str(tmp_path / "shards")]) == 0
    assert (tmp_path / "files" / "predictions.csv").read_text() == (tmp_path / "shards" / "predictions.csv").read_text()


def test_predict_over_shards_answers_as_for_the_files(data, packed, tmp_path, capsys):
    """predict --shards: every video of the shards once, named by its list path, with the files' scores."""
    from tada_zoo.engine.checkpoint import run_metadata, save_safetensors

    torch.manual_seed(0)
    save_safetensors(tiny_model().state_dict(), tmp_path / "w.safetensors", metadata=run_metadata(
        "tada2d_r50_8f", dict(TINY, num_frames=4), [2], ["a", "b"], dict(frame_interval=2, test_crop=32,
                                                                         test_short_side=32)))
    common = ["predict", "--checkpoint", str(tmp_path / "w.safetensors"), "--clips", "2", "--crops", "1", "--json",
              "--quiet", "--top-k", "2"]
    capsys.readouterr()
    assert main(common + ["--shards", f"{packed}/val-{{000000..000002}}.tar"]) == 0
    from_shards = {r["video"]: r["top"] for r in json.loads(capsys.readouterr().out)}
    assert main(common + [str(data)]) == 0
    from_files = {r["video"]: r["top"] for r in json.loads(capsys.readouterr().out)}
    val = [path for path, _ in read_annotations(data / "val.txt")]
    assert sorted(from_shards) == sorted(val) and all(from_shards[v] == from_files[v] for v in val)
    assert main(common + [str(data), "--shards", f"{packed}/val-000000.tar"]) == 1
    assert "one of them" in capsys.readouterr().err


def _extract_cmd(weights, out, *source):
    return ["extract", "--model", "tada2d_r50_8f", "--checkpoint", str(weights), "--model-kwargs", json.dumps(TINY),
            *source, "--output", str(out), "--clip-len", "4", "--frame-interval", "1", "--size", "32",
            "--device", "cpu", "--quiet"]


def _same_features(a_dir, b_dir, keys):
    from safetensors.torch import load_file

    for key in keys:
        a, b = load_file(a_dir / f"{key}.safetensors"), load_file(b_dir / f"{key}.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (key, k)


def test_extract_over_shards_equals_files_and_resumes(data, packed, tmp_path, monkeypatch, capsys):
    from safetensors.torch import save_file

    save_file(tiny_model().state_dict(), tmp_path / "w.safetensors")
    keys = [p for p, _ in read_annotations(data / "val.txt")]
    assert main(_extract_cmd(tmp_path / "w.safetensors", tmp_path / "files", "--input", str(data),
                             "--workers", "0")) == 0
    pattern = str(packed / "val-{000000..000002}.tar")
    out = tmp_path / "shards"
    assert main(_extract_cmd(tmp_path / "w.safetensors", out, "--shards", str(packed / "val-000001.tar"),
                             "--workers", "0")) == 0  # one shard first: a resumed run does the rest
    capsys.readouterr()
    assert main(_extract_cmd(tmp_path / "w.safetensors", out, "--shards", pattern, "--workers", "2")) == 0
    printed = capsys.readouterr().out
    assert "4 videos extracted" in printed and "2 already done" in printed
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(e["video"] for e in index) == sorted(keys) and all(e["status"] == "ok" for e in index)
    _same_features(tmp_path / "files", out, keys)
    real = shards_mod.ShardSet.dealt
    monkeypatch.setattr(shards_mod.ShardSet, "dealt", lambda self: real(self) + real(self)[:1])  # a shard twice
    err = _cli_error(capsys, _extract_cmd(tmp_path / "w.safetensors", tmp_path / "twice", "--shards", pattern,
                                          "--workers", "0"))
    assert "expected each of the 6 videos to do exactly once" in err and "8 came through" in err


@pytest.fixture(scope="module")
def train_packed(data, tmp_path_factory):
    """The 6 training videos in 3 shards of 2."""
    out = tmp_path_factory.mktemp("shards") / "train"
    write_shards(read_annotations(data / "train.txt"), data, out, SMALL, prefix="train")
    return out


def _epoch(dataset, epoch, slots=None):
    """Rows of one epoch as (rank, worker) slots read them: ``slots`` = (ranks, workers)."""
    ranks, workers = slots or (1, 1)
    dataset.set_epoch(epoch)
    out = {}
    for r in range(ranks):
        for w in range(workers):
            with pytest.MonkeyPatch.context() as m:
                m.setattr(shards_mod, "_slot", lambda r=r, w=w: (r, ranks, w, workers))
                out[r, w] = [item["index"] for item in dataset]
    return out


@pytest.mark.parametrize("slots", [(1, 1), (1, 2), (2, 2)])
def test_training_epochs_shuffle_by_seed_and_epoch_only(train_packed, slots):
    """An epoch's clips depend on (seed, epoch) alone: read after other epochs or first, the same; each rank gets
    (N // ranks) // batch whole batches, no video twice in an epoch (by shard with >= 1 shard per slot, by
    sample with fewer: 3 shards for 2 ranks x 2 workers)."""
    def dataset(seed=0):
        ds = _protocol().dataset(shards=str(train_packed / "train-{000000..000002}.tar"), train=True, seed=seed,
                                 shuffle_buffer=3)
        ds.batch_size = 1
        return ds

    ranks, workers = slots
    ds = dataset()
    epochs = [_epoch(ds, e, slots) for e in range(3)]
    assert _epoch(dataset(), 2, slots) == epochs[2]  # a resumed run's epoch 2 == the unbroken run's
    for rows in epochs:
        for r in range(ranks):
            assert sum(len(rows[r, w]) for w in range(workers)) == 6 // ranks
        every = [i for v in rows.values() for i in v]
        assert len(every) == len(set(every)) == 6 // ranks * ranks
    orders = [[i for k in sorted(rows) for i in rows[k]] for rows in epochs]
    assert len({tuple(o) for o in orders}) > 1  # the order changes with the epoch
    assert _epoch(dataset(seed=1), 0, slots) != epochs[0]  # and every seed


def test_fit_on_shards_stops_and_resumes_identically(data, train_packed, packed, tmp_path):
    from tada_zoo.engine import TrainConfig, fit
    from tada_zoo.engine.distributed import state_hash

    p = _protocol(clips=1, crops=1)

    def run(out, **kw):
        torch.manual_seed(0)
        model = tiny_model(drop_path_rate=0.2)
        cfg = TrainConfig(model="tada2d_r50_8f", num_classes=[2], epochs=2, batch_size=2, lr=0.05, warmup_epochs=1,
                          workers=1, output=str(out), progress=False, **kw)
        train = p.dataset(shards=str(train_packed / "train-{000000..000002}.tar"), train=True, seed=cfg.seed)
        val = p.dataset(shards=str(packed / "val-{000000..000002}.tar"), train=False)
        summary = fit(model, train, val, cfg)
        return model, summary

    straight, summary = run(tmp_path / "a")
    assert summary["last_val"] is not None
    run(tmp_path / "b", stop_after_epoch=0)
    resumed, _ = run(tmp_path / "b", resume="auto")
    assert state_hash(resumed) == state_hash(straight) != state_hash(tiny_model())


def test_train_cli_reads_shards(train_packed, packed, tmp_path, capsys):
    argv = ["train", "--model", "tada2d_r50_8f", "--shards", str(train_packed / "train-{000000..000002}.tar"),
            "--val-shards", f"pipe:cat {packed}/val-{{000000..000002}}.tar", "--num-classes", "2",
            "--output", str(tmp_path / "run"), "--model-kwargs", json.dumps(TINY), "--num-frames", "4",
            "--frame-interval", "2", "--input-size", "32", "--test-size", "32", "--epochs", "1", "--batch-size", "2",
            "--workers", "0", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 batches of 2 per process and epoch, drawn from 6 videos" in out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["last_val"]["top1"] >= 0
    err = _cli_error(capsys, argv + ["--data-root", "x"])
    assert "--shards replaces --data-root" in err


def test_torchrun_two_ranks_two_workers_read_every_video_once(data, packed, tmp_path):
    """2 ranks x 2 loader workers over 3 shards (one slot idle): evaluate scores equal one process over the files,
    and extract writes the files' features, each video once (the count checks would fail the commands)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_file(tiny_model().state_dict(), weights)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "tada_zoo.cli"]
    pattern = str(packed / "val-{000000..000002}.tar")
    evaluate = ["evaluate", "--model", "tada2d_r50_8f", "--checkpoint", str(weights), "--model-kwargs", json.dumps(TINY),
                "--num-classes", "2", "--num-frames", "4", "--frame-interval", "2", "--test-size", "32",
                "--clips", "2", "--crops", "3", "--device", "cpu", "--quiet"]
    assert main(evaluate + ["--data-root", str(data), "--val-list", str(data / "val.txt"), "--workers", "0",
                            "--output", str(tmp_path / "files")]) == 0
    assert main(_extract_cmd(weights, tmp_path / "xfiles", "--input", str(data), "--workers", "0")) == 0
    for cmd in (evaluate + ["--shards", pattern, "--workers", "2", "--output", str(tmp_path / "shards")],
                _extract_cmd(weights, tmp_path / "xshards", "--shards", pattern, "--workers", "2")):
        p = subprocess.run(torchrun + cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert (tmp_path / "files" / "predictions.csv").read_text() == (tmp_path / "shards" / "predictions.csv").read_text()
    _same_features(tmp_path / "xfiles", tmp_path / "xshards", [p for p, _ in read_annotations(data / "val.txt")])
