"""Every query about registered names and tags, in one place (timm's ``_registry``): which models and
tags tada-zoo registers, which have weights and where, and which family file owns a model."""
import difflib
import sys
from types import ModuleType
from typing import Callable, List, Optional, Union

import timm
import torch.nn as nn
from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg

from ._cfg import HUB_ORG, VideoPretrainedCfg

__all__ = ["list_models", "check_model_name", "family_module", "family", "checkpoint_filter", "released_models",
           "list_published", "registered_cfg", "hub_models", "repo_id", "registered_tags", "is_tag",
           "tags_with_weights"]


def list_models(pattern: str = "*") -> List[str]:
    """Names of the models tada-zoo registers in timm (``pattern`` as in ``timm.list_models``)."""
    return [name for name in timm.list_models(pattern)
            if timm.models.model_entrypoint(name).__module__.startswith(__package__)]


def check_model_name(arch: str) -> None:
    """ValueError for an unknown architecture, suggesting close names and listing ours."""
    if not timm.is_model(arch):
        ours = list_models()
        close = difflib.get_close_matches(arch, ours, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ValueError(f"unknown model {arch!r}; {hint}tada-zoo models: {', '.join(ours)}")


def _architecture(model_or_name: Union[nn.Module, str]) -> str:
    if isinstance(model_or_name, str):
        return model_or_name.split(".")[0]
    arch = (getattr(model_or_name, "pretrained_cfg", None) or {}).get("architecture")
    if not arch:
        raise ValueError(f"{type(model_or_name).__name__} was not built by timm.create_model: its family is unknown")
    return arch


def family_module(model_or_name: Union[nn.Module, str]) -> ModuleType:
    """The model file that registers this architecture (looked up by name, as timm does)."""
    arch = _architecture(model_or_name)
    check_model_name(arch)
    return sys.modules[timm.models.model_entrypoint(arch).__module__]


def family(model_or_name: Union[nn.Module, str]):
    """The ``VideoFamily`` its family file declares (name, recipe prefix, 2D inflation)."""
    module = family_module(model_or_name)
    declared = getattr(module, "FAMILY", None)
    if declared is None:
        raise ValueError(f"{module.__name__} declares no FAMILY = VideoFamily(...)")
    return declared


def checkpoint_filter(model_or_name: Union[nn.Module, str]) -> Optional[Callable]:
    """The family's ``checkpoint_filter_fn(state_dict, model)``: original keys -> ours (ours pass through)."""
    return getattr(family_module(model_or_name), "checkpoint_filter_fn", None)


def _video_cfgs(pattern: str = "*"):
    """``(arch.tag, cfg)`` of every tagged video cfg registered in timm."""
    for name in timm.list_pretrained(pattern):
        cfg = get_pretrained_cfg(name)
        if "." in name and isinstance(cfg, VideoPretrainedCfg):  # not arch alone = the default tag
            yield name, cfg


def released_models() -> List[str]:
    """``arch.tag`` of every registered model converted from a released original checkpoint."""
    return sorted(name for name, cfg in _video_cfgs() if cfg.original_file)


def list_published(pattern: str = "*") -> List[str]:
    """The names of ``timm.list_pretrained(pattern)`` that are ours and whose weights are on the Hub
    (cfg ``published``); the others load after a local conversion (``_weights.how_to_get``)."""
    ours = set(list_models())
    return [name for name in timm.list_pretrained(pattern) if name.split(".")[0] in ours
            and getattr(get_pretrained_cfg(name), "published", False)]


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


def hub_models() -> List[str]:
    """``arch.tag`` of every registered model with a tada-zoo Hub repo: the released conversions
    and the weights we build ourselves (``.in1k_inflated``); ``hub_configs/`` has one folder each."""
    return sorted(name for name, cfg in _video_cfgs() if (cfg.hf_hub_id or "").startswith(f"{HUB_ORG}/"))


def repo_id(name: str) -> str:
    """Hub repo of ``arch.tag`` (its cfg's ``hf_hub_id``; ``tada-zoo/<arch>.<tag>`` by default)."""
    hub_id = registered_cfg(name).hf_hub_id
    return hub_id if hub_id and not hub_id.endswith("/") else f"{HUB_ORG}/{name}"


def registered_tags(arch: str) -> List[str]:
    """Every pretrained tag registered for ``arch`` (with or without weights)."""
    return [n.split(".", 1)[1] for n in get_arch_pretrained_cfgs(arch) if "." in n]


def is_tag(arch: str, tag: str) -> bool:
    return tag in registered_tags(arch)


def tags_with_weights(arch: str) -> List[str]:
    """``arch.tag`` names with a source of weights: a released original or weights we build."""
    return [name for name, cfg in _video_cfgs(f"{arch}.*") if cfg.original_file or cfg.hf_hub_id]
