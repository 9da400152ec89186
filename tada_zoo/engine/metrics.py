"""Multi-view video scores and accuracies (single head, or several heads such as EPIC verb + noun)."""
import warnings
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.distributed as dist
from tqdm import tqdm

from .distributed import all_reduce_sum, is_distributed
from .throughput import Throughput

__all__ = ["parse_num_classes", "split_heads", "collect_scores", "compute_metrics", "ensemble_scores"]


def parse_num_classes(value: Union[int, str, Sequence[int]]) -> List[int]:
    """``400`` -> ``[400]``; ``"97,300"`` -> ``[97, 300]`` (one linear layer split into heads)."""
    if isinstance(value, int):
        heads = [value]
    elif isinstance(value, str):
        try:
            heads = [int(v) for v in value.split(",")]
        except ValueError:
            raise ValueError(f"--num-classes must be N or N1,N2 (e.g. 97,300), got {value!r}") from None
    else:
        heads = [int(v) for v in value]
    if not heads or min(heads) < 1:
        raise ValueError(f"--num-classes must be positive, got {value!r}")
    return heads


def split_heads(logits: torch.Tensor, heads: Sequence[int]) -> List[torch.Tensor]:
    if logits.shape[-1] != sum(heads):
        raise ValueError(f"model gives {logits.shape[-1]} logits, --num-classes {list(heads)} needs {sum(heads)}")
    return list(logits.split(list(heads), dim=-1))


# logits past this size come from a diverged model (a trained classifier's stay within tens)
DIVERGED_LOGITS = 1e4


def _warn_if_diverged(peak: float, what: str) -> None:
    if not peak <= DIVERGED_LOGITS:  # NaN too
        warnings.warn(f"{what}: the model's logits reach {peak:.3g}; its weights look like those of a diverged "
                      "run (retrain with a lower --lr or --clip-grad): these scores mean little", RuntimeWarning,
                      stacklevel=3)


