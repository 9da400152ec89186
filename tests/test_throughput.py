"""Throughput figures (clips/s, share of the time waiting for data) and the input-bound warning of train,
evaluate and extract. The timing rule is tested with a fake clock; the end-to-end tests use data 100x
slower than a tiny model (or data with no delay at all, workers 0), so load on the machine cannot flip them."""
import json
import time

import pytest
import torch

from tada_zoo.engine import TrainConfig, fit
from tada_zoo.engine import throughput
from tada_zoo.engine.evaluate import evaluate_model
from tada_zoo.engine.throughput import Throughput, data_wait_hint, data_wait_warning, source_facts

from _engine_utils import ClipDataset, tiny_model, one_thread  # noqa: F401
from data_videos import write_video

SLOW = 0.25  # seconds per item: a tiny model's step on 2 clips of 4x32x32 takes a few ms


class SlowClips(ClipDataset):
    def __getitem__(self, i):
        time.sleep(SLOW)
        return super().__getitem__(i)


def test_wait_is_time_in_next_and_compute_the_rest(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: clock[0])

    def loader():
        for _ in range(3):
            clock[0] += 2.0  # the loader takes 2 s per batch
            yield torch.zeros(4)

    tp = Throughput()
    for batch in tp.wrap(loader()):
        clock[0] += 1.0  # the step takes 1 s
        tp.add(len(batch))
    assert (tp.wait, tp.compute, tp.items) == (6.0, 3.0, 12)
    assert tp.rate == pytest.approx(12 / 9) and tp.wait_share == pytest.approx(2 / 3)
    assert tp.row() == dict(clips_per_s=1.333, data_wait=0.667)
    assert tp.postfix() == {"clips/s": "1.33", "data": "67%"}
    assert tp.summary() == "1.33 clips/s, 67% of the time waiting for data"


def test_hint_names_the_fixes_that_apply():
    assert data_wait_hint(0.5, workers=0, cores=8) is None  # more than half the time, not half
    line = data_wait_hint(0.9, workers=2, facts=None, cores=8)
    assert "waited for data 90%" in line and "more --workers (2 now, 8 cores)" in line
    assert "short side of 256" in line and "tada-zoo shard" in line  # sources unknown: both hints
    small = data_wait_hint(0.9, workers=8, facts=dict(short_side=240, gop=12), shards=True, cores=8)
    assert "--workers" not in small and "re-encode" not in small and "shard" not in small
    assert "bench-data" in small  # nothing left to suggest but measuring
    big = data_wait_hint(0.9, workers=8, facts=dict(short_side=360, gop=250), cores=8)
    assert "short side 360 and keyframes every 250 frames here" in big and "--workers" not in big


def test_source_facts_read_size_and_gop_without_decoding(tmp_path):
    path = write_video(tmp_path / "v.mp4", num_frames=40, height=48, width=64)  # keyint 12
    assert source_facts(path) == dict(short_side=48, gop=12)
    assert source_facts(str(tmp_path / "missing.mp4")) is None


def _cfg(out, **kw):
    return TrainConfig(**dict(dict(model="tada2d_r50_8f", num_classes=[2], epochs=2, batch_size=2, lr=0.01,
                                   warmup_epochs=0, workers=0, output=str(out), progress=False), **kw))


def test_training_reports_throughput_and_warns_once_when_input_bound(tmp_path, capsys):
    fit(tiny_model(num_frames=4), SlowClips(4), None, _cfg(tmp_path))
    out = capsys.readouterr().out
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["data_wait"] > 0.5 and 0 < r["clips_per_s"] < 2 / (2 * SLOW) for r in rows)
    assert out.count("warning: training waited for data") == 1  # two input-bound epochs, one warning
    assert "more --workers (0 now" in out and "tada-zoo shard" in out
    assert "clips/s" in out.splitlines()[-1] and "waiting for data" in out.splitlines()[-1]


def test_training_on_instant_data_gives_no_warning(tmp_path, capsys):
    fit(tiny_model(num_frames=4), ClipDataset(4), SlowClips(2, seed=1), _cfg(tmp_path, epochs=1))
    out = capsys.readouterr().out
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert row["data_wait"] < 0.5 and row["clips_per_s"] > 0 and "warning" not in out
    assert row["val_data_wait"] > 0.5 and 0 < row["val_clips_per_s"] < 1 / SLOW  # validation's own figures


