"""Multi-view testing (clips x crops) and the predictions CSV; ``tada-zoo evaluate`` (``cli/evaluate.py``)
adds per-class accuracy and ensembles of several models (the paper's TAda2DEn = 8f + 16f)."""
import csv
import io
from typing import List, Optional, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler

from tada_zoo._files import write_text

from .distributed import get_rank, get_world_size, is_main_process
from .metrics import collect_scores

__all__ = ["evaluate_model", "write_predictions"]


def evaluate_model(model: torch.nn.Module, dataset, heads: Sequence[int], batch_size: int = 8, workers: int = 2,
                   device: torch.device = torch.device("cpu"), autocast_dtype=None, progress: bool = True) -> dict:
    """Per-video probabilities of ``dataset`` (a ``VideoDataset`` with ``train=False``:
    ``num_clips`` items per video, each ``(crops, C, T, H, W)``), averaged over all views."""
    sampler = DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=False)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=device.type == "cuda")
    num_videos = len(dataset.samples) if hasattr(dataset, "samples") else len(dataset)
    return collect_scores(model.to(device), loader, num_videos, heads, device, autocast_dtype,
                          progress=progress and is_main_process())


def write_predictions(path, scores: List[torch.Tensor], labels: torch.Tensor, names: Optional[Sequence[str]] = None,
                      topk: int = 5) -> None:
    """One row per video: path, true label(s), top-k predictions and their probabilities (atomic)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    multi = len(scores) > 1
    header = ["index", "video"]
    for h in range(len(scores)):
        p = f"head{h}_" if multi else ""
        header += [f"{p}label", f"{p}pred", f"{p}top{topk}", f"{p}score"]
    w.writerow(header)
    tops = [s.topk(min(topk, s.shape[1]), dim=1) for s in scores]
    for i in range(len(labels)):
        row = [i, names[i] if names is not None else ""]
        for h, t in enumerate(tops):
            row += [int(labels[i, h]), int(t.indices[i, 0]), " ".join(map(str, t.indices[i].tolist())),
                    f"{t.values[i, 0].item():.6f}"]
        w.writerow(row)
    write_text(path, buf.getvalue())
