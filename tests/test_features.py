"""Feature extraction: shapes, window timestamps, equality with the model's own forward,
files + index, resume, corrupt videos."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tada_zoo.inference.features import FeatureExtractor, extract_videos, list_videos

from _engine_utils import TINY, tiny_model, one_thread  # noqa: F401


def test_from_tensor_windows_and_layers():
    model = tiny_model()
    video = torch.randn(3, 10, 32, 32)
    ex = FeatureExtractor(model, "pooled", batch_size=2)
    out = ex.from_tensor(video, clip_len=4, frame_interval=2, clip_stride=3, fps=5.0)
    # windows start at 0, 3, 6, 9; frames start + 2k clamped to the last frame
    assert out["start_frames"].tolist() == [0, 3, 6, 9]
    assert out["features"].shape == (4, model.num_features)
    np.testing.assert_allclose(out["timestamps"].numpy(), [[0, 7 / 5], [3 / 5, 10 / 5], [6 / 5, 10 / 5], [9 / 5, 10 / 5]])
    with torch.no_grad():
        model.eval()
        clip = video[:, [3, 5, 7, 9]][None]  # window 1
        ref = model.forward_features(clip).mean((2, 3, 4))
    torch.testing.assert_close(out["features"][1:2], ref, rtol=1e-4, atol=1e-5)
    fmap = FeatureExtractor(model, "map").from_tensor(video, 4, 2, 3)["features"]
    assert fmap.shape == (4, model.num_features, 4, 1, 1)
    stage2 = FeatureExtractor(model, 2)(video[:, :4][None])
    assert stage2.shape == (1, model.feature_info[2]["num_chs"], 4, 4, 4)  # 32 / reduction 8
    with pytest.raises(ValueError, match="out of range"):
        FeatureExtractor(model, 7)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    root = tmp_path_factory.mktemp("vids")
    rng = np.random.default_rng(0)
    for i, n in enumerate((12, 5, 9)):  # frames per video
        write_video(root / "sub" / f"v{i}.mp4", moving_shape_clip(i % 4, n, 32, rng), fps=4)
    (root / "sub" / "broken.mp4").write_bytes(b"not a video")
    return root


def test_extract_files_index_resume_and_corrupt(videos, tmp_path):
    from tada_zoo.data import EvalTransform

    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=3)
    tf = EvalTransform(crop_size=32, short_side=32, num_crops=1)
    paths = list_videos(videos)
    assert [p.name for p in paths] == ["broken.mp4", "v0.mp4", "v1.mp4", "v2.mp4"]
    r = extract_videos(ex, paths, tmp_path, clip_len=4, frame_interval=1, clip_stride=4, transform=tf,
                       workers=2, root=videos, progress=False)
    assert r["done"] == 3 and list(r["failed"]) == ["sub/broken.mp4"]
    index = {e["video"]: e for e in map(json.loads, (tmp_path / "index.jsonl").read_text().splitlines())}
    assert index["sub/broken.mp4"]["status"] == "corrupt"
    for i, n in enumerate((12, 5, 9)):
        f = load_file(tmp_path / "sub" / f"v{i}.mp4.safetensors")
        starts = list(range(0, n, 4))
        assert f["start_frames"].tolist() == starts
        assert f["features"].shape == (len(starts), 64 * 4)
        np.testing.assert_allclose(f["timestamps"][:, 0].numpy(), np.array(starts) / 4)
        np.testing.assert_allclose(f["timestamps"][:, 1].numpy(), np.minimum(np.array(starts) + 4, n) / 4)
        assert index[f"sub/v{i}.mp4"]["num_clips"] == len(starts)
        assert (index[f"sub/v{i}.mp4"]["fps"], index[f"sub/v{i}.mp4"]["window_seconds"]) == (4.0, 1.0)  # 4 frames at 4 fps
    # same features as decoding and running the model by hand
    from tada_zoo.data import open_video
    with open_video(videos / "sub" / "v0.mp4") as rd:
        clip = tf(rd.frames_at([4, 5, 6, 7]))
    torch.testing.assert_close(load_file(tmp_path / "sub" / "v0.mp4.safetensors")["features"][1], ex(clip)[0],
                               rtol=1e-4, atol=1e-5)
    # a rerun skips finished videos (their files are untouched) and retries the broken one
    mtime = (tmp_path / "sub" / "v1.mp4.safetensors").stat().st_mtime_ns
    r2 = extract_videos(ex, paths, tmp_path, 4, 1, 4, tf, workers=0, root=videos, progress=False)
    assert r2["skipped"] == 3 and r2["done"] == 0 and len(r2["failed"]) == 1
    assert (tmp_path / "sub" / "v1.mp4.safetensors").stat().st_mtime_ns == mtime
    assert len((tmp_path / "index.jsonl").read_text().splitlines()) == 4


def test_extract_resumes_from_rank_logs_and_a_cut_line(videos, tmp_path):
    """An interrupted torchrun run leaves rank logs (maybe with a half-written last line);
    a rerun with any number of processes honours them and merges them into index.jsonl."""
    from tada_zoo.data import EvalTransform

    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=3)
    tf = EvalTransform(crop_size=32, short_side=32, num_crops=1)
    paths = [p for p in list_videos(videos) if p.name != "broken.mp4"]
    extract_videos(ex, paths[:1], tmp_path, 4, 1, 4, tf, workers=0, root=videos, progress=False)
    (tmp_path / "index.jsonl").rename(tmp_path / "index.rank1.jsonl")
    with open(tmp_path / "index.rank1.jsonl", "a") as f:
        f.write('{"video": "sub/v1.mp4", "sta')  # killed mid-write
    mtime = (tmp_path / "sub" / "v0.mp4.safetensors").stat().st_mtime_ns
    r = extract_videos(ex, paths, tmp_path, 4, 1, 4, tf, workers=0, root=videos, progress=False)
    assert r["skipped"] == 1 and r["done"] == 2 and not r["failed"]
    assert (tmp_path / "sub" / "v0.mp4.safetensors").stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("index.rank*.jsonl"))
    lines = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    assert sorted(e["video"] for e in lines) == ["sub/v0.mp4", "sub/v1.mp4", "sub/v2.mp4"]
    assert all(e["status"] == "ok" for e in lines)


def test_extract_command_npy(videos, tmp_path):
    from tada_zoo.cli import main

    rc = main(["extract", "--model", "tsn_r50_8f", "--input", str(videos / "sub" / "v2.mp4"), "--output", str(tmp_path),
               "--clip-len", "4", "--frame-interval", "2", "--clip-stride", "2", "--size", "32", "--layer", "map",
               "--format", "npy", "--workers", "0", "--quiet",
               "--model-kwargs", json.dumps(dict(layers=[1, 1, 1, 1], widths=[8, 16, 32, 64], stem_width=8))])
    assert rc == 0
    feats = np.load(tmp_path / "v2.mp4.npy")
    assert feats.shape == (5, 256, 4, 1, 1)  # starts 0, 2, 4, 6, 8 of 9 frames
    entry = json.loads((tmp_path / "index.jsonl").read_text())
    assert entry["start_frames"] == [0, 2, 4, 6, 8] and len(entry["timestamps"]) == 5


# ---------------------------------------------------------------------------------------------
# extract over folders: unique names, settings check, failures, timestamps, flags, permissions

def _tf():
    from tada_zoo.data import EvalTransform

    return EvalTransform(crop_size=32, short_side=32, num_crops=1)


def _write(path, n, label=0, fps=4, seed=0):
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    write_video(path, moving_shape_clip(label, n, 32, np.random.default_rng(seed)), fps=fps)


def _index(out):
    return {e["video"]: e for e in map(json.loads, (out / "index.jsonl").read_text().splitlines())}


def _cli(*args):
    from tada_zoo.cli import main

    return main(["extract", "--model", "tada2d_r50_8f", "--model-kwargs", json.dumps(TINY), "--clip-len", "4",
                 "--frame-interval", "1", "--size", "32", "--workers", "0", "--device", "cpu", "--quiet", *map(str, args)])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture()
def weights(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(tiny_model().state_dict(), path)
    return path


def test_same_stem_other_extension_gets_its_own_file(tmp_path):
    """clip.mp4 and clip.avi used to share clip.safetensors: one video's features were lost."""
    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "clip.mp4", 8, label=0)
    _write(src / "clip.avi", 8, label=1, seed=1)  # an mp4 stream named .avi: probed by content
    _write(src / "sub" / "clip.mp4", 8, label=2, seed=2)
    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=4)
    r = extract_videos(ex, list_videos(src), out, 4, 1, 4, _tf(), workers=0, root=src, progress=False)
    assert r["done"] == 3 and not r["failed"]
    index = _index(out)
    assert {k: e["file"] for k, e in index.items()} == {
        "clip.avi": "clip.avi.safetensors", "clip.mp4": "clip.mp4.safetensors",
        "sub/clip.mp4": "sub/clip.mp4.safetensors"}
    feats = [load_file(out / e["file"])["features"] for e in index.values()]
    assert not torch.equal(feats[0], feats[1]) and not torch.equal(feats[0], feats[2])
    # without a root, two inputs with one name are refused instead of overwriting each other
    with pytest.raises(ValueError, match="same output name"):
        extract_videos(ex, [src / "clip.mp4", src / "sub" / "clip.mp4"], tmp_path / "o2", 4, 1, 4, _tf(),
                       workers=0, progress=False)


