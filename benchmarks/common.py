"""Timing and peak-memory helpers shared by the benchmarks (ratios, never pass/fail)."""
import multiprocessing as mp
import statistics
import time
from typing import Callable, Dict, List, Tuple


Runs = Dict[str, List[Tuple[float, float]]]


def time_runs(fns: Dict[str, Callable[[], None]], repeats: int = 5, warmup: int = 1, calls: int = 1) -> Runs:
    """``(wall, process CPU)`` seconds per call, one entry per turn; the candidates take
    turns, so each turn sees about the same machine load (the CPU time is steadier on a
    shared machine). A turn averages ``calls`` consecutive calls: ``calls > 1`` measures
    steady-state throughput, as the first call after another model's pays for its cold
    caches and allocator state."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    runs: Runs = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, proc = time.perf_counter(), time.process_time()
            for _ in range(calls):
                fn()
            runs[name].append(((time.perf_counter() - wall) / calls, (time.process_time() - proc) / calls))
    return runs


def median_time(runs: Runs, name: str, cpu: bool = False) -> float:
    return statistics.median(r[cpu] for r in runs[name])


def paired_ratio(runs: Runs, name: str, base: str, cpu: bool = False) -> float:
    """Median over turns of ``name``'s time / ``base``'s time in the same turn: a slow drift
    of the machine's speed cancels in each pair, unlike in a ratio of medians."""
    return statistics.median(a[cpu] / b[cpu] for a, b in zip(runs[name], runs[base]))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _rss_child(build, queue, threads):
    import ctypes
    import gc

    import torch

    torch.set_num_threads(threads)
    fn = build()
    fn()  # warm-up: lazy initialisation is not the call's memory
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back so it is not reused unseen
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark (VmHWM) to the current RSS
    fn()
    queue.put(_status_kb("VmHWM") - before)


def peak_memory_mb(build: Callable[[], Callable[[], None]], threads: int = 2) -> float:
    """Peak resident memory one call adds, in MB, measured in a fresh process (Linux).

    ``build`` (a picklable top-level function) returns the call to measure; the model
    and inputs it creates are the baseline, so the figure is activations + workspace
    (+ gradients for a training step).
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_rss_child, args=(build, queue, threads))
    p.start()
    kb = queue.get()
    p.join()
    return kb / 1024
