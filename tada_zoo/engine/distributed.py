"""torchrun DDP helpers: gloo on CPU, nccl on GPU; everything is a no-op in a single process.

One node or several (torchrun ``--nnodes``): ranks here are global (``RANK``); only the GPU is
picked by ``LOCAL_RANK``. Folders that several ranks write (train's and extract's ``--output``)
must be one folder for all of them (``check_shared_folder``)."""
import hashlib
import os
import re
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator, List, Optional, Union

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed", "cleanup_distributed", "is_distributed", "get_rank", "get_world_size",
    "is_main_process", "barrier", "all_reduce_sum", "all_gather_object", "average_buffers",
    "state_hash", "ShardSampler", "check_shared_folder", "peer_failure",
]


def init_distributed(device: str = "auto") -> torch.device:
    """Join the process group torchrun describes in the environment; return this rank's device."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu" if device == "auto" else device)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t)
    return t


def all_gather_object(obj: Any) -> List[Any]:
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def average_buffers(model: torch.nn.Module) -> None:
    """Average floating buffers (BN running stats) over ranks, so every rank saves the same model.

    DDP syncs buffers at the start of a forward, so after the last step each rank holds its
    own statistics; averaging them is the cheap form of precise BN.
    """
    if not is_distributed():
        return
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b.div_(get_world_size())


def state_hash(model: torch.nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, bytes): equal hashes mean equal models."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        v = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


class ShardSampler(torch.utils.data.Sampler):
    """Rank r of W takes items r, r + W, ...: every item exactly once over the ranks.

    DistributedSampler pads the shards to equal length by repeating items, which training needs
    (every rank must take the same number of DDP steps) but evaluation does not: it has no
    collective per batch, and a repeated video would be scored twice."""

    def __init__(self, num_items: int, rank: Optional[int] = None, world: Optional[int] = None):
        self.num_items = num_items
        self.rank = get_rank() if rank is None else rank
        self.world = get_world_size() if world is None else world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.world))


def check_shared_folder(folder: Union[str, Path], flag: str) -> None:
    """Refuse (one line naming ``flag``) a folder that is not the same folder for every rank.

    Several nodes write one ``--output`` (rank 0 the run's files, each rank its share of extract's
    features) and every rank reads it back on a resume; a folder local to each node (or a relative
    path from different working directories) would split the run silently. Rank 0 leaves a file
    there and every rank must see it."""
    if not is_distributed():
        return
    token = all_gather_object(f".shared-check.{uuid.uuid4().hex}" if get_rank() == 0 else None)[0]
    probe = Path(folder) / token
    if get_rank() == 0:
        probe.write_text("")
    barrier()
    seen = all_gather_object((probe.exists(), socket.gethostname()))
    barrier()  # every rank has looked before rank 0 removes the file
    if get_rank() == 0:
        probe.unlink(missing_ok=True)
    blind = [f"rank {r} on {host}" for r, (ok, host) in enumerate(seen) if not ok]
    if blind:
        raise ValueError(f"{flag} {folder} is not one folder for all {len(seen)} processes ({', '.join(blind)} "
                         f"cannot see rank 0's files there): give a path on a file system every node mounts "
                         f"(NFS, Lustre), the same absolute path on every node")


_TRANSPORT_ERROR = re.compile(r"^\[[^\]]*(gloo|nccl|c10d)[^\]]*\] ", re.IGNORECASE)


def peer_failure(e: BaseException) -> Optional[str]:
    """One line for a collective that failed because another process of the run stopped (gloo's and
    nccl's own messages carry C++ source locations and say nothing about resuming); None otherwise."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    # gloo raises a plain RuntimeError "[.../third_party/gloo/.../pair.cc:561] Connection closed by peer ..."
    transport = _TRANSPORT_ERROR.match(first) and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not (isinstance(e, getattr(dist, "DistError", ())) or transport):
        return None
    if first.startswith("[") and "] " in first:
        first = first.split("] ", 1)[1]
    first = first.split(". ")[0].rstrip(".")
    world = os.environ.get("WORLD_SIZE", "?")
    return (f"another process of this {world}-process run stopped or cannot be reached ({first}); see the "
            "other nodes' logs, then start the same command on every node again (train and extract resume "
            "from what is saved)")