def test_rerun_with_other_settings_is_refused(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "a.mp4", 8)
    videos = list_videos(src)
    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=4)
    kw = dict(workers=0, root=src, progress=False)
    assert extract_videos(ex, videos, out, 4, 1, 4, _tf(), **kw)["done"] == 1
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["clip_len"], settings["frame_interval"], settings["clip_stride"]) == (4, 1, 4)
    # the same settings resume (and temp files of a killed run go, nothing else)
    (out / ".a.mp4.safetensors.k2x_9q.tmp").write_bytes(b"half")
    (out / ".mine.tmp").write_bytes(b"")
    assert extract_videos(ex, videos, out, 4, 1, 4, _tf(), **kw)["skipped"] == 1
    assert sorted(p.name for p in out.glob(".*")) == [".mine.tmp"]
    with pytest.raises(ValueError, match=r"clip_len 4 -> 2.*another --output.*--overwrite"):
        extract_videos(ex, videos, out, 2, 1, 4, _tf(), **kw)
    with pytest.raises(ValueError, match=r"frame_interval 1 -> 2, clip_stride 4 -> 3"):
        extract_videos(ex, videos, out, 4, 2, 3, _tf(), **kw)
    with pytest.raises(ValueError, match=r"layer pooled -> map"):
        extract_videos(FeatureExtractor(tiny_model(), "map"), videos, out, 4, 1, 4, _tf(), **kw)
    from tada_zoo.data import EvalTransform
    with pytest.raises(ValueError, match=r"transform.crop_size 32 -> 24"):
        extract_videos(ex, videos, out, 4, 1, 4, EvalTransform(24, 32, 1), **kw)
    other = tiny_model()
    with torch.no_grad():
        other.conv1.weight.mul_(2)
    with pytest.raises(ValueError, match=r"weights [0-9a-f]{12} -> [0-9a-f]{12}"):
        extract_videos(FeatureExtractor(other), videos, out, 4, 1, 4, _tf(), **kw)
    with pytest.raises(ValueError, match=r"model tada2d_r50_8f -> tsn_r50_8f"):
        extract_videos(FeatureExtractor(tiny_model("tsn_r50_8f")), videos, out, 4, 1, 4, _tf(), **kw)
    # --overwrite recomputes every video with the new settings
    r = extract_videos(ex, videos, out, 2, 1, 4, _tf(), overwrite=True, **kw)
    assert r["done"] == 1 and r["skipped"] == 0
    assert _index(out)["a.mp4"]["clip_len"] == 2 and json.loads((out / "settings.json").read_text())["clip_len"] == 2
    assert load_file(out / "a.mp4.safetensors")["start_frames"].tolist() == [0, 4]
    # a folder written before settings were recorded: a clear error, not a crash and not a silent resume
    (out / "settings.json").unlink()
    with pytest.raises(ValueError, match=r"no settings.json.*--overwrite"):
        extract_videos(ex, videos, out, 2, 1, 4, _tf(), **kw)
    assert extract_videos(ex, videos, out, 2, 1, 4, _tf(), overwrite=True, **kw)["done"] == 1


