"""Decode + transform speed of one loader worker (``tada-zoo bench-data``): how many clips per second a
worker gives through the same pipeline train / evaluate use (``DataProtocol.dataset``), so that
``--workers`` can be chosen against what the model consumes, and re-encoding or shards judged by numbers.
"""
import itertools
import math
import os
import random
import time
from typing import Optional

import torch
from torch.utils.data import IterableDataset

from .folders import find_videos

__all__ = ["bench_loading", "folder_samples", "suggest_workers"]


def folder_samples(data_root) -> list:
    """``(relative path, 0)`` of every video under ``data_root`` (no list: labels do not matter here)."""
    videos = find_videos(data_root)
    if not videos:
        raise ValueError(f"--data-root {data_root} holds no videos")
    return [(os.path.relpath(v, data_root), 0) for v in videos]


def _items(dataset, seed: int = 0):
    """An endless stream of the dataset's items in the order a loader would read them (shuffled)."""
    if isinstance(dataset, IterableDataset):  # shards: read in one process, pass after pass
        for epoch in itertools.count():
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            yield from dataset
        return
    rng = random.Random(seed)
    order = list(range(len(dataset)))
    while True:
        rng.shuffle(order)
        for i in order:
            yield dataset[i]


def bench_loading(dataset, seconds: float = 10.0, clips_per_item: int = 1, max_items: Optional[int] = None) -> dict:
    """Items of ``dataset`` read in this process with one torch thread (what one loader worker does) for
    about ``seconds`` (at least one item after a first, untimed one that pays the imports and opens).
    ``clips_per_item``: test items hold several clips (``VideoViews``). Returns clips, items, seconds,
    ``clips_per_s`` and ``ms_per_clip``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stream = _items(dataset)
        next(stream)  # warm-up
        items, start = 0, time.perf_counter()
        while True:
            next(stream)
            items += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds or (max_items is not None and items >= max_items):
                break
    finally:
        torch.set_num_threads(threads)
    clips = items * clips_per_item
    return dict(clips=clips, items=items, seconds=elapsed, clips_per_s=clips / elapsed,
                ms_per_clip=1000 * elapsed / clips)


def suggest_workers(needed_clips_per_s: float, per_worker: float, cores: int) -> dict:
    """Workers to feed ``needed_clips_per_s`` at ``per_worker`` clips/s each, and whether the cores
    allow it (the training process itself needs one core, so at most ``cores - 1`` workers)."""
    workers = max(1, math.ceil(needed_clips_per_s / per_worker))
    return dict(workers=workers, fits=workers <= max(1, cores - 1), cores=cores)
