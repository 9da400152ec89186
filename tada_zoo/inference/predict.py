"""Classify videos with class names: model + its evaluation protocol + decoding + view-averaged softmax.

``load_classifier("tadaconvnext_t_16f.ssv2")`` or ``load_classifier(checkpoint="run/best.safetensors")``
(a file written by ``tada-zoo train`` says its model, arguments and classes) gives a
``VideoClassifier`` whose ``predict(videos)`` returns the top-k ``(index, name, score)`` of each
video. Scores are what ``tada-zoo evaluate`` averages: softmax probabilities over the
protocol's clips x crops views (``protocol_from_cfg``), through the same dataset and loop.

Class names come from ``labels`` (a list or a file, line i = class i), else the checkpoint,
else the dataset of the model's pretrained cfg: Something-Something V2 ships its 174 names
(``data/labels/ssv2.txt``, the ids of the official ``something-something-v2-labels.json``,
which the original code uses). The original code base never published its Kinetics label
order, so Kinetics tags give class indices only (``note`` says so) unless ``labels`` names them.
"""
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from tada_zoo.data.adapters import read_class_names
from tada_zoo.data.datasets import clip_indices, write_annotations
from tada_zoo.data.decode import VideoDecodeError
from tada_zoo.data.protocol import DataProtocol
from tada_zoo.engine.checkpoint import RUN_WEIGHTS, resolve_run, run_protocol, run_weights
from tada_zoo.engine.evaluate import evaluate_model
from tada_zoo.engine.metrics import split_heads
from tada_zoo.inference.timeline import classify_timeline, write_timeline
from tada_zoo.models import create_video_model

__all__ = ["VideoClassifier", "load_classifier", "dataset_class_names", "top_dicts"]

PathLike = Union[str, os.PathLike]
_LABELS_DIR = Path(__file__).parents[1] / "data" / "labels"
# datasets whose label order is published, and the file (line i = class i) that holds it
_DATASET_LABELS = {"ssv2": "ssv2.txt"}


def dataset_class_names(dataset: Optional[str]) -> Optional[List[str]]:
    """The class names of a pretrained cfg's ``dataset`` in label order, or None when unknown
    (Kinetics: the original's label order was never published)."""
    name = _DATASET_LABELS.get((dataset or "").lower())
    return read_class_names(_LABELS_DIR / name) if name else None


def _missing_names_note(dataset: Optional[str]) -> str:
    if (dataset or "").lower().startswith("kinetics"):
        return (f"class indices only: the original code base never published the label order of its {dataset} "
                "models; pass labels (--labels FILE, line i = class i) to name them")
    return "class indices only: no class names are known for this model; pass labels (--labels FILE)"


