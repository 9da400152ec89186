"""A tiny synthetic video dataset whose classes differ only in temporal order.

Each clip shows one shape moving across a noisy background: class 0 left->right,
1 right->left, 2 top->bottom, 3 bottom->top. Any single frame, and the average of all
frames, is the same for a clip and its time-reversed twin, so an order-blind model (TSN's
frame averaging) cannot separate 0 from 1 or 2 from 3; a temporally-adaptive one can.
Used by ``make demo`` and the engine tests.
"""
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from tada_zoo._files import atomic_write

__all__ = ["CLASS_NAMES", "moving_shape_clip", "write_video", "make_moving_shapes"]

CLASS_NAMES = ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")


def moving_shape_clip(label: int, num_frames: int = 16, size: int = 64,
                      rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames of a shape moving in direction ``label`` (0..3)."""
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(CLASS_NAMES) - 1}, got {label}")
    rng = rng or np.random.default_rng()
    r = int(rng.integers(size // 10, size // 6 + 1))  # shape half-size
    lo, hi = r, size - 1 - r
    track = np.linspace(lo, hi, num_frames) + rng.uniform(-1, 1, num_frames)
    if label % 2 == 1:
        track = track[::-1]
    cross = rng.uniform(lo, hi)  # the other coordinate, fixed
    color = rng.integers(128, 256, 3)
    square = rng.random() < 0.5
    yy, xx = np.mgrid[:size, :size]
    frames = rng.integers(0, 60, (num_frames, size, size, 3)).astype(np.uint8)
    for t in range(num_frames):
        cx, cy = (track[t], cross) if label < 2 else (cross, track[t])
        if square:
            mask = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
        else:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        frames[t][mask] = color
    return frames


def write_video(path, frames: np.ndarray, fps: int = 30) -> None:
    """Frames ``(T, H, W, 3)`` uint8 -> an .mp4 (MPEG-4 part 2, every PyAV build has it), atomically."""
    import av


    def encode(tmp: str) -> None:
        with av.open(tmp, "w", format="mp4") as container:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = 2_000_000
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(path, encode)


def make_moving_shapes(root, num_train: int = 64, num_val: int = 32, num_frames: int = 16,
                       size: int = 64, num_classes: int = 4, fps: int = 30, seed: int = 0) -> Tuple[Path, Path]:
    """Write ``root/videos/{train,val}/*.mp4`` and the lists ``root/train.txt``, ``root/val.txt``.

    Classes are balanced; lines are ``videos/train/00000.mp4 <label>``. Existing files are
    reused, so calling it twice is cheap. Returns the two list files.
    """
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be 2..{len(CLASS_NAMES)}, got {num_classes}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    lists = []
    for split, n in (("train", num_train), ("val", num_val)):
        lines = []
        for i in range(n):
            label = i % num_classes
            rel = f"videos/{split}/{i:05d}.mp4"
            frames = moving_shape_clip(label, num_frames, size, rng)
            if not (root / rel).exists():
                write_video(root / rel, frames, fps)
            lines.append(f"{rel} {label}\n")
        list_file = root / f"{split}.txt"
        list_file.write_text("".join(lines))
        lists.append(list_file)
    return lists[0], lists[1]
