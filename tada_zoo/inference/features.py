"""Feature extraction for every registered model, over tensors or video files.

One interface whatever the family: ``layer="pooled"`` gives the clip embedding
(``forward_head(pre_logits=True)``), ``"map"`` the unpooled last map ``(C, T, H, W)``, an
int ``k`` the k-th level of ``forward_intermediates`` (0 = stem). Videos are cut into
sliding windows (``clip_len`` frames ``frame_interval`` apart, a window every
``clip_stride`` frames); loader workers decode and transform while the model runs, and
windows of consecutive videos share batches. Each video gets one file named after its
path and extension (``sub/clip.mp4`` -> ``sub/clip.mp4.safetensors``: ``features`` +
``timestamps`` + ``start_frames``; or ``.npy``: features, with timestamps in the index) and
a line in ``index.jsonl``. The run's settings (model, weights, layer, windows, transform,
format) go to ``settings.json``; a rerun with the same settings skips finished videos, one
with other settings is refused unless ``overwrite``. Videos that fail to decode are
``corrupt``, videos whose features are not finite ``failed``: both are reported, get no
file and are retried by a rerun. Under torchrun the videos are dealt out to the ranks,
each rank logs to its own ``index.rank<r>.jsonl`` and rank 0 merges the logs into
``index.jsonl`` at the end (a rerun after an interruption reads the rank logs too, with
any number of processes).
"""
import functools
import json
import re
import time
import types
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from tada_zoo._files import atomic_write
from tada_zoo.data.folders import VIDEO_EXTENSIONS, find_videos, summarize_skipped
from tada_zoo.engine.distributed import all_gather_object, barrier, get_rank, get_world_size, state_hash
from tada_zoo.engine.throughput import Throughput, data_wait_warning
from tada_zoo.models import create_video_model

__all__ = ["FeatureExtractor", "extract_videos", "list_videos"]

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
        from tada_zoo.data import sliding_windows

        if video.dim() != 4:
            raise ValueError(f"video must be (C, T, H, W), got shape {tuple(video.shape)}")
        windows = sliding_windows(video.shape[1], clip_len, frame_interval, clip_stride or clip_len * frame_interval)
        idx = torch.as_tensor(np.stack([w for _, w in windows]))
        clips = video[:, idx].permute(1, 0, 2, 3, 4)  # (N, C, T, H, W)
        out = dict(features=self(clips), start_frames=torch.tensor([s for s, _ in windows], dtype=torch.long))
        if fps:
            out["timestamps"] = _timestamps(windows, fps, video.shape[1])
        return out


def _timestamps(windows, fps: float, num_frames: int, frame_times=None, last_frame_end=None) -> torch.Tensor:
    """``(N, 2)`` seconds of each window: the time of its first frame, and the time of the frame
    after the last frame it covers (after the video's last frame: ``last_frame_end()``, else
    that frame's time + 1 / fps).

    ``frame_times(indices)`` gives presentation times (a reader's ``timestamps``); without it
    frame ``i`` is at ``i / fps``, exact for constant-frame-rate files only.
    """
    starts = [int(s) for s, _ in windows]
    ends = [int(w[-1]) + 1 for _, w in windows]  # <= num_frames
    if frame_times is None:
        return torch.tensor([[s / fps, min(e, num_frames) / fps] for s, e in zip(starts, ends)], dtype=torch.float64)
    need = sorted({*starts, *(min(e, num_frames - 1) for e in ends)})
    t = np.asarray(frame_times(need), dtype=np.float64).reshape(-1)
    if len(t) != len(need):
        raise ValueError(f"the reader gave {len(t)} timestamps for {len(need)} frames")
    at = dict(zip(need, t.tolist()))
    if num_frames in ends:
        end = last_frame_end() if last_frame_end is not None else None
        at[num_frames] = end if end is not None else at[num_frames - 1] + 1 / fps
    return torch.tensor([[at[s], at[e]] for s, e in zip(starts, ends)], dtype=torch.float64)


