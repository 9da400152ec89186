"""Synthetic test videos whose frames say their own index (shared by the tests/test_data_*.py files)."""
import av
import numpy as np

MAX_FRAMES = 64


def index_frame(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Grey frame: left half encodes ``i % 8``, right half ``i // 8``, in 32-level steps that
    survive lossy compression."""
    if not 0 <= i < MAX_FRAMES:
        raise ValueError(i)
    f = np.empty((height, width, 3), np.uint8)
    f[:, : width // 2] = 16 + 32 * (i % 8)
    f[:, width // 2:] = 16 + 32 * (i // 8)
    return f


def read_index(frame: np.ndarray) -> int:
    """Inverse of ``index_frame`` on a decoded (H, W, C) frame."""
    h, w = frame.shape[:2]
    left = frame[h // 4: 3 * h // 4, w // 8: 3 * w // 8].mean()
    right = frame[h // 4: 3 * h // 4, 5 * w // 8: 7 * w // 8].mean()
    lo, hi = int(round((left - 16) / 32)), int(round((right - 16) / 32))
    return hi * 8 + lo


def write_video(path, num_frames: int = 40, codec: str = "libx264", fps: int = 30, height: int = 48,
                width: int = 64, frames=None, container: str = None, **options) -> str:
    """Encode an index video. libx264 gets B-frames and a 12-frame GOP so that decode order
    differs from presentation order; libvpx-vp9 writes webm with alt-ref frames. ``container``: a
    format other than the name's (e.g. ``"mpegts"``, what a pipe carries)."""
    path = str(path)
    with av.open(path, "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"x264-params": "bframes=3:b-adapt=0:keyint=12:min-keyint=12:scenecut=0",
                              "crf": "10", **options}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "10", "b": "0", "g": "12", "auto-alt-ref": "1", "lag-in-frames": "8", **options}
        else:
            stream.options = options
        for i in range(num_frames):
            img = index_frame(i, height, width) if frames is None else frames[i]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
