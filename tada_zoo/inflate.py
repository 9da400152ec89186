"""2D ImageNet weights -> video model weights, as the papers initialise their video models.

Each family file declares its rule (``FAMILY.inflate``): ResNet -> TSN / TAda2D
(``inflate_resnet``), ConvNeXt -> TAdaConvNeXt(V2) (``inflate_convnext``), CLIP ViT ->
TAdaFormer (``inflate_clip_vit``), ResNet -> R3D / R(2+1)D / SlowOnly. Parameters the 2D
network does not have (route functions, the aggregation's BN2) keep their identity
initialisation, so the inflated video model starts out as its 2D source applied frame by
frame (paper Sec. 3.2 and 4).
"""
from typing import Dict

import torch
import torch.nn as nn

from .models._helpers import family
from .models.tada2d import inflate_resnet
from .models.tadaconvnext import inflate_convnext
from .models.tadaformer import inflate_clip_vit

__all__ = ["inflate", "inflate_resnet", "inflate_convnext", "inflate_clip_vit"]


def inflate(model: nn.Module, state_dict_2d: Dict[str, torch.Tensor]) -> nn.Module:
    """Inflate 2D weights into ``model`` with its family's rule (in place, returns the model)."""
    rule = family(model).inflate
    if rule is None:
        raise ValueError(f"the {family(model).name} family declares no 2D inflation rule for {type(model).__name__}")
    return rule(model, state_dict_2d)
