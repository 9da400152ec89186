"""2D ImageNet weights -> video model weights, as the papers initialise their video models.

Parameters the 2D network does not have (route functions, the aggregation's BN2) keep
their identity initialisation, so the inflated video model starts out as its 2D source
applied frame by frame (paper Sec. 3.2 and 4).
"""
from typing import Dict

import torch
import torch.nn as nn

__all__ = ["inflate", "inflate_resnet"]


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


def inflate(model: nn.Module, state_dict_2d: Dict[str, torch.Tensor]) -> nn.Module:
    """Inflate 2D weights into ``model`` with the family's rule (in place, returns the model)."""
    from .models.tada2d import VideoResNet

    if isinstance(model, VideoResNet):
        return inflate_resnet(model, state_dict_2d)
    raise ValueError(f"no 2D inflation rule for {type(model).__name__}")
