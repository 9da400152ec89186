"""Multi-view testing (clips x crops) and the predictions CSV; ``tada-zoo evaluate`` (``cli/evaluate.py``)
adds per-class accuracy and ensembles of several models (the paper's TAda2DEn = 8f + 16f)."""
import contextlib
import csv
import io
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset

from tada_zoo._files import write_text
from tada_zoo.data.datasets import crashed_decodes, worker_crashes_at_next
from tada_zoo.data.decode import VideoDecodeError

from .distributed import ShardSampler, is_main_process
from .metrics import collect_scores

__all__ = ["evaluate_model", "write_predictions", "write_confusion"]


def evaluate_model(model: torch.nn.Module, dataset, heads: Sequence[int], batch_size: int = 8, workers: int = 2,
                   device: torch.device = torch.device("cpu"), autocast_dtype=None, progress: bool = True) -> dict:
    """Per-video probabilities of ``dataset`` (a ``VideoDataset`` with ``train=False``:
    ``num_clips`` items per video, each ``(crops, C, T, H, W)``), averaged over all views.
    A ``VideoDataset`` is read one video per item (its clips decoded together, ``VideoViews``)
    and re-cut into the same clip batches (``ClipBatches``): the same scores, one decode per video."""
    if isinstance(dataset, IterableDataset):  # WebDataset shards: they deal their videos out, counted in the end
        return _evaluate_iterable(model, dataset, heads, batch_size, workers, device, autocast_dtype, progress)
    per_video = not getattr(dataset, "train", True) and hasattr(dataset, "per_video")
    items = dataset.per_video() if per_video else dataset
    sampler = ShardSampler(len(items))  # every video once over the ranks, none scored twice
    loader = DataLoader(items, batch_size=max(1, batch_size // items.num_clips) if per_video else batch_size,
                        sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda")
    if per_video:
        from tada_zoo.data.datasets import ClipBatches

        loader = ClipBatches(loader, batch_size)
    num_videos = len(dataset.samples) if hasattr(dataset, "samples") else len(dataset)
    with _named_decoder_crashes(dataset, workers):
        return collect_scores(model.to(device), loader, num_videos, heads, device, autocast_dtype,
                              progress=progress and is_main_process())


def _evaluate_iterable(model, dataset, heads, batch_size, workers, device, autocast_dtype, progress) -> dict:
    """``evaluate_model`` over a dataset that yields ``VideoViews`` items itself, each video once in all
    ranks and workers (``data.ShardDataset``); ``collect_scores`` checks that count."""
    from tada_zoo.data.datasets import ClipBatches

    loader = DataLoader(dataset, batch_size=max(1, batch_size // dataset.num_clips), num_workers=workers,
                        pin_memory=device.type == "cuda")
    return collect_scores(model.to(device), ClipBatches(loader, batch_size), len(dataset.samples), heads, device,
                          autocast_dtype, progress=progress and is_main_process(),
                          views_per_video=dataset.views_per_video)


@contextlib.contextmanager
def _named_decoder_crashes(dataset, workers: int):
    """A loader worker killed by its decoder (a SIGSEGV in FFmpeg) becomes an error naming the video:
    evaluation never skips a video (``data.crashed_decodes``)."""
    if not workers or not hasattr(dataset, "marker_dir") or dataset.marker_dir is not None:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tada-zoo-decoding-") as markers, worker_crashes_at_next():
        dataset.marker_dir = markers
        try:
            yield
        except RuntimeError as e:
            crashed = crashed_decodes(markers)
            if not crashed:
                raise
            raise VideoDecodeError(crashed[0], f"decoding it crashed a loader worker ({str(e).strip()}); "
                                               "re-encode the file or remove it from the list") from None
        finally:
            dataset.marker_dir = None


def write_predictions(path, scores: List[torch.Tensor], labels: torch.Tensor, names: Optional[Sequence[str]] = None,
                      topk: int = 5, views: Optional[torch.Tensor] = None) -> None:
    """One row per video: path, true label(s), top-k predictions and their probabilities (atomic);
    ``views``: the views scored per video (clips x crops: a video scored twice would show)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    multi = len(scores) > 1
    header = ["index", "video"]
    for h in range(len(scores)):
        p = f"head{h}_" if multi else ""
        header += [f"{p}label", f"{p}pred", f"{p}top{topk}", f"{p}score"]
    w.writerow(header + (["views"] if views is not None else []))
    tops = [s.topk(min(topk, s.shape[1]), dim=1) for s in scores]
    for i in range(len(labels)):
        row = [i, names[i] if names is not None else ""]
        for h, t in enumerate(tops):
            row += [int(labels[i, h]), int(t.indices[i, 0]), " ".join(map(str, t.indices[i].tolist())),
                    f"{t.values[i, 0].item():.6f}"]
        w.writerow(row + ([int(views[i])] if views is not None else []))
    write_text(path, buf.getvalue())


def write_confusion(out_dir, scores: List[torch.Tensor], labels: torch.Tensor,
                    class_names: Optional[Sequence[str]] = None) -> List[str]:
    """Per head, the confusion matrix of the top-1 predictions: ``confusion.csv`` (counts, row =
    true class, column = predicted) and ``confusion.png`` (row-normalised; skipped with a note
    without matplotlib); several heads write ``confusion_head{i}.*``. ``class_names`` (of a
    single head) label the rows / columns when their number fits. Returns the file names."""
    from tada_zoo import plots

    out, written = Path(out_dir), []
    labels = labels.reshape(labels.shape[0], -1)
    for h, s in enumerate(scores):
        k = s.shape[1]
        names = list(class_names) if class_names is not None and len(scores) == 1 and len(class_names) == k else None
        counts = plots.confusion_matrix(s.argmax(1).numpy(), labels[:, h].numpy(), k)
        stem = "confusion" if len(scores) == 1 else f"confusion_head{h}"
        buf = io.StringIO()
        w = csv.writer(buf)
        cols = names or [str(c) for c in range(k)]
        w.writerow(["true/predicted"] + cols)
        for c, row in zip(cols, counts.tolist()):
            w.writerow([c] + row)
        write_text(out / f"{stem}.csv", buf.getvalue())
        written.append(f"{stem}.csv")
        try:
            plots.plot_confusion(counts, out / f"{stem}.png", names)
            written.append(f"{stem}.png")
        except ImportError as e:
            print(f"skipping {stem}.png: {e}")
    return written
