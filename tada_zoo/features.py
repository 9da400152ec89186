"""Feature extraction for every registered model, over tensors or video files.

One interface whatever the family: ``layer="pooled"`` gives the clip embedding
(``forward_head(pre_logits=True)``), ``"map"`` the unpooled last map ``(C, T, H, W)``, an
int ``k`` the k-th level of ``forward_intermediates`` (0 = stem). Videos are cut into
sliding windows (``clip_len`` frames ``frame_interval`` apart, a window every
``clip_stride`` frames); loader workers decode and transform while the model runs, and
windows of consecutive videos share batches. Each video gets one file (safetensors:
``features`` + ``timestamps`` + ``start_frames``; or npy: features, with timestamps in the
index) and a line in ``index.jsonl``. Finished videos are skipped on a rerun; videos that
fail to decode are reported and skipped. Under torchrun the videos are dealt out to the
ranks, each rank logs to its own ``index.rank<r>.jsonl`` and rank 0 merges the logs into
``index.jsonl`` at the end (a rerun after an interruption reads the rank logs too, with
any number of processes).
"""
import json
import os
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from .engine.distributed import all_gather_object, barrier, get_rank, get_world_size
from .models._builder import create_video_model

__all__ = ["FeatureExtractor", "extract_videos", "list_videos", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
Layer = Union[str, int]


def parse_layer(layer: Layer) -> Layer:
    if isinstance(layer, int) or layer in ("pooled", "map"):
        return layer
    try:
        return int(layer)
    except ValueError:
        raise ValueError(f"layer must be 'pooled', 'map' or a feature level index, got {layer!r}") from None


class FeatureExtractor:
    """Batched, gradient-free features of ``(N, C, T, H, W)`` clips from any registered model."""

    def __init__(self, model: torch.nn.Module, layer: Layer = "pooled", batch_size: int = 8,
                 device: Union[str, torch.device] = "cpu", autocast_dtype: Optional[torch.dtype] = None):
        self.model = model.eval().to(device)
        self.layer = parse_layer(layer)
        if isinstance(self.layer, int) and not -len(model.feature_info) <= self.layer < len(model.feature_info):
            raise ValueError(f"layer {self.layer} out of range: {type(model).__name__} has "
                             f"{len(model.feature_info)} feature levels (0..{len(model.feature_info) - 1})")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype

    @classmethod
    def from_name(cls, name: str, checkpoint: Optional[str] = None, pretrained: bool = False,
                  model_kwargs: Optional[dict] = None, **kwargs) -> "FeatureExtractor":
        """A model without classifier, from registered weights or a local checkpoint (head ignored)."""
        model = create_video_model(name, pretrained=pretrained or None, checkpoint=checkpoint, head="ignore",
                                   **(model_kwargs or {}))
        model.reset_classifier(0)
        return cls(model, **kwargs)

    def feature_shape(self, clip_shape: Sequence[int]) -> tuple:
        return tuple(self(torch.zeros(1, *clip_shape)).shape[1:])

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if self.layer == "pooled":
                y = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            elif self.layer == "map":
                y = self.model.forward_features(x)
            else:
                y = self.model.forward_intermediates(x, indices=[self.layer % len(self.model.feature_info)],
                                                     intermediates_only=True)[0]
        return y.float().cpu()

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        """``(N, C, T, H, W)`` -> features ``(N, ...)``, in batches of ``batch_size``."""
        if clips.dim() != 5:
            raise ValueError(f"clips must be (N, C, T, H, W), got shape {tuple(clips.shape)}")
        return torch.cat([self.forward(c) for c in clips.split(self.batch_size)]) if len(clips) else clips.new_zeros(0)

    def from_tensor(self, video: torch.Tensor, clip_len: int, frame_interval: int = 1, clip_stride: Optional[int] = None,
                    fps: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Sliding-window features of one normalised video ``(C, T, H, W)``.

        Returns ``features (N, ...)``, ``start_frames (N,)`` and, given ``fps``,
        ``timestamps (N, 2)``: start and end of each window in seconds.
        """
        from .data import sliding_windows

        if video.dim() != 4:
            raise ValueError(f"video must be (C, T, H, W), got shape {tuple(video.shape)}")
        windows = sliding_windows(video.shape[1], clip_len, frame_interval, clip_stride or clip_len * frame_interval)
        idx = torch.as_tensor(np.stack([w for _, w in windows]))
        clips = video[:, idx].permute(1, 0, 2, 3, 4)  # (N, C, T, H, W)
        out = dict(features=self(clips), start_frames=torch.tensor([s for s, _ in windows], dtype=torch.long))
        if fps:
            out["timestamps"] = _timestamps(windows, fps, video.shape[1])
        return out


def _timestamps(windows, fps: float, num_frames: int) -> torch.Tensor:
    """``(N, 2)`` seconds: first frame's start, and the end of the last frame the window covers."""
    return torch.tensor([[s / fps, min(int(w[-1]) + 1, num_frames) / fps] for s, w in windows], dtype=torch.float64)


def list_videos(input_path: Union[str, Path]) -> List[Path]:
    """One video file, or every video under a folder (recursively, sorted)."""
    p = Path(input_path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"--input {p} is neither a video file nor a folder")
    videos = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file())
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {p}")
    return videos


class _WindowChunks(IterableDataset):
    """Decoded, transformed windows of each video in chunks of at most ``chunk`` windows.

    Worker w handles videos w, w + workers, ...; each yields ``dict(video=i, clips, start,
    last, ...)`` or, for an unreadable video, ``dict(video=i, error=...)``.
    """

    def __init__(self, paths, clip_len, frame_interval, clip_stride, transform, chunk):
        self.paths, self.clip_len, self.frame_interval = paths, clip_len, frame_interval
        self.clip_stride, self.transform, self.chunk = clip_stride, transform, chunk

    def __iter__(self) -> Iterator[dict]:
        from .data import open_video, sliding_windows

        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for i in range(wid, len(self.paths), nw):
            try:
                with open_video(self.paths[i]) as reader:
                    n, fps = len(reader), reader.fps
                    windows = sliding_windows(n, self.clip_len, self.frame_interval, self.clip_stride)
                    for c in range(0, len(windows), self.chunk):
                        part = windows[c:c + self.chunk]
                        wanted = np.unique(np.concatenate([w for _, w in part]))
                        frames = self.transform(reader.frames_at(wanted.tolist()))[0]  # (C, T_u, H, W), 1 crop
                        pos = torch.as_tensor(np.stack([np.searchsorted(wanted, w) for _, w in part]))
                        yield dict(video=i, clips=frames[:, pos].permute(1, 0, 2, 3, 4).contiguous(),
                                   start_frames=[s for s, _ in part], timestamps=_timestamps(part, fps, n),
                                   fps=fps, num_frames=n, last=c + self.chunk >= len(windows))
            except Exception as e:  # noqa: BLE001  reported per video, the run goes on
                yield dict(video=i, error=f"{type(e).__name__}: {e}")


def _output_name(path: Path, root: Optional[Path], fmt: str) -> str:
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return str(rel.with_suffix(".safetensors" if fmt == "safetensors" else ".npy"))


def _write_features(file: Path, feats: torch.Tensor, timestamps, start_frames, meta: dict, fmt: str) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.stem}.tmp{file.suffix}")
    if fmt == "safetensors":
        from safetensors.torch import save_file
        save_file(dict(features=feats.contiguous(), timestamps=timestamps.contiguous(),
                       start_frames=torch.as_tensor(start_frames, dtype=torch.long)), str(tmp),
                  metadata={k: str(v) for k, v in meta.items()})
    else:
        with open(tmp, "wb") as f:
            np.save(f, feats.numpy())
    os.replace(tmp, file)


