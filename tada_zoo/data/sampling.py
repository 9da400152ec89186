"""Which frames make a clip: pure functions from a video length to frame indices.

Interval-based (Kinetics) and segment-based (Something-Something) sampling are the
original TAdaConv code's (``tadaconv/datasets/base/base_dataset.py``), computed with the
same float32 torch operations so that every clip gets the original's frames and published
accuracies reproduce (tests check them against indices recorded from the original code).
Sliding windows are ours (feature extraction for temporal localization).
"""
import random as _random
from typing import List, Optional, Tuple, Union

import numpy as np
import torch

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
                     video_fps: Optional[float] = None, target_fps: Optional[float] = None,
                     minus_interval: bool = False) -> np.ndarray:
    """``num_frames`` frames spread over a window of ``num_frames * interval`` frames at ``target_fps``.

    The original's ``_interval_based_sampling``, operation for operation. With
    ``video_fps`` and ``target_fps`` (every released config: ``TARGET_FPS: 30``) the window
    is ``num_frames * interval * video_fps / target_fps`` frames of the video, so the
    interval counts frames of a 30-fps video whatever the file's rate. ``clip_index=None``
    (training): a uniformly random start in ``[0, n - window]``. Otherwise clip ``k`` of
    ``num_clips`` starts at ``(n - window) * k / num_clips`` (the centre for one clip). The
    indices are ``torch.linspace(start, start + window - 1, num_frames)`` in float32 (``-
    interval`` instead of ``- 1`` with ``minus_interval``), clamped to the video and
    truncated, so a window longer than the video repeats the last frame. One frame:
    a random frame in training (as the original), the window's first frame otherwise.
    """
    _check(num_video_frames, num_frames)
    if clip_index is not None and not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index {clip_index} out of range for num_clips={num_clips}")
    if num_frames == 1 and clip_index is None:
        return np.array([_randint(rng, 0, num_video_frames - 1)], dtype=np.int64)
    clip_length = num_frames * interval
    if video_fps and target_fps:
        clip_length = num_frames * interval * video_fps / target_fps
    max_start = max(num_video_frames - clip_length, 0)
    if clip_index is None:
        start = _uniform(rng, 0, max_start)
    elif num_clips == 1:
        start = max_start / 2
    else:
        start = max_start * clip_index / num_clips
    end = start + clip_length - (interval if minus_interval else 1)
    index = torch.linspace(start, end, num_frames)  # float32, like the original
    return torch.clamp(index, 0, num_video_frames - 1).long().numpy()


def segment_indices(num_video_frames: int, num_frames: int, *, random: bool = True, rng: Rng = None,
                    clip_index: int = 0, num_clips: int = 1) -> np.ndarray:
    """One frame from each of ``num_frames`` equal segments (Something-Something, TSN).

    The original's ``_segment_based_sampling``, in float32 like it: segment edges
    ``torch.linspace(0, n, num_frames + 1)``; ``random=True`` (training) a uniform position
    inside each segment; otherwise the segment centre for one clip, and for clip ``k`` of
    ``num_clips`` the point ``(k + 1) / num_clips`` of the way through each segment (2
    clips: middle and end). Positions are clamped to the video and rounded half to even.
    """
    _check(num_video_frames, num_frames)
    if not random and not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index {clip_index} out of range for num_clips={num_clips}")
    edges = torch.linspace(0, num_video_frames, num_frames + 1)
    lo, hi = edges[:-1], edges[1:]
    if random:
        u = torch.tensor([_uniform(rng, 0.0, 1.0) for _ in range(num_frames)], dtype=torch.float32)
        index = lo + (hi - lo) * u
    elif num_clips == 1:
        index = (lo + hi) / 2
    else:
        index = lo + (hi - lo) * (clip_index + 1) / num_clips
    return torch.round(torch.clamp(index, 0, num_video_frames - 1)).long().numpy()


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
