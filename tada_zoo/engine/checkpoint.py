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
from safetensors.torch import load_file, save_file

__all__ = [
    "atomic_save", "save_safetensors", "load_state_dict_file", "get_rng_state", "set_rng_state",
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


def load_state_dict_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Weights from a ``.safetensors`` file or one of our ``.pt`` training checkpoints.

    Pickled files are opened with ``weights_only=True``; a dict with a ``model`` (ours),
    ``state_dict`` or ``model_state`` (original code base) entry is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            return ckpt[key]
    if isinstance(ckpt, dict) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise ValueError(f"{path} holds no state dict (expected a safetensors file or a dict with 'model')")


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


def _head_keys(model: torch.nn.Module) -> set:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        return set()
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)] for p in head.parameters() if id(p) in names}


def load_init_weights(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load fine-tuning start weights; the classifier is dropped when its shape differs.

    Original-format state dicts go through the model family's ``checkpoint_filter_fn``.
    Anything else missing or unexpected is an error (a silent partial load is how
    fine-tuning runs quietly start from scratch).
    """
    import importlib

    module = importlib.import_module(type(model).__module__)
    if hasattr(module, "checkpoint_filter_fn"):
        state_dict = module.checkpoint_filter_fn(state_dict, model)
    own = model.state_dict()
    dropped = []
    for k in sorted(_head_keys(model)):
        if k in state_dict and state_dict[k].shape != own[k].shape:
            dropped.append(k)
            del state_dict[k]
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if k not in dropped]
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match {type(model).__name__}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
            "check --model (architecture and frame count) against the file")
    if dropped:
        print(f"{source}: classifier {dropped} re-initialised for {model.num_classes} classes")


def create_video_model(
        name: str,
        num_classes: int,
        pretrained: Optional[Union[bool, str]] = None,
        checkpoint_init: Optional[PathLike] = None,
        inflate_from: Optional[str] = None,
        **kwargs,
) -> torch.nn.Module:
    """A registered model with a fresh ``num_classes`` head, started from at most one source.

    Args:
        name: registered architecture, optionally ``name.tag``.
        pretrained: ``True`` (the default tag of ``name``) or a tag: weights from the
            timm / Hugging Face cache; the head is replaced when ``num_classes`` differs.
        checkpoint_init: a local ``.safetensors`` or training checkpoint.
        inflate_from: a timm 2D ImageNet model name or a 2D state-dict file, inflated by
            ``tada_zoo.inflate.inflate``.
        kwargs: more model arguments (``num_frames``, ``drop_path_rate``, ...).
    """
    sources = [s for s in (pretrained, checkpoint_init, inflate_from) if s]
    if len(sources) > 1:
        raise ValueError("give at most one of --pretrained, --checkpoint-init, --inflate-from")
    if isinstance(pretrained, str) and pretrained:
        name = f"{name.split('.')[0]}.{pretrained}"
        pretrained = True
    if pretrained:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    model = timm.create_model(name, num_classes=num_classes, **kwargs)
    if checkpoint_init:
        load_init_weights(model, load_state_dict_file(checkpoint_init), source=str(checkpoint_init))
    elif inflate_from:
        try:
            from tada_zoo.inflate import inflate
        except ImportError as e:
            raise RuntimeError(
                f"--inflate-from needs tada_zoo.inflate.inflate, which this install lacks ({e})") from e
        if Path(inflate_from).is_file():
            sd2d = load_state_dict_file(inflate_from)
        else:
            sd2d = timm.create_model(inflate_from, pretrained=True).state_dict()
        head = _head_keys(model)  # the ImageNet classifier never fits the new head
        own = model.state_dict()
        sd2d = {k: v for k, v in sd2d.items() if k not in head or v.shape == own[k].shape}
        inflate(model, sd2d)
    return model