def _reader_times(reader, num_frames: int):
    """``(frame_times, last_frame_end)`` from the reader's presentation times
    (``BaseVideoReader.timestamps`` / ``frame_end_time``), None where the backend has none:
    times are then frame index / fps, and the last frame lasts 1 / fps."""
    times, end = getattr(reader, "timestamps", None), getattr(reader, "frame_end_time", None)

    def frame_times(indices):
        try:
            return times(indices)
        except NotImplementedError:
            return np.asarray(indices, dtype=np.float64) / reader.fps

    def last_frame_end():
        try:
            return float(end(num_frames - 1))
        except NotImplementedError:
            return None

    return (frame_times if times is not None else None), (last_frame_end if end is not None else None)


def list_videos(input_path: Union[str, Path], skipped: Optional[list] = None) -> List[Path]:
    """One video file, or every video under a folder (``data.folders.find_videos``: recursive, sorted;
    what is not taken goes to ``skipped`` as ``(path, reason)``)."""
    p = Path(input_path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"--input {p} is neither a video file nor a folder")
    skip: List[Tuple[Path, str]] = []
    videos = find_videos(p, skip)
    if skipped is not None:
        skipped.extend(skip)
    if not videos:
        what = f"; {summarize_skipped(skip, p)}" if skip else ""
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {p}{what}")
    return videos


class _WindowChunks(IterableDataset):
    """Decoded, transformed windows of each video in chunks of at most ``chunk`` windows.

    Worker w handles videos w, w + workers, ...; each yields ``dict(video=i, clips, start,
    last, ...)`` chunks and then, for a video that cannot be read to the end (the reader
    closed included), ``dict(video=i, error=...)`` instead of its last chunk: a video ends
    with exactly one item marked ``last`` or ``error``.
    """

    def __init__(self, paths, clip_len, frame_interval, clip_stride, transform, chunk, shards=None, todo=()):
        self.paths, self.clip_len, self.frame_interval = paths, clip_len, frame_interval
        self.clip_stride, self.transform, self.chunk = clip_stride, transform, chunk
        self.shards, self.position = shards, {row: j for j, row in enumerate(todo)}

    def _sources(self) -> Iterator[Tuple[int, str, dict]]:
        """``(video, name, open_video kwargs)``: this worker's files, or the videos to do of its shards
        (``ShardSet.dealt``: each shard to one rank and worker), opened from their bytes."""
        if self.shards is None:
            info = get_worker_info()
            wid, nw = (info.id, info.num_workers) if info else (0, 1)
            yield from ((i, self.paths[i], {}) for i in range(wid, len(self.paths), nw))
            return
        from tada_zoo.data.shards import iter_shard_samples

        for meta, data, url in iter_shard_samples(self.shards.dealt()):
            row = self.shards.row(meta, url)
            if row in self.position:  # else extracted by an earlier run
                yield self.position[row], f"{url}:{meta['path']}", dict(data=data)

    def __iter__(self) -> Iterator[dict]:
        from tada_zoo.data import open_video, sliding_windows

        for i, name, source in self._sources():
            final = None
            try:
                with open_video(name, **source) as reader:
                    n, fps = len(reader), reader.fps
                    windows = sliding_windows(n, self.clip_len, self.frame_interval, self.clip_stride)
                    times = _timestamps(windows, fps, n, *_reader_times(reader, n))
                    for c in range(0, len(windows), self.chunk):
                        part = windows[c:c + self.chunk]
                        wanted = np.unique(np.concatenate([w for _, w in part]))
                        frames = self.transform(reader.frames_at(wanted.tolist()))[0]  # (C, T_u, H, W), 1 crop
                        pos = torch.as_tensor(np.stack([np.searchsorted(wanted, w) for _, w in part]))
                        item = dict(video=i, clips=frames[:, pos].permute(1, 0, 2, 3, 4).contiguous(),
                                    start_frames=[s for s, _ in part], timestamps=times[c:c + self.chunk],
                                    fps=fps, num_frames=n, last=c + self.chunk >= len(windows))
                        if item["last"]:
                            final = item  # sent once the reader has closed cleanly
                        else:
                            yield item
            except Exception as e:  # noqa: BLE001  reported per video, the run goes on
                yield dict(video=i, error=f"{type(e).__name__}: {e}")
                continue
            yield final


def _video_key(path: Path, root: Optional[Path]) -> str:
    """The index key: the path relative to ``root`` (the file name without one), extension kept."""
    if root is None:
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise ValueError(f"video {path} is not under the input folder {root}") from None


