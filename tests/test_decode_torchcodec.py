"""--decoder torchcodec: the same frames as PyAV (indices and pixels) or PyAV itself, saying why; a
clear line when torchcodec is missing. Expected frames are always PyAV's, decoded independently."""
import argparse
import random
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from data_videos import index_frame, read_index, write_video
from tada_zoo.data import VideoDataset, VideoDecodeError, open_video, write_annotations
from tada_zoo.data import decode_torchcodec as tcmod
from test_data_decode import _corner_frame, _encode, _image

MISSING = tcmod.torchcodec_available()
needs_tc = pytest.mark.skipif(MISSING is not None, reason=f"torchcodec unusable here: {MISSING}")


def _colour_frames(n, h=96, w=128, seed=0):
    """Saturated gradients plus noise: every chroma sample matters, so any conversion difference shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        f = np.stack([(2 * xx + 7 * i) % 256, (3 * yy + 5 * i) % 256, (2 * (xx + yy) + i) % 256], -1)
        frames.append(np.clip(f + rng.integers(-20, 20, f.shape), 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def colour_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("tc")
    frames = _colour_frames(40)
    return {"h264": write_video(d / "c.mp4", 40, "libx264", height=96, width=128, frames=frames),
            "vp9": write_video(d / "c.webm", 40, "libvpx-vp9", height=96, width=128, frames=frames)}


def _pyav(path, idx, **kw):
    with open_video(path, backend="pyav", **kw) as r:
        return r.frames_at(idx)


def _tc(path, idx, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback here would be a RuntimeWarning: these files need none
        with open_video(path, backend="torchcodec", **kw) as r:
            assert r.fallback is None
            return r.frames_at(idx)


@needs_tc
@pytest.mark.parametrize("name", ["h264", "vp9"])
def test_pixels_equal_pyav_in_any_order(colour_videos, name):
    """B-frames (h264) and alt-ref frames (vp9), sorted, shuffled, repeated and far apart: bit-equal."""
    path = colour_videos[name]
    rng = np.random.default_rng(1)
    requests = [list(range(40)), [39, 26, 13, 0, 39], rng.integers(0, 40, 12).tolist(), [7]]
    for idx in requests:
        np.testing.assert_array_equal(_tc(path, idx), _pyav(path, idx))
    with open_video(path, backend="torchcodec") as r, open_video(path, backend="pyav") as p:
        assert (len(r), r.fps, r.rotation) == (len(p), p.fps, p.rotation)
        np.testing.assert_array_equal(r.timestamps(range(40)), p.timestamps(range(40)))
        assert r.frame_end_time(39) == p.frame_end_time(39)


@needs_tc
def test_bytes_from_a_shard_give_the_same_frames(colour_videos):
    data = open(colour_videos["h264"], "rb").read()
    np.testing.assert_array_equal(_tc("sample.mp4", [3, 30, 12], data=data), _pyav(colour_videos["h264"], [3, 30, 12]))


@needs_tc
@pytest.mark.parametrize("pix_fmt", sorted(tcmod._SAME_RGB))
def test_every_format_declared_equal_is_equal(tmp_path, pix_fmt):
    """``_SAME_RGB`` is a claim: each listed format converts bit-equal to PyAV (libx264 writes them all)."""
    frames = _colour_frames(10, 48, 64, seed=2)
    path = _encode(tmp_path / "f.mkv", frames, pix_fmt=pix_fmt, options={"crf": "10"})
    with av.open(path) as c:
        assert c.streams.video[0].codec_context.pix_fmt == pix_fmt
    np.testing.assert_array_equal(_tc(path, range(10)), _pyav(path, range(10)))


def _dataset(tmp_path, video, backend, **kw):
    """Three list entries, each a link to ``video``."""
    root = tmp_path / "links"
    root.mkdir(exist_ok=True)
    for n in "abc":
        if not (root / f"{n}.mp4").exists():
            (root / f"{n}.mp4").symlink_to(video)
    lst = tmp_path / f"list_{backend}.txt"
    write_annotations([(f"{n}.mp4", 0) for n in "abc"], lst)
    return VideoDataset(root, lst, backend=backend, **kw)


@needs_tc
@pytest.mark.parametrize("sampling,frames,interval", [("interval", 8, 4), ("segment", 8, 1), ("interval", 16, 2)])
def test_dataset_clips_equal_in_every_sampling_mode(colour_videos, tmp_path, sampling, frames, interval):
    """Train clips (random, same seed), each test view, and the 10 views together, as PyAV gives them."""
    video = colour_videos["h264"]
    kw = dict(num_frames=frames, sampling=sampling, frame_interval=interval, target_fps=None)
    tr = {b: _dataset(tmp_path, video, b, train=True, **kw) for b in ("pyav", "torchcodec")}
    for i in range(3):
        got = {}
        for b, ds in tr.items():
            random.seed(i), np.random.seed(i), torch.manual_seed(i)
            got[b] = ds[i]["video"]
        assert torch.equal(got["pyav"], got["torchcodec"])
    te = {b: _dataset(tmp_path, video, b, train=False, num_clips=10, **kw) for b in ("pyav", "torchcodec")}
    for i in (0, 5, 9):
        assert torch.equal(te["pyav"][i]["video"], te["torchcodec"][i]["video"])
    assert torch.equal(te["pyav"].load_views(1), te["torchcodec"].load_views(1))


def _fallback(path, idx, reason, **kw):
    """torchcodec reader on a file it must leave to PyAV: warns with ``reason``, returns PyAV's frames."""
    tcmod._warned.clear()
    with pytest.warns(RuntimeWarning, match=reason):
        r = open_video(path, backend="torchcodec", **kw)
    with r:
        assert r.fallback is not None and reason.split(".")[0] in r.fallback
        got = r.frames_at(idx)
    np.testing.assert_array_equal(got, _pyav(path, idx, **kw))
    return got


