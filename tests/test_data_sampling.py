"""Frame samplers: expected indices worked out by hand from the original code's formulas."""
import random

import numpy as np
import pytest

from tada_zoo.data import interval_indices, segment_indices, sliding_windows


def test_interval_centre_clip():
    # window 8 * 4 = 32 frames, start (100 - 32) / 2 = 34, linspace(34, 65, 8) truncated
    assert interval_indices(100, 8, 4, clip_index=0).tolist() == [34, 38, 42, 47, 51, 56, 60, 65]


def test_interval_uniform_test_clips():
    # 10 clips over 300 frames: max start 236, clip k starts at k * floor(236 / 9) = 26k;
    # the 8 frames of linspace(s, s + 63, 8) are 9 apart
    for k in range(10):
        got = interval_indices(300, 8, 8, clip_index=k, num_clips=10)
        assert got.tolist() == (26 * k + 9 * np.arange(8)).tolist()


def test_interval_short_video_clamps_to_last_frame():
    assert interval_indices(10, 8, 8, clip_index=0).tolist() == [0, 9, 9, 9, 9, 9, 9, 9]
    assert interval_indices(1, 4, 2).tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="0 frames"):
        interval_indices(0, 8, 8)


def test_interval_fps_scaling():
    # a 60 fps video measured at 30 fps: the window doubles (8 * 4 * 2 = 64 frames)
    got = interval_indices(200, 8, 4, clip_index=0, video_fps=60, target_fps=30)
    start = (200 - 64) / 2
    assert got.tolist() == [int(v) for v in np.linspace(start, start + 63, 8)]


@pytest.mark.parametrize("rng_factory", [np.random.default_rng, random.Random])
def test_interval_random_start(rng_factory):
    rng = rng_factory(0)
    starts = []
    for _ in range(300):
        idx = interval_indices(100, 8, 4, rng=rng)
        assert len(idx) == 8 and idx.min() >= 0 and idx.max() <= 99
        assert (np.diff(idx) >= 4).all()
        starts.append(idx[0])
    # random starts cover [0, 68]
    assert min(starts) <= 3 and max(starts) >= 65
    a = interval_indices(100, 8, 4, rng=rng_factory(5))
    b = interval_indices(100, 8, 4, rng=rng_factory(5))
    assert a.tolist() == b.tolist()


def test_segment_centres():
    assert segment_indices(80, 8, random=False).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    # edges 0, 7.5, 15, 22.5, 30: centres 3.75, 11.25, 18.75, 26.25
    assert segment_indices(30, 4, random=False).tolist() == [4, 11, 19, 26]


def test_segment_random_stays_in_segment():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        idx = segment_indices(80, 8, rng=rng)
        assert ((idx >= np.arange(8) * 10) & (idx <= np.arange(8) * 10 + 10)).all()
        seen.add(int(idx[0]))
    assert len(seen) >= 8  # it is random


def test_segment_short_video():
    idx = segment_indices(3, 8, random=False)
    assert idx.min() >= 0 and idx.max() <= 2 and (np.diff(idx) >= 0).all()


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


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 500), t=st.integers(1, 32), s=st.integers(1, 16), clips=st.integers(1, 10),
       seed=st.integers(0, 2**31), segment=st.booleans())
def test_samplers_always_return_valid_indices(n, t, s, clips, seed, segment):
    rng = np.random.default_rng(seed)
    if segment:
        results = [segment_indices(n, t, rng=rng)] + [
            segment_indices(n, t, random=False, clip_index=k, num_clips=clips) for k in range(clips)]
    else:
        results = [interval_indices(n, t, s, rng=rng)] + [
            interval_indices(n, t, s, clip_index=k, num_clips=clips) for k in range(clips)]
    for idx in results:
        assert idx.shape == (t,) and idx.dtype == np.int64
        assert idx.min() >= 0 and idx.max() <= n - 1
        assert (np.diff(idx) >= 0).all()
