"""Annotation lists and the video dataset.

An annotation list is plain text, one sample per line: ``relative/path label`` or, for
multi-head datasets (EPIC-KITCHENS verb + noun), ``relative/path label1 label2 ...``.
Paths may contain spaces: the labels are the trailing integer fields.
"""
import os
import random
import re
import warnings
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .decode import VideoDecodeError, open_video
from .sampling import interval_indices, segment_indices

__all__ = ["read_annotations", "write_annotations", "VideoDataset"]


Label = Union[int, Tuple[int, ...]]
# a path (may contain spaces), then one or more integer labels
_LINE = re.compile(r"^(\S.*?)((?:\s+[+-]?\d+)+)$")


def read_annotations(list_file) -> List[Tuple[str, Label]]:
    """``[(rel_path, label)]``; label is an int, or a tuple of ints on multi-label lines."""
    samples = []
    num_labels = None
    with open(list_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _LINE.match(line)
            if m is None:
                raise ValueError(f"{list_file}:{lineno}: expected 'relative/path label [label ...]' "
                                 f"with integer labels, got {line!r}")
            path, labels = m.group(1), [int(v) for v in m.group(2).split()]
            if num_labels is None:
                num_labels = len(labels)
            elif len(labels) != num_labels:
                raise ValueError(f"{list_file}:{lineno}: {len(labels)} labels, but earlier lines have "
                                 f"{num_labels}: {line!r}")
            samples.append((path, labels[0] if len(labels) == 1 else tuple(labels)))
    if not samples:
        raise ValueError(f"annotation list {list_file} has no samples")
    return samples




def write_annotations(samples: Sequence[Tuple[str, Label]], list_file) -> None:
    """Write ``[(rel_path, label)]`` atomically (temp file + rename)."""
    list_file = os.fspath(list_file)
    os.makedirs(os.path.dirname(os.path.abspath(list_file)), exist_ok=True)
    tmp = f"{list_file}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for path, label in samples:
            labels = label if isinstance(label, (tuple, list)) else (label,)
            f.write(" ".join([path, *map(str, labels)]) + "\n")
    os.replace(tmp, list_file)


class VideoDataset(Dataset):
    """Clips from the videos of an annotation list.

    Items are ``dict(video, label, index, clip_index, skipped)``: ``video`` is what ``transform``
    returns (float ``(C, T, H, W)``, or ``(crops, C, T, H, W)`` from EvalTransform; the raw
    uint8 ``(T, H, W, C)`` frames as a tensor without a transform); ``label`` an int or a
    LongTensor for multi-label lines; ``index`` the sample's line in the list.

    ``train=True``: one random clip per sample (``interval``: random start; ``segment``:
    random frame per segment). ``train=False``: ``num_clips`` deterministic clips per sample,
    ``len = samples * num_clips``, item ``i`` is clip ``i % num_clips`` of sample
    ``i // num_clips``. Interval windows are measured at ``target_fps`` (the original's
    ``DATA.TARGET_FPS: 30``; ``None`` counts frames of the file whatever its rate).

    ``flip_labels`` (training): the original's ``SSV2_FLIP``: after the transform, with
    probability 0.5 the clip is mirrored and its label swapped through the mapping (e.g.
    "pushing left to right" <-> "right to left"; ``protocol.SSV2_FLIP_LABELS``).

    Build it from a model's cfg with ``tada_zoo.data.protocol_from_cfg(...).dataset(...)``.

    Missing files are reported at construction (``check_files``). A video that fails to
    decode in training is skipped with a warning, counted in ``num_corrupt`` (per process)
    and replaced by another random sample (up to ``max_retries`` times; the item's
    ``skipped`` says how many were skipped for it, so a training loop can sum it over
    DataLoader workers); in evaluation it
    raises VideoDecodeError, since silently dropping test samples would change the score.
    """

    def __init__(self, data_root, list_file, num_frames: int, sampling: str = "interval",
                 frame_interval: int = 8, train: bool = True, num_clips: int = 1,
                 transform: Optional[Callable] = None, max_retries: int = 10, check_files: bool = True,
                 target_fps: Optional[float] = 30.0, backend: str = "pyav",
                 flip_labels: Optional[Mapping[int, int]] = None):
        if sampling not in ("interval", "segment"):
            raise ValueError(f"sampling must be 'interval' or 'segment', got {sampling!r}")
        if num_frames < 1 or frame_interval <= 0 or num_clips < 1:
            raise ValueError(f"num_frames, frame_interval and num_clips must be positive, got "
                             f"{num_frames}, {frame_interval}, {num_clips}")
        if target_fps is not None and not target_fps > 0:
            raise ValueError(f"target_fps must be positive or None, got {target_fps}")
        self.data_root = os.fspath(data_root)
        self.samples = read_annotations(list_file)
        self.num_frames = num_frames
        self.sampling = sampling
        self.frame_interval = frame_interval
        self.train = train
        self.num_clips = 1 if train else num_clips
        self.transform = transform
        self.max_retries = max_retries
        self.target_fps = target_fps
        self.backend = backend
        self.flip_labels = dict(flip_labels) if flip_labels else None
        self.num_corrupt = 0
        self.corrupt_files: List[str] = []
        if check_files:
            missing = [p for p, _ in self.samples if not os.path.isfile(os.path.join(self.data_root, p))]
            if missing:
                first = "\n  ".join(missing[:5])
                raise FileNotFoundError(
                    f"{len(missing)} of {len(self.samples)} videos listed in {list_file} are missing under "
                    f"{self.data_root}; first ones:\n  {first}\n(fix --data-root or the list, or pass "
                    "check_files=False to skip the check)")

    @property
    def num_labels(self) -> int:
        """1 for single-label lists, the number of heads for multi-label lists."""
        label = self.samples[0][1]
        return len(label) if isinstance(label, tuple) else 1

    def __len__(self) -> int:
        return len(self.samples) * self.num_clips

    def indices(self, num_video_frames: int, clip_index: Optional[int], fps: Optional[float] = None) -> np.ndarray:
        """Frame indices of one clip (``clip_index=None``: a random training clip)."""
        if self.sampling == "segment":
            return segment_indices(num_video_frames, self.num_frames, random=clip_index is None,
                                   clip_index=clip_index or 0, num_clips=self.num_clips)
        return interval_indices(num_video_frames, self.num_frames, self.frame_interval, clip_index=clip_index,
                                num_clips=self.num_clips, video_fps=fps, target_fps=self.target_fps)

    def load_clip(self, sample_index: int, clip_index: Optional[int]):
        path = os.path.join(self.data_root, self.samples[sample_index][0])
        with open_video(path, backend=self.backend) as reader:
            frames = reader.frames_at(self.indices(len(reader), clip_index, reader.fps))
        return self.transform(frames) if self.transform is not None else torch.from_numpy(frames)

    def __getitem__(self, i: int) -> dict:
        sample_index, clip_index = divmod(i, self.num_clips)
        clip = None if self.train else clip_index
        for attempt in range(self.max_retries + 1):
            try:
                video = self.load_clip(sample_index, clip)
                break
            except (VideoDecodeError, FileNotFoundError) as e:
                if not self.train:
                    raise
                self.num_corrupt += 1
                self.corrupt_files.append(self.samples[sample_index][0])
                warnings.warn(f"skipping unreadable video ({e}); {self.num_corrupt} skipped so far "
                              "in this process", RuntimeWarning, stacklevel=2)
                sample_index = random.randrange(len(self.samples))
        else:
            raise VideoDecodeError(self.samples[sample_index][0],
                                   f"{self.max_retries + 1} videos in a row failed to decode; is the dataset intact?")
        label = self.samples[sample_index][1]
        if self.train and self.flip_labels is not None and random.random() < 0.5:
            video = video.flip(-1 if self.transform is not None else -2)  # W of (C, T, H, W) or (T, H, W, C)
            label = self.flip_labels.get(label, label)
        if isinstance(label, tuple):
            label = torch.tensor(label, dtype=torch.long)
        return dict(video=video, label=label, index=sample_index, clip_index=clip_index, skipped=attempt)
