"""Long videos as a timeline: which frames each window takes (checked by frames that say their own index),
its scores (against the model on the same frames read by index from the file), bounded memory, a pipe read
as the file, segments, the files written and the command line."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data_videos import read_index, write_video
from _engine_utils import HANG_GUARD, TINY, tiny_model, one_thread  # noqa: F401 (one_thread: an autouse fixture)
from tada_zoo.cli import main
from tada_zoo.data import open_video
from tada_zoo.data.protocol import DataProtocol
from tada_zoo.data.stream import VideoStream
from tada_zoo.engine.checkpoint import run_metadata, save_safetensors
from tada_zoo.inference.predict import VideoClassifier
from tada_zoo.inference.timeline import segments_of, window_plan, windows_of

ROOT = Path(__file__).resolve().parents[1]
FPS = 10  # 64 index frames = 6.4 s
PROTOCOL = DataProtocol(num_frames=4, frame_interval=4, target_fps=30.0, crops=3, test_short_side=32, test_crop=32)
NAMES = ["left", "right", "up"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return Path(write_video(tmp_path_factory.mktemp("timeline") / "index.mp4", num_frames=64, fps=FPS))


def _clf():
    return VideoClassifier(tiny_model(num_classes=3, num_frames=4).eval(), PROTOCOL, [3], NAMES, name="tiny")


@pytest.mark.parametrize("sampling,stride", [("interval", 0.5), ("interval", 1.2), ("segment", 0.5)])
def test_each_window_takes_the_frames_its_sampling_puts_there(video, sampling, stride):
    """Window k starting at k x stride takes the frame shown at start + offset_j: frame round(fps x time)."""
    protocol = DataProtocol(**dict(vars(PROTOCOL), sampling=sampling))
    plan = window_plan(protocol, FPS, window_seconds=1.6 if sampling == "segment" else None, stride_seconds=stride)
    got = list(windows_of(VideoStream(str(video)), plan))
    end = 64 / FPS
    expected_starts = [k * stride for k in range(100) if k * stride + plan.seconds <= end + 1e-9]
    assert [round(s, 6) for s, _ in got] == [round(s, 6) for s in expected_starts] and len(got) >= 4
    for start, frames in got:
        expected = np.floor((start + plan.offsets) * FPS + 0.5).astype(int)
        assert [read_index(f) for f in frames] == expected.tolist(), start
    # the offsets are the model's test sampling of a video as long as the window
    assert len(plan.offsets) == 4 and np.all(np.diff(plan.offsets) > 0)


def test_window_scores_are_the_models_on_those_frames(video):
    """Independently: read the frames by index from the file, the protocol's 3 crops, softmax, mean."""
    clf = _clf()
    result = clf.timeline(str(video), stride_seconds=0.5, topk=3)
    plan = window_plan(PROTOCOL, FPS, stride_seconds=0.5)
    assert len(result["windows"]) == len(result["probs"]) > 3
    with open_video(video) as reader, torch.no_grad():
        for w, probs in zip(result["windows"], result["probs"]):
            idx = np.floor((w["start"] + plan.offsets) * FPS + 0.5).astype(int).tolist()
            views = PROTOCOL.eval_transform()(reader.frames_at(idx))  # (3, C, T, H, W)
            expected = clf.model(views).softmax(-1).mean(0)
            torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
            top = expected.topk(3)
            assert [t["index"] for t in w["top"]] == top.indices.tolist()
            assert [t["name"] for t in w["top"]] == [NAMES[i] for i in top.indices]


def test_memory_holds_the_open_windows_only(tmp_path):
    """The frames held at once do not grow with the video's length (the benchmark measures RSS)."""
    from tada_zoo.data.synthetic import moving_shape_clip
    from tada_zoo.data.synthetic import write_video as write_frames

    plan = window_plan(PROTOCOL, 30, stride_seconds=0.25)
    held = []
    for seconds in (4, 16):
        path = tmp_path / f"{seconds}.mp4"
        write_frames(path, moving_shape_clip(0, 30 * seconds, 16, np.random.default_rng(0)), fps=30)
        stats = {}
        n = sum(1 for _ in windows_of(VideoStream(str(path)), plan, stats))
        assert n >= 4 * seconds - 3
        held.append(stats["max_frames"])
    open_at_once = int(np.ceil(plan.seconds / plan.stride)) + 1
    assert held[0] == held[1] <= open_at_once * len(plan.offsets) + 1


