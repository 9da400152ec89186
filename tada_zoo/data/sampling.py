"""Which frames make a clip: pure functions from a video length to frame indices.

They follow the original TAdaConv code base so that published accuracies reproduce:
interval-based sampling (Kinetics), segment-based sampling (Something-Something) and
sliding windows (feature extraction for temporal localization).
"""
import math
import random as _random
from typing import List, Optional, Tuple, Union

import numpy as np

__all__ = ["interval_indices", "segment_indices", "sliding_windows"]

Rng = Union[np.random.Generator, _random.Random, None]


def _uniform(rng: Rng, low: float, high: float) -> float:
    if rng is None:
        return _random.uniform(low, high)
    if isinstance(rng, np.random.Generator):
        return float(rng.uniform(low, high))
    return rng.uniform(low, high)


def _randint(rng: Rng, low: int, high: int) -> int:
    """Integer in [low, high], both ends included."""
    if rng is None:
        return _random.randint(low, high)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(low, high + 1))
    return rng.randint(low, high)


def _check(num_video_frames: int, num_frames: int) -> None:
    if num_video_frames <= 0:
        raise ValueError(f"cannot sample from a video with {num_video_frames} frames")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")


def interval_indices(num_video_frames: int, num_frames: int, interval: float, *,
                     clip_index: Optional[int] = None, num_clips: int = 1, rng: Rng = None,
                     video_fps: Optional[float] = None, target_fps: Optional[float] = None) -> np.ndarray:
    """``num_frames`` frames spread over a window of ``num_frames * interval`` frames.

    ``clip_index=None`` (training): the window starts at a random position. Otherwise
    (testing) it is the ``clip_index``-th of ``num_clips`` windows spread uniformly over
    the video (the centre one when ``num_clips == 1``). As in the original code, the
    ``num_frames`` indices are ``linspace(start, start + num_frames * interval - 1)``
    truncated to ints, and a window longer than the video repeats the last frame
    (indices are clamped), so short videos never fail. With ``video_fps`` and
    ``target_fps`` the window is measured at ``target_fps`` (the original used 30).
    """
    _check(num_video_frames, num_frames)
    if num_frames == 1 and clip_index is None:
        return np.array([_randint(rng, 0, num_video_frames - 1)], dtype=np.int64)
    clip_length = num_frames * interval
    if video_fps and target_fps:
        clip_length = clip_length * video_fps / target_fps
    max_start = max(num_video_frames - clip_length, 0)
    if clip_index is None:
        start = _uniform(rng, 0, max_start)
    else:
        if not 0 <= clip_index < num_clips:
            raise ValueError(f"clip_index {clip_index} out of range for num_clips={num_clips}")
        start = max_start / 2 if num_clips == 1 else clip_index * math.floor(max_start / (num_clips - 1))
    end = start + clip_length - 1
    index = np.linspace(start, end, num_frames)
    return np.clip(index, 0, num_video_frames - 1).astype(np.int64)


def segment_indices(num_video_frames: int, num_frames: int, *, random: bool = True, rng: Rng = None,
                    clip_index: int = 0, num_clips: int = 1) -> np.ndarray:
    """One frame per each of ``num_frames`` equal segments (Something-Something, TSN).

    ``random=True`` (training): a random position inside each segment. Otherwise the
    segment centre, or with ``num_clips > 1`` the ``clip_index``-th of ``num_clips``
    positions from each segment's start to its end.
    """
    _check(num_video_frames, num_frames)
    edges = np.linspace(0, num_video_frames, num_frames + 1)
    if random:
        index = np.array([_uniform(rng, edges[i], edges[i + 1]) for i in range(num_frames)])
    elif num_clips == 1:
        index = (edges[:-1] + edges[1:]) / 2
    else:
        index = edges[:-1] + (edges[1:] - edges[:-1]) * clip_index / (num_clips - 1)
    # round half to even like torch.round in the original
    return np.round(np.clip(index, 0, num_video_frames - 1)).astype(np.int64)


def sliding_windows(num_video_frames: int, clip_len: int, frame_interval: int,
                    clip_stride: int) -> List[Tuple[int, np.ndarray]]:
    """Windows ``(start_frame, indices)`` for feature extraction over a whole video.

    Window ``k`` starts at frame ``k * clip_stride`` and takes ``clip_len`` frames
    ``frame_interval`` apart. Windows start at every stride position inside the video;
    the last ones run past the end and are padded by repeating the last frame (clamped),
    so every frame is covered and a short video still gives one window. The paper's
    localization features: ``clip_len=8, frame_interval=8, clip_stride=8``.
    """
    _check(num_video_frames, clip_len)
    if frame_interval <= 0 or clip_stride <= 0:
        raise ValueError(f"frame_interval and clip_stride must be positive, got {frame_interval}, {clip_stride}")
    offsets = np.arange(clip_len, dtype=np.int64) * frame_interval
    return [(start, np.minimum(start + offsets, num_video_frames - 1))
            for start in range(0, num_video_frames, clip_stride)]
