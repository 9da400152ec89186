"""Long and untrimmed videos as a timeline: class scores per window, decoded as a stream.

A window of ``window_seconds`` every ``stride_seconds`` is classified as the test pipeline would
classify a video cut to that window: its clip's frames are where the model's sampling puts them
in a video of that length (``interval_indices`` / ``segment_indices``, centre clip), with the
protocol's crops, softmax averaged. The video is read front to back once (``data.stream``: files
or a pipe), and only the frames of windows still open are kept, so memory does not grow with the
video's length (only the scores, one vector per window). Consecutive windows with the same top
class make a segment; each window stands for the ``stride`` around its centre.
"""
import csv
import io
import json
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

from tada_zoo._files import write_text
from tada_zoo.data.sampling import interval_indices, segment_indices
from tada_zoo.data.stream import VideoStream

__all__ = ["WindowPlan", "window_plan", "windows_of", "classify_timeline", "segments_of", "write_timeline"]

SEGMENT_WINDOW_SECONDS = 4.0  # default window of segment-sampled models (a typical Something-Something video)


class WindowPlan:
    """Where the windows are (``seconds`` long, one every ``stride``) and the instants each samples."""

    def __init__(self, seconds: float, stride: float, offsets: np.ndarray, fps: float):
        self.seconds, self.stride, self.offsets, self.fps = seconds, stride, offsets, fps

    def __repr__(self) -> str:
        return f"WindowPlan({self.seconds:g} s every {self.stride:g} s, {len(self.offsets)} frames at {self.fps:g} fps)"


