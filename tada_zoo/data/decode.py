"""Frame-exact video decoding behind a small reader interface (PyAV by default).

A reader answers three questions: how many frames (``len``), at what rate (``fps``) and
what do frames ``i, j, ...`` look like (``frames_at`` -> uint8 ``(T, H, W, C)``).
Frame ``i`` is the ``i``-th frame in presentation order, whatever the codec's B-frames
or the container's timestamps do. ``timestamps(indices)`` says when frames are shown
(seconds from frame 0; true times on variable-frame-rate files) and ``frame_end_time(i)``
when frame ``i`` stops being shown: where the next frame starts, and for the last frame
the end of the stream (a last frame held for seconds ends seconds later).

The PyAV reader demuxes the file once (no decoding) to list every packet's timestamp
and keyframe flag. ``frames_at`` then seeks to the keyframe before the first wanted frame
and decodes forward, seeking again only when the next wanted frame lies past another
keyframe; per-frame seeking re-decodes a whole GOP for every frame (see
benchmarks/bench_data.py for the ratio). Timestamps that cannot order the frames
(missing, duplicated, or restarting as in ``cat a.ts b.ts``) make it count decoded
frames from the start instead: slower, still exact.

A file is truncated when frames its container announces cannot be read: fewer packets
than the header's frame count, or, for containers without one (WebM/MKV), a stream that
ends before the announced duration. The stream ends where its last frame's display ends
(pts plus duration), not at the last pts, so a held last frame is no truncation.

Frames come out as players show them: a display matrix (the rotation phones write, also
mirroring) is applied, as FFmpeg's ``-autorotate`` does; ``autorotate=False`` gives the
frames as stored, and ``reader.rotation`` says the angle either way. The matrix is read
from the decoded frames, where recent FFmpeg builds (those of PyAV 18 do) attach the
container's; with a build that does not, frames come as stored and ``rotation`` is 0.

Still images (PNG, JPEG, BMP, TIFF, WebP, a one-frame GIF or MJPEG...) are refused, also
when renamed ``.mp4``: a dataset of videos that silently contains images trains on
frozen clips. ``allow_images=True`` reads them as one-frame videos.
"""
import bisect
import functools
import io
import math
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["VideoDecodeError", "BaseVideoReader", "VideoReader", "PyAVReader", "open_video", "register_backend",
           "default_backend", "set_default_backend", "check_backend", "read_windows"]


