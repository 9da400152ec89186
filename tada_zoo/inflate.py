"""2D ImageNet weights -> video model weights, as the papers initialise their video models.

Parameters the 2D network does not have (route functions, the aggregation's BN2) keep
their identity initialisation, so the inflated video model starts out as its 2D source
applied frame by frame (paper Sec. 3.2 and 4).
"""
import math
from typing import Dict

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed

__all__ = ["inflate", "inflate_resnet", "inflate_convnext", "inflate_clip_vit"]


def _load_strict(model: nn.Module, state_dict: Dict[str, torch.Tensor], new_prefixes=()) -> None:
    """Load ``state_dict``; every model key must be covered unless it is one of the new parts."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not any(p in k for p in new_prefixes)]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{len(x)} {what} (first: {x[:5]})"
                 for what, x in (("missing", missing), ("unexpected", unexpected), ("mismatched", wrong)) if x]
        raise ValueError(f"cannot inflate into {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=False)


def inflate_resnet(model: nn.Module, state_dict_2d: Dict[str, torch.Tensor]) -> nn.Module:
    """timm / torchvision ResNet state dict -> TSN or TAda2D (``VideoResNet``), in place.

    Key names are shared; TAda2D's BN after the 3x3 conv becomes BN1 of the
    aggregation (``agg2.norm``); the ImageNet ``fc`` is dropped.
    """
    from .models.tada2d import TAdaBottleneck

    tada = any(isinstance(m, TAdaBottleneck) for m in model.modules())
    sd = {}
    for k, v in state_dict_2d.items():
        if k.startswith("fc."):
            continue
        if tada and ".bn2." in k:
            k = k.replace(".bn2.", ".agg2.norm.")
        sd[k] = v
    _load_strict(model, sd, new_prefixes=(".conv2_rf.", ".agg2.norm_pool.", "fc."))
    return model


def inflate_convnext(model: nn.Module, state_dict: Dict[str, torch.Tensor], strict: bool = True) -> nn.Module:
    """Load 2D ConvNeXt ImageNet weights (timm ``convnext_*`` or the original FB ``.pth``) into ``model``.

    The 4x4 patch embedding becomes the tubelet embedding by centre initialisation (the 2D
    kernel in the middle temporal tap, zeros elsewhere); every other ConvNeXt weight keeps
    its shape and name. The classifier is kept when its size matches ``model``'s. Route
    functions and ``norm_pool`` keep their init, so the inflated model equals its 2D source
    run on frames ``0, s, 2s, ...`` (``s`` = the stem's temporal stride), with the 2D model's
    activation. Returns ``model``; ValueError on missing / unexpected keys.
    """
    from timm.models.convnext import checkpoint_filter_fn as timm_filter

    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    sd = dict(timm_filter(state_dict, model))  # FB names -> timm names (ours)
    stem_key = "stem.0.weight"
    if stem_key not in sd:
        raise ValueError(f"inflate_convnext: no '{stem_key}' in the 2D state dict: is it a ConvNeXt checkpoint?")
    target = model.stem[0].weight
    w2d = sd[stem_key]
    if w2d.dim() != 4 or w2d.shape[:2] != target.shape[:2] or w2d.shape[2:] != target.shape[3:]:
        raise ValueError(
            f"inflate_convnext: 2D stem weight {tuple(w2d.shape)} does not fit the video stem "
            f"{tuple(target.shape)}: build the video model with the 2D model's dims")
    w3d = torch.zeros_like(target, dtype=w2d.dtype)
    w3d[:, :, target.shape[2] // 2] = w2d
    sd[stem_key] = w3d
    own = model.state_dict()
    for name in ("head.fc.weight", "head.fc.bias"):
        if name in sd and (name not in own or own[name].shape != sd[name].shape):
            del sd[name]
    new = {k: v for k, v in own.items() if k not in sd and (".conv_dw_rf." in k or ".norm_pool." in k
                                                            or k.startswith("head.fc."))}
    sd.update(new)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"inflate_convnext: missing {missing[:5]}..., unexpected {unexpected[:5]}... "
                       f"(build the video model with the 2D model's depths and dims)")
    return model


def inflate_clip_vit(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> nn.Module:
    """Initialise ``model`` from a 2D CLIP ViT: timm's ``vit_*_clip_*`` state dict
    (``vit_base_patch16_clip_quickgelu_224.openai`` holds OpenAI's ViT-B/16) or OpenAI's own
    ``ViT-B-16.pt`` keys (``visual.*``, converted with timm's converter).

    The stem ``(D, 3, P, P)`` becomes ``(D, 3, kt, P, P)`` with the 2D kernel on the centre
    tap (the original's inflation); everything else of the ViT is copied; the TAda branches
    keep their init (``proj`` = 0, so they add nothing) and the head is not copied. The
    result equals the ViT run on frames 0, 2, 4, ..., with the final LayerNorm applied to
    the time-averaged class token. Returns ``model``.
    """
    if any(k.startswith("visual.") for k in state_dict):
        from timm.models.vision_transformer import _convert_openai_clip
        state_dict = _convert_openai_clip(state_dict, None)
    sd = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
    if "patch_embed.proj.weight" not in sd:
        raise ValueError("inflate_clip_vit: expected a timm CLIP ViT state dict (patch_embed.proj.weight missing)")
    w2d = sd["patch_embed.proj.weight"]
    w3d = model.patch_embed.proj.weight
    if w2d.dim() != 4 or w2d.shape != w3d.shape[:2] + w3d.shape[3:]:
        raise ValueError(
            f"inflate_clip_vit: stem weight {tuple(w2d.shape)} does not fit the model's "
            f"{tuple(w3d.shape)}; pick the model variant with the same width and patch size")
    inflated = w2d.new_zeros(w3d.shape)
    inflated[:, :, w3d.shape[2] // 2] = w2d
    sd["patch_embed.proj.weight"] = inflated
    if sd["pos_embed"].shape != model.pos_embed.shape:
        old = int(math.isqrt(sd["pos_embed"].shape[1] - 1))
        sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], model.grid_size, (old, old), 1)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    bad_missing = [k for k in missing if ".tada" not in k and not k.startswith("head.")]
    if bad_missing or unexpected:
        raise ValueError(
            f"inflate_clip_vit: state dict does not match the model: missing {bad_missing[:5]}, "
            f"unexpected {list(unexpected)[:5]}")
    return model


def inflate(model: nn.Module, state_dict_2d: Dict[str, torch.Tensor]) -> nn.Module:
    """Inflate 2D weights into ``model`` with its family's rule (in place, returns the model):
    ResNet -> TSN / TAda2D, ConvNeXt -> TAdaConvNeXt(V2), CLIP ViT -> TAdaFormer."""
    from .models.tada2d import VideoResNet
    from .models.tadaconvnext import TAdaConvNeXt
    from .models.tadaformer import TAdaFormer

    rules = ((VideoResNet, inflate_resnet), (TAdaConvNeXt, inflate_convnext), (TAdaFormer, inflate_clip_vit))
    for cls, rule in rules:
        if isinstance(model, cls):
            return rule(model, state_dict_2d)
    raise ValueError(f"no 2D inflation rule for {type(model).__name__}; families with one: "
                     + ", ".join(cls.__name__ for cls, _ in rules))