def _output_name(key: str, fmt: str) -> str:
    """``sub/clip.mp4`` -> ``sub/clip.mp4.safetensors``: one file per input, whatever shares its stem."""
    return key + (".safetensors" if fmt == "safetensors" else ".npy")


def _write_features(file: Path, feats: torch.Tensor, timestamps, start_frames, meta: dict, fmt: str) -> None:
    def write(tmp):
        if fmt == "safetensors":
            from safetensors.torch import save_file
            save_file(dict(features=feats.contiguous(), timestamps=timestamps.contiguous(),
                           start_frames=torch.as_tensor(start_frames, dtype=torch.long)), tmp,
                      metadata={k: str(v) for k, v in meta.items()})
        else:
            with open(tmp, "wb") as f:
                np.save(f, feats.numpy())
    atomic_write(file, write)


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
                if isinstance(e, dict) and "video" in e:
                    entries[e["video"]] = e
    return entries


def _compact_index(output: Path) -> None:
    """One line per video in ``index.jsonl``, written atomically; the rank logs go."""
    entries = _read_index(output)
    atomic_write(output / "index.jsonl",
                  lambda tmp: Path(tmp).write_text("".join(json.dumps(e) + "\n" for e in entries.values())))
    for path in output.glob("index.rank*.jsonl"):
        path.unlink()


# ---- settings.json: what the features in a folder were made with -----------------------------

SETTINGS_FILE = "settings.json"
# recorded for the reader, not compared (the weights' hash says whether the weights are the same)
_INFO_SETTINGS = ("model_name", "checkpoint", "pretrained", "tada_zoo")


def _describe_transform(transform) -> dict:
    """The transform's type and its simple public attributes (crop, sizes, mean, std, ...)."""
    if isinstance(transform, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return dict(type=f"{transform.__module__}.{transform.__qualname__}")
    if isinstance(transform, functools.partial):
        return dict(type=f"partial({_describe_transform(transform.func)['type']})",
                    args=repr(transform.args), kwargs=repr(sorted(transform.keywords.items())))
    out = dict(type=type(transform).__qualname__)
    simple = (bool, int, float, str, type(None))
    for k, v in sorted(getattr(transform, "__dict__", {}).items()):
        if k.startswith("_"):
            continue
        if isinstance(v, simple):
            out[k] = v
        elif isinstance(v, (tuple, list)) and all(isinstance(x, simple) for x in v):
            out[k] = list(v)
    return out


def _run_settings(extractor: FeatureExtractor, clip_len: int, frame_interval: int, clip_stride: int, transform,
                  fmt: str, extra: Optional[dict]) -> dict:
    from tada_zoo import __version__

    model = extractor.model
    cfg = getattr(model, "pretrained_cfg", None) or {}
    layer = extractor.layer
    if isinstance(layer, int):
        layer %= len(model.feature_info)  # -1 and the last level are the same features
    amp = extractor.autocast_dtype
    settings = dict(model=cfg.get("architecture") or type(model).__name__, weights=state_hash(model),
                    model_kwargs={}, layer=layer, clip_len=int(clip_len), frame_interval=int(frame_interval),
                    clip_stride=int(clip_stride), transform=_describe_transform(transform), format=fmt,
                    amp=str(amp).replace("torch.", "") if amp is not None else "none")
    settings.update(extra or {})
    settings["tada_zoo"] = __version__
    return json.loads(json.dumps(settings, default=str))  # as it reads back from the file


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "model_kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _show(key: str, value) -> str:
    if value is None:
        return "(none)"
    if key == "weights" and isinstance(value, str):
        return value[:12]
    return value if isinstance(value, str) else json.dumps(value)


def _settings_diff(old: dict, new: dict) -> List[str]:
    a, b = _flat(old), _flat(new)
    keys = list(dict.fromkeys([*b, *a]))
    diff = {k: f"{k} {_show(k, a.get(k))} -> {_show(k, b.get(k))}" for k in keys
            if k.split(".")[0] not in _INFO_SETTINGS and a.get(k) != b.get(k)}
    if "weights" in diff:  # say where they came from
        where = [f"{k} {_show(k, a.get(k))} -> {_show(k, b.get(k))}" for k in ("checkpoint", "pretrained")
                 if a.get(k) != b.get(k)]
        if where:
            diff["weights"] += f" ({', '.join(where)})"
    return list(diff.values())


def _check_settings(output: Path, settings: dict, index: Dict[str, dict]) -> bool:
    """Raise if ``output`` holds features made with other settings; True if settings.json is to be
    (re)written: none yet, or no finished video that other settings would make stale."""
    path = output / SETTINGS_FILE
    todo = "use another --output, or --overwrite to recompute every video"
    if not any(e.get("status") == "ok" for e in index.values()):
        return True  # nothing extracted yet (or only failures, which are retried anyway)
    if not path.exists():
        raise ValueError(f"{output} holds an index.jsonl but no {SETTINGS_FILE} (written by an older tada-zoo): "
                         f"the settings of its features are unknown; {todo}")
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read ({e}); {todo}") from None
    diff = _settings_diff(old, settings)
    if diff:
        raise ValueError(f"{output} holds features made with other settings ({', '.join(diff)}); {todo}")
    return False


def _write_settings(output: Path, settings: dict) -> None:
    atomic_write(output / SETTINGS_FILE, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=1) + "\n"))


