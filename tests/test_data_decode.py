"""Frame-exact decoding on H.264 with B-frames and VP9 WebM; clear errors on bad files."""
from fractions import Fraction

import av
import numpy as np
import pytest

from data_videos import index_frame, read_index, write_video
from tada_zoo.data import VideoDecodeError, VideoReader, open_video

NUM_FRAMES = 40
CODECS = {"h264": ("libx264", "mp4"), "vp9": ("libvpx-vp9", "webm")}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("decode")
    return {name: write_video(d / f"v.{ext}", NUM_FRAMES, codec) for name, (codec, ext) in CODECS.items()}


def test_h264_test_video_really_has_b_frames(videos):
    """Otherwise the exactness test below would not test reordering."""
    with av.open(videos["h264"]) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    assert any(b < a for a, b in zip(pts, pts[1:])), "decode order == presentation order: no B-frames"


@pytest.mark.parametrize("name", sorted(CODECS))
def test_len_fps_and_all_frames(videos, name):
    with open_video(videos[name]) as r:
        assert len(r) == NUM_FRAMES
        assert r.fps == pytest.approx(30.0)
        frames = r.frames_at(range(NUM_FRAMES))
    assert frames.dtype == np.uint8 and frames.shape == (NUM_FRAMES, 48, 64, 3)
    assert [read_index(f) for f in frames] == list(range(NUM_FRAMES))


@pytest.mark.parametrize("name", sorted(CODECS))
def test_random_order_and_repeats(videos, name):
    rng = np.random.default_rng(0)
    with VideoReader(videos[name]) as r:
        for _ in range(4):
            idx = rng.integers(0, NUM_FRAMES, size=int(rng.integers(1, 12))).tolist()
            assert [read_index(f) for f in r.frames_at(idx)] == idx
        # sparse requests far apart (re-seeks between GOPs), reversed
        idx = [39, 26, 13, 0, 39]
        assert [read_index(f) for f in r.frames_at(idx)] == idx


def test_decoding_order_fallback_is_exact(videos):
    """Without usable timestamps the reader counts decoded frames instead."""
    with VideoReader(videos["h264"]) as r:
        r._pts = None
        idx = [5, 1, 30, 5]
        assert [read_index(f) for f in r.frames_at(idx)] == idx


def test_out_of_range_raises_index_error(videos):
    with VideoReader(videos["h264"]) as r:
        with pytest.raises(IndexError, match="out of range.*40 frames"):
            r.frames_at([0, NUM_FRAMES])
        with pytest.raises(IndexError):
            r.frames_at([-1])


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.7])
def test_empty_and_truncated_files_raise_decode_error(videos, tmp_path, name, fraction):
    data = open(videos[name], "rb").read()
    bad = tmp_path / f"bad.{CODECS[name][1]}"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(VideoDecodeError, match="bad"):
        with open_video(bad) as r:
            r.frames_at(range(len(r)))


def test_truncated_mp4_with_header_first(tmp_path):
    """faststart puts the index before the data: truncation leaves a readable header."""
    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w", container_options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        from data_videos import index_frame
        for i in range(NUM_FRAMES):
            for p in s.encode(av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoDecodeError, match="truncated"):
        with open_video(path) as r:
            r.frames_at(range(len(r)))


def test_garbage_and_missing(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError, match="garbage.mp4"):
        open_video(bad)
    with pytest.raises(FileNotFoundError):
        open_video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(bad, backend="nope")


def test_inexact_seek_falls_back_to_an_earlier_keyframe(videos):
    """Some containers seek past the requested keyframe; the reader must still be exact."""
    with VideoReader(videos["h264"]) as r:
        container = r._container
        keys = [r._pts[k] for k in r._key_index]
        calls = []

        class SloppySeek:  # lands one GOP too late, except at the start
            def seek(self, offset, **kw):
                calls.append(offset)
                later = [p for p in keys if p > offset]
                container.seek(later[0] if later and offset > 0 else offset, **kw)

            def __getattr__(self, name):
                return getattr(container, name)

        r._container = SloppySeek()
        idx = [30, 14, 2]
        assert [read_index(f) for f in r.frames_at(idx)] == idx
        assert len(calls) > 2  # it did have to retry
        r._container = container


