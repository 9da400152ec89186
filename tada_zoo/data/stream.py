"""Decoding a video front to back as a stream: a long file, or a pipe (``-``: standard input) that
cannot be seeked, frame by frame, keeping nothing. ``data.decode`` reads frames by index from a
file it indexes first; this reads what arrives, as a live source would be read."""
import sys
from typing import BinaryIO, Iterator, Optional, Tuple, Union

import numpy as np

from .decode import VideoDecodeError, _display_matrix, _orient

__all__ = ["VideoStream"]


class VideoStream:
    """``for time, rgb in VideoStream(path_or_file)``: ``(seconds since the first frame, (H, W, 3) uint8)``
    in presentation order, oriented by the display matrix as ``PyAVReader`` does. ``"-"`` reads
    standard input (a pipe, e.g. ``ffmpeg ... -f mpegts -``). ``fps`` is the stream's average rate."""

    def __init__(self, source: Union[str, BinaryIO], num_threads: int = 0):
        import av

        self.name = "standard input" if source == "-" else str(getattr(source, "name", source))
        self._av = av
        try:
            self._container = av.open(sys.stdin.buffer if source == "-" else source)
        except Exception as e:  # FileNotFoundError, av.error.InvalidDataError, ...
            if isinstance(e, FileNotFoundError):
                raise
            raise VideoDecodeError(self.name, f"{type(e).__name__}: {e}") from e
        if not self._container.streams.video:
            self._container.close()
            raise VideoDecodeError(self.name, "it has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.thread_count = num_threads
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: Optional[float] = float(rate) if rate else None

    def __iter__(self) -> Iterator[Tuple[float, np.ndarray]]:
        t0 = None
        try:
            for frame in self._container.decode(self._stream):
                if frame.time is None:
                    continue
                t0 = frame.time if t0 is None else t0
                img = frame.to_ndarray(format="rgb24")
                matrix = _display_matrix(frame)
                yield frame.time - t0, (_orient(img, matrix) if matrix is not None else img)
        except self._av.error.FFmpegError as e:
            raise VideoDecodeError(self.name, f"decoding failed ({e}); the stream is corrupt or cut") from e
        finally:
            self._container.close()