@dataclass
class VideoClassifier:
    """A model in eval mode and the data protocol that feeds it (``load_classifier`` builds one)."""
    model: torch.nn.Module
    protocol: DataProtocol
    heads: List[int]
    class_names: Optional[List[str]] = None  # single head: one name per class
    note: Optional[str] = None  # why there are no class names
    name: str = ""  # the registered model name

    @classmethod
    def from_pretrained(cls, source: PathLike, labels: Optional[Union[PathLike, Sequence[str]]] = None,
                        **kwargs) -> "VideoClassifier":
        """``NAME.TAG`` (registered weights), a run folder or weights file of ``tada-zoo train``, a
        folder written by ``push --dry-run`` / ``convert``, ``"hf-hub:user/name"`` or ``"local-dir:DIR"``;
        ``kwargs`` are ``load_classifier``'s (views, protocol overrides)."""
        s = os.fspath(source)
        if os.path.isdir(s) and os.path.isfile(os.path.join(s, "config.json")) and not any(
                os.path.isfile(os.path.join(s, w)) for w in RUN_WEIGHTS):
            s = f"local-dir:{s}"
        if s.startswith(("hf-hub:", "local-dir:")) or not os.path.exists(s):
            return load_classifier(model=s, labels=labels, **kwargs)
        return load_classifier(checkpoint=run_weights(s), labels=labels, **kwargs)

    def __call__(self, videos: Union[PathLike, Sequence[PathLike], torch.Tensor, np.ndarray], topk: int = 5,
                 fps: float = 30.0, **kwargs):
        """``clf("a.mp4")`` -> ``[{"index", "name", "score"}, ...]`` best first, with the model's own test
        views; ``clf([paths], batch_size=...)`` -> one such list per video (``kwargs``: ``predict``'s);
        ``clf(frames)``: decoded ``(T, H, W, 3)`` uint8 frames at ``fps``, the same views cut from them."""
        if isinstance(videos, (torch.Tensor, np.ndarray)):
            return top_dicts(self._top_of(self.frame_scores(videos, fps), topk))
        single = isinstance(videos, (str, os.PathLike))
        results = self.predict([videos] if single else list(videos), topk, **kwargs)
        tops = [top_dicts(r["top"]) for r in results]
        return tops[0] if single else tops

    def frame_scores(self, frames: Union[torch.Tensor, np.ndarray], fps: float = 30.0) -> List[torch.Tensor]:
        """View-averaged probabilities (one tensor per head) of decoded ``(T, H, W, 3)`` uint8 frames: the
        protocol's clips x crops, sampled as from a file of these frames at ``fps``."""
        frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {frames.dtype} {frames.shape}")
        p, transform = self.protocol, self.protocol.eval_transform()
        views = torch.cat([transform(frames[clip_indices(p, len(frames), c, p.clips, fps)]) for c in range(p.clips)])
        return [probs[0] for probs in self.view_probs(views.unsqueeze(0))]

    def view_probs(self, views: torch.Tensor, device: Optional[Union[str, torch.device]] = None,
                   autocast_dtype: Optional[torch.dtype] = None) -> List[torch.Tensor]:
        """Softmax probabilities averaged over each item's views: ``(N, views, C, T, H, W)`` in, one
        ``(N, classes)`` per head out (on the CPU); ``device`` default: the model's."""
        device = torch.device(device) if device is not None else next(self.model.parameters()).device
        with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = self.model(views.flatten(0, 1).to(device)).float()
        return [lg.softmax(-1).unflatten(0, views.shape[:2]).mean(1).cpu() for lg in split_heads(logits, self.heads)]

    def ranked(self, probs: torch.Tensor, topk: int = 5) -> List[dict]:
        """One head's probabilities as the top-``topk`` ``{"index", "name", "score"}``, best first."""
        return top_dicts(self._top(probs, topk, self.class_names))

    def _top_of(self, scores: List[torch.Tensor], topk: int):
        tops = [self._top(s, topk, self.class_names if len(self.heads) == 1 else None) for s in scores]
        return tops[0] if len(tops) == 1 else tops

    def timeline(self, video: PathLike, window_seconds: Optional[float] = None, stride_seconds: Optional[float] = None,
                 topk: int = 5, output: Optional[PathLike] = None, **kwargs) -> dict:
        """A long video (or ``"-"``, standard input) as scores per window and the segments where the top
        class changes, decoded as a stream (``inference.timeline.classify_timeline``, whose ``kwargs``
        these are); ``output``: also write ``timeline.csv`` / ``.json`` / ``.png`` there."""
        result = classify_timeline(self, video, window_seconds, stride_seconds, topk, **kwargs)
        if output is not None:
            write_timeline(result, output)
        return result

    def predict(self, videos: Sequence[PathLike], topk: int = 5, skip_unreadable: bool = False,
                batch_size: int = 8, workers: int = 0, device: Union[str, torch.device] = "cpu",
                autocast_dtype: Optional[torch.dtype] = None, progress: bool = False) -> List[dict]:
        """``[{"video": path, "top": [(index, name, score), ...]}]`` per readable video, best first
        (``name`` None without class names; several heads: ``top`` is one such list per head).

        An unreadable video is a ``VideoDecodeError`` naming it, or with ``skip_unreadable`` a
        warning, and it is left out of the result.
        """
        if topk < 1:
            raise ValueError(f"topk must be positive, got {topk}")
        paths = [os.path.abspath(os.fspath(v)) for v in videos]
        if not paths:
            raise ValueError("no videos to classify")
        odd = [p for p in paths if "\n" in p or "\r" in p or p != p.strip()]
        if odd:
            raise ValueError(f"video names with line breaks or surrounding spaces are not supported: {odd[0]!r}")
        scores = self._scores(list(dict.fromkeys(paths)), skip_unreadable, batch_size, workers, device,
                              autocast_dtype, progress)
        # a video given twice is decoded once, answered twice
        return [dict(video=path, top=self._top_of(scores[path], topk)) for path in paths if path in scores]

    def predict_shards(self, pattern: str, topk: int = 5, batch_size: int = 8, workers: int = 0,
                       device: Union[str, torch.device] = "cpu", autocast_dtype: Optional[torch.dtype] = None,
                       progress: bool = False) -> List[dict]:
        """``predict`` for every video of WebDataset shards (``tada-zoo shard``), ``video`` being its path in
        the shards' index: the same views from the videos' bytes, each video once over ranks and workers."""
        ds = self.protocol.dataset(shards=pattern, train=False)
        scores = evaluate_model(self.model, ds, self.heads, batch_size, workers, torch.device(device),
                                autocast_dtype, progress=progress)["scores"]
        return [dict(video=path, top=self._top_of([s[i] for s in scores], topk)) for i, (path, _) in
                enumerate(ds.samples)]

    def _scores(self, paths: List[str], skip_unreadable: bool, batch_size: int, workers: int, device,
                autocast_dtype, progress: bool) -> dict:
        """``{path: [view-averaged probabilities per head]}`` of the readable ``paths`` (distinct)."""
        with tempfile.TemporaryDirectory(prefix="tada-zoo-predict-") as tmp:
            list_file = os.path.join(tmp, "videos.txt")
            write_annotations([(p, 0) for p in paths], list_file)
            ds = self.protocol.dataset("", list_file, train=False)
            bad = ds.probe(workers=workers)
            if bad:
                if not skip_unreadable:
                    path, reason = next(iter(bad.items()))
                    raise VideoDecodeError(path, reason)
                for path, reason in bad.items():
                    warnings.warn(f"skipping {path}: cannot be read ({reason})", RuntimeWarning, stacklevel=3)
                paths = [p for p in paths if p not in bad]
                if not paths:
                    return {}
                write_annotations([(p, 0) for p in paths], list_file)
                ds = self.protocol.dataset("", list_file, train=False)
            scores = evaluate_model(self.model, ds, self.heads, batch_size, workers, torch.device(device),
                                    autocast_dtype, progress=progress)["scores"]
        return {p: [s[i] for s in scores] for i, p in enumerate(paths)}

    @staticmethod
    def _top(probs: torch.Tensor, k: int, names) -> List[Tuple[int, Optional[str], float]]:
        values, indices = probs.topk(min(k, len(probs)))
        return [(int(i), names[i] if names else None, float(v)) for v, i in zip(values, indices)]


