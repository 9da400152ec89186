"""Frame samplers: test clips against indices recorded from the ORIGINAL code; training ranges."""
import random

import numpy as np
import pytest

from original_fixtures import original_cases
from tada_zoo.data import interval_indices, segment_indices, sliding_windows


def test_interval_test_clips_are_the_originals():
    cases = original_cases()["interval"]
    assert len(cases) > 1000 and {c["fps"] for c in cases} >= {25.0, 30.0, 60.0}
    for c in cases:
        for k, expected in enumerate(c["indices"]):
            got = interval_indices(c["length"], c["frames"], c["rate"], clip_index=k, num_clips=c["clips"],
                                   video_fps=c["fps"], target_fps=30)
            assert got.tolist() == expected, c | dict(clip=k)


def test_segment_test_clips_are_the_originals():
    cases = original_cases()["segment"]
    assert {c["clips"] for c in cases} >= {1, 2, 4}
    for c in cases:
        for k, expected in enumerate(c["indices"]):
            got = segment_indices(c["length"], c["frames"], random=False, clip_index=k, num_clips=c["clips"])
            assert got.tolist() == expected, c | dict(clip=k)


def test_float32_matters():
    """The same formula in float64 picks other frames on some recorded clips: precision is part of the protocol."""
    differ = 0
    for c in original_cases()["interval"]:
        window = c["frames"] * c["rate"] * c["fps"] / 30
        max_start = max(c["length"] - window, 0)
        for k, expected in enumerate(c["indices"]):
            start = max_start / 2 if c["clips"] == 1 else max_start * k / c["clips"]
            f64 = np.clip(np.linspace(start, start + window - 1, c["frames"]), 0, c["length"] - 1).astype(np.int64)
            differ += f64.tolist() != expected
    assert differ > 0


def test_interval_window_is_measured_at_30_fps():
    # 60 fps: the 8 x 8 window covers 128 frames of the file (about 2.1 s, as at 30 fps)
    idx = interval_indices(1000, 8, 8, clip_index=0, video_fps=60, target_fps=30)
    assert 126 <= idx[-1] - idx[0] <= 127
    assert (interval_indices(1000, 8, 8, clip_index=0, video_fps=60) == interval_indices(1000, 8, 8, clip_index=0)).all()


@pytest.mark.parametrize("rng_factory", [np.random.default_rng, random.Random])
def test_interval_random_start(rng_factory):
    rng = rng_factory(0)
    starts = []
    for _ in range(300):
        idx = interval_indices(200, 8, 4, rng=rng, video_fps=60, target_fps=30)  # window 64 frames
        assert len(idx) == 8 and idx.min() >= 0 and idx.max() <= 199
        assert 62 <= idx[-1] - idx[0] <= 63
        starts.append(idx[0])
    assert min(starts) <= 5 and max(starts) >= 130  # random starts cover [0, 136]
    a = interval_indices(100, 8, 4, rng=rng_factory(5))
    b = interval_indices(100, 8, 4, rng=rng_factory(5))
    assert a.tolist() == b.tolist()


def test_clip_index_out_of_range():
    with pytest.raises(ValueError, match="clip_index 3"):
        interval_indices(100, 8, 4, clip_index=3, num_clips=3)
    with pytest.raises(ValueError, match="clip_index 2"):
        segment_indices(100, 8, random=False, clip_index=2, num_clips=2)
    with pytest.raises(ValueError, match="0 frames"):
        interval_indices(0, 8, 8)


def test_segment_random_stays_in_segment():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        idx = segment_indices(80, 8, rng=rng)
        assert ((idx >= np.arange(8) * 10) & (idx <= np.arange(8) * 10 + 10)).all()
        seen.add(int(idx[0]))
    assert len(seen) >= 8  # it is random


def test_sliding_windows_localization_setting():
    windows = sliding_windows(100, 8, 8, 8)
    assert [s for s, _ in windows] == list(range(0, 100, 8))
    assert windows[0][1].tolist() == list(range(0, 57, 8))
    assert windows[1][1].tolist() == list(range(8, 65, 8))
    # the last window runs past the end: padded with the last frame
    assert windows[-1][1].tolist() == [96] + [99] * 7
    covered = set(np.concatenate([w for _, w in windows]).tolist())
    assert covered >= set(range(0, 100, 8))


def test_sliding_windows_short_video_gives_one_window():
    windows = sliding_windows(5, 4, 2, 16)
    assert len(windows) == 1 and windows[0][1].tolist() == [0, 2, 4, 4]


from hypothesis import example, given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 500), t=st.integers(1, 32), s=st.integers(1, 16), clips=st.integers(1, 10),
       seed=st.integers(0, 2**31), segment=st.booleans(), fps=st.sampled_from([None, 12.0, 29.97, 60.0]))
@example(n=3, t=2, s=1, clips=1, seed=0, segment=False, fps=12.0)  # a 0.8-frame window (found by CI)
def test_samplers_always_return_valid_indices(n, t, s, clips, seed, segment, fps):
    rng = np.random.default_rng(seed)
    if segment:
        results = [segment_indices(n, t, rng=rng)] + [
            segment_indices(n, t, random=False, clip_index=k, num_clips=clips) for k in range(clips)]
    else:
        kw = dict(video_fps=fps, target_fps=30)
        results = [interval_indices(n, t, s, rng=rng, **kw)] + [
            interval_indices(n, t, s, clip_index=k, num_clips=clips, **kw) for k in range(clips)]
    # a window shorter than one frame (e.g. 2 frames, interval 1, of a 12-fps file: 0.8 frames)
    # runs backwards, as the original's linspace(start, start + window - 1) does
    backwards = not segment and fps and t * s * fps / 30 < 1
    for idx in results:
        assert idx.shape == (t,) and idx.dtype == np.int64
        assert idx.min() >= 0 and idx.max() <= n - 1
        assert (np.diff(idx) <= 0).all() if backwards else (np.diff(idx) >= 0).all()