def window_plan(protocol, fps: Optional[float], window_seconds: Optional[float] = None,
                stride_seconds: Optional[float] = None) -> WindowPlan:
    """The windows of ``protocol`` for a stream at ``fps``: by default as long as the model's clip
    (interval sampling) or ``SEGMENT_WINDOW_SECONDS``, with half a window of stride."""
    if not fps or fps <= 0:
        raise ValueError("the video does not say its frame rate; a timeline needs it")
    for name, value in (("window_seconds", window_seconds), ("stride_seconds", stride_seconds)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    if window_seconds is None:
        window_seconds = (protocol.num_frames * protocol.frame_interval / (protocol.target_fps or fps)
                          if protocol.sampling == "interval" else SEGMENT_WINDOW_SECONDS)
    stride = stride_seconds or window_seconds / 2
    n = max(1, int(round(window_seconds * fps)))  # the window as a video of n frames
    if protocol.sampling == "segment":
        idx = segment_indices(n, protocol.num_frames, random=False)
    else:
        idx = interval_indices(n, protocol.num_frames, protocol.frame_interval, clip_index=0, num_clips=1,
                               video_fps=fps, target_fps=protocol.target_fps)
    return WindowPlan(float(window_seconds), float(stride), np.asarray(idx) / fps, float(fps))


def windows_of(frames: Iterator[Tuple[float, np.ndarray]], plan: WindowPlan,
               stats: Optional[dict] = None) -> Iterator[Tuple[float, List[np.ndarray]]]:
    """``(start, the window's frames)`` in order from a stream of ``(time, frame)``. The frame of an
    instant is the one shown then (the last frame at or before it, to half a frame). Windows that
    run past the end are dropped, except the first of a video shorter than one window (its last
    frame repeated, as the test sampling repeats it). ``stats["max_frames"]``: frames held at most."""
    half, need = 0.5 / plan.fps, len(plan.offsets)
    open_windows, next_k, prev, last_t, emitted = [], 0, None, None, 0
    for t, img in frames:
        while next_k * plan.stride <= t + half:  # windows that have started
            open_windows.append((next_k * plan.stride, []))
            next_k += 1
        for start, got in open_windows:
            while len(got) < need and start + plan.offsets[len(got)] + half < t:
                got.append(prev if prev is not None else img)
        for window in [w for w in open_windows if len(w[1]) == need]:
            open_windows.remove(window)
            emitted += 1
            yield window
        prev, last_t = img, t
        if stats is not None:
            held = {id(f) for _, got in open_windows for f in got} | {id(prev)}
            stats["max_frames"] = max(stats.get("max_frames", 0), len(held))
    if prev is None:
        return
    end = last_t + 1 / plan.fps
    for start, got in open_windows:
        if start + plan.seconds <= end + half or (emitted == 0 and start == 0):
            emitted += 1
            yield start, got + [prev] * (need - len(got))


def classify_timeline(clf, source: Union[str, Path], window_seconds: Optional[float] = None,
                      stride_seconds: Optional[float] = None, topk: int = 5, batch_size: int = 8,
                      device: Union[str, torch.device] = "cpu", autocast_dtype=None,
                      stats: Optional[dict] = None) -> dict:
    """The timeline of a video file or pipe (``"-"``) under a ``VideoClassifier``: ``dict(video, fps,
    window_seconds, stride_seconds, views, windows=[{start, end, top}], segments, class_names)``, with
    ``probs`` (windows x classes) for plots."""
    if len(clf.heads) != 1:
        raise ValueError(f"a timeline needs a model with one head, this one has {len(clf.heads)}")
    stream = VideoStream(str(source) if source != "-" else "-")
    plan = window_plan(clf.protocol, stream.fps, window_seconds, stride_seconds)
    transform, starts, probs, batch = clf.protocol.eval_transform(), [], [], []
    clf.model.to(device)

    def run_batch():
        probs.extend(clf.view_probs(torch.stack(batch), device, autocast_dtype)[0])  # (B, crops, C, T, H, W) in
        batch.clear()

    for start, frames in windows_of(stream, plan, stats):
        starts.append(start)
        batch.append(transform(np.stack(frames)))
        if len(batch) == batch_size:
            run_batch()
    if batch:
        run_batch()
    if not starts:
        raise ValueError(f"{stream.name}: no frames could be decoded")
    return _result(clf, stream, plan, starts, torch.stack(probs), topk)


def _result(clf, stream, plan: WindowPlan, starts: List[float], probs: torch.Tensor, topk: int) -> dict:
    windows = [dict(start=round(start, 4), end=round(start + plan.seconds, 4), top=clf.ranked(p, topk))
               for start, p in zip(starts, probs)]
    return dict(video=stream.name, fps=plan.fps, window_seconds=plan.seconds, stride_seconds=plan.stride,
                views=f"{clf.protocol.describe(clips=1)} per window", model=clf.name, class_names=clf.class_names,
                windows=windows, segments=segments_of(windows, plan.stride), probs=probs)


def segments_of(windows: List[dict], stride: float) -> List[dict]:
    """Runs of windows with the same top class: ``{start, end, index, name, score}`` (mean top score);
    a window stands for the ``stride`` around its centre (the first from 0, the last to its end)."""
    out = []
    for i, w in enumerate(windows):
        centre = (w["start"] + w["end"]) / 2
        lo = 0.0 if i == 0 else max(out[-1]["end"], centre - stride / 2)
        hi = w["end"] if i == len(windows) - 1 else centre + stride / 2
        top = w["top"][0]
        if out and out[-1]["index"] == top["index"]:
            out[-1].update(end=round(hi, 4), scores=out[-1]["scores"] + [top["score"]])
        else:
            out.append(dict(start=round(lo, 4), end=round(hi, 4), index=top["index"], name=top["name"],
                            scores=[top["score"]]))
    return [dict({k: v for k, v in s.items() if k != "scores"}, score=round(float(np.mean(s["scores"])), 6))
            for s in out]


def write_timeline(result: dict, output: Union[str, Path]) -> List[Path]:
    """``timeline.json`` (everything but the score matrix), ``timeline.csv`` (a row per window: start,
    end, the top classes and scores) and ``timeline.png`` (``plots.plot_timeline``; skipped without
    matplotlib) into ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "timeline.json", json.dumps({k: v for k, v in result.items() if k != "probs"}, indent=1))
    buf = io.StringIO()
    w = csv.writer(buf)
    k = max(len(win["top"]) for win in result["windows"])
    w.writerow(["start", "end"] + [f"{c}{j + 1}" for j in range(k) for c in ("class", "score")])
    for win in result["windows"]:
        w.writerow([win["start"], win["end"]] + [v for t in win["top"] for v in (
            t["name"] if t["name"] is not None else t["index"], t["score"])])
    write_text(out / "timeline.csv", buf.getvalue())
    written = [out / "timeline.json", out / "timeline.csv"]
    try:
        from tada_zoo.plots import plot_timeline

        written.append(plot_timeline(result, out / "timeline.png"))
    except ImportError as e:
        print(f"skipping timeline.png: {e}")
    return written