def top_dicts(top: list) -> list:
    """``predict``'s ``(index, name, score)`` tuples as ``{"index", "name", "score"}`` (one list per head
    for several heads): what ``clf(...)`` returns and ``tada-zoo predict --json`` prints."""
    if top and isinstance(top[0], list):
        return [top_dicts(t) for t in top]
    return [dict(index=i, name=n, score=round(s, 6)) for i, n, s in top]


def _class_names(labels, run: dict, cfg, heads: List[int], checkpoint) -> Tuple[Optional[List[str]], Optional[str]]:
    """(names, why there are none): ``labels``, else the checkpoint's, else those of the model's
    ``config.json`` (a repo of ``tada-zoo push``), else those of the dataset of registered weights."""
    names, source, dataset = None, None, cfg.get("dataset")
    if labels is not None:
        names = list(labels) if isinstance(labels, (list, tuple)) else read_class_names(labels)
        source = "labels" if isinstance(labels, (list, tuple)) else os.fspath(labels)
    elif run["class_names"]:
        names, source = run["class_names"], checkpoint
    elif cfg.get("label_names"):
        names, source = list(cfg["label_names"]), f"the config.json of {run['model']}"
    elif not run["trained"]:  # registered or converted weights: the names of the dataset they were trained on
        names = dataset_class_names(dataset)
        names = names if names is not None and heads == [len(names)] else None
    if names is not None and heads != [len(names)]:
        raise ValueError(f"{source} names {len(names)} classes, but the model has "
                         f"{heads[0] if len(heads) == 1 else heads} outputs; is it the class file of this model?")
    if names is None and run["trained"]:
        return None, ("class indices only: the checkpoint names no classes (trained from a list without "
                      "--class-names); pass labels (--labels FILE, line i = class i)")
    return names, None if names is not None else _missing_names_note(dataset)


def load_classifier(model: Optional[str] = None, checkpoint: Optional[PathLike] = None,
                    labels: Optional[Union[PathLike, Sequence[str]]] = None, model_kwargs: Optional[dict] = None,
                    num_classes: Optional[Sequence[int]] = None, clips: Optional[int] = None,
                    crops: Optional[int] = None, **protocol_overrides) -> VideoClassifier:
    """A ``VideoClassifier`` from a registered ``name.tag`` (its weights), a published
    ``"hf-hub:user/name"`` / ``"local-dir:DIR"`` (``tada-zoo push``: its classes and protocol), or a
    ``checkpoint``.

    A checkpoint written by ``tada-zoo train`` supplies the model name, ``model_kwargs``, heads,
    class names and the data flags of its run; arguments given here must agree with it
    (``engine.checkpoint.resolve_run``). ``clips`` / ``crops`` / ``protocol_overrides``
    (``protocol_from_cfg`` fields) change the test views; by default they are the model's own.
    """
    run = resolve_run(checkpoint, model, list(num_classes) if num_classes else None, model_kwargs)
    heads = run["num_classes"]
    kwargs = dict(run["model_kwargs"])
    if protocol_overrides.get("num_frames"):  # another clip length: the model is built for it (as evaluate does)
        kwargs["num_frames"] = protocol_overrides["num_frames"]
    net = create_video_model(run["model"], sum(heads) if heads else None, pretrained=None if checkpoint else True,
                             checkpoint=checkpoint, head="strict", **kwargs).eval()
    heads = heads or [net.num_classes]
    cfg = net.pretrained_cfg or {}
    protocol = run_protocol(net, run, **dict(protocol_overrides, num_frames=getattr(net, "num_frames", None),
                                             clips=clips, crops=crops))

    names, note = _class_names(labels, run, cfg, heads, checkpoint)
    return VideoClassifier(net, protocol, list(heads), names, note, run["model"])
