"""Original TAdaConv checkpoints (``.pyth``) -> tada-zoo safetensors + Hub config + model card.

The key map of each family is its model file's ``checkpoint_filter_fn(state_dict, model)``
(timm's convention); this module only finds it, through the model's module, and checks
that the mapped state dict fits the model exactly: every key, every shape, or nothing is
written.
"""
import argparse
import importlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Optional, Tuple, Union

import timm
import torch
import torch.nn as nn

from . import __version__
from .hub import check_output_dir, registered_cfg, released_models, save_converted, sha256_file

__all__ = ["load_original_checkpoint", "map_state_dict", "convert_checkpoint"]

_SHOW = 12  # keys listed per kind of mismatch


def load_original_checkpoint(path: Union[str, Path], ema: bool = False) -> Tuple[dict, dict]:
    """Read an original ``.pyth`` with ``torch.load(weights_only=True)``.

    Returns ``(state_dict, info)``: the weights (``model_state``, or ``model_ema_state`` when
    ``ema``; a bare state dict is accepted too) without DDP ``module.`` prefixes, and
    ``info`` with ``state_key``, ``epoch`` and the original config ``cfg`` (dict or None).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise ValueError(
                f"{path} contains Python objects that need code to be unpickled; refusing to load it "
                f"(only tensors and plain containers are read, torch.load(weights_only=True)). Re-save "
                f"its state dict from a trusted environment: torch.save({{'model_state': sd}}, path)") from e
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, expected a dict with 'model_state'")

    state_key = "model_ema_state" if ema else "model_state"
    if state_key in ckpt:
        state_dict = ckpt[state_key]
    elif ema:
        raise ValueError(f"{path} has no 'model_ema_state' (EMA was off in training); drop --ema")
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state_dict, state_key = ckpt, "(bare state dict)"
    else:
        raise ValueError(f"{path} has no 'model_state' (top-level keys: {sorted(ckpt)[:10]}); "
                         f"is it an original TAdaConv checkpoint?")
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"{path}: {state_key} is empty or not a state dict")
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}

    cfg = ckpt.get("cfg")
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except ValueError:
            cfg = None
    info = dict(state_key=state_key, epoch=ckpt.get("epoch"), cfg=cfg if isinstance(cfg, dict) else None)
    return state_dict, info


def describe_original_cfg(cfg: Optional[dict]) -> str:
    """One line naming the original architecture, from the config stored in the checkpoint."""
    if not cfg:
        return "the checkpoint stores no config"
    video = cfg.get("VIDEO", {})
    backbone = video.get("BACKBONE", {})
    parts = dict(
        MODEL=cfg.get("MODEL", {}).get("NAME"), BACKBONE=backbone.get("META_ARCH"),
        BRANCH=backbone.get("BRANCH", {}).get("NAME"), DEPTH=backbone.get("DEPTH"),
        CLASSES=video.get("HEAD", {}).get("NUM_CLASSES"), FRAMES=cfg.get("DATA", {}).get("NUM_INPUT_FRAMES"),
        DATASET=cfg.get("TRAIN", {}).get("DATASET"))
    return "checkpoint config: " + ", ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


def check_against_cfg(model_name: str, cfg: Optional[dict]) -> None:
    """Refuse a release tag that contradicts the checkpoint's own config (dataset, clip length):
    8- and 16-frame checkpoints share one state dict, so only the config tells them apart."""
    if not cfg:
        return
    want = registered_cfg(model_name)
    have = dict(dataset=cfg.get("TRAIN", {}).get("DATASET"), num_frames=cfg.get("DATA", {}).get("NUM_INPUT_FRAMES"))
    wrong = {k: (v, getattr(want, k, None)) for k, v in have.items()
             if v is not None and getattr(want, k, None) is not None and v != getattr(want, k)}
    if wrong:
        family = model_name.split("_")[0]
        fits = [n for n in released_models() if n.split("_")[0] == family
                and all(getattr(registered_cfg(n), k) == v for k, v in have.items() if v is not None)]
        raise ValueError(
            f"{model_name} is for " + ", ".join(f"{k}={w}" for k, (_, w) in wrong.items())
            + " but the checkpoint's config says " + ", ".join(f"{k}={v}" for k, (v, _) in wrong.items())
            + (f"; releases that fit: {', '.join(fits)}" if fits else "")
            + " (--no-cfg-check converts anyway)")


def _filter_fn(model: nn.Module):
    module = importlib.import_module(type(model).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        raise ValueError(f"{module.__name__} defines no checkpoint_filter_fn: no original checkpoints for "
                         f"{type(model).__name__}")
    return fn


def _listing(kind: str, keys) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return f"{len(keys)} {kind}: " + ", ".join(keys[:_SHOW]) + more


def _apply_filter(state_dict: dict, model: nn.Module, context: str) -> dict:
    try:
        return _filter_fn(model)(dict(state_dict), model)
    except (KeyError, IndexError, RuntimeError, AttributeError, TypeError) as e:
        raise ValueError(f"the checkpoint does not map onto {type(model).__name__}: "
                         f"{type(e).__name__}: {e}. {context}") from e


def map_state_dict(state_dict: dict, model: nn.Module, context: str = "") -> dict:
    """Original keys -> ``model``'s, through its family's ``checkpoint_filter_fn``; ValueError
    listing the unmapped, missing and mis-shaped keys unless the result fits ``model`` exactly."""
    mapped = _apply_filter(state_dict, model, context)
    own = model.state_dict()
    unexpected = set(mapped) - set(own)
    missing = set(own) - set(mapped)
    shapes = {k: (tuple(mapped[k].shape), tuple(own[k].shape)) for k in set(mapped) & set(own)
              if tuple(mapped[k].shape) != tuple(own[k].shape)}
    if unexpected or missing or shapes:
        problems = []
        if unexpected:
            problems.append(_listing("checkpoint keys with no place in the model (unmapped)", unexpected))
        if missing:
            problems.append(_listing("model keys the checkpoint does not provide (missing)", missing))
        if shapes:
            problems.append(_listing("shape mismatches (checkpoint vs model)",
                                     [f"{k} {a} vs {b}" for k, (a, b) in shapes.items()]))
        raise ValueError(f"the checkpoint does not fit {type(model).__name__}; nothing was written.\n  "
                         + "\n  ".join(problems) + (f"\n  {context}" if context else ""))
    return mapped


def _classes_in(mapped: dict, model: nn.Module) -> Optional[int]:
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    weight = mapped.get(f"{classifier}.weight") if isinstance(classifier, str) else None
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def convert_checkpoint(model_name: str, checkpoint: Union[str, Path], output: Union[str, Path],
                       ema: bool = False, cfg_check: bool = True) -> Path:
    """Convert ``checkpoint`` for ``model_name`` (``arch.tag`` of a release, or an architecture,
    whose classes then come from the checkpoint's classifier) into the directory ``output``:
    ``model.safetensors``, ``config.json`` (timm hub format), ``README.md`` (model card)."""
    output = check_output_dir(output)  # fail before the expensive part
    arch, _, tag = model_name.partition(".")
    if not timm.is_model(arch):
        raise ValueError(f"unknown model {arch!r}; see timm.list_models() after import tada_zoo")
    if tag:
        registered_cfg(model_name)  # a valid tag, else the list of them
    state_dict, info = load_original_checkpoint(checkpoint, ema=ema)
    context = describe_original_cfg(info["cfg"])

    model = timm.create_model(model_name, pretrained=False)
    if not tag:  # own training: the classifier size comes from the checkpoint
        mapped = _apply_filter(state_dict, model, context)
        classes = _classes_in(mapped, model)
        if classes and classes != model.num_classes:
            model = timm.create_model(model_name, pretrained=False, num_classes=classes)
    else:
        expected = model.num_classes
        context += (f"; {model_name} expects {expected} classes: if the checkpoint is for another "
                    f"dataset use its tag, or the architecture {arch!r} alone")
    mapped = map_state_dict(state_dict, model, context)
    if tag and cfg_check:  # the weights fit: do they belong to this release?
        check_against_cfg(model_name, info["cfg"])
    model.load_state_dict(mapped, strict=True)
    provenance = dict(
        source_file=Path(checkpoint).name, source_sha256=sha256_file(checkpoint),
        state_key=info["state_key"], converter=f"tada-zoo {__version__}")
    return save_converted(model.eval(), model_name, output, provenance)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="original TAdaConv .pyth checkpoint -> safetensors + config.json + model card")
    p.add_argument("--model", required=True,
                   help="arch.tag of a released checkpoint (e.g. tada2d_r50_8f.k400), or an architecture")
    p.add_argument("--checkpoint", required=True, help="original .pyth file")
    p.add_argument("--output", required=True, help="new (or empty) directory to write")
    p.add_argument("--ema", action="store_true", help="convert 'model_ema_state' instead of 'model_state'")
    p.add_argument("--no-cfg-check", dest="cfg_check", action="store_false",
                   help="do not compare the tag's dataset / frames with the checkpoint's stored config")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    out = convert_checkpoint(args.model, args.checkpoint, args.output, ema=args.ema, cfg_check=args.cfg_check)
    print(f"wrote {out}/model.safetensors, config.json, README.md")
