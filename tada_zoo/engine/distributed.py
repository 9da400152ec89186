"""torchrun DDP helpers: gloo on CPU, nccl on GPU; everything is a no-op in a single process."""
import hashlib
import os
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed", "cleanup_distributed", "is_distributed", "get_rank", "get_world_size",
    "is_main_process", "barrier", "all_reduce_sum", "all_gather_object", "average_buffers",
    "state_hash",
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