def test_evaluation_reports_throughput():
    ds = SlowClips(4)
    res = evaluate_model(tiny_model(num_frames=4), ds, [2], batch_size=2, workers=0, progress=False)
    tp = res["throughput"]
    assert tp.items == 4 and tp.wait_share > 0.5
    assert "evaluation waited for data" in data_wait_warning(tp, 0, ds, what="evaluation")


def test_extraction_reports_throughput(tmp_path, monkeypatch):
    from tada_zoo.data import EvalTransform
    from tada_zoo.inference import features

    paths = [write_video(tmp_path / f"v{i}.mp4", num_frames=16, height=32, width=32) for i in range(2)]
    chunks = features._WindowChunks.__iter__

    def slow(self):
        for item in chunks(self):
            time.sleep(SLOW)
            yield item

    monkeypatch.setattr(features._WindowChunks, "__iter__", slow)
    ex = features.FeatureExtractor(tiny_model(num_frames=4), "pooled", batch_size=2)
    r = features.extract_videos(ex, paths, tmp_path / "out", 4, 1, 4, EvalTransform(32, 32), workers=0,
                                progress=False)
    assert r["clips"] == 8 and r["clips_per_s"] > 0 and r["data_wait"] > 0.5
    assert "warning: extraction waited for data" in r["warning"] and "short side" not in r["warning"]
    assert "keyframes" not in r["warning"]  # the sources are 32 px with 12-frame GOPs: nothing to re-encode


def test_workers_suggestion_covers_the_target():
    from tada_zoo.data.bench import suggest_workers

    assert suggest_workers(25, 10, cores=16) == dict(workers=3, fits=True, cores=16)
    assert suggest_workers(25, 10, cores=2) == dict(workers=3, fits=False, cores=2)  # one core runs the model
    assert suggest_workers(1, 10, cores=1)["workers"] == 1


def test_model_timing_counts_clips_per_second():
    from tada_zoo.engine.throughput import model_clips_per_s

    model = tiny_model(num_frames=4)
    before = [p.clone() for p in model.parameters()]
    assert model_clips_per_s(model, (3, 4, 32, 32), batch_size=2, train=True, steps=1) > 0
    assert model_clips_per_s(model, (3, 4, 32, 32), batch_size=2, train=False, steps=1) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, model.parameters()))  # lr 1e-9


def test_bench_data_prints_clips_per_worker_and_workers(tmp_path, capsys):
    from tada_zoo.cli import main

    (tmp_path / "videos").mkdir()
    for i in range(2):
        write_video(tmp_path / "videos" / f"v{i}.mp4", num_frames=60, height=48, width=64)
    rc = main(["bench-data", "--model", "tada2d_r50_8f.k400", "--data-root", str(tmp_path / "videos"),
               "--seconds", "0.2", "--target", "1000", "--workers", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = {l.split()[0]: l.split() for l in out.splitlines() if l.split()[:1] in (["train"], ["test"])}
    assert float(rows["train"][1]) > 0 and float(rows["test"][1]) > 0
    assert "train: the model takes 1e+03 clips/s (--target): --workers" in out


@pytest.mark.parametrize("argv, flag", [(["--seconds", "0"], "--seconds"), (["--workers", "-1"], "--workers")])
def test_bench_data_refuses_bad_numbers_where_parsed(argv, flag, capsys):
    from tada_zoo.cli import main

    with pytest.raises(SystemExit):
        main(["bench-data", "--model", "tsn_r50_8f", *argv])
    assert flag in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, flag", [
    ([], "--data-root DIR (or --shards PATTERN) is needed"),
    (["--data-root", "/nonexistent/videos"], "--data-root /nonexistent/videos is not a folder"),
    (["--shards", "x-{0..1}.tar", "--data-root", "."], "--shards replaces --data-root"),
])
def test_bench_data_errors_are_one_line_naming_the_flag(argv, flag, capsys):
    from tada_zoo.cli import main

    assert main(["bench-data", "--model", "tsn_r50_8f", *argv]) == 1
    captured = capsys.readouterr()
    assert flag in captured.err + captured.out and "Traceback" not in captured.err