def _clear_output(output: Path) -> None:
    """``overwrite``: the old index and the feature files it lists go."""
    top = output.resolve()
    for entry in _read_index(output).values():
        name = entry.get("file")
        if isinstance(name, str) and name:
            f = output / name
            if f.resolve().is_relative_to(top) and f.is_file():
                f.unlink()
    for path in [output / "index.jsonl", *output.glob("index.rank*.jsonl")]:
        if path.exists():
            path.unlink()


_TEMP_FILE = re.compile(r"^\..+\.(safetensors|npy|jsonl|json)\.[A-Za-z0-9_]+\.tmp$")


def _remove_temp_files(output: Path) -> None:
    """Temp files a killed run left (``atomic_write``'s ``.<name>.<random>.tmp``)."""
    for path in output.rglob(".*.tmp"):
        if _TEMP_FILE.match(path.name) and path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except OSError:
                pass


def _check_weights(model: torch.nn.Module) -> None:
    params = list(model.named_parameters())
    bad = [name for name, p in params if not torch.isfinite(p.detach()).all()]
    if bad:
        raise ValueError(f"the model's weights hold NaN/inf values ({len(bad)} of {len(params)} tensors, e.g. "
                         f"{bad[0]}): a broken checkpoint? nothing was extracted")


def _non_finite(feats: torch.Tensor, timestamps: torch.Tensor) -> Optional[str]:
    bad = ~torch.isfinite(feats.reshape(len(feats), -1)).all(1)
    if not bad.any():
        return None
    first = float(timestamps[int(bad.nonzero()[0])][0])
    return (f"non-finite features (NaN/inf) in {int(bad.sum())} of {len(feats)} windows (first at {first:.2f}s): "
            "broken weights, or an --amp overflow?")


