"""Checkpoints: atomic writes, exact-resume state, and the model a fine-tuning run starts from.

A run directory holds ``last.safetensors`` / ``best.safetensors`` (weights, for users) and
``last.pt`` (weights + optimizer, scheduler, scaler, EMA, epoch and RNG states, for
``--resume``). ``last.pt`` holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``.
"""
import os
import random
import tempfile
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import timm
import torch
from safetensors.torch import save_file

from tada_zoo.models._helpers import classifier_keys, load_checkpoint, read_checkpoint

__all__ = [
    "atomic_save", "save_safetensors", "get_rng_state", "set_rng_state",
    "create_video_model", "load_init_weights", "unwrap_model",
]

PathLike = Union[str, os.PathLike]


def _atomic(path: PathLike, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj, path: PathLike) -> None:
    """``torch.save`` to a temp file, then rename: a crash never leaves half a checkpoint."""
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: PathLike,
                     metadata: Optional[Dict[str, str]] = None) -> None:
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    _atomic(path, lambda tmp: save_file(sd, tmp, metadata=metadata))


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


def load_init_weights(model: torch.nn.Module, checkpoint: Union[PathLike, Dict[str, torch.Tensor]],
                      source: Optional[str] = None) -> None:
    """Fine-tuning start weights: everything must fit except a classifier of another size,
    which stays freshly initialised (a silent partial load is how fine-tuning runs quietly
    start from scratch). Original-format files go through the family's key map."""
    source = source or str(checkpoint)
    kept = load_checkpoint(model, checkpoint, head="fit", context=f"{source}: check --model (architecture and "
                           "frame count) against the file")["classifier_kept"]
    if kept:
        print(f"{source}: classifier {kept} re-initialised for {model.num_classes} classes")


def create_video_model(
        name: str,
        num_classes: Optional[int] = None,
        pretrained: Optional[Union[bool, str]] = None,
        checkpoint: Optional[PathLike] = None,
        inflate_from: Optional[str] = None,
        head: str = "fit",
        **kwargs,
) -> torch.nn.Module:
    """The one factory behind train, evaluate and extract: a registered model started from at
    most one source of weights.

    Args:
        name: registered architecture, optionally ``name.tag``.
        num_classes: classifier size (default: the cfg's).
        pretrained: ``True`` (the default tag of ``name``) or a tag: weights from the
            timm / Hugging Face cache; the head is replaced when ``num_classes`` differs.
        checkpoint: a local ``.safetensors``, training checkpoint or original ``.pyth``, read
            and mapped by ``tada_zoo.models._helpers.load_checkpoint`` with ``head``:
            ``"fit"`` (fine-tuning: a classifier of another size is re-initialised),
            ``"strict"`` (evaluation: everything must fit) or ``"ignore"`` (features).
        inflate_from: a timm 2D ImageNet model name or a 2D state-dict file, inflated by
            ``tada_zoo.inflate.inflate``.
        kwargs: more model arguments (``num_frames``, ``drop_path_rate``, ...).
    """
    sources = [s for s in (pretrained, checkpoint, inflate_from) if s]
    if len(sources) > 1:
        raise ValueError("give at most one of --pretrained, --checkpoint-init, --inflate-from")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if isinstance(pretrained, str) and pretrained:
        name = f"{name.split('.')[0]}.{pretrained}"
        pretrained = True
    if pretrained:
        return timm.create_model(name, pretrained=True, **kwargs)
    model = timm.create_model(name, **kwargs)
    if checkpoint and head == "fit":
        load_init_weights(model, checkpoint)
    elif checkpoint:
        load_checkpoint(model, checkpoint, head=head, context=f"file: {checkpoint}; check --model (architecture "
                        "and frame count), --num-classes and --model-kwargs against it")
    elif inflate_from:
        try:
            from tada_zoo.inflate import inflate
        except ImportError as e:
            raise RuntimeError(
                f"--inflate-from needs tada_zoo.inflate.inflate, which this install lacks ({e})") from e
        if Path(inflate_from).is_file():
            sd2d = read_checkpoint(inflate_from)[0]
        else:
            sd2d = timm.create_model(inflate_from, pretrained=True).state_dict()
        head_keys = classifier_keys(model)  # the ImageNet classifier never fits the new head
        own = model.state_dict()
        sd2d = {k: v for k, v in sd2d.items() if k not in head_keys or v.shape == own[k].shape}
        inflate(model, sd2d)
    return model