def test_rerun_command_with_other_settings_is_one_error_line(tmp_path, weights, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "a.mp4", 8)
    assert _cli("--input", src, "--output", out, "--checkpoint", weights) == 0
    capsys.readouterr()
    assert _cli("--input", src, "--output", out, "--checkpoint", weights) == 0
    assert "1 already done" in capsys.readouterr().out
    assert _cli("--input", src, "--output", out, "--checkpoint", weights, "--clip-stride", "2") == 1
    line = _one_error_line(capsys)
    assert "clip_stride 4 -> 2" in line and "--overwrite" in line
    assert _cli("--input", src, "--output", out, "--checkpoint", weights, "--clip-stride", "2", "--overwrite") == 0
    assert "1 videos extracted" in capsys.readouterr().out
    assert _index(out)["a.mp4"]["clip_stride"] == 2


def test_non_finite_features_fail_that_video(tmp_path):
    """A video whose features are NaN is 'failed' (with the reason), gets no file, and is retried."""
    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "a.mp4", 8)
    from tada_zoo.data.synthetic import write_video
    write_video(src / "dark.mp4", np.zeros((6, 32, 32, 3), np.uint8), fps=4)
    base = _tf()

    def nan_when_dark(frames):
        x = base(frames)
        return x * float("nan") if frames.max() < 20 else x

    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=4)
    r = extract_videos(ex, list_videos(src), out, 4, 1, 2, nan_when_dark, workers=0, root=src, progress=False)
    assert r["done"] == 1 and list(r["failed"]) == ["dark.mp4"] and not r["corrupt"]
    assert "non-finite" in r["failed"]["dark.mp4"]
    entry = _index(out)["dark.mp4"]
    assert entry["status"] == "failed" and "3 of 3 windows" in entry["error"]
    assert not (out / "dark.mp4.safetensors").exists() and (out / "a.mp4.safetensors").exists()
    r = extract_videos(ex, list_videos(src), out, 4, 1, 2, nan_when_dark, workers=0, root=src, progress=False)
    assert r["skipped"] == 1 and list(r["failed"]) == ["dark.mp4"]


