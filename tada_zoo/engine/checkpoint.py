"""Checkpoints of training runs: atomic writes and exact-resume state.

A run directory holds ``last.safetensors`` / ``best.safetensors`` (weights, for users) and
``last.pt`` (weights + optimizer, scheduler, scaler, EMA, epoch and RNG states, for
``--resume``). ``last.pt`` holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``.

All three carry the run's identity as str -> str metadata (``run_metadata``; the safetensors
header, and ``last.pt``'s ``metadata`` entry): the model name, its constructor arguments,
the heads, the class names and the data-protocol flags, so ``evaluate`` / ``predict`` /
``extract`` rebuild the model from the file alone (``checkpoint_info``).
"""
import json
import os
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from safetensors.torch import save_file

from tada_zoo._files import atomic_write
from tada_zoo.data.protocol import DataProtocol, protocol_from_cfg
from tada_zoo.models import read_checkpoint

__all__ = [
    "run_protocol",
    "atomic_save", "save_safetensors", "get_rng_state", "set_rng_state",
    "unwrap_model", "run_metadata", "checkpoint_info", "resolve_run", "run_weights", "RUN_WEIGHTS",
]

# metadata keys holding JSON (safetensors metadata is str -> str); "model" is a plain string
_JSON_KEYS = ("model_kwargs", "num_classes", "class_names", "protocol", "dataset")

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


def run_metadata(model: str, model_kwargs: Optional[dict] = None, num_classes: Optional[Sequence[int]] = None,
                 class_names: Optional[Sequence[str]] = None, protocol: Optional[dict] = None,
                 init: Optional[str] = None, dataset: Optional[dict] = None) -> Dict[str, str]:
    """What rebuilds a trained model, as str -> str: ``model`` (registered name, with the tag
    whose data protocol it used), ``model_kwargs``, ``num_classes`` (one int per head),
    ``class_names`` and ``protocol`` (the data flags training overrode), JSON-encoded; and what a
    model card must say truthfully: ``init`` (the weights it started from) and ``dataset``."""
    values = dict(model_kwargs=dict(model_kwargs or {}), num_classes=list(num_classes) if num_classes else None,
                  class_names=list(class_names) if class_names else None, protocol=dict(protocol or {}),
                  dataset=dict(dataset or {}))
    meta = dict(model=model, **{k: json.dumps(v) for k, v in values.items()})
    if init:
        meta["init"] = init
    return meta


def checkpoint_info(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """``dict(model, model_kwargs, num_classes, class_names, protocol, dataset, init, trained)`` stored in a
    weights file by ``tada-zoo train`` (``run_metadata``; ``trained`` True); files from elsewhere
    (converted or Hub weights, original checkpoints) give ``model=None`` and empty values. Read
    through the one reader, ``models._helpers.read_checkpoint``."""
    meta = read_checkpoint(path)[1].get("metadata") or {}
    info: Dict[str, Any] = dict(model=meta.get("model") or None, model_kwargs={}, num_classes=None,
                                class_names=None, protocol={}, dataset={}, init=meta.get("init"),
                                trained=bool(meta.get("model")))
    for key in _JSON_KEYS:
        if meta.get(key) is None:
            continue
        try:
            value = json.loads(meta[key])
        except ValueError:
            raise ValueError(f"{path}: its metadata {key!r} is not valid JSON ({meta[key][:60]!r}); "
                             "was the file edited?") from None
        if value is not None:
            info[key] = value
    return info


def _agree(flag: str, given, stored, path) -> None:
    if given is not None and stored is not None and given != stored:
        raise ValueError(f"{flag} {given} disagrees with {path}, which was trained with {stored}; "
                         f"drop {flag} (the checkpoint says it) or use the matching checkpoint")


def resolve_run(checkpoint: Optional[Union[str, os.PathLike]], model: Optional[str] = None,
                num_classes: Optional[List[int]] = None, model_kwargs: Optional[dict] = None) -> Dict[str, Any]:
    """The model to build for ``checkpoint``: what the user gave, filled in from ``checkpoint_info``.

    Given values must agree with the stored ones (architecture and tag, heads, each model
    argument), else a ValueError says which; ``model_kwargs`` keys the file lacks are added.
    Returns ``checkpoint_info``'s dict with ``model``, ``num_classes`` and ``model_kwargs`` resolved.
    """
    info = checkpoint_info(checkpoint) if checkpoint else dict(model=None, model_kwargs={}, num_classes=None,
                                                               class_names=None, protocol={}, dataset={}, init=None,
                                                               trained=False)
    stored = info["model"]
    if model is not None and stored is not None:
        (arch, _, tag), (s_arch, _, s_tag) = model.partition("."), stored.partition(".")
        if arch != s_arch or (tag and s_tag and tag != s_tag):
            _agree("--model", model, stored, checkpoint)
        if tag and not s_tag:
            stored = model
    info["model"] = stored or model
    if info["model"] is None:
        raise ValueError(f"--model is needed: {checkpoint} does not say which model it holds (not written by "
                         "tada-zoo train)" if checkpoint else "--model is needed")
    _agree("--num-classes", ",".join(map(str, num_classes)) if num_classes else None,
           ",".join(map(str, info["num_classes"])) if info["num_classes"] else None, checkpoint)
    info["num_classes"] = info["num_classes"] or (list(num_classes) if num_classes else None)
    kwargs = dict(info["model_kwargs"])
    for k, v in (model_kwargs or {}).items():
        v = json.loads(json.dumps(v))  # tuples compare as the JSON lists stored
        if k in kwargs and kwargs[k] != v:
            raise ValueError(f"--model-kwargs {k}={json.dumps(v)} disagrees with {checkpoint}, which was trained "
                             f"with {k}={json.dumps(kwargs[k])}; drop it (the checkpoint says it)")
        kwargs[k] = v
    info["model_kwargs"] = kwargs
    return info


RUN_WEIGHTS = ("best.safetensors", "last.safetensors")  # what a run folder stands for, in this order


def run_weights(source: Union[str, os.PathLike]) -> Path:
    """The weights a run folder stands for (``best.safetensors``, else ``last.safetensors``: what push
    publishes and a classifier loads), or the weights file given."""
    source = Path(source)
    if source.is_dir():
        for name in RUN_WEIGHTS:
            if (source / name).is_file():
                return source / name
        raise FileNotFoundError(f"{source} holds no {' or '.join(RUN_WEIGHTS)}: is it the --output of tada-zoo train?")
    if not source.is_file():
        raise FileNotFoundError(f"{source} is neither a run folder nor a weights file")
    return source


def run_protocol(model: torch.nn.Module, run: Dict[str, Any], **overrides) -> DataProtocol:
    """The data protocol that feeds a run's model, the one way every command reads it: the model's cfg,
    then the data flags stored with the run (``resolve_run``: the input size and frames it was trained
    with), then the command's own ``overrides`` that are not None; the clip length is the model's."""
    over = dict(run.get("protocol") or {}, **{k: v for k, v in overrides.items() if v is not None})
    over.setdefault("num_frames", getattr(model, "num_frames", None))
    return protocol_from_cfg(getattr(model, "pretrained_cfg", None) or {}, **over)
