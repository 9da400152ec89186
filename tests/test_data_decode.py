"""Frame-exact decoding on H.264 with B-frames and VP9 WebM; clear errors on bad files."""
import av
import numpy as np
import pytest

from data_videos import read_index, write_video
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