def test_nan_weights_and_nan_features_are_command_errors(tmp_path, capsys):
    src = tmp_path / "in"
    _write(src / "a.mp4", 8)
    _write(src / "b.mp4", 6)
    sd = tiny_model().state_dict()
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in sd.items()},
              tmp_path / "nan.safetensors")
    assert _cli("--input", src, "--output", tmp_path / "o1", "--checkpoint", tmp_path / "nan.safetensors") == 1
    assert "NaN/inf" in _one_error_line(capsys)
    assert not list((tmp_path / "o1").rglob("*.safetensors"))
    # finite weights whose features are not (a negative running variance): every video fails, exit 1
    sd = {k: (-torch.ones_like(v) if k.endswith("running_var") else v) for k, v in sd.items()}
    save_file(sd, tmp_path / "negvar.safetensors")
    assert _cli("--input", src, "--output", tmp_path / "o2", "--checkpoint", tmp_path / "negvar.safetensors") == 1
    captured = capsys.readouterr()
    assert "0 videos extracted" in captured.out and "2 failed" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "2 videos failed" in err[0] and "non-finite" in err[0]
    assert {e["status"] for e in _index(tmp_path / "o2").values()} == {"failed"}
    # nothing was extracted there, so fixed weights need no --overwrite
    save_file(tiny_model().state_dict(), tmp_path / "good.safetensors")
    assert _cli("--input", src, "--output", tmp_path / "o2", "--checkpoint", tmp_path / "good.safetensors") == 0
    assert "2 videos extracted" in capsys.readouterr().out
    # a weights change where features exist names the checkpoints
    assert _cli("--input", src, "--output", tmp_path / "o2", "--checkpoint", tmp_path / "negvar.safetensors") == 1
    assert "good.safetensors -> " in _one_error_line(capsys)