def _read_index(output: Path) -> Dict[str, dict]:
    """The newest entry per video from ``index.jsonl`` and any rank logs; a line cut short
    by a killed run is ignored (its video is simply done again)."""
    entries = {}
    for path in [output / "index.jsonl", *sorted(output.glob("index.rank*.jsonl"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:
                    continue
                entries[e["video"]] = e
    return entries


def _compact_index(output: Path) -> None:
    """One line per video in ``index.jsonl``, written atomically; the rank logs go."""
    entries = _read_index(output)
    tmp = output / ".index.jsonl.tmp"
    tmp.write_text("".join(json.dumps(e) + "\n" for e in entries.values()))
    os.replace(tmp, output / "index.jsonl")
    for path in output.glob("index.rank*.jsonl"):
        path.unlink()


def extract_videos(extractor: FeatureExtractor, videos: Sequence[Union[str, Path]], output: Union[str, Path],
                   clip_len: int, frame_interval: int, clip_stride: int, transform, workers: int = 2,
                   fmt: str = "safetensors", root: Optional[Union[str, Path]] = None, progress: bool = True) -> dict:
    """Extract every video in ``videos`` to ``output`` (see the module docstring).

    Returns ``dict(done, skipped, failed={video: error}, clips, seconds)``, summed over
    the ranks when run under torchrun (every rank calls it with the same arguments).
    """
    if fmt not in ("safetensors", "npy"):
        raise ValueError(f"format must be 'safetensors' or 'npy', got {fmt!r}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    root = Path(root) if root is not None else None
    rank, world = get_rank(), get_world_size()
    index = _read_index(output)
    barrier()  # every rank has read the same index before any rank logs to it
    index_path = output / ("index.jsonl" if world == 1 else f"index.rank{rank}.jsonl")
    keys = [str(Path(v).relative_to(root)) if root is not None else Path(v).name for v in videos]
    todo = [i for i, k in enumerate(keys)
            if not (index.get(k, {}).get("status") == "ok" and (output / index[k]["file"]).exists())]
    n_todo = len(todo)
    todo = todo[rank::world]  # dealt out to the ranks
    paths = [str(videos[i]) for i in todo]
    t0 = time.time()
    dataset = _WindowChunks(paths, clip_len, frame_interval, clip_stride, transform, extractor.batch_size)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None)
    pending: Dict[int, dict] = {}  # video -> accumulated chunks
    queue: List[tuple] = []  # (video, chunk dict) waiting for a batch
    failed, done, n_clips = {}, 0, 0
    bar = tqdm(total=len(paths), desc="extract", unit="video", disable=not progress)

    def finish(j: int, entry: dict) -> None:
        nonlocal done
        key = keys[todo[j]]
        entry = dict(video=key, **entry)
        with open(index_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        bar.update()
        if entry["status"] == "ok":
            done += 1
        else:
            failed[key] = entry["error"]
            tqdm.write(f"skipping {key}: {entry['error']}")

    def run_batch() -> None:
        nonlocal n_clips
        clips = torch.cat([c["clips"] for _, c in queue])
        feats = extractor.forward(clips) if len(clips) <= extractor.batch_size else extractor(clips)
        n_clips += len(clips)
        pos = 0
        for j, c in queue:
            k = len(c["clips"])
            acc = pending.setdefault(j, dict(feats=[], ts=[], starts=[]))
            acc["feats"].append(feats[pos:pos + k])
            acc["ts"].append(c["timestamps"])
            acc["starts"] += c["start_frames"]
            pos += k
            if c["last"]:
                acc = pending.pop(j)
                f, ts = torch.cat(acc["feats"]), torch.cat(acc["ts"])
                name = _output_name(Path(paths[j]), root, fmt)
                meta = dict(fps=c["fps"], num_frames=c["num_frames"], clip_len=clip_len,
                            frame_interval=frame_interval, clip_stride=clip_stride, layer=extractor.layer,
                            window_seconds=clip_len * frame_interval / c["fps"])
                _write_features(output / name, f, ts, acc["starts"], meta, fmt)
                entry = dict(status="ok", file=name, num_clips=len(f), shape=list(f.shape), **meta)
                if fmt == "npy":
                    entry.update(timestamps=ts.tolist(), start_frames=acc["starts"])
                finish(j, entry)
        queue.clear()

    for item in loader:
        if "error" in item:
            finish(item["video"], dict(status="corrupt", error=item["error"]))
            continue
        queue.append((item["video"], item))
        if sum(len(c["clips"]) for _, c in queue) >= extractor.batch_size:
            run_batch()
    if queue:
        run_batch()
    bar.close()
    barrier()  # all rank logs are complete
    if rank == 0:
        _compact_index(output)
    ranks = all_gather_object(dict(done=done, failed=failed, clips=n_clips))
    barrier()  # nobody returns before the merged index is written
    return dict(done=sum(r["done"] for r in ranks), skipped=len(videos) - n_todo,
                failed={k: e for r in ranks for k, e in r["failed"].items()},
                clips=sum(r["clips"] for r in ranks), seconds=time.time() - t0)