class VideoDecodeError(Exception):
    """The file cannot be decoded: unreadable, truncated, empty, without a video stream, or a still image."""

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

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        """float64 seconds at which frames ``indices`` are shown, from frame 0. This default assumes a
        constant frame rate (``i / fps``); readers that know the real times override it."""
        return np.asarray(self._check_indices(indices), dtype=np.float64) / self.fps

    def frame_end_time(self, i: int) -> float:
        """Seconds (from frame 0) at which frame ``i`` stops being shown: the next frame's time, and for
        the last frame ``1 / fps`` after its own unless the reader knows the stream's end."""
        i = self._check_indices([i])[0]
        if i + 1 < len(self):
            return float(self.timestamps([i + 1])[0])
        return float(self.timestamps([i])[0]) + 1 / self.fps

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
    """PyAV (FFmpeg) reader. ``num_threads``: decoder and RGB-conversion threads (0 = FFmpeg's
    choice); 1 suits DataLoader workers, which already decode in parallel. ``allow_images``: read
    still images as one-frame videos instead of refusing them. ``autorotate``: apply the display matrix.
    ``data``: the file's bytes, already in memory (a WebDataset shard's sample); ``path`` then only names
    it in messages. FFmpeg reads them as it reads the file, so frames are identical."""

    def __init__(self, path, num_threads: int = 1, *, allow_images: bool = False, autorotate: bool = True,
                 data: Optional[bytes] = None):
        import av  # imported here so the package imports without PyAV

        self.path = str(path)
        self._av = av
        self._autorotate = autorotate
        self._rotation: Optional[int] = None  # known once a frame is decoded
        try:
            self._container = av.open(self.path if data is None else io.BytesIO(data))
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
            self._stream.thread_count = num_threads  # PyAV's own default is 0 (auto), not one thread
            # the RGB conversion too: PyAV >= 17 converts with all cores unless told (slower in a worker)
            self._rgb_kwargs = dict(threads=num_threads) if _reformat_takes_threads() else {}
            self._build_index()
            if not allow_images:
                self._refuse_still_image()
        except BaseException:
            self._container.close()
            raise

    def _build_index(self) -> None:
        """One demux pass: presentation-ordered pts of every frame and where keyframes are."""
        stream = self._stream
        pts, key_pts = [], []
        num_packets = 0
        end = None  # largest pts + duration: where the stream stops being shown
        last_dts = None
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                num_packets += 1
                if packet.dts is not None and last_dts is not None and packet.dts < last_dts:
                    # decoding time going back: timestamps restart (``cat a.ts b.ts``) and sorting by pts
                    # would interleave the parts; index by decoding order
                    pts = None
                    break
                last_dts = packet.dts if packet.dts is not None else last_dts
                if packet.is_discard:
                    continue  # cut by an edit list (e.g. stream-copy trimming): never shown
                if packet.pts is None:
                    pts = None  # no timestamps (some AVI): index frames by decoding order
                    break
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
                if packet.duration:
                    end = max(end if end is not None else packet.pts, packet.pts + packet.duration)
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
            if pts:  # seconds from frame 0 to the end of the last frame; no packet duration: one frame
                tb = stream.time_base
                self._end_time = (float((end - pts[0]) * tb) if end is not None and end > pts[-1]
                                  else float((pts[-1] - pts[0]) * tb) + 1 / self.fps)
        readable = num_packets if pts is not None else self._num_frames
        if stream.frames and readable < stream.frames:
            raise VideoDecodeError(
                self.path, f"the header promises {stream.frames} frames but only {readable} "
                "can be read; the file is truncated")
        if self._num_frames == 0:
            raise VideoDecodeError(self.path, "the video stream has no frames")
        self._check_duration()

    def _check_duration(self) -> None:
        """WebM/MKV headers carry no frame count, only a duration: frames are missing if the readable
        stream ends (last frame's pts + duration, so a held last frame counts) well before it."""
        if self._stream.frames or self._pts is None:
            return  # a frame count was checked instead; without timestamps nothing to compare
        expected = _stream_duration(self._stream, self._container)
        if expected is None:
            return
        start = float(self._pts[0] * self._stream.time_base)
        covered = start + self._end_time - min(start, 0.0)  # durations are announced from 0
        if covered < expected - 1.5 / self.fps:
            raise VideoDecodeError(
                self.path, f"the header promises {expected:.3f}s of video but the readable frames "
                f"({self._num_frames}) end at {covered:.3f}s; the file is truncated")

    def _refuse_still_image(self) -> None:
        """An image (renamed or not) is no video: image demuxers, or an image codec with one frame."""
        formats = self._container.format.name.split(",")
        codec = self._stream.codec_context.name
        if any(f in ("image2", "image2pipe") or f.endswith("_pipe") for f in formats) or (
                codec in _IMAGE_CODECS and self._num_frames == 1):
            raise VideoDecodeError(
                self.path, f"it is a still image ({codec} in {formats[0]}), not a video; "
                "pass allow_images=True to read it as a one-frame video")

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

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        """Seconds from frame 0, from the container's timestamps (true times on variable-frame-rate files);
        ``i / fps`` when frames are indexed by decoding order (no usable timestamps)."""
        idx = self._check_indices(indices)
        if self._pts is None:
            return np.asarray(idx, dtype=np.float64) / self.fps
        pts0, tb = self._pts[0], self._stream.time_base
        return np.array([float((self._pts[i] - pts0) * tb) for i in idx], dtype=np.float64)

    def frame_end_time(self, i: int) -> float:
        """As the base class, but the last frame ends where the stream does (its pts + duration)."""
        i = self._check_indices([i])[0]
        if self._pts is not None and i == self._num_frames - 1:
            return self._end_time  # the stream's end: a held last frame lasts as long as it is held
        return super().frame_end_time(i)

    @property
    def rotation(self) -> int:
        """Degrees the display matrix turns the frames counter-clockwise (FFmpeg's reading of it, as
        PyAV's ``VideoFrame.rotation``; phones' portrait videos say -90), 0 without one. Decodes the
        first frame if no frame has been decoded yet."""
        if self._rotation is None:
            frames = self._decode_from(None)
            try:
                self._rotation = _rotation(_display_matrix(next(iter(frames))))
            except StopIteration:
                self._rotation = 0
            finally:
                frames.close()
        return self._rotation

    def _to_rgb(self, frame) -> np.ndarray:
        img = frame.to_ndarray(format="rgb24", **self._rgb_kwargs)
        if self._autorotate or self._rotation is None:
            matrix = _display_matrix(frame)  # per frame: H.264/HEVC can also signal it per frame (SEI)
            if self._rotation is None:
                self._rotation = _rotation(matrix)
            if self._autorotate and matrix is not None:
                img = _orient(img, matrix)
        return img

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
        got = _Output(self.path, idx)
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
        return got.array

    def _collect(self, frames, wanted: List[int], got: "_Output", by_pts: bool, start: int = 0) -> int:
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
                got.put(i, self._to_rgb(frame))
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


@functools.lru_cache(maxsize=None)
def _reformat_takes_threads() -> bool:
    """Whether this PyAV's ``reformat`` / ``to_ndarray`` has the ``threads`` option (PyAV >= 17)."""
    import av

    try:
        av.VideoFrame(16, 16, "yuv420p").reformat(format="rgb24", threads=1)
    except TypeError:
        return False
    return True