class _TimedReader:
    """A real reader plus ``timestamps``: presentation times that are not index / fps."""

    def __init__(self, reader, times):
        self.reader, self.times = reader, np.asarray(times, dtype=np.float64)

    def __len__(self):
        return len(self.reader)

    @property
    def fps(self):
        return self.reader.fps

    def frames_at(self, idx):
        return self.reader.frames_at(idx)

    def timestamps(self, idx):
        return self.times[np.asarray(idx, dtype=np.int64)]

    def close(self):
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_window_times_come_from_the_reader(tmp_path, monkeypatch):
    import tada_zoo.data

    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "a.mp4", 9)
    times = np.array([0, 0.1, 0.15, 0.4, 0.5, 0.9, 1.0, 1.05, 1.3])
    real = tada_zoo.data.open_video
    monkeypatch.setattr(tada_zoo.data, "open_video", lambda p, **kw: _TimedReader(real(p, **kw), times))
    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=2)
    r = extract_videos(ex, list_videos(src), out, 2, 2, 3, _tf(), workers=0, root=src, progress=False)
    assert r["done"] == 1
    f = load_file(out / "a.mp4.safetensors")
    assert f["start_frames"].tolist() == [0, 3, 6]
    # window frames (0, 2), (3, 5), (6, 8): start = its first frame's time, end = the next frame's time;
    # after the last frame, its time + 1 / fps
    np.testing.assert_allclose(f["timestamps"].numpy(), [[0, 0.4], [0.4, 1.0], [1.0, 1.3 + 1 / 4]])


def _write_vfr(path, times_ms):
    """An mp4 whose frames are shown at ``times_ms`` (irregular gaps)."""
    import fractions

    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def test_variable_frame_rate_video_gets_presentation_times(tmp_path):
    """Times are the frames' pts (``BaseVideoReader.timestamps``), the last window ends when the
    last frame stops being shown (``frame_end_time``), not index / average fps."""
    from tada_zoo.data import open_video

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    times_ms = [0, 100, 150, 400, 500, 900, 1000, 1050, 1300, 1700]
    _write_vfr(src / "vfr.mp4", times_ms)
    with open_video(src / "vfr.mp4") as reader:
        assert len(reader) == 10
        fps = reader.fps
    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=4)
    r = extract_videos(ex, list_videos(src), out, 2, 1, 2, _tf(), workers=0, root=src, progress=False)
    assert r["done"] == 1
    t = np.array(times_ms) / 1000
    import av
    with av.open(str(src / "vfr.mp4")) as c:  # the last frame lasts its packet's duration, else 1 / fps
        last = [p for p in c.demux(c.streams.video[0]) if p.size][-1]
        end = t[9] + (float(last.duration * last.time_base) if last.duration else 1 / fps)
    f = load_file(out / "vfr.mp4.safetensors")
    assert f["start_frames"].tolist() == [0, 2, 4, 6, 8]
    np.testing.assert_allclose(f["timestamps"].numpy(), [[t[0], t[2]], [t[2], t[4]], [t[4], t[6]], [t[6], t[8]],
                                                         [t[8], end]], atol=1e-6)


@pytest.mark.parametrize("flag,value", [
    ("--batch-size", "0"), ("--batch-size", "-1"), ("--clip-stride", "-2"), ("--clip-stride", "0"),
    ("--frame-interval", "-2"), ("--clip-len", "-4"), ("--clip-len", "0"), ("--size", "-8"), ("--size", "0"),
    ("--workers", "-1"), ("--layer", "pool"), ("--layer", "1.5"), ("--model-kwargs", "[1, 2]"),
    ("--model-kwargs", "{bad json"), ("--batch-size", "two")])
def test_bad_flags_are_parse_errors_naming_the_flag(flag, value, capsys):
    from tada_zoo.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["extract", "--model", "m", "--input", "i", "--output", "o", flag, value])
    assert e.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_layer_flag_accepts_names_and_levels():
    from tada_zoo.cli import build_parser

    def layer(v):
        return build_parser().parse_args(["extract", "--model", "m", "--input", "i", "--output", "o",
                                          "--layer", v]).layer
    assert (layer("pooled"), layer("map"), layer("2"), layer("-1")) == ("pooled", "map", 2, -1)