@torch.no_grad()
def collect_scores(
        model: torch.nn.Module,
        loader,
        num_videos: int,
        heads: Sequence[int],
        device: torch.device,
        autocast_dtype: Optional[torch.dtype] = None,
        progress: bool = False,
        desc: str = "eval",
        views_per_video: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """Per-video class probabilities averaged over all views (clips x crops) after softmax.

    Batches are dicts with ``video`` ``(B, C, T, H, W)`` or ``(B, crops, C, T, H, W)``,
    ``label`` and ``index`` (the video's row in the list; each clip of a video is one
    item). Under DDP every rank scores its shard and the sums are all-reduced, so
    samples the sampler repeats to even out the shards change nothing.

    ``views_per_video`` (clips x crops; for loaders that deal videos out themselves, as WebDataset
    shards do): every video must get exactly that many views in all, else an error says how many
    videos were expected, seen, and seen more than once.

    Returns ``scores`` (list per head of ``(N, K)``), ``labels`` ``(N, heads)``, ``views`` ``(N,)``, and
    ``throughput`` (this rank's clips/s and share of the time waiting for data, ``engine.throughput``).
    """
    model.eval()
    sums = [torch.zeros(num_videos, k, dtype=torch.float64, device=device) for k in heads]
    views = torch.zeros(num_videos, dtype=torch.float64, device=device)
    labels = torch.full((num_videos, len(heads)), -1, dtype=torch.long, device=device)
    peak = torch.zeros((), device=device)  # largest |logit| (NaN once any is): a diverged model shows here
    tp = Throughput(device)
    bar = tqdm(total=_length(loader), desc=desc, disable=not progress, leave=False)
    for batch in tp.wrap(loader):
        video = batch["video"].to(device, non_blocking=True)
        crops = video.shape[1] if video.dim() == 6 else 1
        if video.dim() == 6:
            video = video.flatten(0, 1)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(video)
        peak = torch.maximum(peak, logits.detach().float().abs().max())
        index = torch.as_tensor(batch["index"], device=device).long()
        label = torch.as_tensor(batch["label"], device=device).long().reshape(len(index), -1)
        for s, lg in zip(sums, split_heads(logits.float(), heads)):
            probs = lg.softmax(-1).unflatten(0, (len(index), crops)).sum(1)
            s.index_add_(0, index, probs.double())
        views.index_add_(0, index, torch.full_like(index, crops, dtype=torch.float64))
        labels[index] = label
        tp.add(len(index))  # clips (each with its crops)
        bar.set_postfix(tp.postfix())
        bar.update()
    bar.close()
    for s in sums:
        all_reduce_sum(s)
    all_reduce_sum(views)
    if is_distributed():
        dist.all_reduce(labels, op=dist.ReduceOp.MAX)
    _warn_if_diverged(peak.item(), desc)
    _check_counts(sums, views, views_per_video, desc)
    return dict(scores=[(s / views[:, None]).float().cpu() for s in sums], labels=labels.cpu(), views=views.cpu(),
                throughput=tp)


def _check_counts(sums: List[torch.Tensor], views: torch.Tensor, views_per_video: Optional[int], desc: str) -> None:
    """Every video scored (``views_per_video``: exactly that often), every score finite, else one error."""
    num_videos = len(views)
    if views_per_video is not None and (views != views_per_video).any():
        seen, twice = int((views > 0).sum()), int((views > views_per_video).sum())
        raise RuntimeError(f"{desc}: expected each of the {num_videos} videos exactly once across ranks and loader "
                           f"workers ({views_per_video} views each), but {seen} were seen, {twice} of them more "
                           "than once; the loader must deal every video out once")
    if (views == 0).any():
        missing = (views == 0).nonzero().flatten()[:5].tolist()
        raise RuntimeError(f"{int((views == 0).sum())} videos got no view (e.g. rows {missing}); "
                           "the loader must cover every row of the list")
    bad = ~torch.stack([torch.isfinite(s).all(1) for s in sums]).all(0)
    if bad.any():  # a NaN model would otherwise score "top-1 = the share of its argmax class"
        rows = bad.nonzero().flatten()[:5].tolist()
        raise RuntimeError(f"the model gave non-finite scores (NaN / inf) for {int(bad.sum())} of {num_videos} "
                           f"videos (e.g. rows {rows}); its weights or inputs are broken: check the checkpoint")


def _length(loader) -> Optional[int]:
    try:
        return len(loader)
    except TypeError:
        return None


def _head_metrics(scores: torch.Tensor, labels: torch.Tensor, topk: int = 5) -> dict:
    """top-1, mean per-class accuracy and, with more than ``topk`` classes, top-``topk`` (with fewer,
    every video is in its top ``topk``: 100 % that says nothing, so it is left out)."""
    top = scores.topk(min(topk, scores.shape[1]), dim=1).indices
    correct1 = top[:, 0] == labels
    per_class = {}
    for c in labels.unique().tolist():
        m = labels == c
        per_class[int(c)] = correct1[m].float().mean().item() * 100
    out = dict(top1=correct1.float().mean().item() * 100)
    if scores.shape[1] > topk:
        out[f"top{topk}"] = (top == labels[:, None]).any(1).float().mean().item() * 100
    return dict(out, mean_class_acc=sum(per_class.values()) / max(len(per_class), 1), per_class=per_class)


def compute_metrics(scores: List[torch.Tensor], labels: torch.Tensor) -> dict:
    """top-1 / top-5 (more than 5 classes) / mean per-class accuracy (percent); several heads also give the
    action accuracy (every head right), which is then ``top1``."""
    labels = labels.reshape(labels.shape[0], -1)
    if len(scores) == 1:
        return _head_metrics(scores[0], labels[:, 0])
    out = {f"head{i}": _head_metrics(s, labels[:, i]) for i, s in enumerate(scores)}
    action = torch.stack([s.argmax(1) == labels[:, i] for i, s in enumerate(scores)], 1).all(1)
    out["action_top1"] = out["top1"] = action.float().mean().item() * 100
    return out


def ensemble_scores(members: List[List[torch.Tensor]]) -> List[torch.Tensor]:
    """Average several models' per-video probabilities (the paper's TAda2DEn: 8f + 16f)."""
    return [torch.stack(head).mean(0) for head in zip(*members)]