class _Extraction:
    """One rank's pass over its videos: batches the decoded windows of consecutive videos, writes each
    video's file when its last window is through, and logs one index line per video."""

    def __init__(self, extractor: FeatureExtractor, output: Path, keys: List[str], todo: List[int], fmt: str,
                 windows: dict, index_path: Path, progress: bool):
        self.extractor, self.output, self.keys, self.todo, self.fmt = extractor, output, keys, todo, fmt
        self.windows, self.index_path, self.progress = windows, index_path, progress
        self.pending: Dict[int, dict] = {}  # video -> accumulated chunks
        self.queue: List[tuple] = []  # (video, chunk dict) waiting for a batch
        self.finished = set()  # videos with their one index line
        self.failed, self.corrupt, self.done, self.clips = {}, [], 0, 0
        self.ends = 0  # videos that came to their end (written or failed), repeats included
        self.bar = tqdm(total=len(todo), desc="extract", unit="video", disable=not progress)
        self.tp = Throughput(extractor.device)

    def run(self, loader) -> dict:
        for item in self.tp.wrap(loader):
            j = item["video"]
            if "error" in item:  # drop what was decoded of it: a video is written whole or not at all
                self.queue[:] = [(i, c) for i, c in self.queue if i != j]
                self.pending.pop(j, None)
                self._finish(j, dict(status="corrupt", error=item["error"]))
                continue
            self.queue.append((j, item))
            if sum(len(c["clips"]) for _, c in self.queue) >= self.extractor.batch_size:
                self._run_batch()
        if self.queue:
            self._run_batch()
        self.bar.close()
        return dict(done=self.done, failed=self.failed, corrupt=self.corrupt, clips=self.clips, ends=self.ends,
                    clips_per_s=self.tp.rate, data_wait=self.tp.wait_share, throughput=self.tp.summary())

    def _run_batch(self) -> None:
        clips = torch.cat([c["clips"] for _, c in self.queue])
        extractor = self.extractor
        feats = extractor.forward(clips) if len(clips) <= extractor.batch_size else extractor(clips)
        self.tp.add(len(clips))
        pos = 0
        for j, c in self.queue:
            k = len(c["clips"])
            acc = self.pending.setdefault(j, dict(feats=[], ts=[], starts=[]))
            acc["feats"].append(feats[pos:pos + k])
            acc["ts"].append(c["timestamps"])
            acc["starts"] += c["start_frames"]
            pos += k
            if c["last"]:
                self._write(j, c, self.pending.pop(j))
        self.queue.clear()

    def _write(self, j: int, last: dict, acc: dict) -> None:
        f, ts = torch.cat(acc["feats"]), torch.cat(acc["ts"])
        bad = _non_finite(f, ts)
        if bad:
            return self._finish(j, dict(status="failed", error=bad))
        name = _output_name(self.keys[self.todo[j]], self.fmt)
        w = self.windows
        meta = dict(fps=last["fps"], num_frames=last["num_frames"], **w, layer=self.extractor.layer,
                    window_seconds=w["clip_len"] * w["frame_interval"] / last["fps"])
        _write_features(self.output / name, f, ts, acc["starts"], meta, self.fmt)
        entry = dict(status="ok", file=name, num_clips=len(f), shape=list(f.shape), **meta)
        if self.fmt == "npy":
            entry.update(timestamps=ts.tolist(), start_frames=acc["starts"])
        self._finish(j, entry)

    def _finish(self, j: int, entry: dict) -> None:
        self.ends += 1
        if j in self.finished:
            return
        self.finished.add(j)
        key = self.keys[self.todo[j]]
        entry = dict(video=key, **entry)
        with open(self.index_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        self.bar.set_postfix(self.tp.postfix(), refresh=False)
        self.bar.update()
        if entry["status"] == "ok":
            self.done += 1
            self.clips += entry["num_clips"]
            return
        self.failed[key] = entry["error"]
        if entry["status"] == "corrupt":
            self.corrupt.append(key)
        if self.progress:  # else the caller reports them from the result
            tqdm.write(f"{'skipping' if entry['status'] == 'corrupt' else 'failed'} {key}: {entry['error']}")


def _output_folder(output: Union[str, Path]) -> Path:
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file, not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--output {output} cannot be made ({e.strerror or e})") from None
    return output


def _video_keys(videos: Sequence[Union[str, Path]], root: Optional[Path], fmt: str) -> List[str]:
    """Each video's key (its path under ``root``); two videos with one output name are refused."""
    keys = [_video_key(Path(v), root) for v in videos]
    seen: Dict[str, str] = {}
    for v, k in zip(videos, keys):
        if k in seen:
            raise ValueError(f"{seen[k]} and {v} map to the same output name {_output_name(k, fmt)}; "
                             "pass root= (their common folder) to keep their relative paths")
        seen[k] = str(v)
    return keys


def _prepare_folder(output: Path, current: dict, overwrite: bool) -> dict:
    """The folder's index after every rank checked the settings (rank 0 clears / records them)."""
    index = {} if overwrite else _read_index(output)
    new_settings = True if overwrite else _check_settings(output, current, index)
    barrier()  # every rank has checked the settings and read the same index before any rank logs to it
    if get_rank() == 0:
        _remove_temp_files(output)
        if overwrite:
            _clear_output(output)
        if new_settings:
            _write_settings(output, current)
    barrier()
    return index


def extract_videos(extractor: FeatureExtractor, videos: Sequence[Union[str, Path]], output: Union[str, Path],
                   clip_len: int, frame_interval: int, clip_stride: int, transform, workers: int = 2,
                   fmt: str = "safetensors", root: Optional[Union[str, Path]] = None, progress: bool = True,
                   settings: Optional[dict] = None, overwrite: bool = False, shards=None) -> dict:
    """Extract every video in ``videos`` to ``output`` (see the module docstring).

    ``settings``: extra entries for ``settings.json`` (the command adds the model name,
    checkpoint and model kwargs). ``overwrite``: start the folder afresh (old index and the
    files it lists are removed) instead of refusing settings that differ from the folder's.

    Returns ``dict(done, skipped, failed={video: error}, corrupt=[video], clips, seconds)`` and rank 0's
    ``clips_per_s``, ``data_wait`` (share of its time waiting for decoded windows), ``throughput`` (the two in
    words) and ``warning`` (``engine.throughput.data_wait_warning``: None unless it waited over half the time)
    (``failed`` holds every video not extracted, ``corrupt`` those that could not be
    decoded), summed over the ranks when run under torchrun (every rank calls it with the
    same arguments). Counts are videos, ``clips`` the windows written to files.

    ``shards`` (a ``data.shards.ShardSet``; ``videos`` and ``root`` are then ignored): the videos of
    WebDataset shards, keyed by their paths in the list, each shard read by one rank and loader worker;
    every video to do must come to its end exactly once in all, else a RuntimeError says how many did.
    """
    if fmt not in ("safetensors", "npy"):
        raise ValueError(f"format must be 'safetensors' or 'npy', got {fmt!r}")
    output = _output_folder(output)
    if shards is not None:
        videos = keys = [p for p, _ in shards.samples]
    else:
        keys = _video_keys(videos, Path(root) if root is not None else None, fmt)
    _check_weights(extractor.model)
    current = _run_settings(extractor, clip_len, frame_interval, clip_stride, transform, fmt, settings)
    index = _prepare_folder(output, current, overwrite)
    rank, world = get_rank(), get_world_size()
    todo = [i for i, k in enumerate(keys)
            if not (index.get(k, {}).get("status") == "ok" and (output / index[k]["file"]).exists())]
    n_todo = len(todo)
    t0 = time.time()
    if shards is None:
        todo = todo[rank::world]  # dealt out to the ranks
        dataset = _WindowChunks([str(videos[i]) for i in todo], clip_len, frame_interval, clip_stride, transform,
                                extractor.batch_size)
    else:  # the shards are dealt out to ranks and workers
        dataset = _WindowChunks(None, clip_len, frame_interval, clip_stride, transform, extractor.batch_size,
                                shards=shards, todo=todo)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None)
    windows = dict(clip_len=clip_len, frame_interval=frame_interval, clip_stride=clip_stride)
    index_path = output / ("index.jsonl" if world == 1 else f"index.rank{rank}.jsonl")
    extraction = _Extraction(extractor, output, keys, todo, fmt, windows, index_path, progress)
    mine = extraction.run(loader)
    first = str(videos[todo[0]]) if shards is None and todo else None  # the source the warning inspects
    mine["warning"] = data_wait_warning(extraction.tp, workers, dataset, "extraction", video=first)
    return _merge_ranks(output, mine, len(videos), n_todo, shards is not None, t0)


def _merge_ranks(output: Path, mine: dict, num_videos: int, n_todo: int, counted: bool, t0: float) -> dict:
    """Rank 0 merges the index; every rank gets the summed counts (``counted``: shards, where every video
    to do must have come through exactly once)."""
    barrier()  # all rank logs are complete
    if get_rank() == 0:
        _compact_index(output)
    ranks = all_gather_object(mine)
    barrier()  # nobody returns before the merged index is written
    ends = sum(r["ends"] for r in ranks)
    if counted and ends != n_todo:
        raise RuntimeError(f"extraction over shards expected each of the {n_todo} videos to do exactly once across "
                           f"ranks and loader workers, but {ends} came through; the shards must deal every video "
                           "out once")
    return dict(done=sum(r["done"] for r in ranks), skipped=num_videos - n_todo,
                failed={k: e for r in ranks for k, e in r["failed"].items()},
                corrupt=sorted(k for r in ranks for k in r["corrupt"]),
                clips=sum(r["clips"] for r in ranks), seconds=time.time() - t0,
                **{k: ranks[0][k] for k in ("clips_per_s", "data_wait", "throughput", "warning")})
