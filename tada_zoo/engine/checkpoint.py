"""Checkpoints of training runs: atomic writes and exact-resume state.

A run directory holds ``last.safetensors`` / ``best.safetensors`` (weights, for users) and
``last.pt`` (weights + optimizer, scheduler, scaler, EMA, epoch and RNG states, for
``--resume``). ``last.pt`` holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``.
"""
import os
import random
from typing import Dict, Optional, Union

import numpy as np
import torch
from safetensors.torch import save_file

from tada_zoo._files import atomic_write

__all__ = [
    "atomic_save", "save_safetensors", "get_rng_state", "set_rng_state",
    "unwrap_model",
]

PathLike = Union[str, os.PathLike]


def atomic_save(obj, path: PathLike) -> None:
    """``torch.save`` to a temp file, then rename: a crash never leaves half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: PathLike,
                     metadata: Optional[Dict[str, str]] = None) -> None:
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=metadata))


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def get_rng_state() -> dict:
    """Every RNG a training step touches, as tensors and plain values (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = dict(
        torch=torch.get_rng_state(),
        numpy=[np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        python=list(random.getstate()),
    )
    state["python"][1] = list(state["python"][1])
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
