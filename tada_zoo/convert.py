"""Original TAdaConv checkpoints (``.pyth``) -> tada-zoo safetensors + Hub config + model card.

The file is read and mapped by the one checkpoint path of the model layer
(``models._helpers``: ``read_checkpoint``, the family's ``checkpoint_filter_fn``, an exact
fit of every key and shape); this module adds the release checks and writes the folder,
all or nothing.
"""
from pathlib import Path
from typing import Optional, Union

import timm
import torch.nn as nn

from . import __version__
from .hub import check_output_dir, registered_cfg, released_models, save_converted, sha256_file
from .models._helpers import checkpoint_filter, family_module, map_checkpoint, read_checkpoint

__all__ = ["convert_checkpoint", "describe_original_cfg", "check_against_cfg"]


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
        family = family_module(model_name)
        fits = [n for n in released_models() if family_module(n) is family
                and all(getattr(registered_cfg(n), k) == v for k, v in have.items() if v is not None)]
        raise ValueError(
            f"{model_name} is for " + ", ".join(f"{k}={w}" for k, (_, w) in wrong.items())
            + " but the checkpoint's config says " + ", ".join(f"{k}={v}" for k, (v, _) in wrong.items())
            + (f"; releases that fit: {', '.join(fits)}" if fits else "")
            + " (--no-cfg-check converts anyway)")


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
    state_dict, info = read_checkpoint(checkpoint, ema=ema)
    context = describe_original_cfg(info["cfg"])

    model = timm.create_model(model_name, pretrained=False)
    if checkpoint_filter(model) is None:
        raise ValueError(f"{model_name}: its family defines no checkpoint_filter_fn, so there are no original "
                         f"checkpoints to convert for {type(model).__name__}")
    if not tag:  # own training: the classifier size comes from the checkpoint
        classes = _classes_in(checkpoint_filter(model)(dict(state_dict), model), model)
        if classes and classes != model.num_classes:
            model = timm.create_model(model_name, pretrained=False, num_classes=classes)
    else:
        expected = model.num_classes
        context += (f"; {model_name} expects {expected} classes: if the checkpoint is for another "
                    f"dataset use its tag, or the architecture {arch!r} alone")
    mapped = map_checkpoint(state_dict, model, context)
    if tag and cfg_check:  # the weights fit: do they belong to this release?
        check_against_cfg(model_name, info["cfg"])
    model.load_state_dict(mapped, strict=True)
    provenance = dict(
        source_file=Path(checkpoint).name, source_sha256=sha256_file(checkpoint),
        state_key=info["state_key"], converter=f"tada-zoo {__version__}")
    return save_converted(model.eval(), model_name, output, provenance)
