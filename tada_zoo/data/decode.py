"""Frame-exact video decoding behind a small reader interface (PyAV by default).

A reader answers three questions: how many frames (``len``), at what rate (``fps``) and
what do frames ``i, j, ...`` look like (``frames_at`` -> uint8 ``(T, H, W, C)``).
Frame ``i`` is the ``i``-th frame in presentation order, whatever the codec's B-frames
or the container's timestamps do.

The PyAV reader demuxes the file once (no decoding) to list every packet's timestamp
and keyframe flag. ``frames_at`` then seeks to the keyframe before the first wanted frame
and decodes forward, seeking again only when the next wanted frame lies past another
keyframe; per-frame seeking re-decodes a whole GOP for every frame (see
benchmarks/bench_data.py for the ratio).
"""
import bisect
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["VideoDecodeError", "BaseVideoReader", "VideoReader", "PyAVReader", "open_video", "register_backend",
           "read_windows"]


class VideoDecodeError(Exception):
    """The file cannot be decoded: unreadable, truncated, empty or without a video stream."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")


class _Overshoot(Exception):
    """A seek landed after the frame we need."""


class BaseVideoReader:
    """Interface of a video reader; ``open_video`` picks the backend."""

    path: str

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def fps(self) -> float:
        raise NotImplementedError

    def frames_at(self, indices: Sequence[int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_indices(self, indices: Sequence[int]) -> List[int]:
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        n = len(self)
        bad = [i for i in idx if i < 0 or i >= n]
        if bad:
            raise IndexError(f"frame indices {bad[:5]} out of range for {self.path} "
                             f"with {n} frames (valid: 0..{n - 1})")
        return idx


class PyAVReader(BaseVideoReader):
    """PyAV (FFmpeg) reader. ``num_threads``: decoder threads (0 = FFmpeg's choice); 1 suits
    DataLoader workers, which already decode in parallel."""

    def __init__(self, path, num_threads: int = 1):
        import av  # imported here so the package imports without PyAV

        self.path = str(path)
        self._av = av
        try:
            self._container = av.open(self.path)
        except Exception as e:  # FileNotFoundError, av.error.InvalidDataError, ...
            if isinstance(e, FileNotFoundError):
                raise
            raise VideoDecodeError(self.path, f"{type(e).__name__}: {e}") from e
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(self.path, "the file has no video stream")
            self._stream = self._container.streams.video[0]
            if num_threads != 1:
                self._stream.thread_type = "AUTO"
                self._stream.thread_count = num_threads
            self._build_index()
        except BaseException:
            self._container.close()
            raise

    def _build_index(self) -> None:
        """One demux pass: presentation-ordered pts of every frame and where keyframes are."""
        stream = self._stream
        pts, key_pts = [], []
        num_packets = 0
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                num_packets += 1
                if packet.is_discard:
                    continue  # cut by an edit list (e.g. stream-copy trimming): never shown
                if packet.pts is None:
                    pts = None  # no timestamps (some AVI): index frames by decoding order
                    break
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
        except self._av.error.FFmpegError as e:
            raise VideoDecodeError(self.path, f"demuxing failed ({e}); the file is probably truncated") from e
        if pts is not None and len(set(pts)) != len(pts):
            pts = None  # duplicate timestamps: do not trust them
        if pts is None:
            self._pts = None
            self._num_frames = self._count_by_decoding()
        else:
            pts.sort()
            self._pts = pts
            self._pts_to_index: Dict[int, int] = {p: i for i, p in enumerate(pts)}
            # presentation index of each keyframe, sorted
            self._key_index = sorted(self._pts_to_index[p] for p in key_pts) or [0]
            self._num_frames = len(pts)
        readable = num_packets if pts is not None else self._num_frames
        if stream.frames and readable < stream.frames:
            raise VideoDecodeError(
                self.path, f"the header promises {stream.frames} frames but only {readable} "
                "can be read; the file is truncated")
        if self._num_frames == 0:
            raise VideoDecodeError(self.path, "the video stream has no frames")
        self._check_duration()

    def _check_duration(self) -> None:
        """WebM/MKV headers carry no frame count; compare the readable span with the stream's duration."""
        expected = _stream_duration(self._stream, self._container)
        if expected is None or self._pts is None:
            return
        fps = self.fps
        covered = float((self._pts[-1] - self._pts[0]) * self._stream.time_base) + 1 / fps
        if covered < expected - 2.5 / fps:
            raise VideoDecodeError(
                self.path, f"the header promises {expected:.3f}s of video but only {covered:.3f}s "
                f"({self._num_frames} frames) can be read; the file is truncated")

    def _count_by_decoding(self) -> int:
        n = 0
        for _ in self._decode_from(None):
            n += 1
        return n

    def __len__(self) -> int:
        return self._num_frames

    @property
    def fps(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        if rate:
            return float(rate)
        if self._pts is not None and len(self._pts) > 1:
            span = float((self._pts[-1] - self._pts[0]) * self._stream.time_base)
            if span > 0:
                return (len(self._pts) - 1) / span
        return 30.0

    def _decode_from(self, seek_pts: Optional[int]):
        """Frames in presentation order from the keyframe at or before ``seek_pts`` (None: the start)."""
        stream = self._stream
        try:
            if seek_pts is None:
                self._container.seek(0)
            else:
                self._container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            for packet in self._container.demux(stream):
                for frame in packet.decode():
                    yield frame
        except self._av.error.FFmpegError as e:
            raise VideoDecodeError(self.path, f"decoding failed ({e}); the file is corrupt or truncated") from e

    def frames_at(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check_indices(indices)
        if not idx:
            raise ValueError("frames_at needs at least one frame index")
        wanted = sorted(set(idx))
        got: Dict[int, np.ndarray] = {}
        if self._pts is None:
            self._collect(self._decode_from(None), wanted, got, by_pts=False)
        else:
            pos = 0  # next wanted frame still to get
            while pos < len(wanted):
                k = max(bisect.bisect_right(self._key_index, wanted[pos]) - 1, 0)
                while True:
                    seek = self._pts[self._key_index[k]] if k >= 0 else None
                    try:
                        pos = self._collect(self._decode_from(seek), wanted, got, by_pts=True, start=pos)
                        break
                    except _Overshoot:
                        # the container seeked past the keyframe (inexact seeking): start earlier
                        if k < 0:
                            raise VideoDecodeError(self.path, f"frame {wanted[pos]} could not be decoded")
                        k -= 1
        return np.stack([got[i] for i in idx])

    def _collect(self, frames, wanted: List[int], got: Dict[int, np.ndarray], by_pts: bool, start: int = 0) -> int:
        """Decode forward, keep wanted frames; return the position in ``wanted`` where a re-seek pays off."""
        pos = start
        counter = -1
        first = True
        for frame in frames:
            if by_pts:
                i = self._pts_to_index.get(frame.pts)
                if i is None:
                    continue
            else:
                counter += 1
                i = counter
            if i > wanted[pos]:
                if first and by_pts:
                    raise _Overshoot
                raise VideoDecodeError(self.path, f"frame {wanted[pos]} could not be decoded")
            first = False
            if i == wanted[pos]:
                got[i] = frame.to_ndarray(format="rgb24")
                pos += 1
                if pos == len(wanted):
                    return pos
                # the next wanted frame lies beyond another keyframe: seeking is cheaper
                if by_pts:
                    k = bisect.bisect_right(self._key_index, wanted[pos]) - 1
                    if self._key_index[k] > i + 1:
                        return pos
        raise VideoDecodeError(self.path, f"the stream ended before frame {wanted[pos]} "
                                          f"(of {len(self)}); the file is truncated")

    def close(self) -> None:
        self._container.close()


def _stream_duration(stream, container) -> Optional[float]:
    """Seconds of video the header announces, from the stream itself (not the audio)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # Matroska / WebM per-track tag, "HH:MM:SS.nnnnnnnnn"
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
    if len(container.streams) == 1 and container.duration:
        return container.duration / 1e6  # AV_TIME_BASE
    return None


VideoReader = PyAVReader  # the default backend

_BACKENDS: Dict[str, Callable[..., BaseVideoReader]] = {"pyav": PyAVReader}


def register_backend(name: str, factory: Callable[..., BaseVideoReader]) -> None:
    """Add a reader backend (e.g. decord, torchcodec) usable as ``open_video(path, backend=name)``."""
    _BACKENDS[name] = factory


def open_video(path, backend: str = "pyav", **kwargs) -> BaseVideoReader:
    """Open ``path`` with a reader backend; raises VideoDecodeError if it cannot be read."""
    if backend not in _BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; available: {sorted(_BACKENDS)}")
    return _BACKENDS[backend](path, **kwargs)


def read_windows(reader: BaseVideoReader, windows: Sequence[Tuple[int, np.ndarray]],
                 max_frames: int = 128) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(start, frames)`` for sliding windows (``sampling.sliding_windows``) in order.

    Overlapping windows share frames: each frame is decoded and converted once, by fetching
    the frames of as many upcoming windows as fit in ``max_frames`` with one ``frames_at``
    call and keeping them until no later window needs them.
    """
    cache: Dict[int, np.ndarray] = {}
    windows = [(s, np.asarray(idx)) for s, idx in windows]
    for w, (start, idx) in enumerate(windows):
        want = set(idx.tolist()) - cache.keys()
        if want:
            for _, nxt in windows[w + 1:]:
                extra = set(nxt.tolist()) - cache.keys() - want
                if len(want) + len(extra) > max_frames:
                    break
                want |= extra
            order = sorted(want)
            cache.update(zip(order, reader.frames_at(order)))
        yield start, np.stack([cache[i] for i in idx.tolist()])
        if w + 1 < len(windows):
            low = int(min(i.min() for _, i in windows[w + 1:w + 2]))
            for k in [k for k in cache if k < low]:
                del cache[k]
