"""The one model builder of every family, the one factory users' commands go through, and what
to tell a user whose weights are not on the Hub.

``build_video_model`` is timm's ``build_model_with_cfg``; when the pretrained weights are
neither on the Hugging Face Hub nor in the local cache it raises ``WeightsNotAvailableError``
with the local-conversion recipe instead of a bare 404. ``create_video_model`` builds a
registered model from at most one source of weights (the Hub, a local checkpoint, 2D weights
to inflate), for train, evaluate, extract and profile.
"""
import dataclasses
from pathlib import Path
from typing import List, Optional, Union

import timm
import torch.nn as nn
from huggingface_hub.errors import (
    EntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)
from timm.models import PretrainedCfg, build_model_with_cfg, get_pretrained_cfg

from ._cfg import VideoPretrainedCfg
from ._helpers import check_model_name, classifier_keys, family, list_models, load_checkpoint, read_checkpoint

__all__ = ["WEIGHTS_NAME", "WeightsNotAvailableError", "build_video_model", "create_video_model", "how_to_convert",
           "list_models", "registered_cfg", "released_models"]

WEIGHTS_NAME = "model.safetensors"
_TIMM_FIELDS = {f.name for f in dataclasses.fields(PretrainedCfg)}
_HUB_MISSING = (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, OfflineModeIsEnabled)


class WeightsNotAvailableError(RuntimeError):
    """Pretrained weights are neither on the Hub nor in the local HF cache."""


def released_models() -> List[str]:
    """``arch.tag`` of every registered model converted from a released original checkpoint."""
    names = []
    for name in timm.list_pretrained():
        cfg = get_pretrained_cfg(name)
        if "." in name and isinstance(cfg, VideoPretrainedCfg) and cfg.original_file:  # not arch = default tag
            names.append(name)
    return sorted(names)


def registered_cfg(name: str) -> VideoPretrainedCfg:
    """The registered pretrained cfg of ``arch[.tag]``; ValueError naming the choices if unknown."""
    try:
        cfg = get_pretrained_cfg(name, allow_unregistered=False) if timm.is_model(name.split(".")[0]) else None
    except RuntimeError:
        cfg = None
    if cfg is None:
        raise ValueError(f"unknown model {name!r}; tada-zoo models with released weights: "
                         f"{', '.join(released_models())} (or an architecture from timm.list_models())")
    return cfg


def how_to_convert(name: str, cfg=None) -> str:
    """The local-conversion recipe for ``arch.tag``, for error messages and docs."""
    cfg = cfg if cfg is not None else registered_cfg(name)
    if name.endswith("_inflated") and not getattr(cfg, "original_file", None):
        return (f"build them locally from the 2D weights ({getattr(cfg, 'origin_url', None) or cfg.init}):\n"
                f"  python conversion/inflate_convnext.py --source model.safetensors --model {name.split('.')[0]} "
                f"--output {name}/\nthen load them with\n"
                f"  timm.create_model({name!r}, pretrained=True, "
                f"pretrained_cfg_overlay=dict(file={name + '/' + WEIGHTS_NAME!r}))")
    original = getattr(cfg, "original_file", None) or "ORIGINAL.pyth"
    url = getattr(cfg, "original_url", None) or getattr(cfg, "origin_url", None)
    where = f" (download: {url})" if url else ""
    return (f"convert the original checkpoint{where} locally:\n"
            f"  tada-zoo convert --model {name} --checkpoint {original} --output {name}/\n"
            f"then load it with\n"
            f"  timm.create_model({name!r}, pretrained=True, "
            f"pretrained_cfg_overlay=dict(file={name + '/' + WEIGHTS_NAME!r}))")


def _cfg_for_message(variant: str, kwargs: dict) -> PretrainedCfg:
    """The pretrained cfg ``build_model_with_cfg`` was resolving: a cfg, a Hub config's dict or a tag."""
    cfg = kwargs.get("pretrained_cfg")
    if isinstance(cfg, dict):
        cfg = PretrainedCfg(**{k: v for k, v in cfg.items() if k in _TIMM_FIELDS})
    elif not isinstance(cfg, PretrainedCfg):
        try:
            cfg = get_pretrained_cfg(f"{variant}.{cfg}" if isinstance(cfg, str) and cfg else variant)
        except RuntimeError:
            cfg = None
    overlay = {k: v for k, v in (kwargs.get("pretrained_cfg_overlay") or {}).items() if hasattr(cfg, k)}
    return dataclasses.replace(cfg or PretrainedCfg(architecture=variant), **overlay)


