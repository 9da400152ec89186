"""Annotation lists and the video dataset.

An annotation list is plain text, one sample per line: ``relative/path label`` or, for
multi-head datasets (EPIC-KITCHENS verb + noun), ``relative/path label1 label2 ...``.
Paths may contain spaces: the labels are the trailing integer fields.
"""
import codecs
import contextlib
import json
import numbers
import os
import random
import re
import signal
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from tada_zoo._files import write_text

from .decode import VideoDecodeError, default_backend, open_video
from .sampling import interval_indices, segment_indices

__all__ = ["read_annotations", "write_annotations", "VideoDataset", "VideoViews", "ClipBatches", "crashed_decodes",
           "worker_crashes_at_next"]


Label = Union[int, Tuple[int, ...]]
# a path (may contain spaces), then one or more integer labels
_LINE = re.compile(r"^(\S.*?)((?:\s+[+-]?\d+)+)$")
_LABELS = re.compile(r"^((?:\s+[+-]?\d+)+)$")  # what follows a quoted path


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 LE starts like UTF-16 LE


def _read_text(path, what: str = "annotation list") -> str:
    """A text file's content, newlines as ``\n``: UTF-8, or whatever its BOM says (Windows
    tools write UTF-8 or UTF-16 with one), so a BOM never ends up in the first path."""
    if os.path.isdir(path):
        raise ValueError(f"{what} {os.fspath(path)} is a directory; pass the file itself")
    with open(path, "rb") as f:
        data = f.read()
    codec = next((c for bom, c in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as e:
        lineno = data[:e.start].decode(codec, errors="replace").count("\n") + 1
        raise ValueError(f"{os.fspath(path)}:{lineno}: byte {data[e.start:e.start + 1]!r} is not valid "
                         f"{codec.upper().replace('-SIG', '')}; the {what} must be UTF-8 text (re-save it "
                         "as UTF-8)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ---- a decoder that kills its process (a SIGSEGV in FFmpeg) is still named ----------------------------
# While a process decodes a video, ``<marker_dir>/<pid>`` names it; a Python error removes the file, a
# crash leaves it, so the video of a process that is gone is the one that killed it.

def _alive(pid: int) -> bool:
    """The process runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def crashed_decodes(marker_dir, remove: bool = True) -> List[str]:
    """The videos whose decoding killed their process (markers of processes that are gone)."""
    found = []
    if marker_dir is None or not os.path.isdir(marker_dir):
        return found
    for entry in os.scandir(marker_dir):
        if entry.name.isdigit() and not _alive(int(entry.name)):
            with open(entry.path, encoding="utf-8") as f:
                video = f.read()
            if remove:
                os.unlink(entry.path)
            found += [video] if video else []
    return found


@contextlib.contextmanager
def worker_crashes_at_next():
    """Within: a loader worker's death is raised by the loader's ``next()`` (its liveness check, every few
    seconds), not by torch's SIGCHLD handler, which raises it wherever the main process is, mid
    training step, where no caller can take it. Both are restored after (main thread only)."""
    from torch.utils.data._utils import signal_handling

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal_handling,
                                                                                 "_SIGCHLD_handler_set"):
        yield
        return
    was_set, previous = signal_handling._SIGCHLD_handler_set, signal.getsignal(signal.SIGCHLD)
    signal_handling._SIGCHLD_handler_set = True  # loaders made within install no handler
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)
        signal_handling._SIGCHLD_handler_set = was_set


def quote_path(path: str) -> str:
    """A path as a list writes it: as is when it reads back as itself, else as a JSON string
    (``"#clip.mp4"``): a leading ``#`` (a comment) or ``"``, surrounding spaces, line breaks or other
    control characters, bytes that are not UTF-8, and a last word of digits (read as a label)."""
    plain = (path and path == path.strip() and path.isprintable() and not path.startswith(("#", '"'))
             and not re.search(r"\s[+-]?\d+$", path))
    if plain:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # a file name's undecodable bytes (surrogate escapes)
            plain = False
    return path if plain else json.dumps(path)


def _parse_line(line: str, list_file, lineno: int) -> Tuple[str, List[int]]:
    if line.startswith('"'):
        try:
            path, end = json.JSONDecoder().raw_decode(line)
        except ValueError:
            path, end = None, 0
        m = _LABELS.match(line[end:]) if isinstance(path, str) else None
    else:
        m = _LINE.match(line)
        path = m.group(1) if m else None
    if m is None:
        raise ValueError(f"{list_file}:{lineno}: expected 'relative/path label [label ...]' with integer labels "
                         f"(a path with unusual characters in double quotes, JSON-escaped), got {line!r}")
    return path, [int(v) for v in m.group(m.lastindex).split()]


def read_annotations(list_file, return_lines: bool = False, duplicates: str = "error"
                     ) -> Union[List[Tuple[str, Label]], Tuple[List[Tuple[str, Label]], List[int]]]:
    """``[(rel_path, label)]``; label is an int, or a tuple of ints on multi-label lines.

    ``return_lines=True``: ``(samples, line_numbers)``, the 1-based line of each sample in
    the file (blank and ``#`` lines count), for messages that point into the list.
    A video listed twice with other labels is an error naming both lines; listed twice with the same
    label it is an error too (``duplicates="error"``: it would be trained on twice as often), or,
    with ``duplicates="once"`` (evaluation), kept once with a warning (it would be scored twice).
    """
    samples, line_numbers, first = [], [], {}
    num_labels = None
    for lineno, line in enumerate(_read_text(list_file).split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path, labels = _parse_line(line, list_file, lineno)
        if num_labels is None:
            num_labels = len(labels)
        elif len(labels) != num_labels:
            raise ValueError(f"{list_file}:{lineno}: {len(labels)} labels, but earlier lines have "
                             f"{num_labels}: {line!r}")
        label = labels[0] if len(labels) == 1 else tuple(labels)
        if path in first:
            seen_line, seen_label = first[path]
            if seen_label != label:
                raise ValueError(f"{list_file}:{lineno}: {path} has label {label} here and {seen_label} on line "
                                 f"{seen_line}; a video has one label: fix or delete one of the lines")
            if duplicates != "once":
                raise ValueError(f"{list_file}:{lineno}: {path} is listed again (first on line {seen_line}); "
                                 "delete one of the lines (a repeated video is trained on twice as often)")
            warnings.warn(f"{list_file}:{lineno}: {path} is listed again (first on line {seen_line}); "
                          "scored once", RuntimeWarning, stacklevel=2)
            continue
        first[path] = (lineno, label)
        samples.append((path, label))
        line_numbers.append(lineno)
    if not samples:
        raise ValueError(f"annotation list {list_file} has no samples")
    return (samples, line_numbers) if return_lines else samples


def write_annotations(samples: Sequence[Tuple[str, Label]], list_file) -> None:
    """Write ``[(rel_path, label)]`` atomically (temp file + rename); paths through ``quote_path``,
    so every file name a file system allows reads back as itself."""
    lines = []
    for path, label in samples:
        labels = label if isinstance(label, (tuple, list)) else (label,)
        lines.append(" ".join([quote_path(path), *map(str, labels)]) + "\n")
    write_text(list_file, "".join(lines))


@contextlib.contextmanager
def _seeded(seed: int):
    """``random``, ``numpy`` and ``torch`` seeded with ``seed`` inside, the caller's states restored after."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def clip_indices(protocol, num_video_frames: int, clip_index: Optional[int], num_clips: int,
                 fps: Optional[float] = None) -> np.ndarray:
    """Frame indices of clip ``clip_index`` of ``num_clips`` (None: a random training clip) in a video of
    ``num_video_frames`` at ``fps``, by ``protocol``'s sampling (anything with its ``sampling``,
    ``num_frames``, ``frame_interval`` and ``target_fps``: a ``DataProtocol`` or a ``VideoDataset``)."""
    if protocol.sampling == "segment":
        return segment_indices(num_video_frames, protocol.num_frames, random=clip_index is None,
                               clip_index=clip_index or 0, num_clips=num_clips)
    return interval_indices(num_video_frames, protocol.num_frames, protocol.frame_interval, clip_index=clip_index,
                            num_clips=num_clips, video_fps=fps, target_fps=protocol.target_fps)


class VideoDataset(Dataset):
    """Clips from the videos of an annotation list.

    Items are ``dict(video, label, index, clip_index, skipped, skipped_files)``: ``video`` is what ``transform``
    returns (float ``(C, T, H, W)``, or ``(crops, C, T, H, W)`` from EvalTransform; the raw
    uint8 ``(T, H, W, C)`` frames as a tensor without a transform); ``label`` an int or a
    LongTensor for multi-label lines; ``index`` the sample's line in the list.

    ``train=True``: one random clip per sample (``interval``: random start; ``segment``:
    random frame per segment). ``train=False``: ``num_clips`` deterministic clips per sample,
    ``len = samples * num_clips``, item ``i`` is clip ``i % num_clips`` of sample
    ``i // num_clips``. Interval windows are measured at ``target_fps`` (the original's
    ``DATA.TARGET_FPS: 30``; ``None`` counts frames of the file whatever its rate).
    ``per_video()`` gives the same views one item per video, its clips decoded together (what
    ``evaluate_model`` reads: each per-clip item would open, seek and decode the video again).

    ``flip_labels`` (training): the original's ``SSV2_FLIP``: after the transform, with
    probability 0.5 the clip is mirrored and its label swapped through the mapping (e.g.
    "pushing left to right" <-> "right to left"; ``protocol.SSV2_FLIP_LABELS``).

    Build it from a model's cfg with ``tada_zoo.data.protocol_from_cfg(...).dataset(...)``.

    ``num_classes`` (an int, or one per head for multi-label lists; ``None``: no check):
    every label is checked at construction, errors point at the list's lines.

    Missing files are reported at construction (``check_files``); ``probe()`` opens every
    video to find unreadable ones before a run starts. A video that fails to
    decode in training is skipped with a warning, counted in ``num_corrupt`` (per process)
    and replaced by another random sample (up to ``max_retries`` times; the item's
    ``skipped`` says how many were skipped for it and ``skipped_files`` which ones (newline-separated),
    so a training loop can count the distinct files over
    DataLoader workers); in evaluation it
    raises VideoDecodeError, since silently dropping test samples would change the score.
    ``marker_dir`` (set by the trainer and evaluator): where each decoding process names its video, so
    a decoder that kills its process is named (``crashed_decodes``); ``crashed`` holds such videos.

    ``samples`` (``[(rel_path, label)]``) instead of reading ``list_file``: WebDataset shards
    (``data.shards``), whose reader hands each video's bytes to ``load_clip`` / ``load_views``
    (``data=``), so clips come from the same sampling and transforms as files.
    """

    def __init__(self, data_root, list_file, num_frames: int, sampling: str = "interval",
                 frame_interval: int = 8, train: bool = True, num_clips: int = 1,
                 transform: Optional[Callable] = None, max_retries: int = 10, check_files: bool = True,
                 target_fps: Optional[float] = 30.0, backend: Optional[str] = None,
                 flip_labels: Optional[Mapping[int, int]] = None,
                 num_classes: Optional[Union[int, Sequence[int]]] = None,
                 samples: Optional[Sequence[Tuple[str, Label]]] = None):
        if sampling not in ("interval", "segment"):
            raise ValueError(f"sampling must be 'interval' or 'segment', got {sampling!r}")
        if num_frames < 1 or frame_interval <= 0 or num_clips < 1:
            raise ValueError(f"num_frames, frame_interval and num_clips must be positive, got "
                             f"{num_frames}, {frame_interval}, {num_clips}")
        if target_fps is not None and not target_fps > 0:
            raise ValueError(f"target_fps must be positive or None, got {target_fps}")
        self.data_root = os.fspath(data_root)
        self.list_file = os.fspath(list_file)
        if samples is None:
            self.samples, self.line_numbers = read_annotations(list_file, return_lines=True,
                                                               duplicates="error" if train else "once")
        else:  # already read (a shard index, ``list_file`` names it): entry i is "line" i + 1
            self.samples, self.line_numbers = list(samples), list(range(1, len(samples) + 1))
        self.num_frames = num_frames
        self.sampling = sampling
        self.frame_interval = frame_interval
        self.train = train
        self.num_clips = 1 if train else num_clips
        self.transform = transform
        self.max_retries = max_retries
        self.target_fps = target_fps
        self.backend = backend or default_backend()  # fixed now: workers read with the same decoder
        self.flip_labels = dict(flip_labels) if flip_labels else None
        self.num_corrupt = 0
        self.corrupt_files: List[str] = []
        self.marker_dir: Optional[str] = None  # where decoding processes name their video (crashed_decodes)
        self.crashed = set()  # videos whose decoding crashed a process: unreadable
        if num_classes is not None:
            self._check_labels(num_classes)
        if check_files:
            self._check_files()

    def _where(self, sample_index: int) -> str:
        return f"{self.list_file}:{self.line_numbers[sample_index]}"

    def _check_labels(self, num_classes: Union[int, Sequence[int]]) -> None:
        """Every label against ``num_classes`` now: an out-of-range label would otherwise fail
        (or, on GPU, corrupt the loss) only when its batch comes up, hours into training."""
        try:
            heads = (num_classes,) if isinstance(num_classes, numbers.Integral) else tuple(num_classes)
        except TypeError:
            heads = ()
        if not heads or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0
                                for n in heads):
            raise ValueError(f"num_classes must be a positive int or a tuple of them (one per head), "
                             f"got {num_classes!r}")
        if self.num_labels != len(heads):
            per_line = f"{self.num_labels} label{'s' * (self.num_labels > 1)} per line"
            raise ValueError(f"{self._where(0)}: {per_line}, but num_classes={num_classes!r} has "
                             f"{len(heads)} head{'s' * (len(heads) > 1)}; is this the list for this model "
                             "(EPIC-KITCHENS lists have 'path verb noun' lines: --num-classes N1,N2)?")
        bad = []
        for i, (_, label) in enumerate(self.samples):
            labels = label if isinstance(label, tuple) else (label,)
            for head, (v, n) in enumerate(zip(labels, heads)):
                if not 0 <= v < n:
                    bad.append(f"{self._where(i)}: label {v}"
                               + (f" of head {head + 1} (allowed 0..{n - 1})" if len(heads) > 1 else ""))
                    break
        if bad:
            allowed = ("0.." + str(heads[0] - 1) if len(heads) == 1
                       else " / ".join(f"0..{n - 1}" for n in heads) + " per head")
            more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise ValueError(
                f"{len(bad)} of {len(self.samples)} lines of {self.list_file} have labels outside {allowed} "
                f"(num_classes={num_classes!r}); first ones:\n  " + "\n  ".join(bad[:5]) + more
                + "\n(is the list for another dataset or class order, or --num-classes wrong?)")

    def _check_files(self) -> None:
        """Missing videos now rather than mid-epoch, each said for what it is."""
        bad = []
        for i, (p, _) in enumerate(self.samples):
            path = os.path.join(self.data_root, p)
            if os.path.isfile(path):
                continue
            if os.path.isdir(path):
                why = "is a directory"
            elif os.path.islink(path):
                why = "is a broken or looping symlink"
            elif os.path.lexists(path):
                why = "is not a regular file"
            else:
                why = "missing"
            bad.append(f"{self._where(i)}: {p} ({why})")
        if bad:
            more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise FileNotFoundError(
                f"{len(bad)} of {len(self.samples)} videos listed in {self.list_file} are missing or not files "
                f"under {self.data_root}; first ones:\n  " + "\n  ".join(bad[:5]) + more
                + "\n(fix --data-root or the paths in the list, or delete those lines: `tada-zoo make-list ... "
                "--data-root DIR --drop-missing` writes a list without them; from Python, check_files=False "
                "skips this check)")

    def probe(self, workers: int = 0) -> Dict[str, str]:
        """``{rel_path: reason}`` for every listed video that cannot be opened (header and frame
        index read); ``{}`` when all open. Run before training or evaluation so a bad file shows
        up now, not after an epoch; never raises for a bad file. ``workers > 0``: that many threads."""
        paths = list(dict.fromkeys(p for p, _ in self.samples))

        def reason(rel_path: str) -> Optional[str]:
            path = os.path.join(self.data_root, rel_path)
            try:
                with open_video(path, backend=self.backend):
                    return None
            except VideoDecodeError as e:
                return e.reason
            except FileNotFoundError:
                return "missing"
            except Exception as e:  # any backend's failure on one file: collect it, go on
                return f"{type(e).__name__}: {e}"

        if workers > 0:
            with ThreadPoolExecutor(workers) as pool:
                reasons = list(pool.map(reason, paths))
        else:
            reasons = [reason(p) for p in paths]
        return {p: r for p, r in zip(paths, reasons) if r is not None}

    @property
    def num_labels(self) -> int:
        """1 for single-label lists, the number of heads for multi-label lists."""
        label = self.samples[0][1]
        return len(label) if isinstance(label, tuple) else 1

    def __len__(self) -> int:
        return len(self.samples) * self.num_clips

    def indices(self, num_video_frames: int, clip_index: Optional[int], fps: Optional[float] = None) -> np.ndarray:
        """Frame indices of one clip (``clip_index=None``: a random training clip)."""
        return clip_indices(self, num_video_frames, clip_index, self.num_clips, fps)

    @contextlib.contextmanager
    def _open(self, sample_index: int, data: Optional[bytes]):
        """The sample's reader: its file, or ``data``, its bytes from a shard."""
        kwargs = {} if data is None else dict(data=data)
        with self._reading(sample_index) as path, open_video(path, backend=self.backend, **kwargs) as reader:
            yield reader

    @contextlib.contextmanager
    def _reading(self, sample_index: int):
        """Decoding one video: refused when it crashed a process before; named in ``marker_dir`` meanwhile."""
        rel_path = self.samples[sample_index][0]
        if rel_path in self.crashed:
            raise VideoDecodeError(rel_path, "decoding it crashed a process earlier in this run")
        if self.marker_dir is None:
            yield os.path.join(self.data_root, rel_path)
            return
        marker = os.path.join(self.marker_dir, str(os.getpid()))
        with open(marker, "w", encoding="utf-8") as f:
            f.write(rel_path)
        try:
            yield os.path.join(self.data_root, rel_path)
        finally:
            os.unlink(marker)

    def load_clip(self, sample_index: int, clip_index: Optional[int], data: Optional[bytes] = None):
        with self._open(sample_index, data) as reader:
            frames = reader.frames_at(self.indices(len(reader), clip_index, reader.fps))
        return self.transform(frames) if self.transform is not None else torch.from_numpy(frames)

    def load_views(self, sample_index: int, data: Optional[bytes] = None) -> torch.Tensor:
        """All ``num_clips`` test clips of a sample stacked ``(clips, ...)``, each exactly ``load_clip``'s.

        The union of the clips' frames is decoded in one pass and the clips cut from it: per-clip
        loading opens, seeks and decodes from a keyframe once per clip (10 times for 10 clips)."""
        with self._open(sample_index, data) as reader:
            n, fps = len(reader), reader.fps
            clips = [self.indices(n, c, fps) for c in range(self.num_clips)]
            union = np.unique(np.concatenate(clips))
            frames = reader.frames_at(union.tolist())
        views = [frames[np.searchsorted(union, idx)] for idx in clips]
        if self.transform is None:
            return torch.from_numpy(np.stack(views))
        return torch.stack([self.transform(v) for v in views])

    def per_video(self) -> "VideoViews":
        """The test views as one item per video (see ``VideoViews``); ``train=False`` only."""
        if self.train:
            raise ValueError("per_video() is for the test views; this dataset has train=True")
        return VideoViews(self)

    def seed_augmentation(self, seed: Optional[int], epoch: int = 0) -> None:
        """Draw each training clip's randomness (start frame, crop, flip, RandAugment, ...) from
        ``(seed, epoch, item)`` rather than from the process's random stream, so a clip does not depend
        on which process or loader worker draws it, or in which order: one process and N processes see
        the same clips (the trainer calls this every epoch). ``None``: the process's stream."""
        self.aug_seed = None if seed is None else (int(seed), int(epoch))

    def __getitem__(self, i: int) -> dict:
        if self.train and getattr(self, "aug_seed", None) is not None:
            seed, epoch = self.aug_seed
            with _seeded(((seed * 1_000_003 + epoch) * 1_000_003 + i) % 2 ** 63):
                return self._item(i)
        return self._item(i)

    def _item(self, i: int) -> dict:
        sample_index, clip_index = divmod(i, self.num_clips)
        clip = None if self.train else clip_index
        skipped = []
        for attempt in range(self.max_retries + 1):
            try:
                video = self.load_clip(sample_index, clip)
                break
            except (VideoDecodeError, FileNotFoundError) as e:
                if not self.train:
                    raise
                self.num_corrupt += 1
                self.corrupt_files.append(self.samples[sample_index][0])
                skipped.append(self.samples[sample_index][0])
                warnings.warn(f"skipping unreadable video ({e}); {self.num_corrupt} skipped so far "
                              "in this process", RuntimeWarning, stacklevel=2)
                sample_index = random.randrange(len(self.samples))
        else:
            raise VideoDecodeError(self.samples[sample_index][0],
                                   f"{self.max_retries + 1} videos in a row failed to decode; is the dataset intact?")
        video, label = self.flip(video, self.samples[sample_index][1])
        return dict(video=video, label=label, index=sample_index, clip_index=clip_index, skipped=attempt,
                    skipped_files="\n".join(skipped))

    def flip(self, video, label: Label):
        """Training's label-swapping flip (``flip_labels``, p=0.5); multi-labels as a LongTensor."""
        if self.train and self.flip_labels is not None and random.random() < 0.5:
            video = video.flip(-1 if self.transform is not None else -2)  # W of (C, T, H, W) or (T, H, W, C)
            label = self.flip_labels.get(label, label)
        if isinstance(label, tuple):
            label = torch.tensor(label, dtype=torch.long)
        return video, label


class VideoViews(Dataset):
    """The test views of a ``VideoDataset(train=False)``, one item per video: ``dict(video, label,
    index)`` with ``video`` the ``num_clips`` clips stacked ``(clips, ...)`` (``load_views``: one
    decode per video, whichever DataLoader worker gets it). ``ClipBatches`` cuts batches of these
    items back into the per-clip batches a DataLoader over the dataset itself gives."""

    def __init__(self, dataset: VideoDataset):
        self.dataset = dataset
        self.samples = dataset.samples
        self.num_clips = dataset.num_clips

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        label = self.samples[i][1]
        if isinstance(label, tuple):
            label = torch.tensor(label, dtype=torch.long)
        return dict(video=self.dataset.load_views(i), label=label, index=i)


class ClipBatches:
    """Batches of ``batch_size`` clips from a DataLoader over ``VideoViews``: the clips of its
    batches in order, so over an unshuffled loader the batches (``video``, ``label``, ``index``,
    ``clip_index``) are exactly those of ``DataLoader(dataset, batch_size)`` over the per-clip
    items, and a model scores every view as before."""

    def __init__(self, loader, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.loader, self.batch_size = loader, batch_size
        self.num_clips = loader.dataset.num_clips

    def __len__(self) -> int:
        sampler = getattr(self.loader, "sampler", None)
        try:
            videos = len(sampler) if sampler is not None else len(self.loader.dataset)
        except TypeError:  # an IterableDataset's loader: its dataset says
            videos = len(self.loader.dataset)
        return -(-videos * self.num_clips // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        parts: List[dict] = []
        size = 0
        for batch in self.loader:
            videos, clips = batch["video"].shape[:2]
            flat = dict(video=batch["video"].flatten(0, 1),
                        label=torch.as_tensor(batch["label"]).repeat_interleave(clips, 0),
                        index=torch.as_tensor(batch["index"]).repeat_interleave(clips),
                        clip_index=torch.arange(clips).repeat(videos))
            start = 0
            while start < len(flat["video"]):
                take = min(self.batch_size - size, len(flat["video"]) - start)
                parts.append({k: v[start:start + take] for k, v in flat.items()})
                start += take
                size += take
                if size == self.batch_size:
                    yield self._join(parts)
                    parts, size = [], 0
        if parts:
            yield self._join(parts)

    @staticmethod
    def _join(parts: List[dict]) -> dict:
        if len(parts) == 1:  # a slice of one loader batch: no copy (stays pinned if the loader pins)
            return parts[0]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