@needs_tc
def test_rotation_is_left_to_pyav(tmp_path):
    path = _encode(tmp_path / "rot.mp4", [_corner_frame()] * 3, rotation=(-90, False, False))
    assert _fallback(path, [0, 2], "display matrix").shape == (2, 64, 48, 3)  # oriented, as PyAV does


@needs_tc
def test_ten_bit_video_is_left_to_pyav(tmp_path):
    path = _encode(tmp_path / "ten.mkv", _colour_frames(6, 48, 64), pix_fmt="yuv420p10le", options={"crf": "10"})
    _fallback(path, range(6), "yuv420p10le")


@needs_tc
def test_concatenated_ts_without_usable_timestamps_is_left_to_pyav(tmp_path):
    tb = Fraction(1, 90000)
    a = _encode(tmp_path / "a.ts", range(16), pts=[3000 * i for i in range(16)], time_base=tb)
    b = _encode(tmp_path / "b.ts", range(16, 40), pts=[i * 90000 // 29 for i in range(24)], time_base=tb)
    cat = tmp_path / "cat.ts"
    cat.write_bytes(open(a, "rb").read() + open(b, "rb").read())
    got = _fallback(cat, range(40), "no usable timestamps")
    assert [read_index(f) for f in got] == list(range(40))


@needs_tc
def test_still_images_refused_as_pyav_does_and_allowed_ones_read_by_pyav(tmp_path):
    path = _image(tmp_path / "png.mp4", "png", "rgb24", 1, "image2pipe")
    with pytest.raises(VideoDecodeError, match="png.mp4.*still image"):
        open_video(path, backend="torchcodec")
    _fallback(path, [0], "still images", allow_images=True)


@needs_tc
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_by_torchcodec_itself(tmp_path, ext):
    """Irregular gaps: frames found by PyAV's timestamps, so the same frames and times without a fallback."""
    ms = [1000, 1033, 1100, 1110, 1400, 1433, 2000, 2033, 2066, 2500]
    path = _encode(tmp_path / f"vfr.{ext}", range(len(ms)), pts=ms, time_base=Fraction(1, 1000))
    got = _tc(path, [9, 3, 2, 0, 4])
    assert [read_index(f) for f in got] == [9, 3, 2, 0, 4]
    np.testing.assert_array_equal(got, _pyav(path, [9, 3, 2, 0, 4]))


@needs_tc
@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_truncated_files_are_decode_errors(colour_videos, tmp_path, fraction):
    data = open(colour_videos["h264"], "rb").read()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        with open_video(bad, backend="torchcodec") as r:
            r.frames_at(range(len(r)))


@needs_tc
def test_a_frame_with_the_wrong_timestamp_makes_pyav_read_the_file(colour_videos, monkeypatch):
    """The per-call check: should torchcodec ever hand back another frame, PyAV's is returned, with a warning."""
    tcmod._warned.clear()
    with open_video(colour_videos["h264"], backend="torchcodec") as r:
        r._seconds = r._seconds + 1 / 30  # torchcodec now answers with the next frame for each request
        with pytest.warns(RuntimeWarning, match="other than the one asked for"):
            got = r.frames_at([2, 5])
        assert r.fallback is not None
    np.testing.assert_array_equal(got, _pyav(colour_videos["h264"], [2, 5]))


def test_missing_torchcodec_says_how_to_install(monkeypatch, tmp_path):
    """Without torchcodec: the library raises ImportError, the CLI flag fails with one line naming it."""
    monkeypatch.setitem(__import__("sys").modules, "torchcodec.decoders", None)  # import now fails
    monkeypatch.delenv("TADA_ZOO_DECODER", raising=False)
    why = tcmod.torchcodec_available()
    assert "pip install 'tada-zoo[torchcodec]'" in why and "FFmpeg" in why
    video = write_video(tmp_path / "v.mp4", 4)
    with pytest.raises(ImportError, match=r"tada-zoo\[torchcodec\]"):
        open_video(video, backend="torchcodec")
    from tada_zoo.cli._args import add_decoder_arg

    p = argparse.ArgumentParser(prog="tada-zoo evaluate")
    add_decoder_arg(p)
    errors = []
    monkeypatch.setattr(p, "error", lambda msg: errors.append(msg) or (_ for _ in ()).throw(SystemExit(2)))
    with pytest.raises(SystemExit):
        p.parse_args(["--decoder", "torchcodec"])
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith("argument --decoder: torchcodec cannot be used") and "tada-zoo[torchcodec]" in errors[0]
    assert "TADA_ZOO_DECODER" not in __import__("os").environ  # nothing half-set


def test_decoder_flag_sets_the_backend_of_later_datasets(monkeypatch, tmp_path):
    """``--decoder pyav`` is parsed into the process default, which a dataset built later keeps."""
    from tada_zoo.cli._args import add_data_args

    monkeypatch.delenv("TADA_ZOO_DECODER", raising=False)
    p = argparse.ArgumentParser()
    add_data_args(p)
    assert p.parse_args([]).decoder is None
    video = write_video(tmp_path / "v.mp4", 8)
    assert _dataset(tmp_path, video, None, num_frames=2).backend == "pyav"
    monkeypatch.setenv("TADA_ZOO_DECODER", "somebackend")  # the default comes from the environment
    assert _dataset(tmp_path, video, None, num_frames=2).backend == "somebackend"
    assert p.parse_args(["--decoder", "pyav"]).decoder == "pyav"
    assert _dataset(tmp_path, video, None, num_frames=2).backend == "pyav"
    with pytest.raises(SystemExit):
        p.parse_args(["--decoder", "decord"])  # not a choice
