"""The one model builder of every family, and what to tell a user whose weights are not on the Hub.

``build_video_model`` is timm's ``build_model_with_cfg``; when the pretrained weights are
neither on the Hugging Face Hub nor in the local cache it raises ``WeightsNotAvailableError``
with the local-conversion recipe instead of a bare 404.
"""
import dataclasses
from typing import List

import timm
from huggingface_hub.errors import (
    EntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)
from timm.models import PretrainedCfg, build_model_with_cfg, get_pretrained_cfg

from ._cfg import VideoPretrainedCfg

__all__ = ["WEIGHTS_NAME", "WeightsNotAvailableError", "build_video_model", "how_to_convert", "registered_cfg",
           "released_models"]

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