class _Output:
    """The ``frames_at`` result, filled as frames are decoded: each converted frame is copied to its
    place at once and dropped, so the converter reuses one warm buffer instead of keeping every
    frame alive for a final ``np.stack`` (a second copy into fresh, page-faulting memory)."""

    def __init__(self, path: str, idx: List[int]):
        self.path, self.count, self.array = path, len(idx), None
        self.slots: Dict[int, List[int]] = {}
        for pos, i in enumerate(idx):
            self.slots.setdefault(i, []).append(pos)

    def put(self, i: int, img: np.ndarray) -> None:
        if self.array is None:
            self.array = np.empty((self.count, *img.shape), img.dtype)
        elif img.shape != self.array.shape[1:]:
            raise VideoDecodeError(self.path, f"frame {i} is {img.shape[1]}x{img.shape[0]} but earlier frames "
                                              f"are {self.array.shape[2]}x{self.array.shape[1]}: the frame size "
                                              "changes mid-stream")
        for pos in self.slots[i]:
            self.array[pos] = img


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


# still-image codecs: a single frame of one of these is a picture (several: an animation, e.g. GIF)
_IMAGE_CODECS = {"png", "apng", "mjpeg", "jpeg2000", "jpegls", "jpegxl", "ljpeg", "bmp", "tiff", "webp", "gif",
                 "qoi", "targa", "pcx", "sgi", "ppm", "pgm", "pbm", "pam", "exr", "dpx", "hdr", "psd", "xbm",
                 "xpm", "xwd", "sunrast", "pictor", "dds", "svg", "photocd", "vbn"}


def _display_matrix(frame) -> Optional[np.ndarray]:
    """The frame's 3x3 display matrix (FFmpeg layout, 16.16 fixed point), None if it has none."""
    try:
        side_data = list(frame.side_data)
    except ValueError:  # PyAV cannot name a side data type (e.g. TIFF's EXIF): read the rotation alone
        deg = getattr(frame, "rotation", 0)
        if not deg:
            return None
        cos, sin = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        return np.round(np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]) * 65536).astype(np.int32)
    for data in side_data:
        if getattr(data.type, "name", str(data.type)).endswith("DISPLAYMATRIX"):
            m = np.frombuffer(bytes(data), dtype=np.int32)
            return m.reshape(3, 3) if m.size == 9 else None
    return None


def _rotation(matrix: Optional[np.ndarray]) -> int:
    """av_display_rotation_get, rounded: counter-clockwise degrees in [-180, 180]; 0 without a matrix."""
    if matrix is None:
        return 0
    a, b, c, d = (float(v) for v in (matrix[0, 0], matrix[0, 1], matrix[1, 0], matrix[1, 1]))
    sx, sy = math.hypot(a, c), math.hypot(b, d)
    if sx == 0 or sy == 0:
        return 0
    return int(round(-math.degrees(math.atan2(b / sy, a / sx))))


def _orient(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a display matrix's right-angle rotation and mirroring to an (H, W, C) image.

    The matrix maps a stored pixel (x, y), y down, to the shown one (a x + c y, b x + d y); quarter
    turns and flips make (a, b, c, d) a signed permutation. Other angles are left alone, as most
    players do without a rotate filter."""
    a, b, c, d = (int(np.sign(v)) for v in (matrix[0, 0], matrix[0, 1], matrix[1, 0], matrix[1, 1]))
    if a and d and not b and not c:
        sx, sy = a, d
    elif b and c and not a and not d:
        img, sx, sy = img.transpose(1, 0, 2), c, b  # shown x comes from stored y and the other way round
    else:
        return img
    if sx < 0:
        img = img[:, ::-1]
    if sy < 0:
        img = img[::-1]
    return img


VideoReader = PyAVReader  # the default backend

_BACKENDS: Dict[str, Callable[..., BaseVideoReader]] = {"pyav": PyAVReader}  # + "torchcodec" (data/__init__)
DECODER_ENV = "TADA_ZOO_DECODER"  # the process default (set by ``--decoder``), inherited by worker processes


def register_backend(name: str, factory: Callable[..., BaseVideoReader]) -> None:
    """Add a reader backend (e.g. decord) usable as ``open_video(path, backend=name)``."""
    _BACKENDS[name] = factory


def default_backend() -> str:
    """``$TADA_ZOO_DECODER`` if set, else "pyav" (torchcodec gives the same frames but is not faster on
    the clips the models read: docs/performance.md)."""
    return os.environ.get(DECODER_ENV) or "pyav"


def set_default_backend(name: str) -> None:
    """Make ``name`` every later ``open_video``'s backend, in this process and the ones it starts
    (DataLoader workers, spawned or forked); fails now if it cannot be used."""
    check_backend(name)
    os.environ[DECODER_ENV] = name


def check_backend(name: str) -> None:
    """Raise ValueError (unknown name) or ImportError (one line: how to install it) if ``name`` cannot read:
    a backend's factory may say why in ``unavailable()`` (None: it can)."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown video backend {name!r}; available: {sorted(_BACKENDS)}")
    missing = getattr(_BACKENDS[name], "unavailable", lambda: None)()
    if missing:
        raise ImportError(missing)


def open_video(path, backend: Optional[str] = None, **kwargs) -> BaseVideoReader:
    """Open ``path`` with a reader backend (None: ``default_backend()``); raises VideoDecodeError if it
    cannot be read."""
    backend = backend or default_backend()
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