def test_read_windows_decodes_each_frame_once(videos):
    from tada_zoo.data import read_windows, sliding_windows

    windows = sliding_windows(NUM_FRAMES, 4, 3, 4)
    with VideoReader(videos["vp9"]) as r:
        calls = []
        frames_at = r.frames_at
        r.frames_at = lambda idx: calls.append(list(idx)) or frames_at(idx)
        got = list(read_windows(r, windows, max_frames=16))
    assert [s for s, _ in got] == [s for s, _ in windows]
    for (_, frames), (_, idx) in zip(got, windows):
        assert [read_index(f) for f in frames] == idx.tolist()
    fetched = [i for c in calls for i in c]
    assert len(fetched) == len(set(fetched))  # no frame fetched twice
    assert set(fetched) == set(np.concatenate([i for _, i in windows]).tolist())
    assert len(calls) < len(windows)


def test_edit_list_discarded_frames_are_not_counted(tmp_path):
    """Stream-copy trimming leaves frames before the cut in the file, hidden by an edit list."""
    src = write_video(tmp_path / "src.mp4", NUM_FRAMES, "libx264", **{"x264-params": "bframes=0:keyint=40"})
    cut = str(tmp_path / "cut.mp4")
    with av.open(src) as inp, av.open(cut, "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        shift = 5 * int(round(1 / (30 * s.time_base)))  # 5 frames before the start of the edit
        for p in inp.demux(s):
            if p.size:
                p.pts -= shift
                p.dts -= shift
                p.stream = o
                out.mux(p)
    with av.open(cut) as c:
        assert sum(p.is_discard for p in c.demux(c.streams.video[0]) if p.size) == 5
    with VideoReader(cut) as r:
        assert len(r) == NUM_FRAMES - 5
        assert [read_index(f) for f in r.frames_at([0, 20, 34])] == [5, 25, 39]


# --- crafted files: held last frames, concatenated streams, still images, rotation, timestamps ---

def _encode(path, frames, pts=None, time_base=Fraction(1, 30), codec="libx264", pix_fmt="yuv420p",
            last_duration=None, fmt=None, options=None, rotation=None):
    """Encode ``frames`` (index numbers or RGB arrays) at explicit ``pts`` (in ``time_base``; default 0, 1, ...).
    ``last_duration`` (seconds) holds the last frame that long, as slideshow and screen recorders do."""
    path = str(path)
    with av.open(path, "w", format=fmt) as out:
        s = out.add_stream(codec, rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, pix_fmt
        s.codec_context.time_base = time_base
        s.options = options if options is not None else (
            {"x264-params": "bframes=2:keyint=8:scenecut=0", "crf": "10"} if codec == "libx264" else {})
        if rotation is not None:
            s.set_display_rotation(*rotation)
        packets = []
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(index_frame(img) if isinstance(img, int) else img, format="rgb24")
            f.pts, f.time_base = (i if pts is None else pts[i]), time_base
            packets += s.encode(f)
        packets += s.encode()
        if last_duration is not None:  # the last packet in decoding order sets where the stream ends
            packets[-1].duration = int(round(last_duration / packets[-1].time_base))
        for p in packets:
            out.mux(p)
    return path


HELD = {"mp4": dict(options={"x264-params": "bframes=0:keyint=4", "crf": "10"}),
        "mkv": dict(options={"x264-params": "bframes=0:keyint=4", "crf": "10"}),
        "gif": dict(codec="gif", pix_fmt="gray", time_base=Fraction(1, 100), pts=[3 * i for i in range(8)])}


@pytest.mark.parametrize("ext", sorted(HELD))
def test_held_last_frame_is_not_truncation(tmp_path, ext):
    """A last frame shown for 3 s makes the container's duration run 3 s past the last pts: complete file."""
    path = _encode(tmp_path / f"held.{ext}", range(8), last_duration=3.0, **HELD[ext])
    with av.open(path) as c:  # the crafted file does announce the long duration
        s = c.streams.video[0]
        announced = float(s.duration * s.time_base) if s.duration else c.duration / 1e6
    assert announced > 3.0
    with VideoReader(path) as r:
        assert len(r) == 8
        assert [read_index(f) for f in r.frames_at(range(8))] == list(range(8))
        assert r.frame_end_time(7) == pytest.approx(r.timestamps([7])[0] + 3.0, abs=0.02)


def test_held_last_frame_then_truncated_is_still_truncated(tmp_path):
    path = _encode(tmp_path / "held.mkv", range(40), last_duration=3.0, **HELD["mkv"])
    data = open(path, "rb").read()
    cut = tmp_path / "held_cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoDecodeError, match="held_cut.mkv.*truncated"):
        with open_video(cut) as r:
            r.frames_at(range(len(r)))


def test_concatenated_ts_with_timestamp_reset(tmp_path):
    """`cat a.ts b.ts`: the second part's timestamps restart, so sorting by pts interleaves the parts."""
    tb = Fraction(1, 90000)  # MPEG-TS clock; part b runs at 29 fps so that no pts collides with part a's
    a = _encode(tmp_path / "a.ts", range(16), pts=[3000 * i for i in range(16)], time_base=tb)
    b = _encode(tmp_path / "b.ts", range(16, 40), pts=[i * 90000 // 29 for i in range(24)], time_base=tb)
    cat = tmp_path / "cat.ts"
    cat.write_bytes(open(a, "rb").read() + open(b, "rb").read())
    with av.open(str(cat)) as c:  # timestamps restart and do not collide (no duplicate-pts fallback)
        pkts = [p for p in c.demux(c.streams.video[0]) if p.size]
        assert len({p.pts for p in pkts}) == len(pkts) == 40 and pkts[16].dts < pkts[15].dts
    with VideoReader(cat) as r:
        assert len(r) == 40
        for i in [16, 30, 0, 39, 15]:  # one at a time: no help from earlier frames
            try:
                assert read_index(r.frames_at([i])[0]) == i
            except VideoDecodeError as e:  # refusing is allowed, a wrong frame is not
                assert "cat.ts" in str(e)
        assert [read_index(f) for f in r.frames_at(range(40))] == list(range(40))


def _image(path, codec, pix_fmt, n=1, fmt=None):
    return _encode(path, range(n), codec=codec, pix_fmt=pix_fmt, fmt=fmt, options={})


STILLS = {"png.mp4": ("png", "rgb24", 1, "image2pipe"), "jpeg.mp4": ("mjpeg", "yuvj420p", 1, "image2pipe"),
          "bmp.mp4": ("bmp", "bgr24", 1, "image2pipe"), "tiff.mp4": ("tiff", "rgb24", 1, "image2pipe"),
          "webp.mp4": ("libwebp", "yuv420p", 1, "image2pipe"), "png.mov": ("png", "rgb24", 1, None),
          "mjpeg.avi": ("mjpeg", "yuvj420p", 1, None), "still.gif": ("gif", "gray", 1, None)}


@pytest.mark.parametrize("name", sorted(STILLS))
def test_still_images_are_refused_unless_allowed(tmp_path, name):
    path = _image(tmp_path / name, *STILLS[name])
    with pytest.raises(VideoDecodeError, match=f"{name}.*still image.*allow_images=True"):
        open_video(path)
    with open_video(path, allow_images=True) as r:
        assert len(r) == 1 and read_index(r.frames_at([0])[0]) == 0


@pytest.mark.parametrize("name,args", [("anim.gif", ("gif", "gray", 5)), ("anim.mov", ("png", "rgb24", 5)),
                                       ("mjpeg.avi", ("mjpeg", "yuvj420p", 5)), ("one.mp4", ("libx264", "yuv420p", 1))])
def test_animations_and_one_frame_videos_are_videos(tmp_path, name, args):
    with open_video(_image(tmp_path / name, *args)) as r:
        assert [read_index(f) for f in r.frames_at(range(len(r)))] == list(range(args[2]))


def _corner_frame():
    """Black 48x64 frame with a white block in its top-left corner: shows any rotation or mirroring."""
    f = np.zeros((48, 64, 3), np.uint8)
    f[:16, :16] = 255
    return f


def _bright_corner(frame):
    h, w = frame.shape[:2]
    corners = {"tl": frame[: h // 4, : w // 4], "tr": frame[: h // 4, -w // 4:],
               "bl": frame[-h // 4:, : w // 4], "br": frame[-h // 4:, -w // 4:]}
    return max(corners, key=lambda k: corners[k].mean())


# display matrix (PyAV's counter-clockwise degrees, hflip, vflip) -> (displayed shape, where the corner lands,
# FFmpeg's reading of the angle: av_display_rotation_get says -180 for a half turn and for a mirror)
ROTATIONS = {(0, False, False): ((48, 64), "tl", 0), (-90, False, False): ((64, 48), "tr", -90),  # phone portrait
             (90, False, False): ((64, 48), "bl", 90), (180, False, False): ((48, 64), "br", -180),
             (0, True, False): ((48, 64), "tr", -180), (0, False, True): ((48, 64), "bl", 0)}


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
                    reason="this PyAV cannot write a display matrix")
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
@pytest.mark.parametrize("rotation", sorted(ROTATIONS), ids=lambda r: f"{r[0]}{'-hflip' * r[1]}{'-vflip' * r[2]}")
def test_display_matrix_is_applied_like_players(tmp_path, ext, rotation):
    path = _encode(tmp_path / f"rot.{ext}", [_corner_frame()] * 3,
                   rotation=rotation if rotation != (0, False, False) else None)
    shape, corner, degrees = ROTATIONS[rotation]
    with VideoReader(path) as r:
        frames = r.frames_at([2, 0])
        assert frames.shape == (2, *shape, 3)
        assert [_bright_corner(f) for f in frames] == [corner, corner]
        assert r.rotation == degrees
    with VideoReader(path) as r:
        assert r.rotation == degrees  # before any frame was asked for
    with VideoReader(path, autorotate=False) as r:
        frames = r.frames_at([1])
        assert frames.shape == (1, 48, 64, 3) and _bright_corner(frames[0]) == "tl"


def test_timestamps_of_a_constant_rate_file(videos):
    with VideoReader(videos["h264"]) as r:
        t = r.timestamps([0, 5, 39])
        assert t.dtype == np.float64 and t == pytest.approx([0, 5 / 30, 39 / 30])
        assert r.frame_end_time(39) == pytest.approx(40 / 30)
        assert r.frame_end_time(5) == pytest.approx(6 / 30)
        with pytest.raises(IndexError):
            r.timestamps([40])


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_timestamps_of_a_variable_rate_file(tmp_path, ext):
    """Irregular gaps (a phone slowing down in the dark): the true times, not i / fps."""
    ms = [1000, 1033, 1100, 1110, 1400, 1433, 2000, 2033, 2066, 2500]
    path = _encode(tmp_path / f"vfr.{ext}", range(len(ms)), pts=ms, time_base=Fraction(1, 1000))
    with VideoReader(path) as r:
        assert len(r) == len(ms)
        assert [read_index(f) for f in r.frames_at(range(len(ms)))] == list(range(len(ms)))
        assert r.timestamps(range(len(ms))) == pytest.approx([(t - ms[0]) / 1000 for t in ms], abs=1e-3)
        assert r.timestamps([4, 1]) == pytest.approx([0.4, 0.033], abs=1e-3)
        assert r.frame_end_time(3) == pytest.approx(0.4, abs=1e-3)


def test_base_reader_timestamps_default_to_the_frame_rate():
    from tada_zoo.data import BaseVideoReader

    class Fixed(BaseVideoReader):
        path = "fixed"
        fps = 25.0

        def __len__(self):
            return 10

    r = Fixed()
    assert r.timestamps([0, 4, 9]) == pytest.approx([0, 0.16, 0.36])
    assert r.frame_end_time(3) == pytest.approx(0.16) and r.frame_end_time(9) == pytest.approx(0.4)


def test_threads_change_no_pixel_and_one_means_one(videos):
    """num_threads=1 (a DataLoader worker) decodes and converts on one thread; more threads give the same frames."""
    with VideoReader(videos["h264"]) as one, VideoReader(videos["h264"], num_threads=0) as auto:
        assert one._stream.thread_count == 1
        assert one._rgb_kwargs in ({}, {"threads": 1})
        np.testing.assert_array_equal(one.frames_at(range(NUM_FRAMES)), auto.frames_at(range(NUM_FRAMES)))


def test_frame_size_change_mid_stream_is_a_decode_error(videos, monkeypatch):
    """frames_at fills one array as it decodes: a frame of another size says so instead of failing to stack."""
    with VideoReader(videos["h264"]) as r:
        to_rgb = r._to_rgb
        monkeypatch.setattr(r, "_to_rgb", lambda f: to_rgb(f)[:24] if f.pts == r._pts[20] else to_rgb(f))
        assert r.frames_at([3, 19]).shape == (2, 48, 64, 3)
        with pytest.raises(VideoDecodeError, match=r"frame 20 is 64x24 but earlier frames are 64x48"):
            r.frames_at([3, 20])