def test_listing_reports_what_it_skips(tmp_path, capsys):
    import os

    import av

    src = tmp_path / "in"
    _write(src / "a.mp4", 5)
    with av.open(str(src / "anim.gif"), "w", format="gif") as c:  # gif is a video
        s = c.add_stream("gif", rate=5)
        s.width = s.height = 32
        s.pix_fmt = "rgb8"
        for i in range(5):
            for packet in s.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), "rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    _write(src / "folder.mp4" / "inside.mp4", 5)  # a folder named like a video: searched as a folder
    os.symlink("loop.mp4", src / "loop.mp4")  # a symlink to itself
    os.symlink("gone.mp4", src / "dangling.mp4")
    os.symlink("..", src / "folder.mp4" / "up")  # a folder loop
    _write(tmp_path / "elsewhere" / "linked.mp4", 5)
    os.symlink(tmp_path / "elsewhere", src / "linked")  # a linked folder is followed
    (src / "notes.txt").write_text("x")
    (src / "._a.mp4").write_bytes(b"\0\5\26\7")  # macOS AppleDouble metadata, not a video
    skipped = []
    videos = list_videos(src, skipped=skipped)
    assert [str(p.relative_to(src)) for p in videos] == ["a.mp4", "anim.gif", "folder.mp4/inside.mp4",
                                                          "linked/linked.mp4"]
    reasons = {str(p.relative_to(src)): why for p, why in skipped}
    assert set(reasons) == {"._a.mp4", "dangling.mp4", "folder.mp4", "folder.mp4/up", "loop.mp4", "notes.txt"}
    assert "hidden" in reasons["._a.mp4"]
    assert "broken symlink" in reasons["dangling.mp4"] and "symlink loop" in reasons["loop.mp4"]
    assert "symlink loop" in reasons["folder.mp4/up"] and "folder" in reasons["folder.mp4"]
    assert "extension" in reasons["notes.txt"]
    out = tmp_path / "out"
    assert _cli("--input", src, "--output", out) == 0
    printed = capsys.readouterr().out
    assert "skipped 6" in printed and "loop.mp4" in printed and "dangling.mp4" in printed
    assert "4 videos extracted" in printed
    assert _index(out)["anim.gif"]["status"] == "ok" and (out / "anim.gif.safetensors").exists()


@pytest.mark.parametrize("fmt", ["safetensors", "npy"])
def test_outputs_follow_the_umask(tmp_path, fmt):
    import os
    import stat

    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "a.mp4", 5)
    old = os.umask(0o027)
    try:
        extract_videos(FeatureExtractor(tiny_model(), batch_size=2), list_videos(src), out, 4, 1, 4, _tf(),
                       workers=0, fmt=fmt, root=src, progress=False)
    finally:
        os.umask(old)
    for name in (f"a.mp4.{fmt}", "index.jsonl", "settings.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o640, name


def test_counts_are_per_video_when_decoding_fails_midway(tmp_path, monkeypatch):
    """A video that fails after some of its windows were decoded, and one whose reader fails on
    close after the last window: each is one failed video, with no file and no clips counted."""
    import tada_zoo.data

    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "midway", "onclose"):
        _write(src / f"{name}.mp4", 12)
    real = tada_zoo.data.open_video

    class Flaky(_TimedReader):
        calls = 0

        def frames_at(self, idx):
            self.calls += 1
            if "midway" in self.reader.path and self.calls == 2:
                raise RuntimeError("decoding failed at the second chunk")
            return self.reader.frames_at(idx)

        timestamps = property()  # no timestamps method: index / fps

        def close(self):
            self.reader.close()
            if "onclose" in self.reader.path:
                raise RuntimeError("close failed")

    monkeypatch.setattr(tada_zoo.data, "open_video", lambda p, **kw: Flaky(real(p, **kw), []))
    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=2)  # 3 windows per video: chunks of 2 + 1
    r = extract_videos(ex, list_videos(src), out, 4, 1, 4, _tf(), workers=0, root=src, progress=False)
    assert r["done"] == 1 and sorted(r["failed"]) == ["midway.mp4", "onclose.mp4"] == sorted(r["corrupt"])
    assert r["clips"] == 3
    lines = (out / "index.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert {k: e["status"] for k, e in _index(out).items()} == {"a.mp4": "ok", "midway.mp4": "corrupt",
                                                                "onclose.mp4": "corrupt"}
    assert sorted(p.name for p in out.rglob("*.safetensors")) == ["a.mp4.safetensors"]