def test_segments_cover_the_video_once():
    windows = [dict(start=s, end=s + 2.0, top=[dict(index=c, name=NAMES[c], score=0.5 + 0.1 * i)])
               for i, (s, c) in enumerate([(0, 0), (1, 0), (2, 1), (3, 1), (4, 1), (5, 2)])]
    segs = segments_of(windows, stride=1.0)
    assert [(s["start"], s["end"], s["name"]) for s in segs] == [(0.0, 2.5, "left"), (2.5, 5.5, "right"),
                                                                    (5.5, 7.0, "up")]
    assert segs[1]["score"] == pytest.approx(np.mean([0.7, 0.8, 0.9]))


def test_a_pipe_is_read_window_by_window_as_the_file(tmp_path):
    """`... | tada-zoo predict - --timeline` (a real pipe, mpegts) gives the file's timeline; the files
    are written and the picture is drawn."""
    ts = Path(write_video(tmp_path / "index.ts", num_frames=64, fps=FPS, container="mpegts"))
    net = tiny_model(num_classes=3, num_frames=4)
    meta = run_metadata("tada2d_r50_8f", dict(TINY, num_frames=4), [3], NAMES,
                        dict(test_crop=32, test_short_side=32, frame_interval=4))
    save_safetensors(net.state_dict(), tmp_path / "m.safetensors", metadata=meta)
    common = ["--checkpoint", str(tmp_path / "m.safetensors"), "--timeline", "--stride-seconds", "0.5", "--crops", "1"]
    assert main(["predict", str(ts), "--output", str(tmp_path / "file"), *common]) == 0
    env = dict(__import__("os").environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    source = subprocess.Popen(["cat", str(ts)], stdout=subprocess.PIPE)
    try:
        p = subprocess.run([sys.executable, "-m", "tada_zoo.cli", "predict", "-", "--output", str(tmp_path / "pipe"),
                            *common], stdin=source.stdout, capture_output=True, text=True, timeout=HANG_GUARD, env=env)
    finally:
        source.stdout.close()
        source.wait()
    assert p.returncode == 0, p.stderr
    file_json = json.loads((tmp_path / "file" / "timeline.json").read_text())
    pipe_json = json.loads((tmp_path / "pipe" / "timeline.json").read_text())
    assert pipe_json["windows"] == file_json["windows"] and len(file_json["windows"]) > 5
    assert pipe_json["video"] == "standard input" and pipe_json["segments"] == file_json["segments"]
    rows = (tmp_path / "file" / "timeline.csv").read_text().splitlines()
    assert rows[0].startswith("start,end,class1,score1") and len(rows) == len(file_json["windows"]) + 1
    pytest.importorskip("matplotlib")
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "file" / "timeline.png").convert("RGB"))
    assert img.shape[1] >= 1000 and (np.abs(img.astype(int) - (31, 119, 180)).sum(-1) < 40).sum() > 200  # C0 line


def test_timeline_flags_are_checked_in_one_line(video, tmp_path, capsys):
    ckpt = tmp_path / "m.safetensors"
    save_safetensors(tiny_model(num_classes=3, num_frames=4).state_dict(), ckpt,
                     metadata=run_metadata("tada2d_r50_8f", dict(TINY, num_frames=4), [3], NAMES, {}))
    cases = [
        (["predict", "-", "--checkpoint", str(ckpt)], "reading - (standard input) needs --timeline"),
        (["predict", str(video), "--checkpoint", str(ckpt), "--timeline"], "--timeline needs --output"),
        (["predict", str(video.parent), "--checkpoint", str(ckpt), "--timeline", "--output", str(tmp_path / "o")],
         "--timeline takes one video file"),
        (["predict", str(video), "--checkpoint", str(ckpt), "--window-seconds", "2"], "--window-seconds needs --timeline"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    with pytest.raises(SystemExit):
        main(["predict", str(video), "--timeline", "--stride-seconds", "-1"])
    assert "--stride-seconds" in capsys.readouterr().err


def test_decoded_frames_are_classified_as_their_file(video):
    """clf(frames) cuts the protocol's clips x crops from decoded frames as predict does from the file."""
    clf = _clf()
    clf.protocol = DataProtocol(**dict(vars(PROTOCOL), clips=2))
    with open_video(video) as reader:
        frames = reader.frames_at(list(range(len(reader))))
        fps = reader.fps
    from_file = clf(video, topk=3)
    assert clf(torch.from_numpy(frames), topk=3, fps=fps) == from_file == clf(frames, topk=3, fps=fps)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8"):
        clf(frames.astype(np.float32), fps=fps)
