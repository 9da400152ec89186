"""A torchcodec reader that gives PyAV's frames, or says why it cannot and lets PyAV read the file.

torchcodec (optional: ``pip install 'tada-zoo[torchcodec]'`` plus FFmpeg's shared libraries) decodes
and converts to RGB in C++. Frames are PyAV's only where both agree on what frame ``i`` is, so the
reader takes the frame index (presentation-ordered timestamps, truncation and still-image checks,
``len``, ``fps``, ``timestamps``) from a ``PyAVReader``'s demux pass, asks torchcodec (its exact
seek mode, which indexes the file too) for frames ``i, j, ...`` and checks that their timestamps are
PyAV's frames ``i, j, ...``'s. Files where torchcodec's frames
could differ are read by PyAV instead, with one warning per reason and process:

* no usable timestamps (frames indexed by decoding order: ``cat a.ts b.ts``, some AVI);
* another frame count than PyAV's (frames an edit list hides, say);
* a display matrix (rotation or mirroring) in the container, which the two orient differently;
* pixel formats whose RGB conversion was not checked equal to PyAV's (see ``_SAME_RGB``);
* still images read with ``allow_images=True``;
* a frame whose timestamp is not the one asked for (the check above; the rest of that file too).

Frames per-frame rotated by H.264 SEI messages only (no container matrix) are not detected.
"""
import warnings
from typing import Optional, Sequence

import numpy as np

from .decode import BaseVideoReader, PyAVReader, VideoDecodeError

__all__ = ["TorchCodecReader", "torchcodec_available", "INSTALL_HINT"]

INSTALL_HINT = ("pip install 'tada-zoo[torchcodec]' and FFmpeg's shared libraries "
                "(Debian/Ubuntu: apt-get install ffmpeg; conda: conda install ffmpeg)")

# yuv formats whose torchcodec RGB conversion equals PyAV's (swscale, same BT.601 limited-range
# defaults) bit for bit on tests/test_decode_torchcodec.py's colour videos
_SAME_RGB = frozenset({"yuv420p", "yuv422p", "yuv444p", "yuvj420p", "yuvj422p", "yuvj444p"})

_warned = set()  # reasons already warned about in this process


def torchcodec_available() -> Optional[str]:
    """None if torchcodec imports (FFmpeg libraries found); else why not, with how to install it."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as e:  # ImportError, or RuntimeError / OSError when FFmpeg's libraries are missing
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"torchcodec cannot be used ({first[:200]}): {INSTALL_HINT}"
    return None


def _fallback_once(reason: str, path: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"--decoder torchcodec: {reason} (first: {path}); such files are read with PyAV "
                      "so that frames stay exact", RuntimeWarning, stacklevel=3)


class TorchCodecReader(BaseVideoReader):
    """torchcodec reader with PyAV's frame index (arguments as ``PyAVReader``'s). ``fallback``: why this
    file is read by PyAV instead (None: torchcodec decodes it)."""

    unavailable = staticmethod(torchcodec_available)  # for decode.check_backend

    def __init__(self, path, num_threads: int = 1, *, allow_images: bool = False, autorotate: bool = True,
                 data: Optional[bytes] = None):
        missing = torchcodec_available()
        if missing:
            raise ImportError(missing)
        self._index = PyAVReader(path, num_threads, allow_images=allow_images, autorotate=autorotate, data=data)
        self.path = self._index.path
        self._decoder = None
        try:
            self.fallback = self._unsupported(allow_images) or self._open(data, num_threads, autorotate)
        except BaseException:
            self._index.close()
            raise
        if self.fallback:
            _fallback_once(self.fallback, self.path)

    def _unsupported(self, allow_images: bool) -> Optional[str]:
        """Why torchcodec could give other frames than PyAV for this file, None if it cannot."""
        index, stream = self._index, self._index._stream
        if index._pts is None:
            return "torchcodec indexes frames by timestamp and this file has no usable timestamps"
        if allow_images and len(index) == 1:
            return "one-frame files (still images) are left to PyAV"
        fmt = stream.codec_context.pix_fmt
        if fmt not in _SAME_RGB:
            return f"its RGB conversion of {fmt} is not checked equal to PyAV's"
        return None

    def _open(self, data: Optional[bytes], num_threads: int, autorotate: bool) -> Optional[str]:
        from torchcodec.decoders import VideoDecoder

        try:  # exact: torchcodec's own index pass ("approximate" guesses frame counts from the duration)
            self._decoder = VideoDecoder(self.path if data is None else data, dimension_order="NHWC",
                                         seek_mode="exact", num_ffmpeg_threads=num_threads, device="cpu")
        except Exception as e:  # noqa: BLE001  PyAV read it: let PyAV decode it, saying why
            return f"torchcodec cannot open it ({type(e).__name__}: {str(e)[:120]})"
        rotation = getattr(self._decoder.metadata, "rotation", None)
        if rotation and autorotate:
            return "files with a display matrix (rotation) are oriented differently by torchcodec"
        if self._decoder.metadata.num_frames != len(self._index):
            return (f"torchcodec counts other frames ({self._decoder.metadata.num_frames}, PyAV "
                    f"{len(self._index)}; e.g. frames an edit list hides)")
        tb = self._index._stream.time_base
        self._seconds = np.array([float(p * tb) for p in self._index._pts], dtype=np.float64)
        return None

    def __len__(self) -> int:
        return len(self._index)

    @property
    def fps(self) -> float:
        return self._index.fps

    @property
    def rotation(self) -> int:
        return self._index.rotation

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        return self._index.timestamps(indices)

    def frame_end_time(self, i: int) -> float:
        return self._index.frame_end_time(i)

    def frames_at(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check_indices(indices)
        if not idx:
            raise ValueError("frames_at needs at least one frame index")
        if self.fallback:
            return self._index.frames_at(idx)
        want = self._seconds[idx]
        try:
            batch = self._decoder.get_frames_at(idx)
        except Exception as e:  # noqa: BLE001  torchcodec's RuntimeError on a corrupt stream
            raise VideoDecodeError(self.path, f"torchcodec: decoding failed ({str(e)[:200]}); "
                                              "the file is corrupt or truncated") from e
        got = batch.pts_seconds.numpy().astype(np.float64)
        if not np.allclose(got, want, rtol=0, atol=1e-6):
            bad = int(np.flatnonzero(~np.isclose(got, want, rtol=0, atol=1e-6))[0])
            self.fallback = "torchcodec returned a frame other than the one asked for"
            _fallback_once(self.fallback, f"{self.path}, frame {idx[bad]}")
            return self._index.frames_at(idx)
        return batch.data.numpy()

    def close(self) -> None:
        self._decoder = None
        self._index.close()