def build_video_model(model_cls, variant: str, pretrained: bool, **kwargs):
    """``timm.models.build_model_with_cfg`` whose failure to find the weights on the Hub (or in
    the offline cache) says how to convert them locally instead of a bare 404."""
    try:
        return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
    except _HUB_MISSING as e:
        if not pretrained:
            raise
        cfg = _cfg_for_message(variant, kwargs)
        name = f"{variant}.{cfg.tag}" if cfg.tag else variant
        if getattr(cfg, "published", True) is False:
            why = f"the weights of {name} are not published on the Hugging Face Hub yet ({cfg.hf_hub_id})"
        else:
            why = f"could not fetch {cfg.hf_hub_id} from the Hugging Face Hub or the local cache ({type(e).__name__})"
        try:  # the registry knows the original file even when the cfg came from a Hub config
            recipe_cfg = get_pretrained_cfg(name) if cfg.tag else cfg
        except RuntimeError:
            recipe_cfg = cfg
        raise WeightsNotAvailableError(f"{why}; {how_to_convert(name, recipe_cfg or cfg)}") from e


def create_video_model(
        name: str,
        num_classes: Optional[int] = None,
        pretrained: Optional[Union[bool, str]] = None,
        checkpoint: Optional[Union[str, Path]] = None,
        inflate_from: Optional[str] = None,
        head: str = "fit",
        **kwargs,
) -> nn.Module:
    """A registered model started from at most one source of weights.

    Args:
        name: registered architecture, optionally ``name.tag`` (ValueError listing ours if unknown).
        num_classes: classifier size (default: the cfg's).
        pretrained: ``True`` (the default tag of ``name``) or a tag: weights from the
            timm / Hugging Face cache; the head is replaced when ``num_classes`` differs.
        checkpoint: a local ``.safetensors``, training checkpoint or original ``.pyth``, read
            and mapped by ``load_checkpoint`` with ``head``: ``"fit"`` (fine-tuning: a
            classifier of another size is re-initialised, and says so), ``"strict"``
            (evaluation: everything must fit) or ``"ignore"`` (features).
        inflate_from: a timm 2D ImageNet model name or a 2D state-dict file, inflated by the
            family's rule (``FAMILY.inflate``).
        kwargs: more model arguments (``num_frames``, ``drop_path_rate``, ...).
    """
    arch = name.split(":")[-1].split(".")[0]
    if not name.startswith("hf-hub:"):
        check_model_name(arch)
    if len([s for s in (pretrained, checkpoint, inflate_from) if s]) > 1:
        raise ValueError("give at most one of --pretrained, --checkpoint-init, --inflate-from")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if isinstance(pretrained, str) and pretrained:
        name = f"{arch}.{pretrained}"
        pretrained = True
    try:
        model = timm.create_model(name, pretrained=bool(pretrained), **kwargs)
    except TypeError as e:  # a misspelt model argument (--model-kwargs) ends up in the constructor
        if "unexpected keyword argument" not in str(e):
            raise
        raise ValueError(f"{name} takes no argument {str(e).split('argument')[-1].strip()} (from --model-kwargs "
                         "or a flag); see the model class's docstring for its arguments") from None
    if pretrained:
        return model
    if checkpoint:
        kept = load_checkpoint(model, checkpoint, head=head, context=(
            f"file: {checkpoint}; check --model (architecture and frame count), --num-classes and "
            "--model-kwargs against it"))["classifier_kept"]
        if kept and head == "fit":
            print(f"{checkpoint}: classifier {kept} re-initialised for {model.num_classes} classes")
    elif inflate_from:
        rule = family(model).inflate
        if rule is None:
            raise ValueError(f"--inflate-from: the {family(model).name} family has no 2D inflation rule")
        if Path(inflate_from).is_file():
            sd2d = read_checkpoint(inflate_from)[0]
        else:
            sd2d = timm.create_model(inflate_from, pretrained=True).state_dict()
        head_keys = classifier_keys(model)  # the ImageNet classifier never fits the new head
        own = model.state_dict()
        rule(model, {k: v for k, v in sd2d.items() if k not in head_keys or v.shape == own[k].shape})
    return model
