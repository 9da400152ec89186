"""How fast a loop goes and how much of it waits for data: one idea for ``train``, ``evaluate`` and
``extract`` (issue 24). "Why is my training so slow" is almost always decoding; these figures say so.

``Throughput.wrap(loader)`` times each ``next()`` on the loader (data wait: from the end of one step's
compute to the arrival of the next batch) and the time from a batch's arrival to the next ``next()``
(compute, everything the loop does with it). ``add(n)`` counts the clips a step processed. On CUDA the
compute's end is synchronized once per step, else queued kernels would be counted as waiting.
``data_wait_hint`` is the one-line warning (with the fixes that apply) when the data wait is more than
half the time; ``model_clips_per_s`` what a model consumes (``tada-zoo bench-data``'s target).
"""
import os
import time
from typing import Iterable, Iterator, Optional

import torch

__all__ = ["Throughput", "STARVED", "usable_cores", "data_wait_hint", "source_facts", "dataset_facts", "data_wait_warning",
           "model_clips_per_s"]

STARVED = 0.5  # share of the time waiting for data above which a run says it is input-bound
SHORT_SIDE = 256  # the short side worth re-encoding to: the protocols crop 224-256 from it
DENSE_GOP = 32  # keyframe interval (frames) up to which a seek decodes little it throws away


class Throughput:
    """Clips per second and the share of the time spent waiting for data over one pass of a loader."""

    def __init__(self, device: Optional[torch.device] = None, unit: str = "clips"):
        self.sync = device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()
        self.device, self.unit = device, unit
        self.wait = self.compute = 0.0
        self.items = 0

    def wrap(self, iterable: Iterable) -> Iterator:
        """``iterable``'s items; the time blocked in its ``next()`` is data wait, the rest compute."""
        it = iter(iterable)
        while True:
            start = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.wait += time.perf_counter() - start
                return
            arrived = time.perf_counter()
            self.wait += arrived - start
            yield item
            if self.sync:  # the step's kernels belong to its compute, not to the next wait
                torch.cuda.synchronize(self.device)
            self.compute += time.perf_counter() - arrived

    def add(self, n: int) -> None:
        self.items += int(n)

    @property
    def seconds(self) -> float:
        return self.wait + self.compute

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    @property
    def wait_share(self) -> float:
        return self.wait / self.seconds if self.seconds > 0 else 0.0

    def postfix(self) -> dict:
        """For a tqdm bar's ``set_postfix``: ``clips/s=12.3, data=45%``."""
        return {f"{self.unit}/s": f"{self.rate:.3g}", "data": f"{self.wait_share:.0%}"}

    def row(self) -> dict:
        """For ``metrics.jsonl``: ``clips_per_s`` and ``data_wait`` (a fraction of the time)."""
        return {f"{self.unit}_per_s": round(self.rate, 3), "data_wait": round(self.wait_share, 3)}

    def summary(self) -> str:
        """For a command's final line: ``12.3 clips/s, 45% of the time waiting for data``."""
        return f"{self.rate:.3g} {self.unit}/s, {self.wait_share:.0%} of the time waiting for data"


def source_facts(path: str, packets: int = 300) -> Optional[dict]:
    """``short_side`` and ``gop`` (the longest keyframe interval in the first ``packets`` packets) of a
    video file, read from the container without decoding; None if it cannot be read."""
    try:
        import av

        with av.open(path) as container:
            stream = container.streams.video[0]
            short = min(stream.codec_context.width, stream.codec_context.height)
            gop, since, seen = 0, 0, False
            for i, packet in enumerate(container.demux(stream)):
                if i >= packets:
                    break
                if packet.size == 0:
                    continue
                if packet.is_keyframe and seen:
                    gop = max(gop, since)
                    since = 0
                seen = seen or packet.is_keyframe
                since += 1
            return dict(short_side=short, gop=max(gop, since))
    except Exception:  # a hint must never break a run
        return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. under SLURM or taskset), else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def data_wait_hint(wait_share: float, workers: int, facts: Optional[dict] = None, shards: bool = False,
                   cores: Optional[int] = None, what: str = "the model") -> Optional[str]:
    """The warning line when ``wait_share`` > ``STARVED``, with the fixes that apply: more ``--workers``
    (if fewer than the cores), re-encoding (when ``facts`` from ``source_facts`` show a source larger than
    256 or with long GOPs; both hints when unknown), WebDataset shards (unless in use); else None."""
    if not wait_share > STARVED:
        return None
    cores = usable_cores() if cores is None else cores
    hints = []
    if workers < cores:
        hints.append(f"more --workers ({workers} now, {cores} cores)")
    if facts is None:
        hints.append(f"re-encode the videos to a short side of {SHORT_SIDE} with a dense GOP (e.g. ffmpeg "
                     f"-vf scale=-2:{SHORT_SIDE} -g 16) if they are larger or have long keyframe intervals")
    else:
        big, sparse = facts["short_side"] > SHORT_SIDE, facts["gop"] > DENSE_GOP
        if big or sparse:
            why = " and ".join(([f"short side {facts['short_side']}"] if big else [])
                               + ([f"keyframes every {facts['gop']} frames"] if sparse else []))
            hints.append(f"re-encode the videos ({why} here) to a short side of {SHORT_SIDE} with a dense GOP "
                         f"(e.g. ffmpeg -vf scale=-2:{SHORT_SIDE} -g 16)")
    if not shards:
        hints.append("WebDataset shards (tada-zoo shard, then --shards): sequential reads instead of one file each")
    fix = "; ".join(hints) if hints else "a faster disk or CPU (tada-zoo bench-data measures the loading alone)"
    return (f"warning: {what} waited for data {wait_share:.0%} of the time: the input pipeline is the bottleneck; "
            f"try {fix}")


def dataset_facts(dataset) -> Optional[dict]:
    """``source_facts`` of the first video of a ``VideoDataset`` (or of what it wraps); None for shards
    or in-memory data."""
    base = getattr(dataset, "dataset", dataset)
    root, samples = getattr(base, "data_root", None), getattr(base, "samples", None)
    if root is None or not samples:
        return None
    return source_facts(os.path.join(root, samples[0][0]))


def data_wait_warning(tp: Throughput, workers: int, dataset=None, what: str = "the model",
                      video: Optional[str] = None) -> Optional[str]:
    """``data_wait_hint`` for a finished pass over ``dataset``; its first video (or ``video``) is inspected
    only when the pass was input-bound (shards: the re-encoding hint is given either way)."""
    if not tp.wait_share > STARVED:
        return None
    shards = getattr(dataset, "shards", None) is not None
    facts = None if shards else source_facts(video) if video else dataset_facts(dataset)
    return data_wait_hint(tp.wait_share, workers, facts, shards=shards, what=what)


def model_clips_per_s(model: torch.nn.Module, clip_shape, batch_size: int = 4, train: bool = True,
                      device: torch.device = torch.device("cpu"), steps: int = 2) -> float:
    """Clips per second ``model`` goes through on random clips of ``clip_shape`` ``(C, T, H, W)``: training
    steps (forward, backward, SGD update) or inference forwards, timed over ``steps`` after a warm-up.
    What the loader workers together must deliver for the model never to wait."""
    model = model.to(device).train(train)
    x = torch.randn(batch_size, *clip_shape, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-9) if train else None

    def step():
        if train:
            opt.zero_grad(set_to_none=True)
            model(x).float().sum().backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)
